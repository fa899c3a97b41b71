// batchnorm: normalisation over the last axis (axis -1) with batch statistics in training
// (moving statistics updated in forward) and moving statistics at inference.
//
// Params: [gamma (c,) if scale] [beta (c,) if center] moving_mean (c,) moving_variance (c,);
// the moving statistics are state (no gradient, no optimizer slots). A node whose parameters
// are all frozen runs in inference mode even in training (Keras's frozen BatchNormalization);
// the graph decides that and passes training=false. The attribute frozen=true makes the
// node run in inference mode always, whatever the flags.
// Scratch: [0] xhat (saved), [1] inv_std (saved), [2] dgamma and [3] dbeta stand-ins for
// gradients that are not wanted or must be accumulated (backward only).
#include <cmath>
#include <cstring>

#include "nn/ops/common.h"
#include "nn/regularization.h"

namespace pynn::nn {
namespace {

class BatchNormOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    momentum_ = float(attrs.get_double("momentum", 0.99));
    epsilon_ = float(attrs.get_double("epsilon", 1e-3));
    center_ = attrs.get_bool("center", true);
    scale_ = attrs.get_bool("scale", true);
    frozen_ = attrs.get_bool("frozen", false);
    const int64_t axis = attrs.get_int("axis", -1);
    if (!(momentum_ >= 0.0f && momentum_ <= 1.0f))
      op_error(attrs, "momentum must be in [0, 1], got " + std::to_string(momentum_));
    if (!(epsilon_ > 0.0f && std::isfinite(epsilon_)))
      op_error(attrs, "epsilon must be positive, got " + std::to_string(epsilon_));
    const int np = int(scale_) + int(center_) + 2;
    check_arity(attrs, in, 1, 1, params, np, np);
    const Shape& x = in[0];
    if (x.empty()) op_error(attrs, "input must have at least one axis, got shape ()");
    if (axis != -1 && axis != int64_t(x.size()) - 1)
      op_error(attrs, "only axis -1 is supported, got " + std::to_string(axis));
    c_ = x.back();
    lead_ = ops::lead_rows(x);
    static const char* names[] = {"gamma", "beta", "moving_mean", "moving_variance"};
    int k = 0;
    for (int slot = 0; slot < 4; ++slot) {
      if ((slot == 0 && !scale_) || (slot == 1 && !center_)) continue;
      if (params[size_t(k)] != Shape{c_})
        op_error(attrs, std::string(names[slot]) + " shape " + shape_str(params[size_t(k)]) +
                            " does not match input shape " + shape_str(x) + ": expected " +
                            shape_str({c_}));
      ++k;
    }
    ones_.assign(size_t(c_), 1.0f);
    zeros_.assign(size_t(c_), 0.0f);
    return x;
  }

  bool param_is_state(int k) const override { return k >= int(scale_) + int(center_); }
  bool frozen_means_inference() const override { return true; }
  std::vector<ScratchNeed> scratch(bool training, bool backward) const override {
    std::vector<ScratchNeed> s(4);
    if (training && !frozen_) {
      const ScratchLife life = backward ? ScratchLife::saved : ScratchLife::forward;
      s[0] = {lead_ * c_, 0, life};
      s[1] = {0, c_, life};
      if (backward) {
        s[2] = {0, c_, ScratchLife::backward};
        s[3] = {0, c_, ScratchLife::backward};
      }
    }
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const int64_t rows = a.n * lead_;
    const int mi = int(scale_) + int(center_);
    float* mm = a.param[mi];
    float* mv = a.param[mi + 1];
    if (a.training && !frozen_)
      batchnorm_forward_train(a.x[0], rows, c_, gamma(a.param), beta(a.param), momentum_,
                              epsilon_, mm, mv, a.scratch[0], a.scratch[1], a.y);
    else
      batchnorm_forward_infer(a.x[0], rows, c_, gamma(a.param), beta(a.param), mm, mv, epsilon_,
                              a.y);
  }

  void backward(const BwdArgs& a) override {
    const int64_t rows = a.n * lead_;
    float* dx = a.dx[0];
    const bool accx = dx && a.dx_acc[0];
    float* dg = scale_ ? a.dparam[0] : nullptr;
    float* db = center_ ? a.dparam[int(scale_)] : nullptr;
    if (!a.training || frozen_) {
      // Inference normalisation is affine per feature: dx = dy * gamma / sqrt(var + eps);
      // no parameter of a node in this mode learns (it is frozen, or the pass is saliency).
      const float* g = gamma(a.param);
      const float* mv = a.param[int(scale_) + int(center_) + 1];
      if (dx)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < c_; ++j) {
            const float v = a.dy[r * c_ + j] * g[j] / std::sqrt(mv[j] + epsilon_);
            dx[r * c_ + j] = accx ? dx[r * c_ + j] + v : v;
          }
      if (dg && !a.dparam_acc[0]) std::memset(dg, 0, sizeof(float) * size_t(c_));
      if (db && !a.dparam_acc[int(scale_)]) std::memset(db, 0, sizeof(float) * size_t(c_));
      return;
    }
    const bool accg = dg && a.dparam_acc[0];
    const bool accb = db && a.dparam_acc[int(scale_)];
    float* g_out = (dg && !accg) ? dg : a.scratch[2];
    float* b_out = (db && !accb) ? db : a.scratch[3];
    float* x_out = (dx && !accx) ? dx : a.dy;  // dx may alias dy in the kernel
    batchnorm_backward(a.dy, a.scratch[0], a.scratch[1], gamma(a.param), rows, c_, x_out, g_out,
                       b_out);
    if (accg) store_or_add(dg, a.scratch[2], c_, true);
    if (accb) store_or_add(db, a.scratch[3], c_, true);
    if (accx) store_or_add(dx, a.dy, rows * c_, true);
  }

 private:
  const float* gamma(float* const* p) const { return scale_ ? p[0] : ones_.data(); }
  const float* beta(float* const* p) const { return center_ ? p[int(scale_)] : zeros_.data(); }

  float momentum_ = 0.99f, epsilon_ = 1e-3f;
  bool center_ = true, scale_ = true, frozen_ = false;
  int64_t c_ = 0, lead_ = 1;
  std::vector<float> ones_, zeros_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("batchnorm", pynn::nn::BatchNormOp)

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
//
// An optional second input is a mask, one value per row of a sample (x's shape without the
// last axis; nonzero = kept). In training the batch statistics are then those of the kept
// rows, as Keras's BatchNormalization computes them with a mask: mean = sum(kept x) / (kept +
// 1e-7), var = sum(kept (x - mean)^2) / (kept + 1e-7); every row is normalised with them. The
// mask gets no gradient.
#include <cmath>
#include <cstring>
#include <vector>

#include "nn/ops/common.h"
#include "nn/ops/indexing.h"
#include "nn/regularization.h"

namespace pynn::nn {
namespace {

// Keras's backend.epsilon(), added to the count of kept rows.
constexpr double kCountEps = 1e-7;

// Training forward over the kept rows' statistics (see the header). Sums in double, in row
// order: the result does not depend on the thread count.
void masked_forward_train(const float* x, const float* keep, int64_t n, int64_t c,
                          const float* gamma, const float* beta, float momentum, float eps,
                          float* moving_mean, float* moving_var, float* xhat, float* inv_std,
                          float* y) {
  std::vector<double> mean(size_t(c), 0.0), var(size_t(c), 0.0);
  double kept = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (keep[i] == 0.0f) continue;
    kept += 1.0;
    for (int64_t j = 0; j < c; ++j) mean[size_t(j)] += x[i * c + j];
  }
  const double denom = kept + kCountEps;
  for (double& m : mean) m /= denom;
  for (int64_t i = 0; i < n; ++i) {
    if (keep[i] == 0.0f) continue;
    for (int64_t j = 0; j < c; ++j) {
      const double d = double(x[i * c + j]) - mean[size_t(j)];
      var[size_t(j)] += d * d;
    }
  }
  for (int64_t j = 0; j < c; ++j) {
    const double v = var[size_t(j)] / denom;
    inv_std[j] = float(1.0 / std::sqrt(v + double(eps)));
    moving_mean[j] = float(double(momentum) * moving_mean[j] + (1.0 - momentum) * mean[size_t(j)]);
    moving_var[j] = float(double(momentum) * moving_var[j] + (1.0 - momentum) * v);
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const float h = float((double(x[i * c + j]) - mean[size_t(j)]) * inv_std[j]);
      xhat[i * c + j] = h;
      y[i * c + j] = gamma[j] * h + beta[j];
    }
}

// Its backward. With w_i = keep_i / denom, d_i = xhat_i / inv_std and g_i = dy_i gamma:
// dvar = -inv_std^2 / 2 sum g xhat, dmean = -inv_std sum g - 2 dvar sum w d, and
// dx_i = g_i inv_std + 2 dvar w_i d_i + dmean w_i. dx may alias dy.
void masked_backward(const float* dy, const float* xhat, const float* inv_std, const float* keep,
                     const float* gamma, int64_t n, int64_t c, float* dx, float* dgamma,
                     float* dbeta) {
  std::vector<double> sg(size_t(c), 0.0), sgx(size_t(c), 0.0), swd(size_t(c), 0.0),
      dg(size_t(c), 0.0), db(size_t(c), 0.0);
  double kept = 0.0;
  for (int64_t i = 0; i < n; ++i) kept += keep[i] != 0.0f;
  const double denom = kept + kCountEps;
  for (int64_t i = 0; i < n; ++i) {
    const bool k = keep[i] != 0.0f;
    for (int64_t j = 0; j < c; ++j) {
      const double d = dy[i * c + j], h = xhat[i * c + j];
      dg[size_t(j)] += d * h;
      db[size_t(j)] += d;
      sg[size_t(j)] += d * gamma[j];
      sgx[size_t(j)] += d * gamma[j] * h;
      if (k) swd[size_t(j)] += h / inv_std[j] / denom;
    }
  }
  std::vector<double> dvar(size_t(c), 0.0), dmean(size_t(c), 0.0);
  for (int64_t j = 0; j < c; ++j) {
    const double is = inv_std[j];
    dvar[size_t(j)] = -0.5 * is * is * sgx[size_t(j)];
    dmean[size_t(j)] = -is * sg[size_t(j)] - 2.0 * dvar[size_t(j)] * swd[size_t(j)];
    dgamma[j] = float(dg[size_t(j)]);
    dbeta[j] = float(db[size_t(j)]);
  }
  for (int64_t i = 0; i < n; ++i) {
    const double w = keep[i] != 0.0f ? 1.0 / denom : 0.0;
    for (int64_t j = 0; j < c; ++j) {
      const double is = inv_std[j], h = xhat[i * c + j];
      dx[i * c + j] = float(double(dy[i * c + j]) * gamma[j] * is +
                            2.0 * dvar[size_t(j)] * w * h / is + dmean[size_t(j)] * w);
    }
  }
}

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
    check_arity(attrs, in, 1, 2, params, np, np);
    const Shape& x = in[0];
    if (x.empty()) op_error(attrs, "input must have at least one axis, got shape ()");
    masked_ = in.size() == 2;
    if (masked_ && in[1] != Shape(x.begin(), x.end() - 1))
      op_error(attrs, "the mask's shape " + shape_str(in[1]) + " must be the input's " +
                          shape_str(x) + " without its last axis");
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
  bool needs_input(int k, bool, const BackwardNeeds&) const override { return k == 1; }

  void forward(const FwdArgs& a) override {
    const int64_t rows = a.n * lead_;
    const int mi = int(scale_) + int(center_);
    float* mm = a.param[mi];
    float* mv = a.param[mi + 1];
    if (a.training && !frozen_ && masked_)
      masked_forward_train(a.x[0], a.x[1], rows, c_, gamma(a.param), beta(a.param), momentum_,
                           epsilon_, mm, mv, a.scratch[0], a.scratch[1], a.y);
    else if (a.training && !frozen_)
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
    if (masked_) ops::no_gradient(a.dx[1], rows, a.dx_acc[1] != 0);
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
    if (masked_)
      masked_backward(a.dy, a.scratch[0], a.scratch[1], a.x[1], gamma(a.param), rows, c_, x_out,
                      g_out, b_out);
    else
      batchnorm_backward(a.dy, a.scratch[0], a.scratch[1], gamma(a.param), rows, c_, x_out,
                         g_out, b_out);
    if (accg) store_or_add(dg, a.scratch[2], c_, true);
    if (accb) store_or_add(db, a.scratch[3], c_, true);
    if (accx) store_or_add(dx, a.dy, rows * c_, true);
  }

 private:
  const float* gamma(float* const* p) const { return scale_ ? p[0] : ones_.data(); }
  const float* beta(float* const* p) const { return center_ ? p[int(scale_)] : zeros_.data(); }

  float momentum_ = 0.99f, epsilon_ = 1e-3f;
  bool center_ = true, scale_ = true, frozen_ = false, masked_ = false;
  int64_t c_ = 0, lead_ = 1;
  std::vector<float> ones_, zeros_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("batchnorm", pynn::nn::BatchNormOp)

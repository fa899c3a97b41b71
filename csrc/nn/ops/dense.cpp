// dense: y = act(x W + b) over the last axis of x (rows = batch * prod(shape[:-1])).
//
// The bias and activation run in the GEMM epilogue (dense_forward); backward is
// dense_backward when nothing needs accumulating, else the same three steps (activation
// derivative + bias sums, dW GEMM, dx GEMM) with the accumulate flags applied separately.
// compute_dtype "bfloat16" (mixed precision) runs the three products on the bf16 GEMM.
// activation "softmax" is a row softmax after the affine map; "rrelu" in training draws a
// random slope per element (after a linear GEMM), at inference it is the table's leaky form.
// Scratch: [0] z, the pre-activation (saved, only when backward needs it), [1] the RReLU
// slopes (training only). relu, sigmoid and tanh need no z: their derivatives are functions
// of the output y alone (relu's mask z > 0 is y > 0, since relu writes y = z exactly where
// z > 0 and a zero elsewhere, NaN included; sigmoid's is y (1 - y), tanh's 1 - y^2), and
// both kernels of each, the scalar and the vector one, read nothing else. Backward hands them
// y in z's place, so the forward's epilogue stores no copy of z (a 128 x 256 layer: 128 KB
// less written per step, and less arena); the results are bitwise those from z.
#include <cstring>

#include "gemm/gemm.h"
#include "nn/activations_param.h"
#include "nn/dense.h"
#include "nn/dense_chain.h"
#include "nn/ops/common.h"
#include "nn/softmax.h"

namespace pynn::nn {
namespace {

class DenseOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    units_ = attrs.require_int("units");
    if (units_ <= 0) op_error(attrs, "units must be positive, got " + std::to_string(units_));
    const std::string act = attrs.get_string("activation", "linear");
    const std::vector<double> ap = attrs.get_doubles("act_params");
    use_bias_ = attrs.get_bool("use_bias", true);
    seed_ = uint64_t(attrs.get_int("seed", 0));
    bf16_ = ops::bf16_compute(attrs);
    softmax_ = act == "softmax";
    rrelu_ = act == "rrelu";
    if (softmax_) {
      if (!ap.empty()) op_error(attrs, "activation 'softmax' takes no act_params");
      act_ = &ops::linear_activation();
    } else {
      act_ = &ops::activation_for(attrs, act, ap, act_params_);
    }
    y_derivative_ = act == "relu" || act == "sigmoid" || act == "tanh";
    sigmoid_ = act == "sigmoid";
    check_arity(attrs, in, 1, 1, params, use_bias_ ? 2 : 1, use_bias_ ? 2 : 1);
    const Shape& x = in[0];
    if (x.empty()) op_error(attrs, "input must have at least one axis, got shape ()");
    in_ = x.back();
    lead_ = ops::lead_rows(x);
    const Shape want_w = {in_, units_};
    if (params[0] != want_w)
      op_error(attrs, "kernel shape " + shape_str(params[0]) + " does not match input shape " +
                          shape_str(x) + " and units " + std::to_string(units_) + ": expected " +
                          shape_str(want_w));
    if (use_bias_ && params[1] != Shape{units_})
      op_error(attrs, "bias shape " + shape_str(params[1]) + " does not match units " +
                          std::to_string(units_) + ": expected " + shape_str({units_}));
    Shape y = x;
    y.back() = units_;
    return y;
  }

  std::vector<ScratchNeed> scratch(bool training, bool backward) const override {
    std::vector<ScratchNeed> s(2);
    if (backward && keeps_z(training)) s[0] = {lead_ * units_, 0, ScratchLife::saved};
    if (rrelu_train(training))
      s[1] = {lead_ * units_, 0, backward ? ScratchLife::saved : ScratchLife::forward};
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds& needs) const override {
    return needs.dparam[0] != 0;  // only dW reads x
  }
  bool needs_output(bool training, const BackwardNeeds&) const override {
    return (softmax_ && !logits_) || &effective(training) != &ops::linear_activation();
  }

  void forward(const FwdArgs& a) override {
    const int64_t rows = a.n * lead_;
    const float* b = use_bias_ ? a.param[1] : nullptr;
    const ActivationInfo& act = effective(a.training);
    dense_forward(rows, in_, units_, a.x[0], in_, a.param[0], b, &act, act_params_.data(),
                  a.scratch[0], a.y, 0, bf16_);
    if (logits_) return;
    if (softmax_) softmax_forward(a.y, rows, units_);
    if (rrelu_train(a.training))
      rrelu_forward_train(a.y, a.y, a.scratch[1], rows * units_, act_params_[0], act_params_[1],
                          seed_, a.stream, 0);
  }

  void backward(const BwdArgs& a) override {
    const int64_t rows = a.n * lead_;
    float* dy = a.dy;
    if (softmax_ && !logits_) softmax_backward(a.y, dy, dy, rows, units_);
    if (rrelu_train(a.training)) rrelu_backward(a.scratch[1], dy, dy, rows * units_);
    const ActivationInfo& act = effective(a.training);
    const float* z = keeps_z(a.training)         ? a.scratch[0]
                     : derives_from_y(a.training) ? a.y
                                                  : nullptr;
    float* dW = a.dparam[0];
    float* db = use_bias_ ? a.dparam[1] : nullptr;
    const bool accW = dW && a.dparam_acc[0];
    const bool accb = db && a.dparam_acc[1];
    float* dx = a.dx[0];
    const bool accx = dx && a.dx_acc[0];
    if (dW && (!use_bias_ || db) && (!use_bias_ || accW == accb) && !accx) {
      dense_backward(rows, in_, units_, a.x[0], in_, a.param[0], z, a.y, dy, &act,
                     act_params_.data(), dW, db, dx, 0, accW, bf16_);
      return;
    }
    // Some gradients are frozen or accumulate differently: the same steps one by one.
    if (db || &act != &ops::linear_activation())
      activation_backward_colsum(rows, units_, z, a.y, dy, &act, act_params_.data(), db, accb);
    if (dW) dense_weight_grad(rows, in_, units_, a.x[0], in_, dy, dW, 0, accW, bf16_);
    if (dx)
      dense_gemm(bf16_, rows, in_, units_, {dy, units_, 1}, {a.param[0], 1, units_}, accx, dx, in_,
                 gemm::Epilogue{}, 0);
  }

  std::string tail_activation() const override {
    return softmax_ ? "softmax" : sigmoid_ ? "sigmoid" : "";
  }
  void set_emit_logits(bool on) override { logits_ = on; }

  bool dense_desc(DenseDesc* d) const override {
    // A fused sigmoid output gets its sigmoid from the graph over whole rows; leave it to
    // the general path.
    if (lead_ != 1 || (sigmoid_ && logits_)) return false;
    const ActivationInfo& act = effective(false);
    d->in = in_;
    d->out = units_;
    d->act = std::strcmp(act.name, "linear") == 0 ? nullptr : act.forward;  // as dense_forward
    d->act_params = act_params_.data();
    d->softmax = softmax_;  // with logits_ the graph applies the same row softmax
    d->bf16 = bf16_;        // the chain's bf16 twin runs the products as dense_forward does
    return true;
  }

 private:
  bool rrelu_train(bool training) const { return rrelu_ && training && !logits_; }
  // The activation applied by the GEMM epilogue (and differentiated by the colsum pass).
  const ActivationInfo& effective(bool training) const {
    if (logits_ || softmax_ || rrelu_train(training)) return ops::linear_activation();
    return *act_;
  }
  // The epilogue's activation, differentiated from y (see the header): z is not kept.
  bool derives_from_y(bool training) const {
    return y_derivative_ && &effective(training) == act_;
  }
  bool keeps_z(bool training) const {
    return &effective(training) != &ops::linear_activation() && !derives_from_y(training);
  }

  int64_t units_ = 0, in_ = 0, lead_ = 1;
  bool bf16_ = false;  // compute_dtype "bfloat16": products on the bf16 GEMM
  bool use_bias_ = true, softmax_ = false, sigmoid_ = false, rrelu_ = false, logits_ = false;
  bool y_derivative_ = false;  // relu, sigmoid or tanh: the derivative reads y only
  uint64_t seed_ = 0;
  const ActivationInfo* act_ = nullptr;
  std::vector<float> act_params_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("dense", pynn::nn::DenseOp)

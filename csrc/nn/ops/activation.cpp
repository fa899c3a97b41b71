// activation: an element-wise activation of the table, or "softmax" over the last axis.
//
// RReLU in training draws a slope per element from (seed, stream, element) and keeps it for
// backward (scratch [0]); at inference it is the table's leaky form with the mean slope.
// When the graph fuses a softmax/sigmoid into the loss, the op emits its input unchanged: it
// becomes a view (aliases) and the graph passes gradients straight through.
#include <cstring>

#include "nn/activations_param.h"
#include "nn/ops/common.h"
#include "nn/softmax.h"

namespace pynn::nn {
namespace {

class ActivationOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const std::string name = attrs.get_string("activation", "");
    const std::vector<double> ap = attrs.get_doubles("act_params");
    seed_ = uint64_t(attrs.get_int("seed", 0));
    if (name.empty()) op_error(attrs, "attribute 'activation' is required");
    check_arity(attrs, in, 1, 1, params, 0, 0);
    if (in[0].empty()) op_error(attrs, "input must have at least one axis, got shape ()");
    if (name == "softmax") {
      if (!ap.empty()) op_error(attrs, "activation 'softmax' takes no act_params");
      act_ = nullptr;
    } else {
      act_ = &ops::activation_for(attrs, name, ap, act_params_);
    }
    rrelu_ = name == "rrelu";
    sigmoid_ = name == "sigmoid";
    size_ = shape_size(in[0]);
    last_ = in[0].back();
    return in[0];
  }

  bool aliases(bool) const override { return logits_; }
  std::vector<ScratchNeed> scratch(bool training, bool backward) const override {
    std::vector<ScratchNeed> s(1);
    if (rrelu_ && training) s[0] = {size_, 0, backward ? ScratchLife::saved : ScratchLife::forward};
    return s;
  }
  bool needs_input(int, bool training, const BackwardNeeds&) const override {
    return act_ != nullptr && !(rrelu_ && training);
  }
  bool needs_output(bool training, const BackwardNeeds&) const override {
    return !(rrelu_ && training);
  }

  void forward(const FwdArgs& a) override {
    const int64_t total = a.n * size_;
    if (rrelu_ && a.training) {
      rrelu_forward_train(a.x[0], a.y, a.scratch[0], total, act_params_[0], act_params_[1],
                          seed_, a.stream, 0);
      return;
    }
    std::memcpy(a.y, a.x[0], sizeof(float) * size_t(total));
    if (act_)
      act_->forward(a.y, total, act_params_.data());
    else
      softmax_forward(a.y, total / last_, last_);
  }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (!dx) return;
    const int64_t total = a.n * size_;
    // Without accumulation the product lands in dx; with it, in dy (ours to overwrite) first.
    float* dst = a.dx_acc[0] ? a.dy : dx;
    if (rrelu_ && a.training)
      rrelu_backward(a.scratch[0], a.dy, dst, total);
    else if (act_)
      act_->backward(a.x[0], a.y, a.dy, dst, total, act_params_.data());
    else
      softmax_backward(a.y, a.dy, dst, total / last_, last_);
    if (a.dx_acc[0]) store_or_add(dx, a.dy, total, true);
  }

  std::string tail_activation() const override {
    return act_ == nullptr ? "softmax" : sigmoid_ ? "sigmoid" : "";
  }
  void set_emit_logits(bool on) override { logits_ = on; }

 private:
  const ActivationInfo* act_ = nullptr;  // null: softmax
  std::vector<float> act_params_;
  bool rrelu_ = false, sigmoid_ = false, logits_ = false;
  uint64_t seed_ = 0;
  int64_t size_ = 0, last_ = 1;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("activation", pynn::nn::ActivationOp)

// dropout: inverted dropout in training (mask from (seed, stream, element), kept in scratch
// [0] for backward); a view of its input at inference and when rate is 0.
#include <cstring>

#include "nn/op.h"
#include "nn/regularization.h"

namespace pynn::nn {
namespace {

class DropoutOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    rate_ = attrs.get_double("rate", 0.0);
    seed_ = uint64_t(attrs.get_int("seed", 0));
    if (!(rate_ >= 0.0 && rate_ < 1.0))
      op_error(attrs, "rate must be in [0, 1), got " + std::to_string(rate_));
    check_arity(attrs, in, 1, 1, params, 0, 0);
    size_ = shape_size(in[0]);
    return in[0];
  }

  bool aliases(bool training) const override { return !training || float(rate_) == 0.0f; }
  std::vector<ScratchNeed> scratch(bool training, bool backward) const override {
    std::vector<ScratchNeed> s(1);
    if (!aliases(training)) s[0] = {size_, 0, backward ? ScratchLife::saved : ScratchLife::forward};
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const int64_t total = a.n * size_;
    std::memcpy(a.y, a.x[0], sizeof(float) * size_t(total));
    dropout_forward(a.y, a.scratch[0], total, float(rate_), seed_, a.stream);
  }
  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (!dx) return;
    const int64_t total = a.n * size_;
    if (a.dx_acc[0]) {
      dropout_backward(a.dy, a.scratch[0], a.dy, total);
      store_or_add(dx, a.dy, total, true);
    } else {
      dropout_backward(a.dy, a.scratch[0], dx, total);
    }
  }

 private:
  double rate_ = 0.0;
  uint64_t seed_ = 0;
  int64_t size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("dropout", pynn::nn::DropoutOp)

// activity_regularization: Keras's ActivityRegularization. The output is the input; the loss
// gains (l1 * sum|x| + l2 * sum x^2) / batch (Keras divides a layer's activity loss by the
// batch size), and backward adds that term's gradient, (l1 * sign(x) + 2 l2 x) / batch.
// Attributes: l1, l2 (>= 0).
#include <cmath>
#include <cstring>
#include <string>

#include "nn/op.h"

namespace pynn::nn {
namespace {

class ActivityRegularizationOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    l1_ = attrs.get_double("l1", 0.0);
    l2_ = attrs.get_double("l2", 0.0);
    if (!(l1_ >= 0.0 && std::isfinite(l1_)) || !(l2_ >= 0.0 && std::isfinite(l2_)))
      op_error(attrs, "l1 and l2 must be finite and >= 0, got " + std::to_string(l1_) + ", " +
                          std::to_string(l2_));
    check_arity(attrs, in, 1, 1, params, 0, 0);
    size_ = shape_size(in[0]);
    return in[0];
  }

  // Invariant: the penalty is summed in element order in double, on one thread (the
  // reported loss does not depend on the thread count).
  void forward(const FwdArgs& a) override {
    const int64_t total = a.n * size_;
    std::memcpy(a.y, a.x[0], sizeof(float) * size_t(total));
    if (!a.added_loss || a.n == 0 || (l1_ == 0.0 && l2_ == 0.0)) return;
    double s1 = 0.0, s2 = 0.0;
    const float* x = a.x[0];
    for (int64_t i = 0; i < total; ++i) {
      s1 += std::fabs(double(x[i]));
      s2 += double(x[i]) * double(x[i]);
    }
    *a.added_loss += (l1_ * s1 + l2_ * s2) / double(a.n);
  }

  bool adds_loss() const override { return l1_ > 0.0 || l2_ > 0.0; }
  bool identity_without_loss() const override { return true; }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (!dx) return;
    const int64_t total = a.n * size_;
    const float* x = a.x[0];
    // The penalty belongs to the training loss alone: an input gradient (saliency, training
    // false) is the outputs' gradient passed through.
    const bool penalty = a.training;
    const float c1 = float(l1_ / double(a.n)), c2 = float(2.0 * l2_ / double(a.n));
    for (int64_t i = 0; i < total; ++i) {
      // dy is null when nothing downstream reads this output (the penalty alone)
      float g = a.dy ? a.dy[i] : 0.0f;
      if (penalty) {
        const float s = x[i] > 0.0f ? 1.0f : (x[i] < 0.0f ? -1.0f : 0.0f);
        g = g + c1 * s + c2 * x[i];   // (dy + l1 term) + l2 term, as before
      }
      dx[i] = a.dx_acc[0] ? dx[i] + g : g;
    }
  }

 private:
  double l1_ = 0.0, l2_ = 0.0;
  int64_t size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("activity_regularization", pynn::nn::ActivityRegularizationOp)

// one_hot: per-sample class indices to one-hot rows (pynn.ops.one_hot(x, num_classes)).
//
// attrs: num_classes (C > 0). The input holds class indices as floats, any shape s; the
// output has shape s + (C,): for each input element v, a row of C zeros with a 1 at int(v)
// (truncated toward zero, as NumPy's astype(int) and a TensorFlow cast do). A value outside
// [0, C), or NaN/inf, gives a row of zeros (TensorFlow's one_hot).
//
// No gradient flows through it: backward contributes nothing (it zeroes dx when it would be
// the first contribution, so dx is defined).
#include <algorithm>
#include <cmath>

#include "nn/op.h"
#include "nn/ops/indexing.h"

namespace pynn::nn {
namespace {

class OneHotOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    classes_ = attrs.require_int("num_classes");
    if (classes_ <= 0)
      op_error(attrs, "num_classes must be positive, got " + std::to_string(classes_));
    check_arity(attrs, in, 1, 1, params, 0, 0);
    size_ = shape_size(in[0]);
    Shape out = in[0];
    out.push_back(classes_);
    return out;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const int64_t total = a.n * size_;
    const float* x = a.x[0];
    float* y = a.y;
    std::fill(y, y + total * classes_, 0.0f);
    const float limit = float(classes_);
    for (int64_t i = 0; i < total; ++i) {
      const float v = std::trunc(x[i]);
      if (v >= 0.0f && v < limit) y[i * classes_ + int64_t(v)] = 1.0f;  // false for NaN
    }
  }

  void backward(const BwdArgs& a) override {
    ops::no_gradient(a.dx[0], a.n * size_, a.dx_acc[0] != 0);
  }

 private:
  int64_t classes_ = 1, size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("one_hot", pynn::nn::OneHotOp)

// constant: a fixed per-sample tensor, the same for every sample (a NumPy array or number
// mixed with symbolic tensors in pynn.ops becomes one of these).
//
// attrs: value (the row-major values, a list of numbers), shape (the per-sample shape; an
// empty list for a scalar). One input, read for nothing but its batch size (the graph has no
// inputless nodes, so the constant hangs off the tensor it is combined with).
//
// No gradient flows to that input: backward contributes nothing (it zeroes dx when it would
// be the first contribution, so dx is defined).
#include <string>

#include "nn/op.h"
#include "nn/ops/indexing.h"

namespace pynn::nn {
namespace {

class ConstantOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    if (!attrs.has("value")) op_error(attrs, "attribute 'value' is required");
    const std::vector<double> v = attrs.get_doubles("value");
    const Shape shape = attrs.get_ints("shape");
    check_arity(attrs, in, 1, 1, params, 0, 0);
    for (int64_t d : shape)
      if (d <= 0) op_error(attrs, "shape " + shape_str(shape) + " must have positive sizes");
    if (int64_t(v.size()) != shape_size(shape))
      op_error(attrs, "value has " + std::to_string(v.size()) + " numbers, shape " +
                          shape_str(shape) + " holds " + std::to_string(shape_size(shape)));
    value_.assign(v.begin(), v.end());
    in_size_ = shape_size(in[0]);
    return shape;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const int64_t size = int64_t(value_.size());
    for (int64_t s = 0; s < a.n; ++s)
      for (int64_t i = 0; i < size; ++i) a.y[s * size + i] = value_[size_t(i)];
  }

  void backward(const BwdArgs& a) override {
    ops::no_gradient(a.dx[0], a.n * in_size_, a.dx_acc[0] != 0);
  }

 private:
  std::vector<float> value_;
  int64_t in_size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("constant", pynn::nn::ConstantOp)

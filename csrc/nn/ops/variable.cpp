// variable: a weight of a user's layer used inside pynn.ops (`ops.matmul(x, self.kernel)` in a
// custom layer's call()): the parameter's value as a per-sample tensor, the same for every
// sample, so that it can meet symbolic tensors in any op.
//
// One input, read only for its batch size (the graph has no inputless nodes); one parameter.
// The per-sample output shape is the parameter's, or attrs shape (the same number of values:
// a (1, 3) weight meeting (None, 3) tensors is used as (3,), as NumPy broadcasting would). Backward: the parameter's gradient is the
// sum over the batch of dy, added in sample order (no result depends on the thread count);
// the input gets no gradient.
#include "nn/op.h"
#include "nn/ops/indexing.h"

namespace pynn::nn {
namespace {

class VariableOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 1, 1, params, 1, 1);
    if (params[0].empty())
      op_error(attrs, "the parameter must have at least one axis (a scalar is shape (1,))");
    size_ = shape_size(params[0]);
    in_size_ = shape_size(in[0]);
    if (!attrs.has("shape")) return params[0];
    const Shape shape = attrs.get_ints("shape");
    for (int64_t d : shape)
      if (d <= 0) op_error(attrs, "shape " + shape_str(shape) + " must have positive sizes");
    if (shape.empty() || shape_size(shape) != size_)
      op_error(attrs, "shape " + shape_str(shape) + " does not hold the parameter's " +
                          std::to_string(size_) + " values");
    return shape;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const float* p = a.param[0];
    for (int64_t s = 0; s < a.n; ++s)
      for (int64_t i = 0; i < size_; ++i) a.y[s * size_ + i] = p[i];
  }

  void backward(const BwdArgs& a) override {
    ops::no_gradient(a.dx[0], a.n * in_size_, a.dx_acc[0] != 0);
    float* dp = a.dparam[0];
    if (!dp) return;
    if (!a.dparam_acc[0])
      for (int64_t i = 0; i < size_; ++i) dp[i] = 0.0f;
    for (int64_t s = 0; s < a.n; ++s) {
      const float* g = a.dy + s * size_;
      for (int64_t i = 0; i < size_; ++i) dp[i] += g[i];
    }
  }

 private:
  int64_t size_ = 0;
  int64_t in_size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("variable", pynn::nn::VariableOp)

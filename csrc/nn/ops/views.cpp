// The view ops: reshape (target_shape, same number of elements, no -1), flatten (to
// (prod(shape),)) and identity. The output is the input's storage read with another shape:
// the graph skips forward and passes gradients straight through, so these run no code.
#include "nn/op.h"

namespace pynn::nn {
namespace {

enum class View { reshape, flatten, identity };

template <View kKind>
class ViewOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    Shape target;
    if (kKind == View::reshape) target = attrs.require_ints("target_shape");
    check_arity(attrs, in, 1, 1, params, 0, 0);
    const Shape& x = in[0];
    if (kKind == View::identity) return x;
    if (kKind == View::flatten) return {shape_size(x)};
    if (target.empty()) op_error(attrs, "target_shape must have at least one axis");
    for (int64_t d : target)
      if (d <= 0)
        op_error(attrs, "target_shape " + shape_str(target) +
                            " must have positive dimensions (no -1: resolve it first)");
    if (shape_size(target) != shape_size(x))
      op_error(attrs, "cannot reshape input shape " + shape_str(x) + " (" +
                          std::to_string(shape_size(x)) + " values) to target_shape " +
                          shape_str(target) + " (" + std::to_string(shape_size(target)) +
                          " values)");
    return target;
  }
  bool aliases(bool) const override { return true; }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }
  void forward(const FwdArgs&) override {}
  void backward(const BwdArgs&) override {}
};

using ReshapeOp = ViewOp<View::reshape>;
using FlattenOp = ViewOp<View::flatten>;
using IdentityOp = ViewOp<View::identity>;

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("reshape", pynn::nn::ReshapeOp)
PYNN_REGISTER_OP("flatten", pynn::nn::FlattenOp)
PYNN_REGISTER_OP("identity", pynn::nn::IdentityOp)

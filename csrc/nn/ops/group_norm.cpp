// group_norm: Keras's GroupNormalization. The channels of per-sample axis `axis` are split into
// `groups` consecutive blocks; each block, over all the other axes of the sample, is
// standardised with its own statistics, then each channel is scaled by gamma and shifted by
// beta (both (channels,)). Attributes: groups, axis (-1), epsilon (1e-3), center, scale.
#include <string>

#include "nn/ops/grouped_norm.h"

namespace pynn::nn {
namespace {

class GroupNormOp : public ops::GroupedNormOp {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 1, 1, params, 0, 2);
    const Shape& x = in[0];
    const int64_t rank = int64_t(x.size());
    const int64_t axis = resolve_axis(attrs, "axis", attrs.get_int("axis", -1), rank);
    const int64_t c = x[size_t(axis)];
    const int64_t groups = attrs.require_int("groups");
    if (groups < 1 || groups > c || c % groups != 0)
      op_error(attrs, "groups must divide the " + std::to_string(c) +
                          " channels of the axis, got " + std::to_string(groups));
    configure_common(attrs, in, params, Shape{c});
    const int64_t size = shape_size(x), per = c / groups;
    int64_t inner = 1;  // elements between two channels of the axis
    for (int64_t d = axis + 1; d < rank; ++d) inner *= x[size_t(d)];
    layout_.size = size;
    layout_.groups = groups;
    layout_.members = size / groups;
    layout_.offset.assign(size_t(size), 0);
    layout_.pidx.assign(size_t(size), 0);
    std::vector<int64_t> fill(size_t(groups), 0);  // members placed so far, per group
    for (int64_t i = 0; i < size; ++i) {           // members in flat order
      const int64_t ch = (i / inner) % c, g = ch / per;
      const int64_t k = g * layout_.members + fill[size_t(g)]++;
      layout_.offset[size_t(k)] = i;
      layout_.pidx[size_t(k)] = int32_t(ch);
    }
    return x;
  }
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("group_norm", pynn::nn::GroupNormOp)

// layer_norm: Keras's LayerNormalization. Each sample is standardised over the per-sample
// axes `axes` (sorted, distinct; negative from the end) separately for every position of the
// other axes, then scaled by gamma and shifted by beta, whose shape is the input's sizes on
// `axes` (Keras's weight shape). Attributes: axes, epsilon (1e-3), center, scale.
#include "nn/ops/grouped_norm.h"

namespace pynn::nn {
namespace {

class LayerNormOp : public ops::GroupedNormOp {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 1, 1, params, 0, 2);
    const Shape& x = in[0];
    const int64_t rank = int64_t(x.size());
    std::vector<int64_t> axes = attrs.require_ints("axes");
    if (axes.empty()) op_error(attrs, "axes must name at least one axis");
    std::vector<char> reduced(size_t(rank), 0);
    Shape pshape;
    for (int64_t& ax : axes) {
      ax = resolve_axis(attrs, "axes", ax, rank);
      if (reduced[size_t(ax)]) op_error(attrs, "axes must be distinct");
      reduced[size_t(ax)] = 1;
    }
    for (int64_t d = 0; d < rank; ++d)
      if (reduced[size_t(d)]) pshape.push_back(x[size_t(d)]);
    configure_common(attrs, in, params, pshape);
    // Member index = row-major position among the reduced axes (gamma's index); group index
    // = row-major position among the others.
    const int64_t size = shape_size(x), members = shape_size(pshape);
    layout_.size = size;
    layout_.members = members;
    layout_.groups = size / members;
    layout_.offset.assign(size_t(size), 0);
    layout_.pidx.assign(size_t(size), 0);
    std::vector<int64_t> coord(size_t(rank), 0);
    for (int64_t i = 0; i < size; ++i) {
      int64_t g = 0, m = 0;
      for (int64_t d = 0; d < rank; ++d) {
        if (reduced[size_t(d)]) m = m * x[size_t(d)] + coord[size_t(d)];
        else g = g * x[size_t(d)] + coord[size_t(d)];
      }
      layout_.offset[size_t(g * members + m)] = i;
      layout_.pidx[size_t(g * members + m)] = int32_t(m);
      for (int64_t d = rank - 1; d >= 0; --d) {  // next coordinate, row-major
        if (++coord[size_t(d)] < x[size_t(d)]) break;
        coord[size_t(d)] = 0;
      }
    }
    return x;
  }
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("layer_norm", pynn::nn::LayerNormOp)

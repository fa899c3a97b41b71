// concatenate: joins its inputs along a per-sample axis (negative counts from the end); the
// inputs agree on every other axis. Forward copies each input's slab per outer index;
// backward splits dy the same way.
#include <cstring>

#include "nn/op.h"

namespace pynn::nn {
namespace {

class ConcatenateOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const int64_t axis_attr = attrs.get_int("axis", -1);
    check_arity(attrs, in, 1, -1, params, 0, 0);
    const int64_t rank = int64_t(in[0].size());
    if (rank == 0) op_error(attrs, "inputs must have at least one axis, got shape ()");
    const int64_t axis = resolve_axis(attrs, "axis", axis_attr, rank);
    Shape out = in[0];
    out[size_t(axis)] = 0;
    for (size_t k = 0; k < in.size(); ++k) {
      bool ok = int64_t(in[k].size()) == rank;
      for (int64_t d = 0; ok && d < rank; ++d)
        if (d != axis && in[k][size_t(d)] != in[0][size_t(d)]) ok = false;
      if (!ok)
        op_error(attrs, "input " + std::to_string(k) + " has shape " + shape_str(in[k]) +
                            ", input 0 has shape " + shape_str(in[0]) +
                            ": shapes must match except on axis " + std::to_string(axis_attr));
      out[size_t(axis)] += in[k][size_t(axis)];
    }
    outer_ = 1;
    for (int64_t d = 0; d < axis; ++d) outer_ *= out[size_t(d)];
    int64_t inner = 1;
    for (int64_t d = axis + 1; d < rank; ++d) inner *= out[size_t(d)];
    chunk_.clear();
    for (const Shape& s : in) chunk_.push_back(s[size_t(axis)] * inner);
    out_chunk_ = out[size_t(axis)] * inner;
    return out;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const int64_t outer = a.n * outer_;
    int64_t off = 0;
    for (size_t k = 0; k < chunk_.size(); ++k) {
      const int64_t c = chunk_[k];
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(a.y + o * out_chunk_ + off, a.x[k] + o * c, sizeof(float) * size_t(c));
      off += c;
    }
  }
  void backward(const BwdArgs& a) override {
    const int64_t outer = a.n * outer_;
    int64_t off = 0;
    for (size_t k = 0; k < chunk_.size(); ++k) {
      const int64_t c = chunk_[k];
      if (a.dx[k])
        for (int64_t o = 0; o < outer; ++o)
          store_or_add(a.dx[k] + o * c, a.dy + o * out_chunk_ + off, c, a.dx_acc[k] != 0);
      off += c;
    }
  }

 private:
  int64_t outer_ = 1, out_chunk_ = 0;
  std::vector<int64_t> chunk_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("concatenate", pynn::nn::ConcatenateOp)

// slice: rows [begin, begin + size) of each sample's first axis (a recurrent layer's packed
// output split into the sequence and its states).
//
// attrs: begin (>= 0), size (> 0), with begin + size <= the input's first axis. The output
// has the input's shape with the first axis set to size. backward writes dy into those rows
// of dx and zeros (or nothing, when accumulating) elsewhere.
#include <algorithm>
#include <cstring>

#include "nn/op.h"

namespace pynn::nn {
namespace {

class SliceOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 1, 1, params, 0, 0);
    if (in[0].empty()) op_error(attrs, "input must have at least one axis, got shape ()");
    const int64_t begin = attrs.require_int("begin"), size = attrs.require_int("size");
    if (begin < 0 || size <= 0 || begin + size > in[0][0])
      op_error(attrs, "rows [" + std::to_string(begin) + ", " + std::to_string(begin + size) +
                          ") do not fit in the first axis of shape " + shape_str(in[0]));
    inner_ = shape_size(in[0]) / in[0][0];
    whole_ = shape_size(in[0]);
    off_ = begin * inner_;
    len_ = size * inner_;
    Shape out = in[0];
    out[0] = size;
    return out;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    for (int64_t b = 0; b < a.n; ++b)
      std::memcpy(a.y + b * len_, a.x[0] + b * whole_ + off_, size_t(len_) * sizeof(float));
  }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (!dx) return;
    const bool acc = a.dx_acc[0] != 0;
    for (int64_t b = 0; b < a.n; ++b) {
      float* d = dx + b * whole_;
      const float* g = a.dy + b * len_;
      if (acc) {
        for (int64_t j = 0; j < len_; ++j) d[off_ + j] += g[j];
      } else {
        std::fill(d, d + whole_, 0.0f);
        std::memcpy(d + off_, g, size_t(len_) * sizeof(float));
      }
    }
  }

 private:
  int64_t inner_ = 1, whole_ = 1, off_ = 0, len_ = 1;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("slice", pynn::nn::SliceOp)

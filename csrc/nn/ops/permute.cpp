// permute: a copy of x with its per-sample axes reordered; dims are 1-based as in Keras
// (output axis i is input axis dims[i] - 1). Backward applies the inverse permutation.
#include <cstring>

#include "nn/op.h"

namespace pynn::nn {
namespace {

class PermuteOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const std::vector<int64_t> dims = attrs.require_ints("dims");
    check_arity(attrs, in, 1, 1, params, 0, 0);
    const Shape& x = in[0];
    const size_t r = x.size();
    std::vector<char> seen(r, 0);
    bool ok = dims.size() == r;
    for (size_t i = 0; ok && i < dims.size(); ++i) {
      if (dims[i] < 1 || dims[i] > int64_t(r) || seen[size_t(dims[i] - 1)]) ok = false;
      else seen[size_t(dims[i] - 1)] = 1;
    }
    if (!ok)
      op_error(attrs, "dims " + shape_str(dims) + " is not a permutation of 1.." +
                          std::to_string(r) + " for input shape " + shape_str(x));
    Shape out(r);
    // Input strides, then for each output axis the stride of the input axis it reads.
    std::vector<int64_t> in_stride(r, 1);
    for (size_t d = r; d-- > 1;) in_stride[d - 1] = in_stride[d] * x[d];
    out_dims_.assign(r, 0);
    src_stride_.assign(r, 0);
    for (size_t i = 0; i < r; ++i) {
      out[i] = x[size_t(dims[i] - 1)];
      out_dims_[i] = out[i];
      src_stride_[i] = in_stride[size_t(dims[i] - 1)];
    }
    size_ = shape_size(x);
    counter_.assign(r, 0);
    return out;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    for (int64_t s = 0; s < a.n; ++s)
      walk(a.x[0] + s * size_, a.y + s * size_, false, false);
  }
  void backward(const BwdArgs& a) override {
    if (!a.dx[0]) return;
    for (int64_t s = 0; s < a.n; ++s)
      walk(a.dx[0] + s * size_, a.dy + s * size_, true, a.dx_acc[0] != 0);
  }

 private:
  // Visits output elements in order; src is the input-side sample. Forward: out[o] = src[i];
  // backward (reverse): src[i] (+)= out[o].
  void walk(const float* src_c, float* out, bool reverse, bool acc) {
    float* src = const_cast<float*>(src_c);  // written only when reverse (then it is dx)
    const size_t r = out_dims_.size();
    std::fill(counter_.begin(), counter_.end(), 0);
    int64_t si = 0;
    for (int64_t o = 0; o < size_; ++o) {
      if (!reverse) out[o] = src[si];
      else if (acc) src[si] += out[o];
      else src[si] = out[o];
      for (size_t d = r; d-- > 0;) {  // odometer over the output index
        si += src_stride_[d];
        if (++counter_[d] < out_dims_[d]) break;
        si -= src_stride_[d] * out_dims_[d];
        counter_[d] = 0;
      }
    }
  }

  int64_t size_ = 0;
  std::vector<int64_t> out_dims_, src_stride_, counter_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("permute", pynn::nn::PermuteOp)

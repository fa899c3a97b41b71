// pad_crop: per-axis zero padding and cropping of each sample in one copy (ZeroPadding and
// Cropping layers).
//
// attrs: before, after (one integer per per-sample axis). A positive amount adds that many
// zeros at that end of the axis, a negative one removes that many entries; every output size
// x[d] + before[d] + after[d] must be positive, and no end may crop more than the axis has.
// The part of the input that survives is copied into its place in the output; backward is
// the reverse copy (dx is zero where the input was cropped away).
#include <algorithm>
#include <cstring>
#include <string>

#include "nn/op.h"

namespace pynn::nn {
namespace {

class PadCropOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const std::vector<int64_t> before = attrs.require_ints("before");
    const std::vector<int64_t> after = attrs.require_ints("after");
    check_arity(attrs, in, 1, 1, params, 0, 0);
    const Shape& x = in[0];
    const size_t r = x.size();
    if (r == 0) op_error(attrs, "input must have at least one axis, got shape ()");
    if (before.size() != r || after.size() != r)
      op_error(attrs, "before " + shape_str(before) + " and after " + shape_str(after) +
                          " need one entry per axis of input shape " + shape_str(x));
    Shape out(r);
    len_.assign(r, 0);
    in_stride_.assign(r, 1);
    out_stride_.assign(r, 1);
    for (size_t d = 0; d < r; ++d) {
      out[d] = x[d] + before[d] + after[d];
      if (out[d] <= 0 || -before[d] > x[d] || -after[d] > x[d])
        op_error(attrs, "before " + shape_str(before) + " and after " + shape_str(after) +
                            " leave nothing of input shape " + shape_str(x));
    }
    for (size_t d = r; d-- > 1;) {
      in_stride_[d - 1] = in_stride_[d] * x[d];
      out_stride_[d - 1] = out_stride_[d] * out[d];
    }
    in_off_ = out_off_ = 0;
    for (size_t d = 0; d < r; ++d) {
      const int64_t in_start = std::max<int64_t>(0, -before[d]);
      const int64_t out_start = std::max<int64_t>(0, before[d]);
      len_[d] = std::min(x[d] - in_start, out[d] - out_start);
      in_off_ += in_start * in_stride_[d];
      out_off_ += out_start * out_stride_[d];
    }
    in_size_ = shape_size(x);
    out_size_ = shape_size(out);
    kept_ = shape_size(len_);
    return out;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const int64_t run = len_.back();
    for (int64_t s = 0; s < a.n; ++s) {
      const float* x = a.x[0] + s * in_size_ + in_off_;
      float* y = a.y + s * out_size_;
      if (out_size_ != kept_) std::fill(y, y + out_size_, 0.0f);
      y += out_off_;
      each_run([&](int64_t io, int64_t oo) {
        std::memcpy(y + oo, x + io, sizeof(float) * size_t(run));
      });
    }
  }
  void backward(const BwdArgs& a) override {
    if (!a.dx[0]) return;
    const bool acc = a.dx_acc[0] != 0;
    const int64_t run = len_.back();
    for (int64_t s = 0; s < a.n; ++s) {
      float* dx = a.dx[0] + s * in_size_;
      const float* dy = a.dy + s * out_size_ + out_off_;
      if (!acc && in_size_ != kept_) std::fill(dx, dx + in_size_, 0.0f);
      dx += in_off_;
      each_run([&](int64_t io, int64_t oo) {
        if (acc) {
          for (int64_t j = 0; j < run; ++j) dx[io + j] += dy[oo + j];
        } else {
          std::memcpy(dx + io, dy + oo, sizeof(float) * size_t(run));
        }
      });
    }
  }

 private:
  // Calls f(input offset, output offset) for each run of len_.back() kept entries along the
  // last axis, in row-major order of the kept block (offsets from in_off_ and out_off_).
  template <class F>
  void each_run(F&& f) const {
    const size_t r = len_.size();
    std::vector<int64_t> counter(r, 0);
    int64_t io = 0, oo = 0;
    for (int64_t row = 0, n = kept_ / len_.back(); row < n; ++row) {
      f(io, oo);
      for (size_t d = r - 1; d-- > 0;) {  // odometer over the outer axes
        io += in_stride_[d];
        oo += out_stride_[d];
        if (++counter[d] < len_[d]) break;
        io -= in_stride_[d] * len_[d];
        oo -= out_stride_[d] * len_[d];
        counter[d] = 0;
      }
    }
  }

  std::vector<int64_t> len_, in_stride_, out_stride_;
  int64_t in_off_ = 0, out_off_ = 0, in_size_ = 0, out_size_ = 0, kept_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("pad_crop", pynn::nn::PadCropOp)

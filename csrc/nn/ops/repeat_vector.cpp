// repeat_vector: (d,) -> (n, d), each sample's vector repeated n times. Backward sums the
// n copies of dy in order.
#include <cstring>

#include "nn/op.h"

namespace pynn::nn {
namespace {

class RepeatVectorOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    times_ = attrs.require_int("n");
    check_arity(attrs, in, 1, 1, params, 0, 0);
    if (times_ <= 0) op_error(attrs, "n must be positive, got " + std::to_string(times_));
    if (in[0].size() != 1)
      op_error(attrs, "expects rank-1 samples (d,), got input shape " + shape_str(in[0]));
    d_ = in[0][0];
    return {times_, d_};
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    for (int64_t s = 0; s < a.n; ++s)
      for (int64_t t = 0; t < times_; ++t)
        std::memcpy(a.y + (s * times_ + t) * d_, a.x[0] + s * d_, sizeof(float) * size_t(d_));
  }
  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (!dx) return;
    const bool acc = a.dx_acc[0] != 0;
    for (int64_t s = 0; s < a.n; ++s) {
      float* d = dx + s * d_;
      const float* g = a.dy + s * times_ * d_;
      for (int64_t j = 0; j < d_; ++j) {
        float sum = g[j];
        for (int64_t t = 1; t < times_; ++t) sum += g[t * d_ + j];
        d[j] = acc ? d[j] + sum : sum;
      }
    }
  }

 private:
  int64_t times_ = 1, d_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("repeat_vector", pynn::nn::RepeatVectorOp)

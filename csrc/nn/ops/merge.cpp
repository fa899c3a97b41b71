// The element-wise merge ops: add, subtract (exactly 2 inputs), multiply, average, maximum,
// minimum. All inputs have one shape, which is the output's.
//
// Forward folds the inputs in order (x0 op x1 op x2 ...). Backward: add/average pass dy
// (divided by n for average), subtract negates it for the second input, multiply multiplies
// by the product of the other inputs (in input order), maximum/minimum route dy to the first
// input that attains the extreme (ties go to the earliest, as TensorFlow's gradient does).
#include <algorithm>

#include "nn/op.h"

namespace pynn::nn {
namespace {

enum class Merge { add, subtract, multiply, average, maximum, minimum };

template <Merge kKind>
class MergeOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    if (kKind == Merge::subtract)
      check_arity(attrs, in, 2, 2, params, 0, 0);
    else
      check_arity(attrs, in, 1, -1, params, 0, 0);
    for (size_t k = 1; k < in.size(); ++k)
      if (in[k] != in[0])
        op_error(attrs, "input " + std::to_string(k) + " has shape " + shape_str(in[k]) +
                            ", input 0 has shape " + shape_str(in[0]) +
                            ": merged inputs must have the same shape");
    size_ = shape_size(in[0]);
    count_ = int(in.size());
    return in[0];
  }

  bool needs_input(int, bool, const BackwardNeeds&) const override {
    return kKind == Merge::multiply || kKind == Merge::maximum || kKind == Merge::minimum;
  }

  void forward(const FwdArgs& a) override {
    const int64_t total = a.n * size_;
    float* y = a.y;
    const float* x0 = a.x[0];
    std::copy(x0, x0 + total, y);
    for (int k = 1; k < count_; ++k) {
      const float* xk = a.x[k];
      for (int64_t i = 0; i < total; ++i) {
        switch (kKind) {
          case Merge::add:
          case Merge::average: y[i] += xk[i]; break;
          case Merge::subtract: y[i] -= xk[i]; break;
          case Merge::multiply: y[i] *= xk[i]; break;
          case Merge::maximum: y[i] = std::max(y[i], xk[i]); break;
          case Merge::minimum: y[i] = std::min(y[i], xk[i]); break;
        }
      }
    }
    if (kKind == Merge::average) {
      const float inv = 1.0f / float(count_);
      for (int64_t i = 0; i < total; ++i) y[i] *= inv;
    }
  }

  void backward(const BwdArgs& a) override {
    const int64_t total = a.n * size_;
    const float* dy = a.dy;
    for (int k = 0; k < count_; ++k) {
      float* dx = a.dx[k];
      if (!dx) continue;
      const bool acc = a.dx_acc[k] != 0;
      for (int64_t i = 0; i < total; ++i) {
        float g = 0.0f;
        switch (kKind) {
          case Merge::add: g = dy[i]; break;
          case Merge::average: g = dy[i] * (1.0f / float(count_)); break;
          case Merge::subtract: g = k == 0 ? dy[i] : -dy[i]; break;
          case Merge::multiply: {
            float p = dy[i];
            for (int j = 0; j < count_; ++j)
              if (j != k) p *= a.x[j][i];
            g = p;
            break;
          }
          case Merge::maximum:
          case Merge::minimum: {
            int best = 0;
            for (int j = 1; j < count_; ++j) {
              const float v = a.x[j][i], b = a.x[best][i];
              if (kKind == Merge::maximum ? v > b : v < b) best = j;
            }
            g = best == k ? dy[i] : 0.0f;
            break;
          }
        }
        dx[i] = acc ? dx[i] + g : g;
      }
    }
  }

 private:
  int64_t size_ = 0;
  int count_ = 0;
};

using AddOp = MergeOp<Merge::add>;
using SubtractOp = MergeOp<Merge::subtract>;
using MultiplyOp = MergeOp<Merge::multiply>;
using AverageOp = MergeOp<Merge::average>;
using MaximumOp = MergeOp<Merge::maximum>;
using MinimumOp = MergeOp<Merge::minimum>;

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("add", pynn::nn::AddOp)
PYNN_REGISTER_OP("subtract", pynn::nn::SubtractOp)
PYNN_REGISTER_OP("multiply", pynn::nn::MultiplyOp)
PYNN_REGISTER_OP("average", pynn::nn::AverageOp)
PYNN_REGISTER_OP("maximum", pynn::nn::MaximumOp)
PYNN_REGISTER_OP("minimum", pynn::nn::MinimumOp)

// noise: Keras's GaussianNoise, GaussianDropout and AlphaDropout, active in training only (a
// view of the input at inference and when the rate or stddev is 0).
//   kind "gaussian_noise":   y = x + stddev * z
//   kind "gaussian_dropout": y = x * (1 + sqrt(rate / (1 - rate)) * z)
//   kind "alpha_dropout":    keep = (u >= rate); y = a * (keep ? x : alpha') + b with SELU's
//                            alpha' = -alpha * scale, a = ((1-rate)(1 + rate alpha'^2))^-1/2,
//                            b = -a alpha' rate (mean and variance of SELU outputs kept).
// z (unit normal, Box-Muller from 64 bits) and u (uniform [0, 1), 24 bits) of element i are
// pure functions of (seed, stream, i), as dropout's mask. Attributes: kind, value (the rate
// or stddev), seed. Scratch: [0] dy's multiplier per element (saved; gaussian_noise needs none).
#include <cmath>
#include <cstring>
#include <string>

#include "common/parallel.h"
#include "nn/op.h"
#include "nn/random.h"

namespace pynn::nn {
namespace {

constexpr int64_t kParallelElems = int64_t(1) << 16;
constexpr double kTwoPi = 6.283185307179586476925286766559;
// SELU's constants (Klambauer et al.), as Keras's AlphaDropout uses them.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

// A unit normal from 64 random bits: u1 in (0, 1] from the top 24 bits (the log stays finite),
// u2 in [0, 1) from the next 24.
inline float normal_from_bits(uint64_t bits) {
  const double u1 = double((bits >> 40) + 1) * (1.0 / 16777216.0);
  const double u2 = double((bits >> 16) & 0xffffffULL) * (1.0 / 16777216.0);
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2));
}

enum class Kind { gaussian_noise, gaussian_dropout, alpha_dropout };

class NoiseOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const std::string kind = attrs.get_string("kind", "");
    value_ = attrs.get_double("value", 0.0);
    seed_ = uint64_t(attrs.get_int("seed", 0));
    check_arity(attrs, in, 1, 1, params, 0, 0);
    if (kind == "gaussian_noise") {
      kind_ = Kind::gaussian_noise;
      if (!(value_ >= 0.0 && std::isfinite(value_)))
        op_error(attrs, "stddev must be finite and >= 0, got " + std::to_string(value_));
    } else if (kind == "gaussian_dropout" || kind == "alpha_dropout") {
      kind_ = kind == "alpha_dropout" ? Kind::alpha_dropout : Kind::gaussian_dropout;
      if (!(value_ >= 0.0 && value_ < 1.0))
        op_error(attrs, "rate must be in [0, 1), got " + std::to_string(value_));
    } else {
      op_error(attrs, "kind must be gaussian_noise, gaussian_dropout or alpha_dropout, got '" +
                          kind + "'");
    }
    size_ = shape_size(in[0]);
    return in[0];
  }

  bool aliases(bool training) const override { return !training || value_ == 0.0; }
  std::vector<ScratchNeed> scratch(bool training, bool backward) const override {
    std::vector<ScratchNeed> s(1);
    if (!aliases(training) && kind_ != Kind::gaussian_noise)
      s[0] = {size_, 0, backward ? ScratchLife::saved : ScratchLife::forward};
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const int64_t total = a.n * size_;
    const float* x = a.x[0];
    float* y = a.y;
    float* mult = a.scratch[0];
    const uint64_t seed = seed_, stream = a.stream;
    const int nt = total < kParallelElems ? 1 : parallel::available_threads();
    if (kind_ == Kind::gaussian_noise) {
      const float sd = float(value_);
      parallel::parallel_for(total, nt, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
          y[i] = x[i] + sd * normal_from_bits(random_bits(seed, stream, uint64_t(i)));
      });
    } else if (kind_ == Kind::gaussian_dropout) {
      const float sd = float(std::sqrt(value_ / (1.0 - value_)));
      parallel::parallel_for(total, nt, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const float m = 1.0f + sd * normal_from_bits(random_bits(seed, stream, uint64_t(i)));
          mult[i] = m;
          y[i] = x[i] * m;
        }
      });
    } else {
      const double rate = value_, ap = -kSeluAlpha * kSeluScale;
      const double ad = std::pow((1.0 - rate) * (1.0 + rate * ap * ap), -0.5);
      const float af = float(ad), bf = float(-ad * ap * rate);
      const float dropped = float(ad * ap) + bf;  // the output of a dropped element
      const float r = float(rate);
      parallel::parallel_for(total, nt, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const bool keep = random_uniform01(seed, stream, uint64_t(i)) >= r;
          mult[i] = keep ? af : 0.0f;
          y[i] = keep ? af * x[i] + bf : dropped;
        }
      });
    }
  }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (!dx) return;
    const int64_t total = a.n * size_;
    if (kind_ == Kind::gaussian_noise) {
      store_or_add(dx, a.dy, total, a.dx_acc[0]);
      return;
    }
    const float* m = a.scratch[0];
    for (int64_t i = 0; i < total; ++i) a.dy[i] *= m[i];
    store_or_add(dx, a.dy, total, a.dx_acc[0]);
  }

 private:
  Kind kind_ = Kind::gaussian_noise;
  double value_ = 0.0;
  uint64_t seed_ = 0;
  int64_t size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("noise", pynn::nn::NoiseOp)

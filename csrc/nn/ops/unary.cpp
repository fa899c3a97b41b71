// unary: an element-wise function of one tensor (pynn.ops.negative, square, sqrt, ...).
//
// attrs: fn (negative, square, sqrt, exp, log, abs, sign, reciprocal, clip, power);
// clip reads min and max (y = min(max(x, min), max), as NumPy's clip), power reads exponent.
// The output has the input's shape.
//
// Gradients (dy times): negative -1; square 2x; sqrt 0.5 / y; exp y; log 1 / x; abs sign(x)
// (0 at 0); sign 0; reciprocal -y^2; clip 1 where min <= x <= max (bounds included, as
// TensorFlow's clip_by_value), else 0; power p x^(p-1) (0 when p = 0). Where the function has
// no derivative (sqrt and log at 0, ...) the result is what the formula gives (inf or NaN), as
// in NumPy. Every element is computed alone, so results do not depend on the thread count.
#include <cmath>
#include <string>

#include "nn/op.h"
#include "nn/ops/indexing.h"

namespace pynn::nn {
namespace {

enum class Fn { negative, square, sqrt, exp, log, abs, sign, reciprocal, clip, power };

class UnaryOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const std::string fn = attrs.get_string("fn", "");
    static const std::pair<const char*, Fn> kNames[] = {
        {"negative", Fn::negative}, {"square", Fn::square}, {"sqrt", Fn::sqrt},
        {"exp", Fn::exp},           {"log", Fn::log},       {"abs", Fn::abs},
        {"sign", Fn::sign},         {"reciprocal", Fn::reciprocal},
        {"clip", Fn::clip},         {"power", Fn::power}};
    bool found = false;
    std::string known;
    for (const auto& [name, f] : kNames) {
      known += (known.empty() ? "" : ", ") + std::string(name);
      if (fn == name) fn_ = f, found = true;
    }
    if (!found) op_error(attrs, "unknown fn '" + fn + "' (known: " + known + ")");
    if (fn_ == Fn::clip) {
      if (!attrs.has("min") || !attrs.has("max"))
        op_error(attrs, "fn 'clip' needs the attributes min and max");
      lo_ = float(attrs.get_double("min", 0.0));
      hi_ = float(attrs.get_double("max", 0.0));
      if (std::isnan(lo_) || std::isnan(hi_)) op_error(attrs, "clip bounds must not be NaN");
    }
    if (fn_ == Fn::power) {
      if (!attrs.has("exponent")) op_error(attrs, "fn 'power' needs the attribute exponent");
      p_ = float(attrs.get_double("exponent", 1.0));
    }
    check_arity(attrs, in, 1, 1, params, 0, 0);
    size_ = shape_size(in[0]);
    return in[0];
  }

  bool needs_input(int, bool, const BackwardNeeds&) const override {
    return fn_ == Fn::square || fn_ == Fn::log || fn_ == Fn::abs || fn_ == Fn::clip ||
           fn_ == Fn::power;
  }
  bool needs_output(bool, const BackwardNeeds&) const override {
    return fn_ == Fn::sqrt || fn_ == Fn::exp || fn_ == Fn::reciprocal;
  }

  void forward(const FwdArgs& a) override {
    const int64_t total = a.n * size_;
    const float* x = a.x[0];
    float* y = a.y;
    switch (fn_) {
      case Fn::negative: for (int64_t i = 0; i < total; ++i) y[i] = -x[i]; break;
      case Fn::square: for (int64_t i = 0; i < total; ++i) y[i] = x[i] * x[i]; break;
      case Fn::sqrt: for (int64_t i = 0; i < total; ++i) y[i] = std::sqrt(x[i]); break;
      case Fn::exp: for (int64_t i = 0; i < total; ++i) y[i] = std::exp(x[i]); break;
      case Fn::log: for (int64_t i = 0; i < total; ++i) y[i] = std::log(x[i]); break;
      case Fn::abs: for (int64_t i = 0; i < total; ++i) y[i] = std::fabs(x[i]); break;
      case Fn::sign:
        for (int64_t i = 0; i < total; ++i) {
          const float v = x[i];
          y[i] = v > 0.0f ? 1.0f : v < 0.0f ? -1.0f : v == 0.0f ? 0.0f : v;  // NaN stays
        }
        break;
      case Fn::reciprocal: for (int64_t i = 0; i < total; ++i) y[i] = 1.0f / x[i]; break;
      case Fn::clip:
        for (int64_t i = 0; i < total; ++i) {
          const float v = x[i];  // NaN passes both comparisons unchanged
          const float lo = v < lo_ ? lo_ : v;
          y[i] = lo > hi_ ? hi_ : lo;
        }
        break;
      case Fn::power:
        for (int64_t i = 0; i < total; ++i) y[i] = std::pow(x[i], p_);
        break;
    }
  }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (!dx) return;
    const int64_t total = a.n * size_;
    const bool acc = a.dx_acc[0] != 0;
    const float* x = a.x[0];
    const float* y = a.y;
    const float* g = a.dy;
    auto put = [&](auto deriv) {
      if (acc)
        for (int64_t i = 0; i < total; ++i) dx[i] += deriv(i);
      else
        for (int64_t i = 0; i < total; ++i) dx[i] = deriv(i);
    };
    switch (fn_) {
      case Fn::negative: put([&](int64_t i) { return -g[i]; }); break;
      case Fn::square: put([&](int64_t i) { return g[i] * (2.0f * x[i]); }); break;
      case Fn::sqrt: put([&](int64_t i) { return g[i] * (0.5f / y[i]); }); break;
      case Fn::exp: put([&](int64_t i) { return g[i] * y[i]; }); break;
      case Fn::log: put([&](int64_t i) { return g[i] / x[i]; }); break;
      case Fn::abs:
        put([&](int64_t i) {
          return x[i] > 0.0f ? g[i] : x[i] < 0.0f ? -g[i] : 0.0f;
        });
        break;
      case Fn::sign: ops::no_gradient(dx, total, acc); break;
      case Fn::reciprocal: put([&](int64_t i) { return -g[i] * (y[i] * y[i]); }); break;
      case Fn::clip:
        put([&](int64_t i) { return x[i] >= lo_ && x[i] <= hi_ ? g[i] : 0.0f; });
        break;
      case Fn::power:
        if (p_ == 0.0f)
          ops::no_gradient(dx, total, acc);
        else
          put([&](int64_t i) { return g[i] * (p_ * std::pow(x[i], p_ - 1.0f)); });
        break;
    }
  }

 private:
  Fn fn_ = Fn::negative;
  float lo_ = 0.0f, hi_ = 0.0f, p_ = 1.0f;
  int64_t size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("unary", pynn::nn::UnaryOp)

// binary and binary_scalar: element-wise arithmetic of pynn.ops (add, subtract, multiply,
// divide, maximum, minimum, power).
//
//   binary         two inputs a, b whose per-sample shapes broadcast as NumPy shapes do (the
//                  batch axes pair up); y = a fn b has the broadcast shape.
//   binary_scalar  one input x and attrs scalar c, reverse: y = x fn c, or c fn x when
//                  reverse is true; y has x's shape.
//
// Gradients (dy times): add 1, 1; subtract 1, -1; multiply b, a; divide 1/b, -a/b^2;
// maximum/minimum all of dy to the first operand that attains the extreme (a on a tie, as the
// merge ops and TensorFlow do); power b a^(b-1) and, for the exponent, y log(a) where a > 0
// and 0 elsewhere (TensorFlow's rule). maximum/minimum propagate NaN like NumPy.
// The comparisons (equal, not_equal, greater, greater_equal, less, less_equal) give 1.0 where
// they hold and 0.0 elsewhere (NaN compares false, except not_equal); their gradient is zero.
//
// An operand smaller than the output (stretched by broadcasting) gets the sum of its
// stretched copies' gradients: summed per sample into a scratch buffer (one per operand,
// backward only) in output order, then written or added to dx. Order is fixed: no result
// depends on the thread count.
#include <algorithm>
#include <cmath>
#include <string>

#include "nn/op.h"
#include "nn/ops/indexing.h"

namespace pynn::nn {
namespace {

enum class Fn {
  add, subtract, multiply, divide, maximum, minimum, power,
  equal, not_equal, greater, greater_equal, less, less_equal
};

inline bool is_comparison(Fn fn) { return fn >= Fn::equal; }

Fn parse_fn(const Attrs& attrs) {
  const std::string fn = attrs.get_string("fn", "");
  static const std::pair<const char*, Fn> kNames[] = {
      {"add", Fn::add},         {"subtract", Fn::subtract}, {"multiply", Fn::multiply},
      {"divide", Fn::divide},   {"maximum", Fn::maximum},   {"minimum", Fn::minimum},
      {"power", Fn::power},     {"equal", Fn::equal},       {"not_equal", Fn::not_equal},
      {"greater", Fn::greater}, {"greater_equal", Fn::greater_equal},
      {"less", Fn::less},       {"less_equal", Fn::less_equal}};
  std::string known;
  for (const auto& [name, f] : kNames) {
    if (fn == name) return f;
    known += (known.empty() ? "" : ", ") + std::string(name);
  }
  op_error(attrs, "unknown fn '" + fn + "' (known: " + known + ")");
}

// y = a fn b
inline float apply(Fn fn, float a, float b) {
  switch (fn) {
    case Fn::add: return a + b;
    case Fn::subtract: return a - b;
    case Fn::multiply: return a * b;
    case Fn::divide: return a / b;
    case Fn::maximum: return a >= b || a != a ? a : b;
    case Fn::minimum: return a <= b || a != a ? a : b;
    case Fn::power: return std::pow(a, b);
    case Fn::equal: return a == b ? 1.0f : 0.0f;
    case Fn::not_equal: return a != b ? 1.0f : 0.0f;
    case Fn::greater: return a > b ? 1.0f : 0.0f;
    case Fn::greater_equal: return a >= b ? 1.0f : 0.0f;
    case Fn::less: return a < b ? 1.0f : 0.0f;
    case Fn::less_equal: return a <= b ? 1.0f : 0.0f;
  }
  return 0.0f;
}

// d y / d a (first) or d y / d b (second), times g.
inline float partial(Fn fn, bool first, float a, float b, float g) {
  switch (fn) {
    case Fn::add: return g;
    case Fn::subtract: return first ? g : -g;
    case Fn::multiply: return first ? g * b : g * a;
    case Fn::divide: return first ? g / b : -g * (a / b) / b;
    case Fn::maximum: return (a >= b) == first ? g : 0.0f;
    case Fn::minimum: return (a <= b) == first ? g : 0.0f;
    case Fn::power:
      if (first) return b == 0.0f ? 0.0f : g * (b * std::pow(a, b - 1.0f));
      return a > 0.0f ? g * (std::pow(a, b) * std::log(a)) : 0.0f;
    default: return 0.0f;  // comparisons: piecewise constant
  }
  return 0.0f;
}

class BinaryOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    fn_ = parse_fn(attrs);
    check_arity(attrs, in, 2, 2, params, 0, 0);
    Shape out;
    if (!ops::broadcast_shapes(in, out))
      op_error(attrs, "shapes " + shape_str(in[0]) + " and " + shape_str(in[1]) +
                          " do not broadcast (fn " + attrs.get_string("fn", "") + ")");
    plan_.init(in, out);
    return out;
  }

  std::vector<ScratchNeed> scratch(bool, bool backward) const override {
    std::vector<ScratchNeed> s(2);
    for (int k = 0; k < 2; ++k)
      if (backward && plan_.reduced(k)) s[size_t(k)] = {0, plan_.size(k), ScratchLife::backward};
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override {
    return fn_ != Fn::add && fn_ != Fn::subtract && !is_comparison(fn_);
  }

  void forward(const FwdArgs& a) override {
    const int64_t sa = plan_.size(0), sb = plan_.size(1), so = plan_.out_size();
    const int64_t run = plan_.run(), ia = plan_.inner(0), ib = plan_.inner(1);
    const Fn fn = fn_;
    for (int64_t s = 0; s < a.n; ++s) {
      const float* xa = a.x[0] + s * sa;
      const float* xb = a.x[1] + s * sb;
      float* y = a.y + s * so;
      plan_.for_each_run([&](int64_t o, const ops::BroadcastPlan::Offsets& off) {
        const float* pa = xa + off[0];
        const float* pb = xb + off[1];
        float* py = y + o;
        for (int64_t j = 0; j < run; ++j) py[j] = apply(fn, pa[j * ia], pb[j * ib]);
      });
    }
  }

  void backward(const BwdArgs& a) override {
    const int64_t so = plan_.out_size(), run = plan_.run();
    const int64_t ia = plan_.inner(0), ib = plan_.inner(1);
    const bool uses_x = needs_input(0, false, {});
    const Fn fn = fn_;
    for (int k = 0; k < 2; ++k) {
      float* dx = a.dx[k];
      if (!dx) continue;
      const bool acc = a.dx_acc[k] != 0, first = k == 0, red = plan_.reduced(k);
      const int64_t sk = plan_.size(k);
      for (int64_t s = 0; s < a.n; ++s) {
        const float* xa = uses_x ? a.x[0] + s * plan_.size(0) : nullptr;
        const float* xb = uses_x ? a.x[1] + s * plan_.size(1) : nullptr;
        const float* g = a.dy + s * so;
        // A stretched operand sums into scratch; a full-size one is written in place.
        float* t = red ? a.scratch[k] : dx + s * sk;
        if (red) std::fill(t, t + sk, 0.0f);
        const bool add = red || acc;
        plan_.for_each_run([&](int64_t o, const ops::BroadcastPlan::Offsets& off) {
          const float* pg = g + o;
          float* pt = t + off[size_t(k)];
          const int64_t it = plan_.inner(k);
          for (int64_t j = 0; j < run; ++j) {
            const float av = uses_x ? xa[off[0] + j * ia] : 0.0f;
            const float bv = uses_x ? xb[off[1] + j * ib] : 0.0f;
            const float v = partial(fn, first, av, bv, pg[j]);
            if (add) pt[j * it] += v;
            else pt[j * it] = v;
          }
        });
        if (red) store_or_add(dx + s * sk, t, sk, acc);
      }
    }
  }

 private:
  Fn fn_ = Fn::add;
  ops::BroadcastPlan plan_;
};

class BinaryScalarOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    fn_ = parse_fn(attrs);
    if (!attrs.has("scalar")) op_error(attrs, "attribute 'scalar' is required");
    c_ = float(attrs.get_double("scalar", 0.0));
    reverse_ = attrs.get_bool("reverse", false);
    check_arity(attrs, in, 1, 1, params, 0, 0);
    size_ = shape_size(in[0]);
    return in[0];
  }

  bool needs_input(int, bool, const BackwardNeeds&) const override {
    switch (fn_) {
      case Fn::add:
      case Fn::subtract:
      case Fn::multiply: return false;
      case Fn::divide: return reverse_;
      default: return !is_comparison(fn_);
    }
  }

  void forward(const FwdArgs& a) override {
    const int64_t total = a.n * size_;
    const float* x = a.x[0];
    float* y = a.y;
    const float c = c_;
    const Fn fn = fn_;
    if (reverse_)
      for (int64_t i = 0; i < total; ++i) y[i] = apply(fn, c, x[i]);
    else
      for (int64_t i = 0; i < total; ++i) y[i] = apply(fn, x[i], c);
  }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (!dx) return;
    const int64_t total = a.n * size_;
    const bool acc = a.dx_acc[0] != 0;
    const bool reads_x = needs_input(0, false, {});
    const float* x = a.x[0];
    const float* g = a.dy;
    const float c = c_;
    const Fn fn = fn_;
    for (int64_t i = 0; i < total; ++i) {
      const float xv = reads_x ? x[i] : 0.0f;
      const float v = reverse_ ? partial(fn, false, c, xv, g[i]) : partial(fn, true, xv, c, g[i]);
      dx[i] = acc ? dx[i] + v : v;
    }
  }

 private:
  Fn fn_ = Fn::add;
  float c_ = 0.0f;
  bool reverse_ = false;
  int64_t size_ = 0;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("binary", pynn::nn::BinaryOp)
PYNN_REGISTER_OP("binary_scalar", pynn::nn::BinaryScalarOp)

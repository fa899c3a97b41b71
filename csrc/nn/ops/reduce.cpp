// reduce: sum, mean, max or min of each sample over some of its axes (pynn.ops.sum, ...).
//
// attrs: fn (sum, mean, max, min); axes (per-sample axes, negative from the end; an empty
// list reduces nothing and copies); keepdims (reduced axes stay as size 1, default false).
// Reducing every axis without keepdims gives a per-sample scalar, shape ().
//
// Forward: each output is its elements folded in row-major input order; sum and mean add in
// double. max/min take the first extreme element, and a NaN wins (NumPy's max propagates
// it): that element is recomputed in backward, which routes all of dy to it (the first
// maximal element, as the task requires); sum passes dy to every element, mean dy / count.
// The fold order is fixed, so results do not depend on the thread count.
#include <algorithm>
#include <string>

#include "nn/op.h"
#include "nn/ops/indexing.h"

namespace pynn::nn {
namespace {

enum class Fn { sum, mean, max, min };

class ReduceOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const std::string fn = attrs.get_string("fn", "");
    if (fn == "sum") fn_ = Fn::sum;
    else if (fn == "mean") fn_ = Fn::mean;
    else if (fn == "max") fn_ = Fn::max;
    else if (fn == "min") fn_ = Fn::min;
    else op_error(attrs, "unknown fn '" + fn + "' (known: sum, mean, max, min)");
    if (!attrs.has("axes")) op_error(attrs, "attribute 'axes' is required");
    const std::vector<int64_t> axes = attrs.get_ints("axes");
    const bool keepdims = attrs.get_bool("keepdims", false);
    check_arity(attrs, in, 1, 1, params, 0, 0);
    const Shape& x = in[0];
    const std::vector<char> flags = ops::axes_flags(attrs, axes, int64_t(x.size()), x);
    Shape out;
    for (size_t d = 0; d < x.size(); ++d) {
      if (!flags[d]) out.push_back(x[d]);
      else if (keepdims) out.push_back(1);
    }
    plan_.init(x, flags);
    return out;
  }

  bool needs_input(int, bool, const BackwardNeeds&) const override {
    return fn_ == Fn::max || fn_ == Fn::min;
  }

  void forward(const FwdArgs& a) override {
    const int64_t si = plan_.in_size(), so = plan_.out_size();
    const double inv = 1.0 / double(plan_.count());
    for (int64_t s = 0; s < a.n; ++s) {
      const float* x = a.x[0] + s * si;
      float* y = a.y + s * so;
      plan_.for_each_output([&](int64_t o, int64_t base) {
        const float* xb = x + base;
        if (fn_ == Fn::sum || fn_ == Fn::mean) {
          double acc = 0.0;
          plan_.for_each_reduced([&](int64_t, int64_t e) { acc += double(xb[e]); });
          y[o] = float(fn_ == Fn::mean ? acc * inv : acc);
        } else {
          y[o] = xb[extreme(xb)];
        }
      });
    }
  }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (!dx) return;
    const bool acc = a.dx_acc[0] != 0;
    const int64_t si = plan_.in_size(), so = plan_.out_size();
    const float inv = float(1.0 / double(plan_.count()));
    for (int64_t s = 0; s < a.n; ++s) {
      const float* g = a.dy + s * so;
      float* d = dx + s * si;
      if (fn_ == Fn::sum || fn_ == Fn::mean) {
        plan_.for_each_output([&](int64_t o, int64_t base) {
          const float v = fn_ == Fn::mean ? g[o] * inv : g[o];
          float* db = d + base;
          plan_.for_each_reduced([&](int64_t, int64_t e) { db[e] = acc ? db[e] + v : v; });
        });
      } else {
        if (!acc) std::fill(d, d + si, 0.0f);
        const float* x = a.x[0] + s * si;
        plan_.for_each_output([&](int64_t o, int64_t base) {
          d[base + extreme(x + base)] += g[o];
        });
      }
    }
  }

 private:
  // Offset (from an output's base) of its first maximal (max) or minimal (min) element; the
  // first NaN when there is one.
  int64_t extreme(const float* xb) const {
    int64_t best = 0;
    float bv = 0.0f;
    bool first = true, nan = false;
    const bool is_max = fn_ == Fn::max;
    plan_.for_each_reduced([&](int64_t, int64_t e) {
      const float v = xb[e];
      if (first) {
        best = e, bv = v, first = false, nan = v != v;
        return;
      }
      if (nan) return;
      if (v != v) best = e, bv = v, nan = true;
      else if (is_max ? v > bv : v < bv) best = e, bv = v;
    });
    return best;
  }

  Fn fn_ = Fn::sum;
  ops::ReducePlan plan_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("reduce", pynn::nn::ReduceOp)

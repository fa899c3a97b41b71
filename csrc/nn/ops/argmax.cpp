// argmax: the index of the largest element of each sample along one axis, or over the whole
// flattened sample (pynn.ops.argmax), as a float.
//
// attrs: axis (a per-sample axis, negative from the end; absent: the flattened sample, whose
// row-major index is returned); keepdims (the axis stays as size 1; default false). The
// first maximal element wins, and the first NaN wins over everything (NumPy's argmax).
//
// No gradient flows through it: backward contributes nothing (it zeroes dx when it would be
// the first contribution, so dx is defined).
#include <string>

#include "nn/op.h"
#include "nn/ops/indexing.h"

namespace pynn::nn {
namespace {

class ArgmaxOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const bool has_axis = attrs.has("axis");
    const int64_t axis = attrs.get_int("axis", -1);
    const bool keepdims = attrs.get_bool("keepdims", false);
    check_arity(attrs, in, 1, 1, params, 0, 0);
    const Shape& x = in[0];
    const int64_t r = int64_t(x.size());
    Shape out;
    std::vector<char> flags(size_t(r), has_axis ? 0 : 1);
    if (has_axis) {
      if (r == 0) op_error(attrs, "axis " + std::to_string(axis) + " given for a scalar sample");
      flags = ops::axes_flags(attrs, {axis}, r, x);
    }
    for (int64_t d = 0; d < r; ++d) {
      if (!flags[size_t(d)]) out.push_back(x[size_t(d)]);
      else if (keepdims) out.push_back(1);
    }
    // Row-major index over the reduced axes: with one axis that is the index along it, with
    // every axis it is the flattened index.
    plan_.init(x, flags);
    return out;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const int64_t si = plan_.in_size(), so = plan_.out_size();
    for (int64_t s = 0; s < a.n; ++s) {
      const float* x = a.x[0] + s * si;
      float* y = a.y + s * so;
      plan_.for_each_output([&](int64_t o, int64_t base) {
        const float* xb = x + base;
        int64_t best = 0;
        float bv = 0.0f;
        bool first = true, nan = false;
        plan_.for_each_reduced([&](int64_t j, int64_t e) {
          const float v = xb[e];
          if (first || (!nan && (v != v || v > bv))) {
            best = j, bv = v, nan = v != v;
            first = false;
          }
        });
        y[o] = float(best);
      });
    }
  }

  void backward(const BwdArgs& a) override {
    ops::no_gradient(a.dx[0], a.n * plan_.in_size(), a.dx_acc[0] != 0);
  }

 private:
  ops::ReducePlan plan_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("argmax", pynn::nn::ArgmaxOp)

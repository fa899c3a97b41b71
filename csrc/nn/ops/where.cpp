// where: y = x where cond != 0, else z (pynn.ops.where(cond, x, z)); three inputs whose
// per-sample shapes broadcast as NumPy shapes do. A NaN condition counts as true (NaN != 0).
//
// Gradients: dy goes to x where the condition holds and to z elsewhere, summed over the axes
// an operand was stretched along (per sample, in output order, through a backward scratch
// buffer as in binary.cpp). The condition gets no gradient: its dx is zeroed when it is the
// first contribution, left alone otherwise.
#include <algorithm>

#include "nn/op.h"
#include "nn/ops/indexing.h"

namespace pynn::nn {
namespace {

class WhereOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 3, 3, params, 0, 0);
    Shape out;
    if (!ops::broadcast_shapes(in, out))
      op_error(attrs, "condition shape " + shape_str(in[0]) + ", x shape " + shape_str(in[1]) +
                          " and y shape " + shape_str(in[2]) + " do not broadcast");
    plan_.init(in, out);
    return out;
  }

  std::vector<ScratchNeed> scratch(bool, bool backward) const override {
    std::vector<ScratchNeed> s(3);
    for (int k = 1; k < 3; ++k)
      if (backward && plan_.reduced(k)) s[size_t(k)] = {0, plan_.size(k), ScratchLife::backward};
    return s;
  }
  bool needs_input(int k, bool, const BackwardNeeds&) const override { return k == 0; }

  void forward(const FwdArgs& a) override {
    const int64_t run = plan_.run(), so = plan_.out_size();
    const int64_t ic = plan_.inner(0), ix = plan_.inner(1), iz = plan_.inner(2);
    for (int64_t s = 0; s < a.n; ++s) {
      const float* c = a.x[0] + s * plan_.size(0);
      const float* x = a.x[1] + s * plan_.size(1);
      const float* z = a.x[2] + s * plan_.size(2);
      float* y = a.y + s * so;
      plan_.for_each_run([&](int64_t o, const ops::BroadcastPlan::Offsets& off) {
        for (int64_t j = 0; j < run; ++j)
          y[o + j] = c[off[0] + j * ic] != 0.0f ? x[off[1] + j * ix] : z[off[2] + j * iz];
      });
    }
  }

  void backward(const BwdArgs& a) override {
    ops::no_gradient(a.dx[0], a.n * plan_.size(0), a.dx_acc[0] != 0);
    const int64_t run = plan_.run(), so = plan_.out_size(), ic = plan_.inner(0);
    for (int k = 1; k < 3; ++k) {
      float* dx = a.dx[k];
      if (!dx) continue;
      const bool acc = a.dx_acc[k] != 0, red = plan_.reduced(k), take = k == 1;
      const int64_t sk = plan_.size(k), ik = plan_.inner(k);
      for (int64_t s = 0; s < a.n; ++s) {
        const float* c = a.x[0] + s * plan_.size(0);
        const float* g = a.dy + s * so;
        float* t = red ? a.scratch[k] : dx + s * sk;
        if (red) std::fill(t, t + sk, 0.0f);
        const bool add = red || acc;
        plan_.for_each_run([&](int64_t o, const ops::BroadcastPlan::Offsets& off) {
          for (int64_t j = 0; j < run; ++j) {
            const float v = (c[off[0] + j * ic] != 0.0f) == take ? g[o + j] : 0.0f;
            float& d = t[off[size_t(k)] + j * ik];
            d = add ? d + v : v;
          }
        });
        if (red) store_or_add(dx + s * sk, t, sk, acc);
      }
    }
  }

 private:
  ops::BroadcastPlan plan_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("where", pynn::nn::WhereOp)

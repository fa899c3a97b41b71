// global_pool: Keras's GlobalAveragePooling1D/2D and GlobalMaxPooling1D/2D: every
// per-sample axis but the last (the channels) reduced away.
//
//   x (..., C) -> y (C,), or with keepdims (1, ..., 1, C) (the rank kept)
// attrs fn "avg" | "max", keepdims.
//
// avg sums the positions in order and divides by their count; backward spreads dy / count.
// max keeps the first maximum of each channel (a NaN wins over any number, the first NaN, as
// np.argmax has it); backward finds that position again in x and sends dy there alone, so no
// index is stored. Threads take whole samples: results do not depend on the thread count.
#include <cstring>

#include "nn/ops/window.h"

namespace pynn::nn {
namespace {

class GlobalPoolOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 1, 1, params, 0, 0);
    const std::string fn = attrs.get_string("fn", "avg");
    if (fn != "avg" && fn != "max")
      op_error(attrs, "fn must be 'avg' or 'max', got '" + fn + "'");
    max_ = fn == "max";
    const bool keepdims = attrs.get_bool("keepdims", false);
    const Shape& x = in[0];
    if (x.size() < 2)
      op_error(attrs, "expects samples with at least one axis before the channels, got input "
                      "shape " + shape_str(x));
    C_ = x.back();
    P_ = shape_size(x) / C_;
    if (!keepdims) return {C_};
    Shape y(x.size(), 1);
    y.back() = C_;
    return y;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return max_; }

  void forward(const FwdArgs& a) override {
    const int64_t C = C_, P = P_;
    ops::for_samples(0, a.n, a.n * P * C, [&](int64_t s) {
      const float* x = a.x[0] + s * P * C;
      float* y = a.y + s * C;
      std::memcpy(y, x, sizeof(float) * size_t(C));
      for (int64_t p = 1; p < P; ++p) {
        const float* v = x + p * C;
        if (max_) {
          for (int64_t c = 0; c < C; ++c)
            if (v[c] > y[c] || (v[c] != v[c] && y[c] == y[c])) y[c] = v[c];
        } else {
          for (int64_t c = 0; c < C; ++c) y[c] += v[c];
        }
      }
      if (!max_)
        for (int64_t c = 0; c < C; ++c) y[c] /= float(P);
    });
  }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (dx == nullptr) return;
    const int64_t C = C_, P = P_;
    const bool acc = a.dx_acc[0] != 0;
    ops::for_samples(0, a.n, a.n * P * C, [&](int64_t s) {
      float* d = dx + s * P * C;
      const float* g = a.dy + s * C;
      if (!max_) {
        for (int64_t p = 0; p < P; ++p)
          for (int64_t c = 0; c < C; ++c) {
            const float v = g[c] / float(P);
            d[p * C + c] = acc ? d[p * C + c] + v : v;
          }
        return;
      }
      if (!acc) std::memset(d, 0, sizeof(float) * size_t(P * C));
      const float* x = a.x[0] + s * P * C;
      for (int64_t c = 0; c < C; ++c) {
        int64_t best = 0;
        for (int64_t p = 1; p < P; ++p) {
          const float b = x[best * C + c], u = x[p * C + c];
          if (u > b || (u != u && b == b)) best = p;
        }
        d[best * C + c] += g[c];
      }
    });
  }

 private:
  int64_t C_ = 1, P_ = 1;
  bool max_ = false;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("global_pool", pynn::nn::GlobalPoolOp)

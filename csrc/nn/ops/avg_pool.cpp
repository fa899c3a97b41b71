// avg_pool: Keras's AveragePooling1D / AveragePooling2D on channels_last samples (W, C) or
// (H, W, C).
//
//   y[oh, ow, c] = (sum over the window's taps inside the input of x[..., c]) / count
// where count is the number of those taps: with padding "same" the padded positions are
// left out of both the sum and the count (TensorFlow's rule, which Keras follows). attrs
// pool_size, strides (default pool_size), padding (window.h).
//
// Sums run over the taps in row-major order; backward adds dy / count to every tap of the
// window, output positions in increasing order. Threads take whole samples, so results do
// not depend on the thread count or the batch.
#include <algorithm>
#include <cstring>

#include "nn/ops/window.h"

namespace pynn::nn {
namespace {

using ops::Window;

// The taps of output (oh, ow) that fall inside the input: rows [i0, i1), columns [j0, j1).
struct Span {
  int64_t i0, i1, j0, j1;
  int64_t count() const { return (i1 - i0) * (j1 - j0); }
};

Span span_of(const Window& w, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * w.SH - w.PH, w0 = ow * w.SW - w.PW;
  return {std::max<int64_t>(0, -h0), std::min(w.KH, w.H - h0), std::max<int64_t>(0, -w0),
          std::min(w.KW, w.W - w0)};
}

class AvgPoolOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 1, 1, params, 0, 0);
    const std::vector<int64_t> pool = attrs.require_ints("pool_size");
    w_ = ops::make_window(attrs, in[0], pool, "pool_size", pool, false, false);
    return ops::window_output_shape(w_, w_.C);
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const Window w = w_;
    const int64_t C = w.C, out_size = w.positions() * C;
    ops::for_samples(0, a.n, a.n * out_size * w.taps(), [&](int64_t s) {
      const float* x = a.x[0] + s * w.in_size();
      for (int64_t oh = 0; oh < w.OH; ++oh) {
        for (int64_t ow = 0; ow < w.OW; ++ow) {
          float* y = a.y + s * out_size + (oh * w.OW + ow) * C;
          const Span sp = span_of(w, oh, ow);
          std::memset(y, 0, sizeof(float) * size_t(C));
          for (int64_t i = sp.i0; i < sp.i1; ++i) {
            const int64_t ih = oh * w.SH - w.PH + i;
            for (int64_t j = sp.j0; j < sp.j1; ++j) {
              const float* v = x + (ih * w.W + ow * w.SW - w.PW + j) * C;
              for (int64_t c = 0; c < C; ++c) y[c] += v[c];
            }
          }
          const float count = float(sp.count());
          for (int64_t c = 0; c < C; ++c) y[c] /= count;
        }
      }
    });
  }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (dx == nullptr) return;
    const Window w = w_;
    const int64_t C = w.C, out_size = w.positions() * C;
    if (!a.dx_acc[0]) std::memset(dx, 0, sizeof(float) * size_t(a.n * w.in_size()));
    ops::for_samples(0, a.n, a.n * out_size * w.taps(), [&](int64_t s) {
      float* xs = dx + s * w.in_size();
      for (int64_t oh = 0; oh < w.OH; ++oh) {
        for (int64_t ow = 0; ow < w.OW; ++ow) {
          const float* g = a.dy + s * out_size + (oh * w.OW + ow) * C;
          const Span sp = span_of(w, oh, ow);
          const float count = float(sp.count());
          for (int64_t i = sp.i0; i < sp.i1; ++i) {
            const int64_t ih = oh * w.SH - w.PH + i;
            for (int64_t j = sp.j0; j < sp.j1; ++j) {
              float* d = xs + (ih * w.W + ow * w.SW - w.PW + j) * C;
              for (int64_t c = 0; c < C; ++c) d[c] += g[c] / count;
            }
          }
        }
      }
    });
  }

 private:
  Window w_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("avg_pool", pynn::nn::AvgPoolOp)

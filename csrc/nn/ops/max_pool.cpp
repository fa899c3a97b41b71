// max_pool: Keras's MaxPooling1D / MaxPooling2D on channels_last samples (W, C) or (H, W, C).
//
//   y[oh, ow, c] = max over the window's taps (i, j) inside the input of
//                  x[oh*sh - ph + i, ow*sw - pw + j, c]
// attrs pool_size, strides (default pool_size), padding valid / same (window.h; padded
// positions are never candidates, and every window holds at least one real input).
//
// The winner is the first maximum in the window's row-major tap order; a NaN wins over any
// number (the first NaN), as np.argmax picks it. Its tap index within the window (an integer
// below kh*kw, exact as a float) is saved for backward, which adds each dy to its winner's
// input position only. Threads take whole samples and every sum runs in a fixed order, so results
// do not depend on the thread count or the batch.
//
// Windows that tile the input without overlap or padding (strides == pool_size, all inside: the
// usual MaxPooling2D((2, 2))) take a faster path with the same results: no bounds checks,
// and backward writes each input's gradient once (dy at the winner, 0 elsewhere, nothing
// else reaches it) instead of clearing dx and adding into it.
//
// Scratch: [0] the winning tap of every output value (saved, only when backward runs).
//
// A convolution that is this op's only input may compute the pooling itself (nn/ops/fusion.h,
// conv.cpp); this op is then a view of the convolution's output and runs nothing.
#include <cstring>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "nn/ops/fusion.h"
#include "nn/ops/window.h"

namespace pynn::nn {
namespace {

using ops::Window;

// The channel loops, written with selects rather than branches (a branch on data mispredicts
// half the time) over non-overlapping arrays, so that they vectorise.
//
// y[c] = v[c] where v[c] beats y[c] (is larger, or is the first NaN), and idx[c] = tap there.
void take_max_at(float* __restrict y, float* __restrict idx, const float* __restrict v,
                 float tap, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const float b = y[c], u = v[c], t = idx[c];
    const bool take = (u > b) | ((u != u) & (b == b));
    y[c] = take ? u : b;
    idx[c] = take ? tap : t;
  }
}
void take_max(float* __restrict y, const float* __restrict v, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const float b = y[c], u = v[c];
    y[c] = ((u > b) | ((u != u) & (b == b))) ? u : b;
  }
}
// y[c] (and idx[c]) = the winner of the four taps t0..t3 of a 2x2 window, in that order:
// take_max_at's selects run tap after tap, but in one pass over the channels with y and idx
// in registers (MaxPooling2D((2, 2)) after a conv spent half its time storing and reloading
// them, plus a memcpy call per window). Written with SSE2 selects: GCC leaves the chained
// scalar form as compares and branches.
template <bool kIdx>
void max_of_4(const float* t0, const float* t1, const float* t2, const float* t3, float* y,
              float* idx, int64_t C) {
  int64_t c = 0;
#if defined(__SSE2__)
  const auto take = [](__m128 u, __m128 b) {  // u beats b: larger, or the first NaN
    return _mm_or_ps(_mm_cmpgt_ps(u, b), _mm_and_ps(_mm_cmpunord_ps(u, u), _mm_cmpord_ps(b, b)));
  };
  const auto sel = [](__m128 m, __m128 u, __m128 b) {
    return _mm_or_ps(_mm_and_ps(m, u), _mm_andnot_ps(m, b));
  };
  for (; c + 4 <= C; c += 4) {
    __m128 b = _mm_loadu_ps(t0 + c), i = _mm_setzero_ps();
    const __m128 u[3] = {_mm_loadu_ps(t1 + c), _mm_loadu_ps(t2 + c), _mm_loadu_ps(t3 + c)};
    for (int t = 0; t < 3; ++t) {
      const __m128 m = take(u[t], b);
      b = sel(m, u[t], b);
      if (kIdx) i = sel(m, _mm_set1_ps(float(t + 1)), i);
    }
    _mm_storeu_ps(y + c, b);
    if (kIdx) _mm_storeu_ps(idx + c, i);
  }
#endif
  if (c < C) {
    std::memcpy(y + c, t0 + c, sizeof(float) * size_t(C - c));
    const float* rest[3] = {t1, t2, t3};
    if (kIdx) {
      for (int64_t k = c; k < C; ++k) idx[k] = 0.0f;
      for (int t = 0; t < 3; ++t) take_max_at(y + c, idx + c, rest[t] + c, float(t + 1), C - c);
    } else {
      for (int t = 0; t < 3; ++t) take_max(y + c, rest[t] + c, C - c);
    }
  }
}
// d[c] = g[c] where idx[c] == tap, 0 elsewhere.
void put_where(float* __restrict d, const float* __restrict idx, const float* __restrict g,
               float tap, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const float gc = g[c];  // loaded unconditionally: a select, not a branch
    d[c] = idx[c] == tap ? gc : 0.0f;
  }
}
// d[c] += g[c] where idx[c] == tap, + 0 elsewhere.
void add_where(float* __restrict d, const float* __restrict idx, const float* __restrict g,
               float tap, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const float gc = g[c];  // loaded unconditionally: a select, not a branch
    d[c] += idx[c] == tap ? gc : 0.0f;
  }
}

class MaxPoolOp : public Op, public ops::FusableMaxPool {
 public:
  const Window& pool_window() const override { return w_; }
  bool pool_tiles() const override { return tiles_; }
  void set_computed_by_producer(bool on) override { by_producer_ = on; }
  bool aliases(bool) const override { return by_producer_; }

  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 1, 1, params, 0, 0);
    const std::vector<int64_t> pool = attrs.require_ints("pool_size");
    w_ = ops::make_window(attrs, in[0], pool, "pool_size", pool, false, false);
    tiles_ = w_.PH == 0 && w_.PW == 0 && w_.SH == w_.KH && w_.SW == w_.KW &&
             w_.OH * w_.KH <= w_.H && w_.OW * w_.KW <= w_.W;  // (padding after, as with "same")
    return ops::window_output_shape(w_, w_.C);
  }
  std::vector<ScratchNeed> scratch(bool, bool backward) const override {
    std::vector<ScratchNeed> s(1);
    if (backward) s[0] = {w_.positions() * w_.C, 0, ScratchLife::saved};
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return false; }

  void forward(const FwdArgs& a) override {
    const Window w = w_;
    const int64_t C = w.C, out_size = w.positions() * C;
    float* idx_all = a.scratch[0];
    if (tiles_) {
      forward_tiles(a);
      return;
    }
    ops::for_samples(0, a.n, a.n * out_size * w.taps(), [&](int64_t s) {
      const float* x = a.x[0] + s * w.in_size();
      for (int64_t oh = 0; oh < w.OH; ++oh) {
        for (int64_t ow = 0; ow < w.OW; ++ow) {
          float* y = a.y + s * out_size + (oh * w.OW + ow) * C;
          float* idx = idx_all != nullptr ? idx_all + s * out_size + (oh * w.OW + ow) * C
                                          : nullptr;
          bool first = true;
          for (int64_t i = 0; i < w.KH; ++i) {
            const int64_t ih = oh * w.SH - w.PH + i;
            if (ih < 0 || ih >= w.H) continue;
            for (int64_t j = 0; j < w.KW; ++j) {
              const int64_t iw = ow * w.SW - w.PW + j;
              if (iw < 0 || iw >= w.W) continue;
              const float* v = x + (ih * w.W + iw) * C;
              const float tap = float(i * w.KW + j);
              if (first) {
                std::memcpy(y, v, sizeof(float) * size_t(C));
                if (idx != nullptr)
                  for (int64_t c = 0; c < C; ++c) idx[c] = tap;
                first = false;
                continue;
              }
              if (idx != nullptr) take_max_at(y, idx, v, tap, C);
              else take_max(y, v, C);
            }
          }
        }
      }
    });
  }

  void backward(const BwdArgs& a) override {
    float* dx = a.dx[0];
    if (dx == nullptr) return;
    const Window w = w_;
    const int64_t C = w.C, out_size = w.positions() * C;
    if (tiles_ && !a.dx_acc[0]) {
      backward_tiles(a);
      return;
    }
    if (!a.dx_acc[0]) std::memset(dx, 0, sizeof(float) * size_t(a.n * w.in_size()));
    // Every tap of a window adds dy where it is the winner and +0 elsewhere: a masked add
    // over the channels that vectorises, where scattering to the winners would not. Adding
    // zeros changes no value, and each input still gets its windows' dy in output order.
    ops::for_samples(0, a.n, a.n * out_size * w.taps(), [&](int64_t s) {
      float* xs = dx + s * w.in_size();
      for (int64_t oh = 0; oh < w.OH; ++oh) {
        for (int64_t ow = 0; ow < w.OW; ++ow) {
          const int64_t o = s * out_size + (oh * w.OW + ow) * C;
          const float* idx = a.scratch[0] + o;
          const float* g = a.dy + o;
          for (int64_t i = 0; i < w.KH; ++i) {
            const int64_t ih = oh * w.SH - w.PH + i;
            if (ih < 0 || ih >= w.H) continue;
            for (int64_t j = 0; j < w.KW; ++j) {
              const int64_t iw = ow * w.SW - w.PW + j;
              if (iw < 0 || iw >= w.W) continue;
              float* d = xs + (ih * w.W + iw) * C;
              const float tap = float(i * w.KW + j);
              add_where(d, idx, g, tap, C);
            }
          }
        }
      }
    });
  }

 private:
  // Non-overlapping windows inside the input: the taps in row-major order, unchecked.
  void forward_tiles(const FwdArgs& a) const {
    const Window w = w_;
    const int64_t C = w.C, out_size = w.positions() * C;
    float* idx_all = a.scratch[0];
    ops::for_samples(0, a.n, a.n * out_size * w.taps(), [&](int64_t s) {
      const float* x = a.x[0] + s * w.in_size();
      for (int64_t oh = 0; oh < w.OH; ++oh) {
        for (int64_t ow = 0; ow < w.OW; ++ow) {
          const int64_t o = s * out_size + (oh * w.OW + ow) * C;
          float* y = a.y + o;
          const float* corner = x + (oh * w.KH * w.W + ow * w.KW) * C;
          if (w.KH == 2 && w.KW == 2) {
            const float* below = corner + w.W * C;
            if (idx_all != nullptr) max_of_4<true>(corner, corner + C, below, below + C, y, idx_all + o, C);
            else max_of_4<false>(corner, corner + C, below, below + C, y, nullptr, C);
            continue;
          }
          std::memcpy(y, corner, sizeof(float) * size_t(C));
          if (idx_all != nullptr) {
            float* idx = idx_all + o;
            for (int64_t c = 0; c < C; ++c) idx[c] = 0.0f;
            for (int64_t t = 1; t < w.taps(); ++t)
              take_max_at(y, idx, corner + ((t / w.KW) * w.W + t % w.KW) * C, float(t), C);
          } else {
            for (int64_t t = 1; t < w.taps(); ++t)
              take_max(y, corner + ((t / w.KW) * w.W + t % w.KW) * C, C);
          }
        }
      }
    });
  }

  // Non-overlapping windows, dx written (not added): each input position in a window gets
  // dy where it won, 0 elsewhere; the rows and columns no window covers get 0.
  void backward_tiles(const BwdArgs& a) const {
    const Window w = w_;
    const int64_t C = w.C, out_size = w.positions() * C;
    ops::for_samples(0, a.n, a.n * out_size * w.taps(), [&](int64_t s) {
      float* xs = a.dx[0] + s * w.in_size();
      const int64_t covered_w = w.OW * w.KW;
      for (int64_t ih = 0; ih < w.H; ++ih) {
        float* row = xs + ih * w.W * C;
        const int64_t oh = ih / w.KH;
        if (oh >= w.OH) {
          std::memset(row, 0, sizeof(float) * size_t(w.W * C));
          continue;
        }
        const float tap_row = float((ih - oh * w.KH) * w.KW);
        for (int64_t ow = 0; ow < w.OW; ++ow) {
          const int64_t o = s * out_size + (oh * w.OW + ow) * C;
          for (int64_t j = 0; j < w.KW; ++j)
            put_where(row + (ow * w.KW + j) * C, a.scratch[0] + o, a.dy + o,
                      tap_row + float(j), C);
        }
        if (covered_w < w.W)
          std::memset(row + covered_w * C, 0, sizeof(float) * size_t((w.W - covered_w) * C));
      }
    });
  }

  Window w_;
  bool tiles_ = false;  // strides == pool_size and no padding
  bool by_producer_ = false;  // the conv before computes this pooling (fusion.h)
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("max_pool", pynn::nn::MaxPoolOp)

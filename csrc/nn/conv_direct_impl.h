// The direct convolution kernels of conv_direct.h, written once over a small vector
// interface `V` and instantiated by conv_direct_avx512.cpp and conv_direct_avx2.cpp (each
// compiled with its own ISA flags). Include only from those files.
//
// V provides: type vec, W (lanes), R (output positions a forward block keeps in registers)
// and KB (kernel rows a weight-gradient block keeps), each times NB = 2 vectors of filters;
// zero, set1, loadu, storeu, fmadd(a, b, c) = a*b + c, loadn / storen (the first k lanes,
// k in [1, W], nothing past them touched), relu (x where x > 0 or NaN, else +0),
// where_pos(g, y) (g where y > 0, else +0); for the fused 2x2 max pooling a lane mask type
// `mask` with beats(u, b) (u is larger than b, or u is NaN and b is not), select(m, u, b)
// (u where m, else b), eq(a, b), gt0(a) (a > 0), both(m1, m2) and keep(m, g) (g where m,
// else +0).
//
// Invariants: a block's accumulators live in registers for the whole K (or position) loop;
// every output element is one chain of fused multiply-adds in a fixed order (k ascending in
// the forward pass, positions ascending in the weight gradient), whatever the block it falls
// in; an input tap outside the sample is multiplied as a zero, as the GEMM path does.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>

#include "nn/conv_direct.h"

namespace pynn::nn::direct_impl {

using ops::Window;
constexpr int NB = 2;

template <class V>
struct Kernels {
  using vec = typename V::vec;
  static constexpr int64_t FB = NB * V::W;  // filters per block

  // The bias plus the convolution sums of filters [f0, f0 + NB * W) at ROWS x RR output
  // positions: acc[i * RR + r] is position (oh + i, ow0 + r).
  template <int ROWS, int RR>
  static inline void conv_block(const Window& w, const int64_t* off, int64_t K, const float* x,
                                const float* wp, int64_t FP, int64_t f0, int64_t oh,
                                int64_t ow0, vec (&acc)[ROWS * RR][NB]) {
    constexpr int P = ROWS * RR;
    const float* bias = wp + K * FP + f0;
    for (int b = 0; b < NB; ++b) {
      const vec bv = V::loadu(bias + b * V::W);
#pragma GCC unroll 16
      for (int r = 0; r < P; ++r) acc[r][b] = bv;
    }
    const int64_t ih0 = oh * w.SH - w.PH, iw0 = ow0 * w.SW - w.PW;
    const int64_t step = w.SW * w.C, row_step = w.SH * w.W * w.C;
    const bool inside = ih0 >= 0 && ih0 + (ROWS - 1) * w.SH + (w.KH - 1) * w.DH < w.H &&
                        iw0 >= 0 && iw0 + (RR - 1) * w.SW + (w.KW - 1) * w.DW < w.W;
    if (inside) {
      const float* corner = x + (ih0 * w.W + iw0) * w.C;
      for (int64_t k = 0; k < K; ++k) {
        const float* wk = wp + k * FP + f0;
        vec wv[NB];
        for (int b = 0; b < NB; ++b) wv[b] = V::loadu(wk + b * V::W);
        const float* p = corner + off[k];
#pragma GCC unroll 16
        for (int r = 0; r < P; ++r) {
          const vec xv = V::set1(p[(r / RR) * row_step + (r % RR) * step]);
          for (int b = 0; b < NB; ++b) acc[r][b] = V::fmadd(xv, wv[b], acc[r][b]);
        }
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        const float* wk = wp + k * FP + f0;
        vec wv[NB];
        for (int b = 0; b < NB; ++b) wv[b] = V::loadu(wk + b * V::W);
        const int64_t tap = k / w.C, c = k % w.C;
        const int64_t dh = (tap / w.KW) * w.DH, dw = (tap % w.KW) * w.DW;
#pragma GCC unroll 16
        for (int r = 0; r < P; ++r) {
          const int64_t ih = ih0 + (r / RR) * w.SH + dh, iw = iw0 + (r % RR) * w.SW + dw;
          const bool in = ih >= 0 && ih < w.H && iw >= 0 && iw < w.W;
          const vec xv = V::set1(in ? x[(ih * w.W + iw) * w.C + c] : 0.0f);
          for (int b = 0; b < NB; ++b) acc[r][b] = V::fmadd(xv, wv[b], acc[r][b]);
        }
      }
    }
  }

  // Stores v, of which the first `left` lanes are wanted (none when left <= 0).
  static inline void store_part(float* p, vec v, int64_t left) {
    if (left >= V::W) V::storeu(p, v);
    else if (left > 0) V::storen(p, v, int(left));
  }

  // Filters [f0, f0 + nf) of RR output positions (oh, ow0 .. ow0 + RR - 1).
  template <int RR, bool kRelu>
  static inline void fwd_block(const Window& w, const int64_t* off, int64_t K, const float* x,
                               const float* wp, int64_t FP, int64_t F, int64_t f0, int64_t nf,
                               int64_t oh, int64_t ow0, float* y) {
    vec acc[RR][NB];
    conv_block<1, RR>(w, off, K, x, wp, FP, f0, oh, ow0, acc);
#pragma GCC unroll 16
    for (int r = 0; r < RR; ++r) {
      float* yr = y + (oh * w.OW + ow0 + r) * F + f0;
      for (int b = 0; b < NB; ++b) {
        if (kRelu) acc[r][b] = V::relu(acc[r][b]);
        store_part(yr + b * V::W, acc[r][b], nf - b * V::W);
      }
    }
  }

  template <bool kRelu>
  static void forward_as(const Window& w, const int64_t* off, int64_t K, const float* x,
                         const float* wp, int64_t F, int64_t FP, float* y) {
    for (int64_t f0 = 0; f0 < F; f0 += FB) {
      const int64_t nf = std::min(FB, F - f0);
      for (int64_t oh = 0; oh < w.OH; ++oh) {
        int64_t ow = 0;
        for (; ow + V::R <= w.OW; ow += V::R)
          fwd_block<V::R, kRelu>(w, off, K, x, wp, FP, F, f0, nf, oh, ow, y);
        if (ow < w.OW)
          fwd_tail<kRelu>(int(w.OW - ow), std::make_integer_sequence<int, V::R - 1>{}, w, off,
                          K, x, wp, FP, F, f0, nf, oh, ow, y);
      }
    }
  }
  // The rr < R positions left at the end of a row as one block of exactly rr: one position
  // at a time kept only NB chains of FMAs in flight (latency-bound; the MNIST convnet's 26
  // columns leave 2 after two blocks of 12).
  template <bool kRelu, int... I>
  static void fwd_tail(int rr, std::integer_sequence<int, I...>, const Window& w,
                       const int64_t* off, int64_t K, const float* x, const float* wp,
                       int64_t FP, int64_t F, int64_t f0, int64_t nf, int64_t oh, int64_t ow,
                       float* y) {
    ((rr == I + 1 ? fwd_block<I + 1, kRelu>(w, off, K, x, wp, FP, F, f0, nf, oh, ow, y)
                  : void()),
     ...);
  }
  static void forward(const Window& w, const int64_t* off, int64_t K, const float* x,
                      const float* wp, int64_t F, int64_t FP, bool relu, float* y) {
    if (relu) forward_as<true>(w, off, K, x, wp, F, FP, y);
    else forward_as<false>(w, off, K, x, wp, F, FP, y);
  }

  // Pooling windows per block of the fused forward: PM windows are 2 rows x 2 PM positions,
  // as many positions as a block of forward() where R allows (AVX-512: 3 windows, 12
  // positions x 32 filters in 24 registers).
  static constexpr int PM = V::R / 4 > 0 ? V::R / 4 : 1;

  // Windows (ph, pw0 .. pw0 + M - 1) of filters [f0, f0 + nf): the 4 M outputs in registers,
  // relu, then max_pool's selects tap after tap in row-major order (its max_of_4).
  template <int M, bool kRelu>
  static inline void pool_block(const Window& w, const int64_t* off, int64_t K, const float* x,
                                const float* wp, int64_t FP, int64_t F, int64_t f0, int64_t nf,
                                int64_t POW, int64_t ph, int64_t pw0, float* yp, float* idx) {
    vec acc[4 * M][NB];
    conv_block<2, 2 * M>(w, off, K, x, wp, FP, f0, 2 * ph, 2 * pw0, acc);
#pragma GCC unroll 4
    for (int m = 0; m < M; ++m) {
      const int64_t o = (ph * POW + pw0 + m) * F + f0;
      for (int b = 0; b < NB; ++b) {
        vec t[4] = {acc[2 * m][b], acc[2 * m + 1][b], acc[2 * M + 2 * m][b],
                    acc[2 * M + 2 * m + 1][b]};
        if (kRelu)
          for (vec& v : t) v = V::relu(v);
        vec best = t[0], at = V::zero();
        for (int q = 1; q < 4; ++q) {
          const typename V::mask won = V::beats(t[q], best);
          best = V::select(won, t[q], best);
          at = V::select(won, V::set1(float(q)), at);
        }
        store_part(yp + o + b * V::W, best, nf - b * V::W);
        if (idx != nullptr) store_part(idx + o + b * V::W, at, nf - b * V::W);
      }
    }
  }
  template <bool kRelu, int... I>
  static void pool_tail(int m, std::integer_sequence<int, I...>, const Window& w,
                        const int64_t* off, int64_t K, const float* x, const float* wp,
                        int64_t FP, int64_t F, int64_t f0, int64_t nf, int64_t POW, int64_t ph,
                        int64_t pw, float* yp, float* idx) {
    ((m == I + 1 ? pool_block<I + 1, kRelu>(w, off, K, x, wp, FP, F, f0, nf, POW, ph, pw, yp,
                                            idx)
                 : void()),
     ...);
  }
  template <bool kRelu>
  static void forward_pool_as(const Window& w, const int64_t* off, int64_t K, const float* x,
                              const float* wp, int64_t F, int64_t FP, int64_t POH, int64_t POW,
                              float* yp, float* idx) {
    for (int64_t f0 = 0; f0 < F; f0 += FB) {
      const int64_t nf = std::min(FB, F - f0);
      for (int64_t ph = 0; ph < POH; ++ph) {
        int64_t pw = 0;
        for (; pw + PM <= POW; pw += PM)
          pool_block<PM, kRelu>(w, off, K, x, wp, FP, F, f0, nf, POW, ph, pw, yp, idx);
        if constexpr (PM > 1) {
          if (pw < POW)
            pool_tail<kRelu>(int(POW - pw), std::make_integer_sequence<int, PM - 1>{}, w, off,
                             K, x, wp, FP, F, f0, nf, POW, ph, pw, yp, idx);
        }
      }
    }
  }
  static void forward_pool(const Window& w, const int64_t* off, int64_t K, const float* x,
                           const float* wp, int64_t F, int64_t FP, bool relu, int64_t POH,
                           int64_t POW, float* yp, float* idx) {
    if (relu) forward_pool_as<true>(w, off, K, x, wp, F, FP, POH, POW, yp, idx);
    else forward_pool_as<false>(w, off, K, x, wp, F, FP, POH, POW, yp, idx);
  }

  // Loads the first `left` lanes of p (zeros past them; all zeros when left <= 0).
  static inline vec load_part(const float* p, int64_t left) {
    return left >= V::W ? V::loadu(p) : left > 0 ? V::loadn(p, int(left)) : V::zero();
  }

  // dz of an output position for weight_grad: rows of dz (positions, F), with y masked by
  // relu's derivative.
  struct PlainDz {
    const float* dz;
    const float* y;
    int64_t F;
    void operator()(int64_t p, int64_t, int64_t, int64_t f0, int64_t nf, vec (&dv)[NB]) const {
      for (int b = 0; b < NB; ++b) {
        const int64_t left = nf - b * V::W, e = p * F + f0 + b * V::W;
        dv[b] = load_part(dz + e, left);
        if (y != nullptr) dv[b] = V::where_pos(dv[b], load_part(y + e, left));
      }
    }
  };
  // dz formed from the pooled gradient (weight_grad_pool): the window's gradient where the
  // position's tap won (and, with y, the pooled output is > 0), else +0.
  struct PooledDz {
    const float* g;
    const float* y;
    const float* idx;
    int64_t F, POH, POW;
    void operator()(int64_t, int64_t oh, int64_t ow, int64_t f0, int64_t nf,
                    vec (&dv)[NB]) const {
      const int64_t ph = oh / 2, pw = ow / 2;
      if (ph >= POH || pw >= POW) {
        for (int b = 0; b < NB; ++b) dv[b] = V::zero();
        return;
      }
      const vec tap = V::set1(float((oh % 2) * 2 + ow % 2));
      for (int b = 0; b < NB; ++b) {
        const int64_t left = nf - b * V::W, e = (ph * POW + pw) * F + f0 + b * V::W;
        typename V::mask m = V::eq(load_part(idx + e, left), tap);
        if (y != nullptr) m = V::both(m, V::gt0(load_part(y + e, left)));
        dv[b] = V::keep(m, load_part(g + e, left));
      }
    }
  };

  // dw rows [k0, k0 + KK) x filters [f0, f0 + nf), summed over every output position in
  // increasing order, dz(position, oh, ow, f0, nf, dv) giving each position's dz; with db,
  // the block also sums dz.
  // Every loop over the KK rows is unrolled: one indexed at run time would put acc in memory
  // (it did: the accumulators spilled to the stack, 3x slower); dz is taken by value so its
  // fields stay in registers.
  template <int KK, class Dz>
  static void dw_block(const Window& w, const int64_t* off, const float* x, const Dz dz,
                       int64_t F, int64_t f0, int64_t nf, int64_t k0, float* dw, float* db) {
    vec acc[KK][NB], dsum[NB];
    for (int b = 0; b < NB; ++b) dsum[b] = V::zero();
#pragma GCC unroll 16
    for (int i = 0; i < KK; ++i)
      for (int b = 0; b < NB; ++b) acc[i][b] = V::zero();
    // Where the block's taps reach, relative to a window's corner (for the inside test).
    int64_t max_dh = 0, max_dw = 0;
    int64_t dh[KK], dwo[KK], ch[KK], o[KK];
    for (int i = 0; i < KK; ++i) {
      const int64_t k = k0 + i, tap = k / w.C;
      dh[i] = (tap / w.KW) * w.DH;
      dwo[i] = (tap % w.KW) * w.DW;
      ch[i] = k % w.C;
      o[i] = off[k];
      max_dh = std::max(max_dh, dh[i]);
      max_dw = std::max(max_dw, dwo[i]);
    }
    for (int64_t oh = 0; oh < w.OH; ++oh) {
      const int64_t ih0 = oh * w.SH - w.PH;
      const bool rows_in = ih0 >= 0 && ih0 + max_dh < w.H;
      for (int64_t ow = 0; ow < w.OW; ++ow) {
        const int64_t iw0 = ow * w.SW - w.PW;
        vec dv[NB];
        dz(oh * w.OW + ow, oh, ow, f0, nf, dv);
        if (db != nullptr)
          for (int b = 0; b < NB; ++b) dsum[b] = V::add(dsum[b], dv[b]);
        if (rows_in && iw0 >= 0 && iw0 + max_dw < w.W) {
          const float* corner = x + (ih0 * w.W + iw0) * w.C;
#pragma GCC unroll 16
          for (int i = 0; i < KK; ++i) {
            const vec xv = V::set1(corner[o[i]]);
            for (int b = 0; b < NB; ++b) acc[i][b] = V::fmadd(xv, dv[b], acc[i][b]);
          }
        } else {
#pragma GCC unroll 16
          for (int i = 0; i < KK; ++i) {
            const int64_t ih = ih0 + dh[i], iw = iw0 + dwo[i];
            const float v = ih >= 0 && ih < w.H && iw >= 0 && iw < w.W
                                ? x[(ih * w.W + iw) * w.C + ch[i]] : 0.0f;
            const vec xv = V::set1(v);
            for (int b = 0; b < NB; ++b) acc[i][b] = V::fmadd(xv, dv[b], acc[i][b]);
          }
        }
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < KK; ++i)
      for (int b = 0; b < NB; ++b)
        store_part(dw + (k0 + i) * F + f0 + b * V::W, acc[i][b], nf - b * V::W);
    if (db != nullptr)
      for (int b = 0; b < NB; ++b) store_part(db + f0 + b * V::W, dsum[b], nf - b * V::W);
  }

  // A block of kb < KB rows (the last one): its exact size, so no accumulator is wasted.
  template <class Dz, int... I>
  static void dw_tail(int kb, std::integer_sequence<int, I...>, const Window& w,
                      const int64_t* off, const float* x, const Dz dz, int64_t F, int64_t f0,
                      int64_t nf, int64_t k0, float* dw, float* db) {
    ((kb == I + 1 ? dw_block<I + 1>(w, off, x, dz, F, f0, nf, k0, dw, db) : void()), ...);
  }

  // db is summed by the first block of rows only.
  template <class Dz>
  static void weight_grad_with(const Window& w, const int64_t* off, int64_t K, const float* x,
                               const Dz& dz, int64_t F, float* dw, float* db) {
    for (int64_t f0 = 0; f0 < F; f0 += FB) {
      const int64_t nf = std::min(FB, F - f0);
      int64_t k0 = 0;
      for (; k0 + V::KB <= K; k0 += V::KB)
        dw_block<V::KB>(w, off, x, dz, F, f0, nf, k0, dw, k0 == 0 ? db : nullptr);
      if (k0 < K)
        dw_tail(int(K - k0), std::make_integer_sequence<int, V::KB - 1>{}, w, off, x, dz, F,
                f0, nf, k0, dw, k0 == 0 ? db : nullptr);
    }
  }
  static void weight_grad(const Window& w, const int64_t* off, int64_t K, const float* x,
                          const float* dz, const float* y, int64_t F, float* dw, float* db) {
    weight_grad_with(w, off, K, x, PlainDz{dz, y, F}, F, dw, db);
  }
  static void weight_grad_pool(const Window& w, const int64_t* off, int64_t K, const float* x,
                               const float* gp, const float* yp, const float* idx, int64_t F,
                               int64_t POH, int64_t POW, float* dw, float* db) {
    weight_grad_with(w, off, K, x, PooledDz{gp, yp, idx, F, POH, POW}, F, dw, db);
  }

  static const DirectConvKernels* table() {
    static const DirectConvKernels t{&forward, &weight_grad, &forward_pool, &weight_grad_pool};
    return &t;
  }
};

}  // namespace pynn::nn::direct_impl

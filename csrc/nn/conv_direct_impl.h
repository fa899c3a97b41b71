// The direct convolution kernels of conv_direct.h, written once over a small vector
// interface `V` and instantiated by conv_direct_avx512.cpp and conv_direct_avx2.cpp (each
// compiled with its own ISA flags). Include only from those files.
//
// V provides: type vec, W (lanes), R (output positions a forward block keeps in registers)
// and KB (kernel rows a weight-gradient block keeps), each times NB = 2 vectors of filters;
// zero, set1, loadu, storeu, add, sub, fmadd(a, b, c) = a*b + c, loadn / storen (the first k lanes,
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
#include <vector>

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

  // Winograd F(2x2, 3x3) (conv_direct.h, wino_forward). A tile is 2x2 outputs whose 4x4
  // inputs d (one per channel) become v = B^T d B; the 16 products m_xi = sum_c v_xi,c *
  // u_xi,c,f are a block of TT tiles x FB filters in registers per xi, kept in mb; then
  // y = A^T m A + bias, relu, and the store (or the 2x2 max pooling of the tile).
  //   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]    A^T = [1 1 1 0; 0 1 -1 -1]
  static constexpr int WT = V::R;  // tiles per block

  // One tile whose 4x4 inputs all lie inside the sample, corner at x (rows rs floats apart,
  // positions cs): the same arithmetic as wino_input's checked loop, without the checks, so
  // that it vectorises over the channels.
  static void wino_input_inside(const float* __restrict x, int64_t rs, int64_t cs, int64_t C,
                                int64_t xs, float* __restrict v) {
#pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      float d[4][4], e[4][4];
#pragma GCC unroll 4
      for (int a = 0; a < 4; ++a)
#pragma GCC unroll 4
        for (int b = 0; b < 4; ++b) d[a][b] = x[a * rs + b * cs + c];
#pragma GCC unroll 4
      for (int b = 0; b < 4; ++b) {
        e[0][b] = d[0][b] - d[2][b];
        e[1][b] = d[1][b] + d[2][b];
        e[2][b] = d[2][b] - d[1][b];
        e[3][b] = d[1][b] - d[3][b];
      }
#pragma GCC unroll 4
      for (int a = 0; a < 4; ++a) {
        v[(a * 4 + 0) * xs + c] = e[a][0] - e[a][2];
        v[(a * 4 + 1) * xs + c] = e[a][1] + e[a][2];
        v[(a * 4 + 2) * xs + c] = e[a][2] - e[a][1];
        v[(a * 4 + 3) * xs + c] = e[a][1] - e[a][3];
      }
    }
  }

  // vb[(xi * stride_tiles + i) * C + c] = v_xi of channel c for tile i (tile t0 + i, TW tiles
  // a row).
  static void wino_input(const Window& w, const float* x, int64_t C, int64_t TW, int64_t t0,
                         int64_t tt, float* vb, int64_t stride_tiles = WT) {
    for (int64_t i = 0; i < tt; ++i) {
      const int64_t t = t0 + i, ih0 = 2 * (t / TW) - w.PH, iw0 = 2 * (t % TW) - w.PW;
      const float* rowp[4][4];
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) {
          const int64_t ih = ih0 + a, iw = iw0 + b;
          rowp[a][b] = ih >= 0 && ih < w.H && iw >= 0 && iw < w.W
                           ? x + (ih * w.W + iw) * w.C : nullptr;
        }
      float* v = vb + i * C;
      const int64_t xs = stride_tiles * C;  // from one xi to the next
      if (ih0 >= 0 && ih0 + 3 < w.H && iw0 >= 0 && iw0 + 3 < w.W) {
        wino_input_inside(x + (ih0 * w.W + iw0) * w.C, w.W * w.C, w.C, C, xs, v);
        continue;
      }
      for (int64_t c = 0; c < C; ++c) {
        float d[4][4], e[4][4];
        for (int a = 0; a < 4; ++a)
          for (int b = 0; b < 4; ++b) d[a][b] = rowp[a][b] != nullptr ? rowp[a][b][c] : 0.0f;
        for (int b = 0; b < 4; ++b) {  // B^T d
          e[0][b] = d[0][b] - d[2][b];
          e[1][b] = d[1][b] + d[2][b];
          e[2][b] = d[2][b] - d[1][b];
          e[3][b] = d[1][b] - d[3][b];
        }
        for (int a = 0; a < 4; ++a) {  // (B^T d) B
          v[(a * 4 + 0) * xs + c] = e[a][0] - e[a][2];
          v[(a * 4 + 1) * xs + c] = e[a][1] + e[a][2];
          v[(a * 4 + 2) * xs + c] = e[a][2] - e[a][1];
          v[(a * 4 + 3) * xs + c] = e[a][1] - e[a][3];
        }
      }
    }
  }

  // Tiles [t0, t0 + TT), filters [f0, f0 + nf): products, output transform, store or pool.
  template <int TT, bool kRelu>
  static void wino_block(const Window& w, int64_t C, const float* wu, int64_t F, int64_t FP,
                         int64_t f0, int64_t nf, int64_t TW, int64_t t0, const float* vb,
                         bool pooled, float* y, float* idx, float* mb) {
    for (int xi = 0; xi < 16; ++xi) {
      vec acc[TT][NB];
#pragma GCC unroll 16
      for (int r = 0; r < TT; ++r)
        for (int b = 0; b < NB; ++b) acc[r][b] = V::zero();
      const float* u = wu + xi * C * FP + f0;
      const float* v = vb + xi * WT * C;
      for (int64_t c = 0; c < C; ++c) {
        vec wv[NB];
        for (int b = 0; b < NB; ++b) wv[b] = V::loadu(u + c * FP + b * V::W);
#pragma GCC unroll 16
        for (int r = 0; r < TT; ++r) {
          const vec xv = V::set1(v[r * C + c]);
          for (int b = 0; b < NB; ++b) acc[r][b] = V::fmadd(xv, wv[b], acc[r][b]);
        }
      }
#pragma GCC unroll 16
      for (int r = 0; r < TT; ++r)
        for (int b = 0; b < NB; ++b) V::storeu(mb + ((xi * TT + r) * NB + b) * V::W, acc[r][b]);
    }
    const float* bias = wu + 16 * C * FP + f0;
    for (int r = 0; r < TT; ++r) {
      const int64_t t = t0 + r, oh = 2 * (t / TW), ow = 2 * (t % TW);
      for (int b = 0; b < NB; ++b) {
        vec m[16];
        for (int xi = 0; xi < 16; ++xi) m[xi] = V::loadu(mb + ((xi * TT + r) * NB + b) * V::W);
        vec q[2][4];
        for (int j = 0; j < 4; ++j) {  // A^T m
          q[0][j] = V::add(V::add(m[j], m[4 + j]), m[8 + j]);
          q[1][j] = V::sub(V::sub(m[4 + j], m[8 + j]), m[12 + j]);
        }
        const vec bv = V::loadu(bias + b * V::W);
        vec out[4];  // (A^T m) A + bias, row-major in the tile
        for (int a = 0; a < 2; ++a) {
          out[2 * a] = V::add(V::add(V::add(q[a][0], q[a][1]), q[a][2]), bv);
          out[2 * a + 1] = V::add(V::sub(V::sub(q[a][1], q[a][2]), q[a][3]), bv);
        }
        if (kRelu)
          for (vec& o : out) o = V::relu(o);
        const int64_t left = nf - b * V::W;
        if (pooled) {
          vec best = out[0], at = V::zero();
          for (int k = 1; k < 4; ++k) {
            const typename V::mask won = V::beats(out[k], best);
            best = V::select(won, out[k], best);
            at = V::select(won, V::set1(float(k)), at);
          }
          const int64_t o = t * F + f0 + b * V::W;
          store_part(y + o, best, left);
          if (idx != nullptr) store_part(idx + o, at, left);
          continue;
        }
        for (int k = 0; k < 4; ++k) {
          const int64_t h = oh + k / 2, c = ow + k % 2;
          if (h < w.OH && c < w.OW) store_part(y + (h * w.OW + c) * F + f0 + b * V::W, out[k], left);
        }
      }
    }
  }
  template <bool kRelu, int... I>
  static void wino_tail(int tt, std::integer_sequence<int, I...>, const Window& w, int64_t C,
                        const float* wu, int64_t F, int64_t FP, int64_t f0, int64_t nf,
                        int64_t TW, int64_t t0, const float* vb, bool pooled, float* y,
                        float* idx, float* mb) {
    ((tt == I + 1 ? wino_block<I + 1, kRelu>(w, C, wu, F, FP, f0, nf, TW, t0, vb, pooled, y,
                                             idx, mb)
                  : void()),
     ...);
  }
  template <bool kRelu>
  static void wino_as(const Window& w, const float* x, const float* wu, int64_t F, int64_t FP,
                      int64_t POH, int64_t POW, float* y, float* idx) {
    const int64_t C = w.C;
    const bool pooled = POH > 0;
    const int64_t TH = pooled ? POH : (w.OH + 1) / 2, TW = pooled ? POW : (w.OW + 1) / 2;
    thread_local std::vector<float> vbuf;
    alignas(64) thread_local float mbuf[16 * WT * NB * V::W];
    vbuf.resize(size_t(16 * WT * C));
    // Blocks of equal size (25 tiles: 9, 8, 8, not 12, 12, 1: a block of one tile keeps only
    // NB chains of FMAs in flight, latency-bound).
    const int64_t T = TH * TW, nblocks = (T + WT - 1) / WT;
    for (int64_t bi = 0, t0 = 0; bi < nblocks; ++bi) {
      const int tt = int((T * (bi + 1)) / nblocks - (T * bi) / nblocks);
      wino_input(w, x, C, TW, t0, tt, vbuf.data());
      for (int64_t f0 = 0; f0 < F; f0 += FB) {
        const int64_t nf = std::min(FB, F - f0);
        if (tt == WT)
          wino_block<WT, kRelu>(w, C, wu, F, FP, f0, nf, TW, t0, vbuf.data(), pooled, y, idx,
                                mbuf);
        else
          wino_tail<kRelu>(tt, std::make_integer_sequence<int, WT - 1>{}, w, C, wu, F, FP, f0,
                           nf, TW, t0, vbuf.data(), pooled, y, idx, mbuf);
      }
      t0 += tt;
    }
  }
  static void wino_forward(const Window& w, const float* x, const float* wu, int64_t F,
                           int64_t FP, bool relu, int64_t POH, int64_t POW, float* y,
                           float* idx) {
    if (relu) wino_as<true>(w, x, wu, F, FP, POH, POW, y, idx);
    else wino_as<false>(w, x, wu, F, FP, POH, POW, y, idx);
  }

  // The weight gradient's Winograd sums (conv_direct.h, wino_weight_sums): per xi, a block
  // of CB channels x FB filters in registers, one chain of FMAs over every tile of the
  // batch in order (kWinoTiles at a time, their v and z in buffers of 16 x kWinoTiles x
  // (C + F) floats: 300 KB for the MNIST convnet's 32 -> 64 layer, whatever the image size;
  // the chunks do not change the bits, the chain going on through memory).
  static constexpr int64_t kWinoTiles = 100;
  template <int CB>
  static void wino_sum_block(const float* vb, const float* zb, int64_t T, int64_t C,
                             int64_t F, int64_t c0, int64_t f0, int64_t nf, bool first,
                             float* s) {
    vec acc[CB][NB];
#pragma GCC unroll 16
    for (int r = 0; r < CB; ++r)
      for (int b = 0; b < NB; ++b)
        acc[r][b] = first ? V::zero() : load_part(s + (c0 + r) * F + f0 + b * V::W,
                                                  nf - b * V::W);
    for (int64_t t = 0; t < T; ++t) {
      vec zv[NB];
      for (int b = 0; b < NB; ++b) zv[b] = load_part(zb + t * F + f0 + b * V::W, nf - b * V::W);
      const float* v = vb + t * C + c0;
#pragma GCC unroll 16
      for (int r = 0; r < CB; ++r) {
        const vec xv = V::set1(v[r]);
        for (int b = 0; b < NB; ++b) acc[r][b] = V::fmadd(xv, zv[b], acc[r][b]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < CB; ++r)
      for (int b = 0; b < NB; ++b)
        store_part(s + (c0 + r) * F + f0 + b * V::W, acc[r][b], nf - b * V::W);
  }
  template <int... I>
  static void wino_sum_tail(int cb, std::integer_sequence<int, I...>, const float* vb,
                            const float* zb, int64_t T, int64_t C, int64_t F, int64_t c0,
                            int64_t f0, int64_t nf, bool first, float* s) {
    ((cb == I + 1 ? wino_sum_block<I + 1>(vb, zb, T, C, F, c0, f0, nf, first, s) : void()),
     ...);
  }
  static void wino_weight_sums(const Window& w, const float* x, const float* dz, int64_t n,
                               int64_t F, int64_t xi0, int64_t xi1, float* s) {
    const int64_t C = w.C, TH = (w.OH + 1) / 2, TW = (w.OW + 1) / 2, TS = TH * TW;
    const int64_t total = n * TS;
    if (total == 0) {
      std::fill(s + xi0 * C * F, s + xi1 * C * F, 0.0f);
      return;
    }
    thread_local std::vector<float> vbuf, zbuf, zeros;
    zeros.assign(size_t(F), 0.0f);
    vbuf.resize(size_t(16 * kWinoTiles * C));
    zbuf.resize(size_t(16 * kWinoTiles * F));
    const int64_t cblocks = (C + WT - 1) / WT;
    for (int64_t g0 = 0; g0 < total; g0 += kWinoTiles) {
      // The chunk's tiles [g0, g0 + T) of the batch (tile g: sample g / TS, tile g % TS),
      // taken a sample's run at a time.
      const int64_t T = std::min(kWinoTiles, total - g0);
      for (int64_t g = g0; g < g0 + T;) {
        const int64_t smp = g / TS, t = g % TS, len = std::min(TS - t, g0 + T - g);
        wino_input(w, x + smp * w.in_size(), C, TW, t, len, vbuf.data() + (g - g0) * C,
                   kWinoTiles);
        wino_dz(w, dz + smp * w.positions() * F, F, TW, t, len, zeros.data(),
                zbuf.data() + (g - g0) * F, kWinoTiles);
        g += len;
      }
      for (int64_t xi = xi0; xi < xi1; ++xi) {
        const float* vb = vbuf.data() + xi * kWinoTiles * C;
        const float* zb = zbuf.data() + xi * kWinoTiles * F;
        float* sx = s + xi * C * F;
        for (int64_t f0 = 0; f0 < F; f0 += FB) {
          const int64_t nf = std::min(FB, F - f0);
          for (int64_t bi = 0; bi < cblocks; ++bi) {
            const int64_t c0 = C * bi / cblocks, cb = C * (bi + 1) / cblocks - c0;
            if (cb == WT)
              wino_sum_block<WT>(vb, zb, T, C, F, c0, f0, nf, g0 == 0, sx);
            else
              wino_sum_tail(int(cb), std::make_integer_sequence<int, WT - 1>{}, vb, zb, T, C,
                            F, c0, f0, nf, g0 == 0, sx);
          }
        }
      }
    }
  }
  // zb[(xi * stride_tiles + i) * F + f] = (A dz_t A^T)_xi for every xi, tiles t = t0 + i,
  // i < tt, of one sample, dz_t the tile's 2x2 outputs (0 past the output's edge: read from
  // `zeros`).
  //   A = [1 0; 1 1; 1 -1; 0 -1]
  static void wino_dz(const Window& w, const float* dz, int64_t F, int64_t TW, int64_t t0,
                      int64_t tt, const float* zeros, float* zb, int64_t stride_tiles) {
    for (int64_t i = 0; i < tt; ++i) {
      const int64_t t = t0 + i, oh = 2 * (t / TW), ow = 2 * (t % TW);
      const float* p[4];
      for (int k = 0; k < 4; ++k) {
        const int64_t h = oh + k / 2, c = ow + k % 2;
        p[k] = h < w.OH && c < w.OW ? dz + (h * w.OW + c) * F : zeros;
      }
      wino_dz_tile(p[0], p[1], p[2], p[3], F, stride_tiles * F, zb + i * F);
    }
  }
  static void wino_dz_tile(const float* __restrict d00, const float* __restrict d01,
                           const float* __restrict d10, const float* __restrict d11, int64_t F,
                           int64_t xs, float* __restrict z) {
#pragma GCC ivdep
    for (int64_t f = 0; f < F; ++f) {
      const float a = d00[f], b = d01[f], c = d10[f], d = d11[f];
      const float e[4][2] = {{a, b}, {a + c, b + d}, {a - c, b - d}, {-c, -d}};  // A dz
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {  // (A dz) A^T
        z[(4 * r + 0) * xs + f] = e[r][0];
        z[(4 * r + 1) * xs + f] = e[r][0] + e[r][1];
        z[(4 * r + 2) * xs + f] = e[r][0] - e[r][1];
        z[(4 * r + 3) * xs + f] = -e[r][1];
      }
    }
  }

  static const DirectConvKernels* table() {
    static const DirectConvKernels t{&forward, &weight_grad, &forward_pool, &weight_grad_pool,
                                     &wino_forward, &wino_weight_sums};
    return &t;
  }
};

}  // namespace pynn::nn::direct_impl

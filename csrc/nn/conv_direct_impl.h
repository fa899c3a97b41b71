// The direct convolution kernels of conv_direct.h, written once over a small vector
// interface `V` and instantiated by conv_direct_avx512.cpp and conv_direct_avx2.cpp (each
// compiled with its own ISA flags). Include only from those files.
//
// V provides: type vec, W (lanes), R (output positions a forward block keeps in registers)
// and KB (kernel rows a weight-gradient block keeps), each times NB = 2 vectors of filters;
// zero, set1, loadu, storeu, fmadd(a, b, c) = a*b + c, loadn / storen (the first k lanes,
// k in [1, W], nothing past them touched), relu (x where x > 0 or NaN, else +0),
// where_pos(g, y) (g where y > 0, else +0).
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

  // Filters [f0, f0 + nf) of RR output positions (oh, ow0 .. ow0 + RR - 1).
  template <int RR, bool kRelu>
  static inline void fwd_block(const Window& w, const int64_t* off, int64_t K, const float* x,
                               const float* wp, int64_t FP, int64_t F, int64_t f0, int64_t nf,
                               int64_t oh, int64_t ow0, float* y) {
    vec acc[RR][NB];
    const float* bias = wp + K * FP + f0;
    for (int b = 0; b < NB; ++b) {
      const vec bv = V::loadu(bias + b * V::W);
      for (int r = 0; r < RR; ++r) acc[r][b] = bv;
    }
    const int64_t ih0 = oh * w.SH - w.PH, iw0 = ow0 * w.SW - w.PW;
    const int64_t step = w.SW * w.C;
    const bool inside = ih0 >= 0 && ih0 + (w.KH - 1) * w.DH < w.H && iw0 >= 0 &&
                        iw0 + (RR - 1) * w.SW + (w.KW - 1) * w.DW < w.W;
    if (inside) {
      const float* corner = x + (ih0 * w.W + iw0) * w.C;
      for (int64_t k = 0; k < K; ++k) {
        const float* wk = wp + k * FP + f0;
        vec wv[NB];
        for (int b = 0; b < NB; ++b) wv[b] = V::loadu(wk + b * V::W);
        const float* p = corner + off[k];
#pragma GCC unroll 16
        for (int r = 0; r < RR; ++r) {
          const vec xv = V::set1(p[r * step]);
          for (int b = 0; b < NB; ++b) acc[r][b] = V::fmadd(xv, wv[b], acc[r][b]);
        }
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        const float* wk = wp + k * FP + f0;
        vec wv[NB];
        for (int b = 0; b < NB; ++b) wv[b] = V::loadu(wk + b * V::W);
        const int64_t tap = k / w.C, c = k % w.C;
        const int64_t ih = ih0 + (tap / w.KW) * w.DH, dw = (tap % w.KW) * w.DW;
        const bool row_in = ih >= 0 && ih < w.H;
        for (int r = 0; r < RR; ++r) {
          const int64_t iw = iw0 + r * w.SW + dw;
          const float v = row_in && iw >= 0 && iw < w.W ? x[(ih * w.W + iw) * w.C + c] : 0.0f;
          const vec xv = V::set1(v);
          for (int b = 0; b < NB; ++b) acc[r][b] = V::fmadd(xv, wv[b], acc[r][b]);
        }
      }
    }
    for (int r = 0; r < RR; ++r) {
      float* yr = y + (oh * w.OW + ow0 + r) * F + f0;
      for (int b = 0; b < NB; ++b) {
        if (kRelu) acc[r][b] = V::relu(acc[r][b]);
        const int64_t left = nf - b * V::W;
        if (left >= V::W) V::storeu(yr + b * V::W, acc[r][b]);
        else if (left > 0) V::storen(yr + b * V::W, acc[r][b], int(left));
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

  // dw rows [k0, k0 + KK) x filters [f0, f0 + nf), summed over every output position.
  // With y, relu's derivative masks dz as it is loaded; with db, the block also sums dz.
  template <int KK>
  static void dw_block(const Window& w, const int64_t* off, const float* x, const float* dz,
                       const float* y, int64_t F, int64_t f0, int64_t nf, int64_t k0,
                       float* dw, float* db) {
    vec acc[KK][NB], dsum[NB];
    for (int b = 0; b < NB; ++b) dsum[b] = V::zero();
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
        const int64_t at = (oh * w.OW + ow) * F + f0;
        vec dv[NB];
        for (int b = 0; b < NB; ++b) {
          const int64_t left = nf - b * V::W;
          const int64_t e = at + b * V::W;
          dv[b] = left >= V::W ? V::loadu(dz + e)
                               : left > 0 ? V::loadn(dz + e, int(left)) : V::zero();
          if (y != nullptr) {
            const vec yv = left >= V::W ? V::loadu(y + e)
                                        : left > 0 ? V::loadn(y + e, int(left)) : V::zero();
            dv[b] = V::where_pos(dv[b], yv);
          }
          if (db != nullptr) dsum[b] = V::add(dsum[b], dv[b]);
        }
        if (rows_in && iw0 >= 0 && iw0 + max_dw < w.W) {
          const float* corner = x + (ih0 * w.W + iw0) * w.C;
#pragma GCC unroll 16
          for (int i = 0; i < KK; ++i) {
            const vec xv = V::set1(corner[o[i]]);
            for (int b = 0; b < NB; ++b) acc[i][b] = V::fmadd(xv, dv[b], acc[i][b]);
          }
        } else {
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
    for (int i = 0; i <= KK; ++i) {
      if (i == KK && db == nullptr) break;
      float* row = i < KK ? dw + (k0 + i) * F + f0 : db + f0;
      for (int b = 0; b < NB; ++b) {
        const vec v = i < KK ? acc[i][b] : dsum[b];
        const int64_t left = nf - b * V::W;
        if (left >= V::W) V::storeu(row + b * V::W, v);
        else if (left > 0) V::storen(row + b * V::W, v, int(left));
      }
    }
  }

  // A block of kb < KB rows (the last one): its exact size, so no accumulator is wasted.
  template <int... I>
  static void dw_tail(int kb, std::integer_sequence<int, I...>, const Window& w,
                      const int64_t* off, const float* x, const float* dz, const float* y,
                      int64_t F, int64_t f0, int64_t nf, int64_t k0, float* dw, float* db) {
    ((kb == I + 1 ? dw_block<I + 1>(w, off, x, dz, y, F, f0, nf, k0, dw, db) : void()), ...);
  }

  // db is summed by the first block of rows only.
  static void weight_grad(const Window& w, const int64_t* off, int64_t K, const float* x,
                          const float* dz, const float* y, int64_t F, float* dw, float* db) {
    for (int64_t f0 = 0; f0 < F; f0 += FB) {
      const int64_t nf = std::min(FB, F - f0);
      int64_t k0 = 0;
      for (; k0 + V::KB <= K; k0 += V::KB)
        dw_block<V::KB>(w, off, x, dz, y, F, f0, nf, k0, dw, k0 == 0 ? db : nullptr);
      if (k0 < K)
        dw_tail(int(K - k0), std::make_integer_sequence<int, V::KB - 1>{}, w, off, x, dz, y,
                F, f0, nf, k0, dw, k0 == 0 ? db : nullptr);
    }
  }

  static const DirectConvKernels* table() {
    static const DirectConvKernels t{&forward, &weight_grad};
    return &t;
  }
};

}  // namespace pynn::nn::direct_impl

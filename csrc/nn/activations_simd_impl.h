// The body of the vectorised activations, written once over a small vector interface `V`
// and instantiated by activations_avx512.cpp and activations_avx2.cpp (each compiled with its
// own ISA flags). Include only from those files.
//
// V provides: type v, W (lanes), load/store (unaligned), loadn/storen (first k < W lanes,
// nothing past them read or written), set1, add, sub, mul, div, fma(a, b, c) = a*b + c,
// max, min, abs, neg_abs (-|x|), copysign(mag, sgn), round (to nearest), a mask type with
// cmp_gt / cmp_lt, select(mask, a, b) (a where the mask is set), pow2i(n) = 2^n for
// integral-valued n in [-126, 127]. min/max follow x86: when either operand is NaN the
// second is returned, so clamps are written min(const, x) to let a NaN through.
//
// Invariants: every kernel handles any n >= 0 (a masked tail, never reading past n); results
// agree with the scalar kernels to a few float32 ulps (relu: exactly); exp never overflows
// internally; a NaN input gives a NaN output, as in the scalar kernels (a diverging model must
// stay visible).
#pragma once
#include <cstdint>

#include "nn/activations_simd.h"

namespace pynn::nn::simd_impl {

template <class V>
struct Kernels {
  using v = typename V::v;

  // e^x: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for e^r,
  // then scaling by 2^n. Inputs are clamped so the scale stays a normal number; below -87.3
  // the result is flushed to 0 (expf would give a denormal) and above 88.72 it is +inf.
  static inline v exp(v x) {
    const v hi = V::set1(88.72283f), lo = V::set1(-87.33654f);
    const v xc = V::min(hi, V::max(lo, x));  // NaN stays NaN (see V)
    const v n = V::round(V::mul(xc, V::set1(1.44269504088896341f)));
    v r = V::fma(n, V::set1(-0.693359375f), xc);
    r = V::fma(n, V::set1(2.12194440e-4f), r);
    v p = V::set1(1.9875691500e-4f);
    p = V::fma(p, r, V::set1(1.3981999507e-3f));
    p = V::fma(p, r, V::set1(8.3334519073e-3f));
    p = V::fma(p, r, V::set1(4.1665795894e-2f));
    p = V::fma(p, r, V::set1(1.6666665459e-1f));
    p = V::fma(p, r, V::set1(5.0000001201e-1f));
    p = V::fma(p, V::mul(r, r), V::add(r, V::set1(1.0f)));
    // n reaches 128 just below the overflow threshold, where 2^n is not a float: scale by
    // 2^min(n, 127) and then by the remaining factor 1 or 2.
    const v n1 = V::min(n, V::set1(127.0f));
    v e = V::mul(V::mul(p, V::pow2i(n1)), V::add(V::sub(n, n1), V::set1(1.0f)));
    e = V::select(V::cmp_lt(x, lo), V::set1(0.0f), e);
    e = V::select(V::cmp_gt(x, hi), V::set1(__builtin_inff()), e);
    return e;
  }
  // sigmoid through e^-|x| in (0, 1], as in the scalar kernel.
  static inline v sigmoid(v x) {
    const v e = exp(V::neg_abs(x));
    const v s = V::div(V::set1(1.0f), V::add(V::set1(1.0f), e));
    return V::select(V::cmp_lt(x, V::set1(0.0f)), V::mul(e, s), s);
  }
  // tanh: an odd Taylor polynomial for |x| < 0.25 (where 1 - e^-2|x| would cancel), else
  // sign(x) (1 - e) / (1 + e) with e = e^-2|x| in (0, 1).
  static inline v tanh(v x) {
    const v ax = V::abs(x);
    const v e = exp(V::mul(ax, V::set1(-2.0f)));
    const v big = V::div(V::sub(V::set1(1.0f), e), V::add(V::set1(1.0f), e));
    const v x2 = V::mul(x, x);
    v p = V::set1(62.0f / 2835.0f);
    p = V::fma(p, x2, V::set1(-17.0f / 315.0f));
    p = V::fma(p, x2, V::set1(2.0f / 15.0f));
    p = V::fma(p, x2, V::set1(-1.0f / 3.0f));
    const v small = V::fma(V::mul(p, x2), ax, ax);
    return V::copysign(V::select(V::cmp_lt(ax, V::set1(0.25f)), small, big), x);
  }
  // e^x - 1 for x <= 0 (the elu branch): a Taylor polynomial near 0 avoids cancellation.
  static inline v expm1_neg(v x) {
    const v e = V::sub(exp(x), V::set1(1.0f));
    v p = V::set1(1.0f / 40320.0f);
    p = V::fma(p, x, V::set1(1.0f / 5040.0f));
    p = V::fma(p, x, V::set1(1.0f / 720.0f));
    p = V::fma(p, x, V::set1(1.0f / 120.0f));
    p = V::fma(p, x, V::set1(1.0f / 24.0f));
    p = V::fma(p, x, V::set1(1.0f / 6.0f));
    p = V::fma(p, x, V::set1(0.5f));
    const v small = V::fma(V::mul(p, x), x, x);
    return V::select(V::cmp_gt(x, V::set1(-0.25f)), small, e);
  }
  // log1p(e^-|x|) needs a log; softplus is rarely a hot path, so it uses
  // max(x,0) + log(1 + e^-|x|) with a vector log built from the float's exponent.
  static inline v log1p_small(v u) {  // log(1 + u) for u in [0, 1]
    // log(1+u) = 2 atanh(s), s = u / (2 + u) in [0, 1/3]: an odd series converges fast.
    const v s = V::div(u, V::add(V::set1(2.0f), u));
    const v s2 = V::mul(s, s);
    v p = V::set1(2.0f / 13.0f);
    p = V::fma(p, s2, V::set1(2.0f / 11.0f));
    p = V::fma(p, s2, V::set1(2.0f / 9.0f));
    p = V::fma(p, s2, V::set1(2.0f / 7.0f));
    p = V::fma(p, s2, V::set1(2.0f / 5.0f));
    p = V::fma(p, s2, V::set1(2.0f / 3.0f));
    p = V::fma(p, s2, V::set1(2.0f));
    return V::mul(p, s);
  }
  static inline v softplus(v x) {
    return V::add(V::max(V::set1(0.0f), x), log1p_small(exp(V::neg_abs(x))));
  }

  // f on every lane, NaN lanes passed through unchanged (as the scalar kernels do).
  template <class F>
  static inline v nan_through(v xv, F f) { return V::select(V::isnan(xv), xv, f(xv)); }
  template <class F>
  static inline void map(float* x, int64_t n, F f) {
    int64_t i = 0;
    for (; i + V::W <= n; i += V::W) V::store(x + i, nan_through(V::load(x + i), f));
    if (i < n) V::storen(x + i, nan_through(V::loadn(x + i, n - i), f), n - i);
  }
  // dz = dy * g(z, y)
  template <class G>
  static inline void grad(const float* z, const float* y, const float* dy, float* dz, int64_t n,
                          G g) {
    int64_t i = 0;
    for (; i + V::W <= n; i += V::W)
      V::store(dz + i, V::mul(V::load(dy + i), g(V::load(z + i), V::load(y + i))));
    if (i < n) {
      const int64_t k = n - i;
      V::storen(dz + i, V::mul(V::loadn(dy + i, k), g(V::loadn(z + i, k), V::loadn(y + i, k))),
                k);
    }
  }

  // relu: exact (a select, no arithmetic), so bitwise the scalar kernel: -0 and negatives
  // give +0, NaN passes through; backward passes dy where z > 0 and writes an exact 0
  // elsewhere (never dy * 0, which would turn an infinite dy into NaN).
  static void relu_fwd(float* x, int64_t n, const float*) {
    map(x, n, [](v xv) { return V::select(V::cmp_gt(xv, V::set1(0.0f)), xv, V::set1(0.0f)); });
  }
  static void relu_bwd(const float* z, const float*, const float* dy, float* dz, int64_t n,
                       const float*) {
    const v zero = V::set1(0.0f);
    int64_t i = 0;
    for (; i + V::W <= n; i += V::W)
      V::store(dz + i, V::select(V::cmp_gt(V::load(z + i), zero), V::load(dy + i), zero));
    if (i < n) {
      const int64_t k = n - i;
      V::storen(dz + i, V::select(V::cmp_gt(V::loadn(z + i, k), zero), V::loadn(dy + i, k), zero),
                k);
    }
  }
  static void sigmoid_fwd(float* x, int64_t n, const float*) { map(x, n, sigmoid); }
  static void sigmoid_bwd(const float* z, const float* y, const float* dy, float* dz, int64_t n,
                          const float*) {
    grad(z, y, dy, dz, n, [](v, v yv) { return V::mul(yv, V::sub(V::set1(1.0f), yv)); });
  }
  static void tanh_fwd(float* x, int64_t n, const float*) { map(x, n, tanh); }
  static void tanh_bwd(const float* z, const float* y, const float* dy, float* dz, int64_t n,
                       const float*) {
    grad(z, y, dy, dz, n, [](v, v yv) { return V::fma(V::mul(yv, yv), V::set1(-1.0f),
                                                      V::set1(1.0f)); });
  }
  static void silu_fwd(float* x, int64_t n, const float*) {
    map(x, n, [](v xv) { return V::mul(xv, sigmoid(xv)); });
  }
  static void silu_bwd(const float* z, const float* y, const float* dy, float* dz, int64_t n,
                       const float*) {
    grad(z, y, dy, dz, n, [](v zv, v) {
      const v s = sigmoid(zv);
      return V::mul(s, V::fma(zv, V::sub(V::set1(1.0f), s), V::set1(1.0f)));
    });
  }
  static void elu_fwd(float* x, int64_t n, const float* p) {
    const v a = V::set1(p[0]);
    map(x, n, [a](v xv) {
      const v neg = V::mul(a, expm1_neg(V::min(V::set1(0.0f), xv)));
      return V::select(V::cmp_gt(xv, V::set1(0.0f)), xv, neg);
    });
  }
  static void elu_bwd(const float* z, const float* y, const float* dy, float* dz, int64_t n,
                      const float* p) {
    const v a = V::set1(p[0]);
    grad(z, y, dy, dz, n, [a](v zv, v) {
      return V::select(V::cmp_gt(zv, V::set1(0.0f)), V::set1(1.0f),
                       V::mul(a, exp(V::min(V::set1(0.0f), zv))));
    });
  }
  static void selu_fwd(float* x, int64_t n, const float*) {
    const float alpha = 1.6732632423543772848170429916717f;
    const float scale = 1.0507009873554804934193349852946f;
    elu_fwd(x, n, &alpha);
    map(x, n, [scale](v xv) { return V::mul(xv, V::set1(scale)); });
  }
  static void selu_bwd(const float* z, const float* y, const float* dy, float* dz, int64_t n,
                       const float*) {
    const v a = V::set1(1.6732632423543772848170429916717f);
    const v sc = V::set1(1.0507009873554804934193349852946f);
    grad(z, y, dy, dz, n, [a, sc](v zv, v) {
      return V::mul(sc, V::select(V::cmp_gt(zv, V::set1(0.0f)), V::set1(1.0f),
                                  V::mul(a, exp(V::min(V::set1(0.0f), zv)))));
    });
  }
  static void softplus_fwd(float* x, int64_t n, const float* p) {
    const v b = V::set1(p[0]), ib = V::set1(1.0f / p[0]);
    map(x, n, [b, ib](v xv) { return V::mul(softplus(V::mul(b, xv)), ib); });
  }
  static void softplus_bwd(const float* z, const float* y, const float* dy, float* dz, int64_t n,
                           const float* p) {
    const v b = V::set1(p[0]);
    grad(z, y, dy, dz, n, [b](v zv, v) { return sigmoid(V::mul(b, zv)); });
  }
  static void exponential_fwd(float* x, int64_t n, const float*) { map(x, n, exp); }
  // mish: tanh(softplus(x)) = m / (m + 2) with m = e^x (e^x + 2); exactly 1 in float above 20.
  static inline v mish_t(v x) {
    const v e = exp(V::min(V::set1(20.0f), x));
    const v m = V::mul(e, V::add(e, V::set1(2.0f)));
    return V::select(V::cmp_gt(x, V::set1(20.0f)), V::set1(1.0f),
                     V::div(m, V::add(m, V::set1(2.0f))));
  }
  static void mish_fwd(float* x, int64_t n, const float*) {
    map(x, n, [](v xv) { return V::mul(xv, mish_t(xv)); });
  }
  static void mish_bwd(const float* z, const float* y, const float* dy, float* dz, int64_t n,
                       const float*) {
    grad(z, y, dy, dz, n, [](v zv, v) {
      const v t = mish_t(zv);
      const v one_t2 = V::fma(V::mul(t, t), V::set1(-1.0f), V::set1(1.0f));
      return V::fma(V::mul(zv, sigmoid(zv)), one_t2, t);
    });
  }

  // gelu, tanh form only: x sigmoid(2u), u = sqrt(2/pi)(x + 0.044715 x^3); as in the scalar
  // kernel, |x| > 10 gives exactly relu(x) / the step, and x is clamped first so x^3 stays
  // finite. (The exact erf form stays scalar: see activations.cpp.)
  static inline v gelu_u2(v x) {
    const v xc = V::min(V::set1(10.0f), V::max(V::set1(-10.0f), x));
    const v inner = V::fma(V::mul(V::set1(0.044715f), V::mul(xc, xc)), xc, xc);
    return V::mul(inner, V::set1(2.0f * 0.79788456080286535588f));
  }
  static void gelu_tanh_fwd(float* x, int64_t n, const float*) {
    map(x, n, [](v xv) {
      const v y = V::mul(xv, sigmoid(gelu_u2(xv)));
      const v big = V::select(V::cmp_gt(xv, V::set1(0.0f)), xv, V::set1(0.0f));
      return V::select(V::cmp_gt(V::abs(xv), V::set1(10.0f)), big, y);
    });
  }
  static void gelu_tanh_bwd(const float* z, const float* y, const float* dy, float* dz, int64_t n,
                            const float*) {
    grad(z, y, dy, dz, n, [](v x, v) {
      const v u2 = gelu_u2(x);
      const v e = exp(V::neg_abs(u2));
      const v hi = V::div(V::set1(1.0f), V::add(V::set1(1.0f), e)), lo = V::mul(e, hi);
      const v s = V::select(V::cmp_lt(u2, V::set1(0.0f)), lo, hi);
      // s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2), with s (1 - s) = hi * lo
      const v du = V::mul(V::set1(2.0f * 0.79788456080286535588f),
                          V::fma(V::set1(3.0f * 0.044715f), V::mul(x, x), V::set1(1.0f)));
      const v d = V::fma(V::mul(x, V::mul(hi, lo)), du, s);
      const v step = V::select(V::cmp_gt(x, V::set1(0.0f)), V::set1(1.0f), V::set1(0.0f));
      return V::select(V::cmp_gt(V::abs(x), V::set1(10.0f)), step, d);
    });
  }

  static const SimdActivation* table() {
    static const SimdActivation t[] = {
        {"relu", relu_fwd, relu_bwd},
        {"sigmoid", sigmoid_fwd, sigmoid_bwd},
        {"tanh", tanh_fwd, tanh_bwd},
        {"silu", silu_fwd, silu_bwd},
        {"swish", silu_fwd, silu_bwd},
        {"elu", elu_fwd, elu_bwd},
        {"selu", selu_fwd, selu_bwd},
        {"softplus", softplus_fwd, softplus_bwd},
        {"exponential", exponential_fwd, nullptr},  // backward stays scalar (dy == 0 rule)
        {"mish", mish_fwd, mish_bwd},
        {"gelu_tanh", gelu_tanh_fwd, gelu_tanh_bwd},  // used by gelu(approximate=True)
        {nullptr, nullptr, nullptr},
    };
    return t;
  }
};

}  // namespace pynn::nn::simd_impl

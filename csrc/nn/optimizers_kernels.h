// The element loops of the optimizers, written once and compiled once per instruction set:
// optimizers.cpp (portable), optimizers_avx2.cpp and optimizers_avx512.cpp each include this
// header and get their own copy of the loops (anonymous namespace: internal linkage, so the
// linker can never hand an AVX-512 copy to a CPU without AVX-512).
//
// Invariants of every loop below:
//   - one pass: element i of the parameter, the gradient and each slot is read once and the
//     parameter and slots written once; no element depends on another, so any split of [0, n)
//     among threads gives bitwise the same result;
//   - the arithmetic follows Keras 3's update_step expression by expression, in float32, with
//     the per-step scalars (bias corrections, Nadam's momentum products) precomputed in double
//     by optimizers.cpp and rounded once to float;
//   - the gradient is first multiplied by `scale` (norm clipping) and then clamped to
//     [-clip, clip] (clip = +inf when clipvalue is off, which leaves NaN and every finite g as
//     they are); weight decay, when on, is w - w*wd*lr before the update, as Keras applies it;
//   - a slot value below the smallest normal float is stored as 0 (fp::flush_subnormal): a
//     moment that decays towards 0 would otherwise sit in the subnormal range for good and
//     cost every later step a microcode assist (common/fpenv.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/fpenv.h"
#include "nn/optimizers.h"

namespace pynn::nn {

// Everything a loop needs, in float32; built once per step and tensor.
struct UpdateCoeffs {
  OptKind kind = OptKind::sgd;
  float lr = 0, wd = 0, scale = 1, clip = INFINITY;
  float momentum = 0, rho = 0, one_minus_rho = 0, epsilon = 0;
  float one_minus_beta_1 = 0, one_minus_beta_2 = 0, beta_2 = 0;
  float alpha = 0;        // adam: lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  float m_coef = 0;       // nadam: u_{t+1} / (1 - prod_{t+1})
  float g_coef = 0;       // nadam: (1 - u_t) / (1 - prod_t)
  float v_coef = 0;       // nadam: 1 / (1 - beta_2^t)
  float bias_1 = 0;       // adamax: 1 - beta_1^t
  bool nesterov = false, centered = false, amsgrad = false, has_momentum = false;
};

using UpdateKernel = void (*)(const UpdateCoeffs&, float*, const float*, float* const*, int64_t);
void update_generic(const UpdateCoeffs& c, float* w, const float* g, float* const* s, int64_t n);
void update_avx2(const UpdateCoeffs& c, float* w, const float* g, float* const* s, int64_t n);
void update_avx512(const UpdateCoeffs& c, float* w, const float* g, float* const* s, int64_t n);

#ifdef PYNN_OPTIMIZER_KERNELS_BODY
namespace {

inline float clipped(float g, float scale, float clip) {
  return std::min(std::max(g * scale, -clip), clip);
}

// Runs `body(i, w_i, g_i) -> new w_i` over [0, n); the weight-decay branch is outside the loop
// so that with decay off w is never touched by it (w*0 would turn an inf weight into NaN).
// The coefficients are copied to locals first: read through `c` inside the loop, the compiler
// must assume that the stores to w and the slots may change them, and loads them again (and
// negates the clip bound) for every vector.
template <class Body>
inline void each(const UpdateCoeffs& c, float* w, const float* g, int64_t n, Body body) {
  const float scale = c.scale, clip = c.clip, wd = c.wd, lr = c.lr;
  if (wd != 0.0f) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      float wi = w[i];
      wi = wi - wi * wd * lr;
      w[i] = body(i, wi, clipped(g[i], scale, clip));
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) w[i] = body(i, w[i], clipped(g[i], scale, clip));
  }
}

inline void sgd(const UpdateCoeffs& c, float* w, const float* g, float* const* s, int64_t n) {
  const float lr = c.lr, mu = c.momentum;
  if (!c.has_momentum) {
    each(c, w, g, n, [=](int64_t, float wi, float gi) { return wi - gi * lr; });
    return;
  }
  float* m = s[0];
  if (c.nesterov) {
    each(c, w, g, n, [=](int64_t i, float wi, float gi) {
      const float mi = fp::flush_subnormal(m[i] * mu - gi * lr);
      m[i] = mi;
      return wi + (mi * mu - gi * lr);
    });
  } else {
    each(c, w, g, n, [=](int64_t i, float wi, float gi) {
      const float mi = fp::flush_subnormal(m[i] * mu - gi * lr);
      m[i] = mi;
      return wi + mi;
    });
  }
}

inline void adagrad(const UpdateCoeffs& c, float* w, const float* g, float* const* s,
                    int64_t n) {
  const float lr = c.lr, eps = c.epsilon;
  float* acc = s[0];
  each(c, w, g, n, [=](int64_t i, float wi, float gi) {
    const float a = fp::flush_subnormal(acc[i] + gi * gi);
    acc[i] = a;
    return wi - (lr * gi) / std::sqrt(a + eps);
  });
}

inline void adadelta(const UpdateCoeffs& c, float* w, const float* g, float* const* s,
                     int64_t n) {
  const float lr = c.lr, eps = c.epsilon, rho = c.rho, r1 = c.one_minus_rho;
  float* ag = s[0];
  float* ad = s[1];
  each(c, w, g, n, [=](int64_t i, float wi, float gi) {
    const float a = fp::flush_subnormal(rho * ag[i] + r1 * (gi * gi));
    ag[i] = a;
    const float d = ad[i];
    const float delta = -((std::sqrt(d + eps) * gi) / std::sqrt(a + eps));
    ad[i] = fp::flush_subnormal(rho * d + r1 * (delta * delta));
    return wi + lr * delta;
  });
}

template <bool kMomentum, bool kCentered>
inline void rmsprop_t(const UpdateCoeffs& c, float* w, const float* g, float* const* s,
                      int64_t n) {
  const float lr = c.lr, eps = c.epsilon, rho = c.rho, r1 = c.one_minus_rho, mu = c.momentum;
  float* vel = s[0];
  float* mom = kMomentum ? s[1] : nullptr;
  float* avg = kCentered ? s[kMomentum ? 2 : 1] : nullptr;
  each(c, w, g, n, [=](int64_t i, float wi, float gi) {
    const float v = fp::flush_subnormal(rho * vel[i] + r1 * (gi * gi));
    vel[i] = v;
    float den;
    if constexpr (kCentered) {
      const float a = fp::flush_subnormal(rho * avg[i] + r1 * gi);
      avg[i] = a;
      den = v - a * a + eps;
    } else {
      den = v + eps;
    }
    const float inc = (lr * gi) / std::sqrt(den);
    if constexpr (kMomentum) {
      const float m = fp::flush_subnormal(mu * mom[i] + inc);
      mom[i] = m;
      return wi - m;
    } else {
      return wi - inc;
    }
  });
}

inline void rmsprop(const UpdateCoeffs& c, float* w, const float* g, float* const* s,
                    int64_t n) {
  if (c.has_momentum) {
    c.centered ? rmsprop_t<true, true>(c, w, g, s, n) : rmsprop_t<true, false>(c, w, g, s, n);
  } else {
    c.centered ? rmsprop_t<false, true>(c, w, g, s, n) : rmsprop_t<false, false>(c, w, g, s, n);
  }
}

inline void adam(const UpdateCoeffs& c, float* w, const float* g, float* const* s, int64_t n) {
  const float b1 = c.one_minus_beta_1, b2 = c.one_minus_beta_2, alpha = c.alpha,
              eps = c.epsilon;
  float* m = s[0];
  float* v = s[1];
  if (c.amsgrad) {
    float* vh = s[2];
    each(c, w, g, n, [=](int64_t i, float wi, float gi) {
      const float mi = fp::flush_subnormal(m[i] + (gi - m[i]) * b1);
      const float vi = fp::flush_subnormal(v[i] + (gi * gi - v[i]) * b2);
      const float hi = std::max(vh[i], vi);
      m[i] = mi;
      v[i] = vi;
      vh[i] = hi;
      return wi - (mi * alpha) / (std::sqrt(hi) + eps);
    });
  } else {
    each(c, w, g, n, [=](int64_t i, float wi, float gi) {
      const float mi = fp::flush_subnormal(m[i] + (gi - m[i]) * b1);
      const float vi = fp::flush_subnormal(v[i] + (gi * gi - v[i]) * b2);
      m[i] = mi;
      v[i] = vi;
      return wi - (mi * alpha) / (std::sqrt(vi) + eps);
    });
  }
}

inline void nadam(const UpdateCoeffs& c, float* w, const float* g, float* const* s, int64_t n) {
  const float b1 = c.one_minus_beta_1, b2 = c.one_minus_beta_2, lr = c.lr, eps = c.epsilon;
  const float mc = c.m_coef, gc = c.g_coef, vc = c.v_coef;
  float* m = s[0];
  float* v = s[1];
  each(c, w, g, n, [=](int64_t i, float wi, float gi) {
    const float mi = fp::flush_subnormal(m[i] + (gi - m[i]) * b1);
    const float vi = fp::flush_subnormal(v[i] + (gi * gi - v[i]) * b2);
    m[i] = mi;
    v[i] = vi;
    const float m_hat = mc * mi + gc * gi;
    const float v_hat = vi * vc;
    return wi - (m_hat * lr) / (std::sqrt(v_hat) + eps);
  });
}

inline void adamax(const UpdateCoeffs& c, float* w, const float* g, float* const* s,
                   int64_t n) {
  const float b1 = c.one_minus_beta_1, beta_2 = c.beta_2, lr = c.lr, eps = c.epsilon,
              bias = c.bias_1;
  float* m = s[0];
  float* u = s[1];
  each(c, w, g, n, [=](int64_t i, float wi, float gi) {
    const float mi = fp::flush_subnormal(m[i] + (gi - m[i]) * b1);
    const float ui = fp::flush_subnormal(std::max(beta_2 * u[i], std::fabs(gi)));
    m[i] = mi;
    u[i] = ui;
    return wi - (lr * mi) / (bias * (ui + eps));
  });
}

inline void update_any(const UpdateCoeffs& c, float* w, const float* g, float* const* s,
                       int64_t n) {
  switch (c.kind) {
    case OptKind::sgd: sgd(c, w, g, s, n); break;
    case OptKind::adagrad: adagrad(c, w, g, s, n); break;
    case OptKind::adadelta: adadelta(c, w, g, s, n); break;
    case OptKind::rmsprop: rmsprop(c, w, g, s, n); break;
    case OptKind::adam:
    case OptKind::adamw: adam(c, w, g, s, n); break;
    case OptKind::nadam: nadam(c, w, g, s, n); break;
    case OptKind::adamax: adamax(c, w, g, s, n); break;
  }
}

}  // namespace
#endif  // PYNN_OPTIMIZER_KERNELS_BODY

}  // namespace pynn::nn

// Bodies of the LSTM loops declared in rnn_cells.h: plain loops over restrict-qualified rows,
// which each including file (one per ISA) vectorises with its own flags. Include only from
// rnn_cells*.cpp.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "nn/rnn_cells.h"

namespace pynn::nn {
namespace {

void lstm_cell(int64_t u, const float* __restrict gi, const float* __restrict gf,
               const float* __restrict gc, const float* __restrict cp, float* __restrict c,
               float* __restrict tc) {
  for (int64_t j = 0; j < u; ++j) tc[j] = c[j] = gf[j] * cp[j] + gi[j] * gc[j];
}

void lstm_out(int64_t u, const float* __restrict go, const float* __restrict tc,
              float* __restrict h) {
  for (int64_t j = 0; j < u; ++j) h[j] = go[j] * tc[j];
}

void lstm_dh_to_gates(int64_t u, const float* __restrict dh, const float* __restrict tc,
                      const float* __restrict go, float* __restrict dzo, float* __restrict dtc) {
  for (int64_t j = 0; j < u; ++j) {
    dzo[j] = dh[j] * tc[j];
    dtc[j] = dh[j] * go[j];
  }
}

void lstm_dc_to_gates(int64_t u, const float* __restrict gi, const float* __restrict gf,
                      const float* __restrict gc, const float* __restrict cp,
                      float* __restrict dzi, float* __restrict dzf, float* __restrict dzc,
                      float* __restrict dc, float* __restrict dh) {
  for (int64_t j = 0; j < u; ++j) {
    const float d = dc[j] + dzc[j];
    dzi[j] = d * gc[j];
    dzf[j] = d * cp[j];
    dzc[j] = d * gi[j];
    dc[j] = d * gf[j];
    dh[j] = 0.0f;
  }
}

void add_rows(float* __restrict d, const float* __restrict s, int64_t k) {
  for (int64_t j = 0; j < k; ++j) d[j] += s[j];
}

// Element-wise math written so that the loops below vectorise (no calls, no branches: both
// sides of a choice are computed and one is selected). Accuracy: a few float32 ulps, as the
// activation kernels (nn/activations_simd_impl.h), whose reduction and polynomial exp_neg
// repeats.

// 1 / d for d in [1, 2]: the linear minimax start 24/17 - 8/17 d (relative error <= 1/17),
// then three Newton steps r += r (1 - d r), each squaring the error (to ~1e-10, below the
// final rounding). Saves the divider, which is a tenth of the FMA units' rate.
inline float recip_1_2(float d) {
  float r = 24.0f / 17.0f - 8.0f / 17.0f * d;
  r = r + r * (1.0f - d * r);
  r = r + r * (1.0f - d * r);
  r = r + r * (1.0f - d * r);
  return r;
}

// e^x for x <= 0 (or NaN, which comes out NaN): x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite
// in two parts), a degree-6 polynomial for e^r, times 2^n built in the exponent field. Below
// -87.3 (2^n no longer normal) the result is 0.
inline float exp_neg(float x) {
  const float lo = -87.33654f;
  const float xc = x < lo ? lo : x;  // NaN passes through the comparison
  // Round to nearest by the 1.5 * 2^23 shift: exact for |xc log2 e| < 2^22.
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + (r + 1.0f);
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float e = p * scale;
  return x < lo ? 0.0f : e;
}

inline float sigmoid_of(float x) {
  const float e = exp_neg(-std::fabs(x));
  const float s = recip_1_2(1.0f + e);
  return x < 0.0f ? e * s : s;
}

// tanh: an odd polynomial below |x| = 0.25 (where 1 - e^-2|x| would cancel), else
// (1 - e) / (1 + e) with e = e^-2|x|; the sign of x.
inline float tanh_of(float x) {
  const float ax = std::fabs(x);
  const float e = exp_neg(-2.0f * ax);
  const float big = (1.0f - e) * recip_1_2(1.0f + e);
  const float x2 = x * x;
  float p = 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  const float small = (p * x2) * ax + ax;
  return std::copysign(ax < 0.25f ? small : big, x);
}

void lstm_fused_fwd(int64_t u, float* __restrict gi, float* __restrict gf,
                    float* __restrict gc, float* __restrict go, const float* __restrict cp,
                    float* __restrict c, float* __restrict tc, float* __restrict h,
                    float* __restrict hn, const float* __restrict mh) {
  for (int64_t j = 0; j < u; ++j) {
    const float i = sigmoid_of(gi[j]), f = sigmoid_of(gf[j]), g = tanh_of(gc[j]);
    const float o = sigmoid_of(go[j]);
    gi[j] = i;
    gf[j] = f;
    gc[j] = g;
    go[j] = o;
    const float cv = f * cp[j] + i * g;
    c[j] = cv;
    const float t = tanh_of(cv);
    tc[j] = t;
    h[j] = o * t;
  }
  if (hn == nullptr) return;
  if (mh == nullptr) {
    for (int64_t j = 0; j < u; ++j) hn[j] = h[j];
  } else {
    for (int64_t j = 0; j < u; ++j) hn[j] = h[j] * mh[j];
  }
}

void lstm_fused_bwd(int64_t u, const float* __restrict gi, const float* __restrict gf,
                    const float* __restrict gc, const float* __restrict go,
                    const float* __restrict tc, const float* __restrict cp,
                    float* __restrict dh, float* __restrict dc, float* __restrict dzi,
                    float* __restrict dzf, float* __restrict dzc, float* __restrict dzo) {
  for (int64_t j = 0; j < u; ++j) {
    const float i = gi[j], f = gf[j], g = gc[j], o = go[j], t = tc[j], d_h = dh[j];
    const float d_o = d_h * t;
    const float d_t = (d_h * o) * (t * t * -1.0f + 1.0f);
    const float d = dc[j] + d_t;
    const float d_i = d * g, d_f = d * cp[j], d_g = d * i;
    dc[j] = d * f;
    dh[j] = 0.0f;
    dzi[j] = d_i * (i * (1.0f - i));
    dzf[j] = d_f * (f * (1.0f - f));
    dzc[j] = d_g * (g * g * -1.0f + 1.0f);
    dzo[j] = d_o * (o * (1.0f - o));
  }
}

void gru_fused_fwd(int64_t u, const float* __restrict zx, const float* __restrict st,
                   const float* __restrict hp, float* __restrict g, float* __restrict rec,
                   float* __restrict h) {
  for (int64_t j = 0; j < u; ++j) {
    const float z = sigmoid_of(zx[j] + st[j]), r = sigmoid_of(zx[u + j] + st[u + j]);
    const float rh = st[2 * u + j];
    const float hh = tanh_of(zx[2 * u + j] + r * rh);
    g[j] = z;
    g[u + j] = r;
    g[2 * u + j] = hh;
    rec[j] = rh;
    h[j] = z * hp[j] + (1.0f - z) * hh;
  }
}

void gru_fused_bwd(int64_t u, const float* __restrict g, const float* __restrict hp,
                   const float* __restrict rec, float* __restrict dh, float* __restrict dz,
                   float* __restrict dzh) {
  for (int64_t j = 0; j < u; ++j) {
    const float z = g[j], r = g[u + j], hh = g[2 * u + j], d = dh[j];
    const float d_z = d * (hp[j] - hh);
    const float d_h = (d * (1.0f - z)) * (hh * hh * -1.0f + 1.0f);
    dh[j] = d * z;
    const float d_r = d_h * rec[j];
    dz[2 * u + j] = d_h;
    dzh[2 * u + j] = d_h * r;
    const float a_z = d_z * (z * (1.0f - z)), a_r = d_r * (r * (1.0f - r));
    dz[j] = dzh[j] = a_z;
    dz[u + j] = dzh[u + j] = a_r;
  }
}

constexpr LstmLoops kLoops = {lstm_cell,      lstm_out,       lstm_dh_to_gates,
                              lstm_dc_to_gates, add_rows,     lstm_fused_fwd,
                              lstm_fused_bwd, gru_fused_fwd,  gru_fused_bwd};

}  // namespace
}  // namespace pynn::nn

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
// sides of a choice are computed and one is selected). Accuracy: relative error <= 3e-7 (a few
// float32 ulps) for sigmoid above -80 and for tanh everywhere, measured against double on a
// 1e-4 grid of [-90, 90]; the reduction and polynomial of exp are those of the activation
// kernels (nn/activations_simd_impl.h).
//
// These loops vectorise on AVX2 and SSE2 only because pynn is compiled with
// -fno-trapping-math (CMakeLists.txt): under GCC's default a clamp followed by arithmetic
// stays a branch without mask registers (34 ns per element of lstm_fused_fwd on AVX2
// against 3.6 vectorised).

// e^x with x clamped to [-87.3, 80] first: both ends keep e^x and 1 / (1 + e^x) normal
// floats (no subnormal stalls further on; below -87.3 the result is 1.2e-38 instead of 0).
// x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite in two parts), a degree-7 polynomial for e^r,
// times 2^n built in the exponent field. NaN comes out NaN.
inline float exp_clamped(float x) {
  float xc = x < -87.33654f ? -87.33654f : x;  // NaN passes through both comparisons
  xc = xc > 80.0f ? 80.0f : xc;
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
  return p * scale;
}

// sigmoid as 1 / (1 + e^-x), by a division: the divider runs beside the FMA units, and the
// three Newton steps it replaces were 7 of their operations per call (lstm_fused_fwd: 3.3 ->
// 2.5 ns per element on Zen 4, AVX-512). Below x = -80 it gives 1.8e-35.
inline float sigmoid_of(float x) { return 1.0f / (1.0f + exp_clamped(-x)); }

// tanh: an odd polynomial below |x| = 0.25 (where 1 - e^-2|x| would cancel), else
// (1 - e) / (1 + e) with e = e^-2|x|; the sign of x.
inline float tanh_of(float x) {
  const float ax = __builtin_fabsf(x);
  const float e = exp_clamped(-2.0f * ax);
  const float big = (1.0f - e) / (1.0f + e);
  const float x2 = x * x;
  float p = 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  const float small = (p * x2) * ax + ax;
  return __builtin_copysignf(ax < 0.25f ? small : big, x);
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

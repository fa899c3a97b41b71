// Bodies of the LSTM loops declared in rnn_cells.h: plain loops over restrict-qualified rows,
// which each including file (one per ISA) vectorises with its own flags. Include only from
// rnn_cells*.cpp.
#pragma once
#include <cstdint>

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

constexpr LstmLoops kLoops = {lstm_cell, lstm_out, lstm_dh_to_gates, lstm_dc_to_gates,
                              add_rows};

}  // namespace
}  // namespace pynn::nn

// Output stages applied to each finished tile of C while it is still in cache: the tile has
// seen every K panel, so this is where bias and activation are fused into the GEMM.
//
// Stages run in this order on a tile (rows r0.., columns c0.., row-major with stride ldc):
//   1. z = c + bias[col]                      (if bias)
//   2. preact[row][col] = z                   (if preact: what the backward pass needs)
//   3. c = act(z)                             (if act; applied to contiguous row segments)
// The activation is a plain function pointer so the GEMM layer knows nothing of the network
// layer above it; csrc/nn supplies the functions.
#pragma once
#include <cstdint>

namespace pynn::gemm {

// Applies an activation in place to n contiguous floats; `params` is activation-specific.
using act_fn = void (*)(float* x, int64_t n, const float* params);

struct Epilogue {
  const float* bias = nullptr;  // length N (indexed by output column)
  float* preact = nullptr;      // M x N, row stride ld_preact; receives z before activation
  int64_t ld_preact = 0;
  act_fn act = nullptr;
  const float* act_params = nullptr;

  bool empty() const { return bias == nullptr && preact == nullptr && act == nullptr; }

  void apply(float* c, int64_t ldc, int64_t row0, int64_t col0, int64_t m, int64_t n) const {
    for (int64_t i = 0; i < m; ++i) {
      float* ci = c + i * ldc;
      if (bias != nullptr) {
        const float* bj = bias + col0;
        for (int64_t j = 0; j < n; ++j) ci[j] += bj[j];
      }
      if (preact != nullptr) {
        float* zi = preact + (row0 + i) * ld_preact + col0;
        for (int64_t j = 0; j < n; ++j) zi[j] = ci[j];
      }
      if (act != nullptr) act(ci, n, act_params);
    }
  }
};

}  // namespace pynn::gemm

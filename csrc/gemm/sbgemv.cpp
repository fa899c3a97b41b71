// Which one-row bf16 kernel (sbgemv.h) matches the active bf16 GEMM kernel, and the portable
// one that matches the emulated kernel on the generic float32 micro-kernel.
#include "gemm/sbgemv.h"

#include <algorithm>
#include <cstring>

#include "gemm/kernel.h"
#include "gemm/sbgemm.h"

namespace pynn::gemm {
namespace {

// x rounded to bf16, as float32 bits.
void prep_generic(const float* x, int64_t k, uint32_t* xp) {
  for (int64_t p = 0; p < k; ++p) {
    uint32_t u;
    std::memcpy(&u, x + p, 4);
    xp[p] = bf16_round_bits(u);
  }
}

// ukr_generic_4x16's arithmetic for one element: acc += a * b (a multiply, then an add: this
// file and that one have the same baseline flags), then C = alpha * acc, or beta * C +
// alpha * acc on later K panels, alpha and beta 1.
constexpr int kGenericCols = 16;

void cols_generic(const uint32_t* xp, int64_t k, int64_t kc, const float* w, int64_t ldw,
                  int64_t n, float* y) {
  const float* xr = reinterpret_cast<const float*>(xp);
  const float alpha = 1.0f, beta = 1.0f;
  for (int64_t j0 = 0; j0 < n; j0 += kGenericCols) {
    const int64_t nv = std::min<int64_t>(kGenericCols, n - j0);
    for (int64_t pc = 0; pc < k; pc += kc) {
      float acc[kGenericCols] = {};
      for (int64_t p = pc; p < std::min(k, pc + kc); ++p)
        for (int64_t j = 0; j < nv; ++j) acc[j] += xr[p] * bf16_round(w[p * ldw + j0 + j]);
      for (int64_t j = 0; j < nv; ++j)
        y[j0 + j] = pc == 0 ? alpha * acc[j] : beta * y[j0 + j] + alpha * acc[j];
    }
  }
}

const SbRowKernel kSbRowGeneric = {prep_generic,
                                   {cols_generic, cols_generic, cols_generic, cols_generic,
                                    cols_generic, cols_generic, cols_generic, cols_generic}};

}  // namespace

void sb_row(const SbRowKernel& rk, const uint32_t* xp, int64_t k, int64_t kc, const float* w,
            int64_t ldw, int64_t n, float* y) {
  constexpr int64_t kBlock = 16 * kSbRowVectors;
  for (int64_t j = 0; j < n; j += kBlock) {
    const int64_t nv = std::min(kBlock, n - j);
    rk.cols[(nv + 15) / 16 - 1](xp, k, kc, w + j, ldw, nv, y + j);
  }
}

const SbRowKernel* sb_row_kernel() {
  static const SbRowKernel* chosen = []() -> const SbRowKernel* {
    const SbKernelInfo& kern = active_sb_kernel();
#if defined(PYNN_X86)
    if (kern.ukr == kSbKernelAvx512Bf16.ukr) return &kSbRowAvx512Bf16;
    if (kern.ukr == nullptr && kern.f32_ukr == kKernelAvx512.ukr) return &kSbRowEmulatedAvx512;
#endif
    if (kern.ukr == nullptr && kern.f32_ukr == kKernelGeneric.ukr) return &kSbRowGeneric;
    return nullptr;
  }();
  return chosen;
}

}  // namespace pynn::gemm

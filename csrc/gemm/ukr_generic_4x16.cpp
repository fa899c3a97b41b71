// Portable C++ micro-kernel: always available, compiled for the baseline ISA.
#include "gemm/kernel.h"

namespace pynn::gemm {
namespace {

constexpr int MR = 4;
constexpr int NR = 16;
// Largest m the direct (unpacked) kernel takes. The portable kernel is kept to less than one
// register block, where the packed path wastes most of its tile; not tuned further.
constexpr int kDirectMaxM = MR - 1;
// Columns the portable sparse-A kernel takes per pass (sparse_a_generic.cpp: 16 scalar
// accumulators).
constexpr int kSparseWidthGeneric = 16;

void ukr_generic_4x16(int64_t k, const float* a, const float* b, float* c, int64_t ldc,
                      float alpha, float beta) {
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < k; ++p) {
    for (int i = 0; i < MR; ++i) {
      const float ai = a[p * MR + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[p * NR + j];
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < NR; ++j) ci[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < NR; ++j) ci[j] = beta * ci[j] + alpha * acc[i][j];
    }
  }
}

}  // namespace

const KernelInfo kKernelGeneric = {"generic_4x16", Arch::generic, MR, NR, 256, 512, 1024,
                                   ukr_generic_4x16, direct_generic, kDirectMaxM, 0, NR, {}, nullptr,
                                   nullptr, {}, sparse_generic, kSparseWidthGeneric, 0};

}  // namespace pynn::gemm

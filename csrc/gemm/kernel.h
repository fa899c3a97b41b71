// The micro-kernel contract and the per-ISA blocksize table.
//
// A micro-kernel computes one MR x NR tile of C (row-major, row stride ldc):
//
//     C[i][j] = alpha * sum_{p<k} a[p*MR + i] * b[p*NR + j]  (+ beta * C[i][j])
//
// Invariants:
//  - `a` is a packed A micro-panel: k columns of MR floats, rows past the matrix edge are zero.
//  - `b` is a packed B micro-panel: k rows of NR floats, columns past the edge are zero.
//  - Both panels are 64-byte aligned.
//  - beta == 0 means C is never read (it may hold NaN or garbage); only written.
//  - k may be 0 (then C = beta * C, or 0).
//  - The sum over p runs in increasing p with one accumulator per element, so the result of
//    a tile never depends on which thread computes it.
// The driver handles edge tiles (m < MR or n < NR) by running the kernel on a scratch tile.
#pragma once
#include <cstdint>

#include "common/cpu.h"

namespace pynn::gemm {

using ukr_fn = void (*)(int64_t k, const float* a, const float* b, float* c, int64_t ldc,
                        float alpha, float beta);

struct KernelInfo {
  const char* name;  // e.g. "avx512_12x32"
  Arch arch;
  int mr, nr;        // register block
  int kc;            // K panel depth: an A micro-panel (mr*kc floats) stays in L1
  int mc;            // rows of A packed per block (stays in L3)
  int nc;            // columns of B packed per block: kc*nc floats stay in L2
  ukr_fn ukr;
};

// One table entry per ISA; defined beside each kernel.
extern const KernelInfo kKernelGeneric;
#if defined(PYNN_X86)
extern const KernelInfo kKernelAvx2;
extern const KernelInfo kKernelAvx512;
#endif

// The kernel of the active architecture (chosen once from cpuid / PYNN_ARCH).
const KernelInfo& active_kernel();

constexpr int kMaxMR = 16;
constexpr int kMaxNR = 32;

}  // namespace pynn::gemm

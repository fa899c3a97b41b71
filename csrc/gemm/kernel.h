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
// The driver handles edge tiles (m < MR or n < NR) by running the kernel on a scratch tile
// holding a copy of C, so an edge element sees exactly the arithmetic of a full-tile element.
// For a tile narrower than NR it runs a column-tail kernel (`ukr_cols`): the same contract
// and the same per-element arithmetic, but only the first v vectors (v * w columns) of the
// tile are computed and written, b keeping its row stride of NR floats; so a 16-column tail
// of a 64-wide tile costs a quarter of a full tile.
//
// The direct small-m kernel (`direct`) computes the same product without packing, reading A
// through its strides and B in place (unit column stride, row stride ldb):
//
//     for each K panel [pc, pc + kc) of depth kc (the last may be shorter):
//       acc = 0;  acc = acc + a[i][p] * b[p][j]  for p in increasing order (the micro-kernel's
//                                                  own multiply-add: FMA on SIMD ISAs)
//       C[i][j] = alpha * acc                      on the first panel when beta == 0
//       C[i][j] = beta_p * C[i][j] + alpha * acc   otherwise, beta_p = beta, then 1,
//                                                  evaluated exactly as the micro-kernel does
// Invariants (what keeps it bitwise equal to the packed path, so results never depend on M):
//  - same K panels as the driver (the caller passes the depth from k_panel_depth),
//  - per element the same sequence of roundings as `ukr`, in the same order,
//  - beta == 0 never reads C; columns >= n and rows >= m are never touched,
//  - no epilogue: the driver applies it on the same NR-wide segments as the packed path.
#pragma once
#include <cstdint>

#include "common/cpu.h"

namespace pynn::gemm {

constexpr int kMaxMR = 16;
constexpr int kMaxNR = 64;

using ukr_fn = void (*)(int64_t k, const float* a, const float* b, float* c, int64_t ldc,
                        float alpha, float beta);

// The same tile with A read in place from a row-major matrix (row stride lda, unit column
// stride: row i of step p at a[i * lda + p]) instead of a packed micro-panel; all MR rows must
// exist. Bitwise the result of ukr on the packed panel.
using ukr_rows_fn = void (*)(int64_t k, const float* a, int64_t lda, const float* b, float* c,
                             int64_t ldc, float alpha, float beta);

using direct_fn = void (*)(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a,
                           int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c,
                           int64_t ldc, float alpha, float beta);

// Packs a block as pack.h's pack_a<MR> / pack_b<NR> would (bitwise the same panels), or
// returns false (then the driver runs pack.h's template). rows/cols, kc, src, rs, cs, dst.
using pack_fn = bool (*)(int64_t, int64_t, const float*, int64_t, int64_t, float*);

// The zero-skipping kernel (sparse_a_impl.h): the `direct` contract above, per element, minus
// the terms whose A entry is zero, which is bitwise the same C when B is finite. It takes rows
// kSparseRows at a time; the driver gives each thread a SparseWork for one such block:
//   idx, val  kSparseRows * (kc + 16) entries (each row's nonzero positions and values),
//   seg       kSparseRows * (ceil(kc / depth) + 1) entries (where each sub-block's start),
//   acc       kSparseRows * sparse_width floats, 64-byte aligned (accumulators between
//             sub-blocks),
//   tmp       kSparseRows * (kc + 16) floats when A's column stride is not 1 (rows copied
//             contiguous), else unused;
//   bpack     kc * (n rounded up to sparse_width) floats, 64-byte aligned (a packed panel
//             of B).
constexpr int kSparseRows = 16;
struct SparseWork {
  int32_t* idx;
  float* val;
  int32_t* seg;
  float* acc;
  float* tmp;
  float* bpack;
};
// m, n, k, kc (K panel depth), depth (sub-block rows of B, a multiple of 16), a, a_rs, a_cs,
// b, ldb (unit column stride), c, ldc, alpha, beta, work.
using sparse_fn = void (*)(int64_t m, int64_t n, int64_t k, int64_t kc, int64_t depth,
                           const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                           int64_t ldb, float* c, int64_t ldc, float alpha, float beta,
                           const SparseWork& w);

struct KernelInfo {
  const char* name;  // e.g. "avx512_6x64"
  Arch arch;
  int mr, nr;        // register block
  int kc;            // K panel depth: an A micro-panel (mr*kc floats) stays in L1
  int mc;            // rows of A packed per block (stays in L3)
  int nc;            // columns of B packed per block: kc*nc floats stay in L2
  ukr_fn ukr;
  direct_fn direct;  // small-m path without packing (see above); may be null
  int direct_max_m;  // largest m sent to `direct` (measured: benchmarks/bench_gemm_small.py)
  int narrow_max_n;  // n up to this goes to `direct` whatever m is (0: never); see gemm.cpp
  int w;             // floats per vector: the column granularity of ukr_cols
  // ukr_cols[v - 1] computes the first v * w columns of a tile (see above), v < nr / w;
  // a null entry means: use ukr.
  ukr_fn ukr_cols[kMaxNR / 8];
  pack_fn pack_a;    // ISA-specific packers for the common layouts; may be null
  pack_fn pack_b;
  // ukr_rows_a[v - 1]: ukr_cols[v - 1] (v < nr / w) and ukr (v = nr / w) reading A in place
  // (ukr_rows_fn); all null: A is always packed.
  ukr_rows_fn ukr_rows_a[kMaxNR / 8];
  sparse_fn sparse;  // the zero-skipping kernel (see above)
  int sparse_width;  // columns it takes per pass
  int sparse_depth;  // rows of B per sub-block: derived from L1 in active_kernel()
};

// The direct kernels: direct_generic.cpp, and kernels_avx2.cpp / kernels_avx512.cpp (the
// instantiations of simd_kernels_impl.h), each compiled for its ISA.
void direct_generic(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                    int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                    float alpha, float beta);
#if defined(PYNN_X86)
void direct_avx2(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                 int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc, float alpha,
                 float beta);
void direct_avx512(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                   int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                   float alpha, float beta);
void sparse_avx2(int64_t m, int64_t n, int64_t k, int64_t kc, int64_t depth, const float* a,
                 int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c,
                 int64_t ldc, float alpha, float beta, const SparseWork& w);
void sparse_avx512(int64_t m, int64_t n, int64_t k, int64_t kc, int64_t depth, const float* a,
                   int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c,
                   int64_t ldc, float alpha, float beta, const SparseWork& w);
#endif
void sparse_generic(int64_t m, int64_t n, int64_t k, int64_t kc, int64_t depth, const float* a,
                    int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c,
                    int64_t ldc, float alpha, float beta, const SparseWork& w);

// One table entry per ISA; defined beside each kernel.
extern const KernelInfo kKernelGeneric;
#if defined(PYNN_X86)
extern const KernelInfo kKernelAvx2;
extern const KernelInfo kKernelAvx512;
#endif

// The kernel of the active architecture (chosen once from cpuid / PYNN_ARCH).
const KernelInfo& active_kernel();


}  // namespace pynn::gemm

// Single-precision GEMM:  C = alpha * A * B + beta * C, then the epilogue.
//
// Every matrix is described by a pointer and two element strides, so transposed, Fortran-
// ordered and strided views are read where they lie; only packing touches A and B.
// C must be row-major with unit column stride (the Python layer arranges that).
#pragma once
#include <cstdint>

#include "gemm/epilogue.h"
#include "gemm/kernel.h"

namespace pynn::gemm {

struct MatrixView {
  const float* data;
  int64_t rs;  // stride between rows, in elements
  int64_t cs;  // stride between columns, in elements
  float at(int64_t i, int64_t j) const { return data[i * rs + j * cs]; }
};

// A is m x k, B is k x n, C is m x n with row stride ldc.
// nthreads <= 0 means "what pynn allows now" (pynn.set_num_threads, OMP_NUM_THREADS,
// threadpoolctl; 1 inside a task of another region).
void sgemm(int64_t m, int64_t n, int64_t k, float alpha, MatrixView a, MatrixView b, float beta,
           float* c, int64_t ldc, const Epilogue& ep = Epilogue{}, int nthreads = 0);

// Same, forcing a particular kernel (tests and benchmarks).
void sgemm_with(const KernelInfo& kern, int64_t m, int64_t n, int64_t k, float alpha,
                MatrixView a, MatrixView b, float beta, float* c, int64_t ldc,
                const Epilogue& ep, int nthreads);

// An A operand given by its packing routine instead of its elements: an implicit GEMM (the
// patches of a convolution) packs its rows straight into the micro-panels, so the whole
// matrix never exists in memory.
//
// pack(ctx, i0, mc, p0, kc, mr, dst) writes rows [i0, i0 + mc) x columns [p0, p0 + kc) of A
// as ceil(mc / mr) micro-panels in pack_a's layout: panel r holds A[i0 + r*mr + i][p0 + p]
// at dst[r*mr*kc + p*mr + i], rows past mc as zeros. It is called concurrently from the
// GEMM's threads (each with its own dst), so it must only read ctx.
struct APacker {
  void (*pack)(const void* ctx, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int mr,
               float* dst);
  const void* ctx;
};

// sgemm with A from a packer: the same blocked loops, micro-kernel, thread grid and epilogue
// (no direct small-m path), so C[i][j] does not depend on m or the thread count.
void sgemm_packed_a(int64_t m, int64_t n, int64_t k, float alpha, const APacker& a,
                    MatrixView b, float beta, float* c, int64_t ldc,
                    const Epilogue& ep = Epilogue{}, int nthreads = 0);

// A B operand packed once and multiplied many times (a recurrent kernel, used at every time
// step): packing a weight matrix for each of many small products costs as much as a tenth of
// them. pack_b_whole writes B (k x n) into packed_b_size(k, n) floats, 64-byte aligned, in the
// blocked path's layout for the active kernel (every K panel of pack_b's micro-panels over all
// n columns, one panel after the other). sgemm_prepacked_b then computes exactly what sgemm
// does with the same arguments, bit for bit and on the same threads, reading B's blocks from
// `packed` instead of packing them; `b` must still describe B (the direct small-m path reads
// it in place). `packed` is valid only for the k, n it was packed with, until B changes.
int64_t packed_b_size(int64_t k, int64_t n);
void pack_b_whole(int64_t k, int64_t n, MatrixView b, float* packed);
void sgemm_prepacked_b(int64_t m, int64_t n, int64_t k, float alpha, MatrixView a,
                       MatrixView b, const float* packed, float beta, float* c, int64_t ldc,
                       const Epilogue& ep = Epilogue{}, int nthreads = 0);

// The zero-skipping path (sparse_a_impl.h; bitwise the dense result for finite B): sgemm and
// sgemm_with take it when A's sampled zero fraction is at least kSparseMinZeroFraction, m is
// above the direct path's bound and n at least kSparseMinN (mode -1, the default), always
// when B allows it (mode 1), or never (mode 0). The mode starts from PYNN_GEMM_SPARSE ("0",
// "1"; anything else: -1). sparse_calls counts the products that took the path.
void set_sparse_mode(int mode);
int sparse_mode();
int64_t sparse_calls();
// Measured on Zen 4 (1 thread, benchmarks/bench_gemm_sparse.py, best of 200 x 5 calls, random
// A of 128 rows): the sparse kernel costs about 1.6x the dense one per term it computes (one
// load of B per FMA, where the packed kernel reuses a vector of B for 6 rows). Sparse / dense
// time at 30 / 40 / 50 / 70% zeros: 1.01 / 0.89 / 0.77 / 0.54 for 784x256, 1.04 / 0.92 /
// 0.80 / 0.57 for 256x128, 1.12 / 1.01 / 0.88 / 0.64 for 256x64: break-even near 35-40%. The
// probe's 16 lines of a Fashion-MNIST batch of 128 read 39-65% zeros (mean 50%): a threshold of
// 45% sent 6.6% of the training batches to the dense path, 40% sends 0.4%. So 40% zeros, and
// n of at least 64.
constexpr double kSparseMinZeroFraction = 0.40;
constexpr int64_t kSparseMinN = 64;

// Thread count the next sgemm of this size would use.
int threads_for(int64_t m, int64_t n, int64_t k, int nthreads);

// Problems with fewer multiply-adds than this run on one thread.
constexpr int64_t kParallelThreshold = int64_t(1) << 21;
// The direct small-m path splits B's columns among threads from this many elements of B.
constexpr int64_t kDirectParallelElems = int64_t(1) << 17;

}  // namespace pynn::gemm

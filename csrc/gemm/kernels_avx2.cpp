// AVX2 + FMA instantiation of the SIMD GEMM kernels (simd_kernels_impl.h): 8 floats a ymm,
// micro-kernel 6 x 16 (12 accumulators + 2 vectors of B + 1 broadcast of A = 15 of the 16 ymm).
#include <immintrin.h>

#include "gemm/simd_kernels_impl.h"

namespace pynn::gemm {
namespace {

struct Avx2 {
  using vec = __m256;
  using mask = __m256i;
  static constexpr int W = 8;
  static constexpr int MR = 6;
  static constexpr int NR = 16;
  static constexpr int kPrefetchRows = 0;  // the hardware prefetcher keeps up at this width
  static constexpr bool kPrefetchC = true;
  // Direct kernel, 16 ymm: RG*CB accumulators + CB of B + 1 broadcast. One or two rows take
  // 4 vectors (32 columns), three or four rows 2 vectors.
  static constexpr int kDirectRows = 4;
  static constexpr int direct_vectors(int rows) { return rows <= 2 ? 4 : 2; }
  static constexpr int kNarrowRows = 6;
  static constexpr int kColsMaxN = 0;  // measured only on AVX-512
  // One row: 8 vectors (64 columns: 8 accumulators + 1 broadcast; B read from memory
  // operands), B prefetched 4 rows ahead as on AVX-512.
  static constexpr int kGemvVectors = 8;
  static constexpr int kGemvPrefetchRows = 4;
  static constexpr int kPeakChains = 12;
  // Sparse-A kernel (sparse_a_impl.h): 8 vectors (64 columns) a pass: 8 accumulators + 1
  // broadcast + B from memory operands; no compress instruction, so a branch-free list.
  static constexpr int kSparseVectors = 8;
  static constexpr bool kCompress = false;

  static inline vec zero() { return _mm256_setzero_ps(); }
  static inline vec set1(float x) { return _mm256_set1_ps(x); }
  static inline vec broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static inline vec load(const float* p) { return _mm256_load_ps(p); }
  static inline vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  static inline void storeu(float* p, vec x) { _mm256_storeu_ps(p, x); }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static inline vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  static inline vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static inline void prefetch(const float* p) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
  }
  static inline mask tail(int64_t left) {
    const int l = left >= W ? W : (left <= 0 ? 0 : int(left));
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline vec maskload(const float* p, mask m) { return _mm256_maskload_ps(p, m); }
  static inline void maskstore(float* p, mask m, vec x) { _mm256_maskstore_ps(p, m, x); }
  static inline bool any_negzero(vec x) {
    const __m256i eq = _mm256_cmpeq_epi32(_mm256_castps_si256(x), _mm256_set1_epi32(INT32_MIN));
    return _mm256_movemask_epi8(eq) != 0;
  }
};

using K = simd_impl::Kernels<Avx2>;
using S = simd_impl::SparseA<Avx2>;

// Largest m the direct (unpacked) kernel takes; measured with benchmarks/bench_gemm_small.py
// under PYNN_GEMM_DIRECT_MAX_M=0 and =64.
// Measured (AVX2 kernel on an EPYC): direct wins up to m = 8-11 on MLP-sized weights and
// loses from m = 24; it re-reads B once per 4 rows.
constexpr int kDirectMaxM = 8;

}  // namespace

void direct_avx2(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                 int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc, float alpha,
                 float beta) {
  K::direct(m, n, k, kc, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta);
}

float fma_loop_avx2(int64_t iters) { return K::fma_loop(iters); }

void sparse_avx2(int64_t m, int64_t n, int64_t k, int64_t kc, int64_t depth, const float* a,
                 int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c,
                 int64_t ldc, float alpha, float beta, const SparseWork& w) {
  S::run(m, n, k, kc, depth, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, w);
}

const KernelInfo kKernelAvx2 = {"avx2_6x16", Arch::avx2, Avx2::MR, Avx2::NR, 256, 1020, 512,
                                K::ukr, direct_avx2, kDirectMaxM, 2 * Avx2::W, Avx2::W,
                                {K::ukr_part<1>}, nullptr, nullptr,
                                {K::ukr_rows_a<1>, K::ukr_rows_a<2>},
                                sparse_avx2, int(S::BW), 0};

}  // namespace pynn::gemm

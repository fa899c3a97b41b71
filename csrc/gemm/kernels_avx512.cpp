// AVX-512 instantiation of the SIMD GEMM kernels (simd_kernels_impl.h): 16 floats a zmm,
// micro-kernel 6 x 64 (24 accumulators + 4 vectors of B + 1 broadcast of A, of 32 zmm).
#include <immintrin.h>

#include "gemm/simd_kernels_impl.h"

namespace pynn::gemm {
namespace {

struct Avx512 {
  using vec = __m512;
  using mask = __mmask16;
  static constexpr int W = 16;
  // 6 x 64 rather than 12 x 32 or 8 x 48: the same 24 accumulators, but 4 loads of B and 6
  // broadcasts of A per 24 FMAs (12 x 32 needs 2 + 12). Measured on the Ice Lake Xeon, the
  // micro-kernel alone on a 480 KB packed B block (kc = 384, best of 1000 windows, thread
  // CPU time): 12 x 32 92%, 8 x 48 99%, 6 x 64 99% of the FMA peak; and 64 divides the
  // widths of the MLP, LSTM and convnet layers (64 .. 512) where 48 does not.
  static constexpr int MR = 6;
  static constexpr int NR = 64;
  // Prefetching the packed B block ahead of the micro-kernel: measured no faster (L2 streams
  // it in time), so off.
  static constexpr int kPrefetchRows = 0;
  static constexpr bool kPrefetchC = true;
  // Direct kernel, 32 zmm: RG*CB accumulators + CB of B + 1 broadcast. One or two rows take
  // 8 vectors (128 columns) so that 8+ independent FMA chains hide the FMA latency; three to
  // six rows take 4 vectors (at most 24 + 4 + 1 registers).
  static constexpr int kDirectRows = 6;
  static constexpr int direct_vectors(int rows) { return rows <= 2 ? 8 : 4; }
  static constexpr int kNarrowRows = 8;
  // One row (a single sample): 8 vectors (128 columns, one pass per 512 bytes of a B row),
  // B prefetched 4 rows ahead. Measured on the Ice Lake Xeon (1-row predict of the
  // 784-256-128-10 MLP, 1 thread, best of 600 windows, 3 runs): no prefetch 17.4 us,
  // 2 rows ahead 13.2, 4 rows 13.1, 8 rows 13.4, 16 rows 14.1; 16 vectors (a whole 1 KB row
  // per pass) 14.5-15.4 whatever the distance.
  static constexpr int kGemvVectors = 8;
  static constexpr int kGemvPrefetchRows = 4;
  static constexpr int kPeakChains = 16;

  static inline vec zero() { return _mm512_setzero_ps(); }
  static inline vec set1(float x) { return _mm512_set1_ps(x); }
  static inline vec broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static inline vec load(const float* p) { return _mm512_load_ps(p); }
  static inline vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static inline void storeu(float* p, vec x) { _mm512_storeu_ps(p, x); }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static inline vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static inline void prefetch(const float* p) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
  }
  static inline mask tail(int64_t left) {
    if (left >= W) return mask(0xFFFF);
    if (left <= 0) return mask(0);
    return mask((1u << left) - 1u);
  }
  static inline vec maskload(const float* p, mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static inline void maskstore(float* p, mask m, vec x) { _mm512_mask_storeu_ps(p, m, x); }
};

using K = simd_impl::Kernels<Avx512>;

// Largest m the direct (unpacked) kernel takes; measured with benchmarks/bench_gemm_small.py
// under PYNN_GEMM_DIRECT_MAX_M=0 and =64.
// Measured on an EPYC (AVX-512, 1 thread, 784x256 and 256x128 weights): the direct kernel
// beats packing up to m = 64 there; 16 leaves a margin for large K x N, where B no longer
// sits in L2 and the direct path re-reads it once per 6 rows.
constexpr int kDirectMaxM = 16;

}  // namespace

void direct_avx512(int64_t m, int64_t n, int64_t k, int64_t kc, const float* a, int64_t a_rs,
                   int64_t a_cs, const float* b, int64_t ldb, float* c, int64_t ldc,
                   float alpha, float beta) {
  K::direct(m, n, k, kc, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta);
}

float fma_loop_avx512(int64_t iters) { return K::fma_loop(iters); }

const KernelInfo kKernelAvx512 = {"avx512_6x64",
                                  Arch::avx512,
                                  Avx512::MR,
                                  Avx512::NR,
                                  384,
                                  1020,
                                  480,
                                  K::ukr,
                                  direct_avx512,
                                  kDirectMaxM,
                                  2 * Avx512::W,
                                  Avx512::W,
                                  {K::ukr_part<1>, K::ukr_part<2>, K::ukr_part<3>}};

}  // namespace pynn::gemm

// Portable instantiation of the sparse-A kernel (sparse_a_impl.h), the zero-skipping twin of
// ukr_generic_4x16 and direct_generic (compiled for the baseline ISA like them): "vectors" of
// one float, and fmadd written as a * b + c, the portable kernels' own expression (x86-64
// baseline has no FMA instruction to contract it into), so each element is rounded exactly as
// the portable micro-kernel rounds it.
#include <cstring>

#include "gemm/kernel.h"
#include "gemm/sparse_a_impl.h"

namespace pynn::gemm {
namespace {

struct Scalar {
  using vec = float;
  using mask = bool;
  static constexpr int W = 1;
  // 16 accumulators a pass (the portable micro-kernel's row of NR = 16)
  static constexpr int kSparseVectors = 16;
  static constexpr bool kCompress = false;

  static inline vec zero() { return 0.0f; }
  static inline vec set1(float x) { return x; }
  static inline vec broadcast(const float* p) { return *p; }
  static inline vec loadu(const float* p) { return *p; }
  static inline void storeu(float* p, vec x) { *p = x; }
  static inline vec fmadd(vec a, vec b, vec c) { return a * b + c; }
  static inline vec mul(vec a, vec b) { return a * b; }
  static inline mask tail(int64_t left) { return left > 0; }
  static inline vec maskload(const float* p, mask m) { return m ? *p : 0.0f; }
  static inline void maskstore(float* p, mask m, vec x) {
    if (m) *p = x;
  }
  static inline bool any_negzero(vec x) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u == 0x80000000u;
  }
};

}  // namespace

void sparse_generic(int64_t m, int64_t n, int64_t k, int64_t kc, int64_t depth, const float* a,
                    int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb, float* c,
                    int64_t ldc, float alpha, float beta, const SparseWork& w) {
  simd_impl::SparseA<Scalar>::run(m, n, k, kc, depth, a, a_rs, a_cs, b, ldb, c, ldc, alpha,
                                  beta, w);
}

}  // namespace pynn::gemm

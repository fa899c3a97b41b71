// A lane mask shared by the AVX-512 kernel files: include only from files compiled with
// AVX-512F (internal linkage, a copy per such file).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace pynn::gemm {
namespace {

// The first n of 16 lanes (none for n <= 0, all for n >= 16).
inline __mmask16 first(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

}  // namespace
}  // namespace pynn::gemm

// Packing: copy a block of A or B into contiguous, zero-padded micro-panels in the order the
// micro-kernel reads them. This is the only place that touches the user's strided data.
//
//  packed A block (mc x kc): ceil(mc/MR) panels; panel r holds A[r*MR + i][p] at p*MR + i.
//  packed B block (kc x nc): ceil(nc/NR) panels; panel s holds B[p][s*NR + j] at p*NR + j.
// Rows/columns past the edge of the matrix are written as zeros so that the kernel can always
// compute a full MR x NR tile.
#pragma once
#include <cstdint>
#include <cstring>

#include "gemm/gemm.h"

namespace pynn::gemm {

template <int MR>
void pack_a(int64_t mc, int64_t kc, const float* src, int64_t rs, int64_t cs, float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR, dst += MR * kc, src += MR * rs) {
    const int64_t mv = mc - ir < MR ? mc - ir : MR;
    if (mv == MR && cs == 1) {
      // Rows contiguous along k: read MR rows in step, write one column of the panel at a time.
      for (int64_t p = 0; p < kc; ++p) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) dst[p * MR + i] = src[i * rs + p];
      }
    } else if (mv == MR && rs == 1) {
      for (int64_t p = 0; p < kc; ++p) std::memcpy(dst + p * MR, src + p * cs, MR * sizeof(float));
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        for (int64_t i = 0; i < mv; ++i) dst[p * MR + i] = src[i * rs + p * cs];
        for (int64_t i = mv; i < MR; ++i) dst[p * MR + i] = 0.0f;
      }
    }
  }
}

template <int NR>
void pack_b(int64_t kc, int64_t nc, const float* src, int64_t rs, int64_t cs, float* dst) {
  for (int64_t jr = 0; jr < nc; jr += NR, dst += NR * kc, src += NR * cs) {
    const int64_t nv = nc - jr < NR ? nc - jr : NR;
    if (nv == NR && cs == 1) {
      for (int64_t p = 0; p < kc; ++p) std::memcpy(dst + p * NR, src + p * rs, NR * sizeof(float));
    } else if (nv == NR && rs == 1) {
      // Columns contiguous along k (a transposed operand): transpose in small blocks.
      constexpr int KB = 8;
      int64_t p0 = 0;
      for (; p0 + KB <= kc; p0 += KB) {
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j) {
          const float* s = src + j * cs + p0;
#pragma GCC unroll 8
          for (int q = 0; q < KB; ++q) dst[(p0 + q) * NR + j] = s[q];
        }
      }
      for (; p0 < kc; ++p0)
        for (int j = 0; j < NR; ++j) dst[p0 * NR + j] = src[j * cs + p0];
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        for (int64_t j = 0; j < nv; ++j) dst[p * NR + j] = src[p * rs + j * cs];
        for (int64_t j = nv; j < NR; ++j) dst[p * NR + j] = 0.0f;
      }
    }
  }
}

}  // namespace pynn::gemm

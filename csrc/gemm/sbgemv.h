// One row of the bf16 GEMM without packing: y = bf16(x) bf16(W), W (k x n, row stride ldw)
// read where it lies and rounded in registers, never written anywhere.
//
// Why: a one-row product reads each weight once, so sbgemm's packing (every weight rounded,
// stored and read back, 2 bytes more traffic each) is most of its time, and a packed copy
// cannot be kept between calls because the weights are the user's arrays, writable in place.
//
// What it keeps (the contract of sbgemm_prepacked_b for m = 1, element for element): y[j] is
// bitwise row 0 of sbgemm(1, n, k, x, W) with the active kernel and no epilogue:
//   - the same K panels (sb_k_panel_depth, sbgemm.h), each summed from zero and added to
//     the panels before it as the micro-kernel adds a panel to C (beta 1);
//   - within a panel the micro-kernel's own steps in its order: AVX512_BF16 VDPBF16PS on the
//     pair words (x[2q], x[2q+1]) and (W[2q][j], W[2q+1][j]), an odd K's last pair padded
//     with zeros on both sides; the emulated kernels their float32 multiply-add per k;
//   - operands rounded as bf16_round_bits (sbgemm.h), subnormals included.
// The caller applies the epilogue on the NR-wide column segments sbgemm's tiles have.
// Columns share nothing, so any cut of [0, n) among threads gives the same bits.
#pragma once
#include <cstdint>

namespace pynn::gemm {

// Column blocks of this many vectors of 16 (128 columns): 8 independent sums per K step
// hide the multiply-add latency behind the loads and the rounding.
constexpr int kSbRowVectors = 8;

// y[0, nv) from xp (see prep) and W's columns [0, nv) at w, nv <= 16 * kSbRowVectors; kc:
// the K panel depth.
using sb_cols_fn = void (*)(const uint32_t* xp, int64_t k, int64_t kc, const float* w,
                            int64_t ldw, int64_t nv, float* y);

struct SbRowKernel {
  // x (k floats) in the form `cols` reads: k + 1 words at xp (bf16 pair words or rounded
  // float32 bits, the kernel's choice), written once per x and shared by every column range.
  void (*prep)(const float* x, int64_t k, uint32_t* xp);
  sb_cols_fn cols[kSbRowVectors];  // cols[v - 1]: a block of at most v vectors
};

// y[0, n): W's columns block by block.
void sb_row(const SbRowKernel& rk, const uint32_t* xp, int64_t k, int64_t kc, const float* w,
            int64_t ldw, int64_t n, float* y);

// The row kernel of the active bf16 kernel, or null where it has none (AMX, whose tile steps
// it does not reproduce; the AVX2 and generic emulations): then the packed path runs.
const SbRowKernel* sb_row_kernel();

#if defined(PYNN_X86)
// sbgemv_avx512bf16.cpp (needs AVX512_BF16) and sbgemv_avx512.cpp (AVX-512F: the emulated
// kernel on the avx512 float32 micro-kernel).
extern const SbRowKernel kSbRowAvx512Bf16;
extern const SbRowKernel kSbRowEmulatedAvx512;
#endif

}  // namespace pynn::gemm

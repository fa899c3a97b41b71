// A few rows of the bf16 GEMM without packing: Y = bf16(X) bf16(W), X r rows (1 <= r <=
// kSbRowsMax), W (k x n, row stride ldw) read where it lies and rounded in registers, never
// written anywhere; each rounded weight vector serves all r rows before the next is loaded.
//
// Why: a product of a few rows reads each weight once (or r times, from registers), so
// sbgemm's packing (every weight rounded, stored and read back, 2 bytes more traffic each) is
// most of its time, and a packed copy cannot be kept between calls because the weights are the
// user's arrays, writable in place. The rounding is paid once per weight whatever r is; the
// multiply-adds r times; past some r the packed path's better register blocking wins (the
// caller's choice: dense_chain_bf16.cpp).
//
// What it keeps (the contract of sbgemm_prepacked_b, element for element): row i of Y is
// bitwise row i of sbgemm(r, n, k, X, W) with the active kernel and no epilogue, that is, what
// the micro-kernel computes for that row in any tile:
//   - the same K panels (sb_k_panel_depth, sbgemm.h), each summed from zero and added to
//     the panels before it as the micro-kernel adds a panel to C (beta 1);
//   - within a panel the micro-kernel's own steps in its order: AVX512_BF16 VDPBF16PS on the
//     pair words (x[2q], x[2q+1]) and (W[2q][j], W[2q+1][j]), an odd K's last pair padded
//     with zeros on both sides; the emulated kernels their float32 multiply-add per k;
//   - operands rounded as bf16_round_bits (sbgemm.h), subnormals included.
// The caller applies the epilogue on the NR-wide column segments sbgemm's tiles have.
// Columns share nothing, and rows share only the rounded weights (each row its own sums), so
// any cut of [0, n) among threads and of the rows into calls gives the same bits.
#pragma once
#include <cstdint>

namespace pynn::gemm {

// The most rows one kernel call takes (more: the caller loops over blocks of rows).
constexpr int kSbRowsMax = 8;

// Rows [0, r) of Y (row stride ldy), columns [0, n), from r rows of X in prep's form,
// interleaved (word q of row i at xp[q * r + i]: a step's r words side by side, read from one
// pointer) and W's columns [0, n) at w; kc: the K panel depth. Column blocks of each kernel's
// own width, as many sums as the registers hold (per file).
using sb_rows_fn = void (*)(const uint32_t* xp, int64_t k, int64_t kc,
                            const float* w, int64_t ldw, int64_t n, float* y, int64_t ldy);

struct SbRowKernel {
  // One row x (k floats) in the form `rows` reads, not yet interleaved: ceil(k / k_per_word)
  // words at xp, k + 1 writable (bf16 pair words, k_per_word 2, or rounded float32 bits,
  // k_per_word 1: the kernel's choice), written once per x and shared by every column range.
  void (*prep)(const float* x, int64_t k, uint32_t* xp);
  int k_per_word;
  // Calls of more rows than this pack the weights instead (sbgemm's register blocking does
  // more multiply-adds per load than kSbRowsMax rows can, and past here that pays for the
  // packing): measured per kernel, in its file.
  int64_t max_rows;
  sb_rows_fn rows[kSbRowsMax];  // rows[r - 1]: r rows
};

// The row kernel of the active bf16 kernel, or null where it has none (AMX, whose tile steps
// it does not reproduce; the AVX2 and generic emulations): then the packed path runs.
const SbRowKernel* sb_row_kernel();

// How many blocks of r rows (1 <= r <= kSbRowsMax) a layer has had through the row kernels in
// this process (sb_row_counted adds one): what tests read to tell that the path ran.
int64_t sb_row_calls(int r);
void sb_row_counted(int r);

// The kernel files' `rows` entries: columns [0, n) of R rows in blocks of 16 * V columns
// (V vectors of 16), Blk<R, V, true>::run on every whole block and the narrowest Blk<R, v,
// kFull> that covers the rest (kFull: its width is exactly 16 v, no masked loads). Internal
// linkage: GCC gives an instantiation on a template template argument from an unnamed
// namespace a weak global symbol, the same name in both kernel files (each has its own
// `Block`), and the linker then keeps one file's copy for both.
namespace {

template <template <int, int, bool> class Blk, int R, int V>
void sb_rows_tail(const uint32_t* xp, int64_t k, int64_t kc, const float* w,
                  int64_t ldw, int64_t nv, float* y, int64_t ldy) {
  if constexpr (V > 1) {
    if (nv <= 16 * (V - 1))
      return sb_rows_tail<Blk, R, V - 1>(xp, k, kc, w, ldw, nv, y, ldy);
  }
  if (nv == 16 * V) Blk<R, V, true>::run(xp, k, kc, w, ldw, nv, y, ldy);
  else Blk<R, V, false>::run(xp, k, kc, w, ldw, nv, y, ldy);
}

template <template <int, int, bool> class Blk, int R, int V>
void sb_rows_by_blocks(const uint32_t* xp, int64_t k, int64_t kc, const float* w,
                       int64_t ldw, int64_t n, float* y, int64_t ldy) {
  if (k == 0) {  // an empty sum (the blocks assume a first K panel)
    for (int i = 0; i < R; ++i)
      for (int64_t j = 0; j < n; ++j) y[i * ldy + j] = 0.0f;
    return;
  }
  int64_t j = 0;
  for (; j + 16 * V <= n; j += 16 * V)
    Blk<R, V, true>::run(xp, k, kc, w + j, ldw, 16 * V, y + j, ldy);
  if (j < n) sb_rows_tail<Blk, R, V>(xp, k, kc, w + j, ldw, n - j, y + j, ldy);
}

}  // namespace

#if defined(PYNN_X86)
// sbgemv_avx512bf16.cpp (needs AVX512_BF16) and sbgemv_avx512.cpp (AVX-512F: the emulated
// kernel on the avx512 float32 micro-kernel).
extern const SbRowKernel kSbRowAvx512Bf16;
extern const SbRowKernel kSbRowEmulatedAvx512;
#endif

}  // namespace pynn::gemm

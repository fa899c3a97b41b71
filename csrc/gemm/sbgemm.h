// bfloat16 GEMM:  C = bf16(A) * bf16(B) + beta * C, then the epilogue; float32 in and out.
//
// A and B are float32 matrices read through their strides, exactly like sgemm's operands;
// packing rounds every element to bfloat16 (round to nearest even, NaN kept quiet, results
// below FLT_MIN flushed to a signed zero, which is how the bf16 dot-product instructions
// read them). Products of two bf16 values are exact in float32, and they are summed in
// float32, so the only extra error over sgemm is the input rounding (2^-9 relative).
//
// Kernels (chosen once from cpuid, forceable with PYNN_ARCH; see common/cpu.h):
//  - amx:          Intel AMX tiles (TDPBF16PS), 32 x 32 blocks of C in four tile registers.
//                  Linux must grant the tile-data state first (arch_prctl); if it refuses,
//                  the next kernel below is used.
//  - avx512_bf16:  VDPBF16PS, a 12 x 32 register tile, K consumed in pairs; its operands
//                  are rounded by VCVTNE2PS2BF16 while packing (subnormal inputs fixed up so
//                  the bits are bf16_round_bits'), edge tiles by masked variants in place.
//  - emulated:     the float32 micro-kernel of the active ISA (avx512, avx2 or generic) on
//                  panels holding bf16-rounded float32 values.
// They differ only in the order of the float32 additions (pairs, 32-deep tile steps, or one
// by one), so results agree to float32 summation error, not bitwise, across kernels.
//
// Threads: C is cut into a grid of rectangles on tile boundaries, never along K (the grid
// whose busiest thread packs and multiplies least, as sgemm's; a product that is one block is
// packed by all threads together instead), and the K panels depend only on k, so a given
// kernel gives bitwise identical results on any thread count.
#pragma once
#include <cstdint>
#include <cstring>

#include "gemm/gemm.h"

namespace pynn::gemm {

// float32 bits -> the float32 bits of the nearest bfloat16 (low 16 bits zero).
inline uint32_t bf16_round_bits(uint32_t u) {
  uint32_t r;
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
    r = (u | 0x00400000u) & 0xFFFF0000u;  // NaN: keep it a (quiet) NaN
  } else {
    r = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;  // ties to even; may round to inf
    if ((r & 0x7F800000u) == 0) r &= 0x80000000u;     // subnormal -> signed zero
  }
  return r;
}

inline float bf16_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = bf16_round_bits(u);
  float y;
  std::memcpy(&y, &u, 4);
  return y;
}

inline uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return uint16_t(bf16_round_bits(u) >> 16);
}

// How packed panels are laid out (the kernel reads them in this order).
enum class SbLayout {
  f32,    // rounded float32; A: [p][i], B: [p][j] (the float32 micro-kernel's layout)
  pairs,  // bf16 pairs along K; A: [p/2][i][2], B: [p/2][j][2]  (VDPBF16PS, AMX's B)
  amx_a,  // bf16 rows of 32 along K; A: [p/32][i][32]           (AMX's A tiles)
};

// A micro-kernel over packed panels of padded depth kcp (a multiple of kpad):
//   C[i][j] = sum_p a[i][p] * b[p][j]           (beta == 0: C is not read)
//   C[i][j] = that + beta * C[i][j]             (otherwise)
using sb_ukr_fn = void (*)(int64_t kcp, const void* a, const void* b, float* c, int64_t ldc,
                           float beta);

// Packs `count` rows (of A; for B, columns, with the strides swapped) by depth kc into panels
// of w rows and padded depth kcp in `layout`; false: not taken, the portable packer runs.
using sb_pack_fn = bool (*)(SbLayout layout, int w, int64_t count, int64_t kc, int64_t kcp,
                            const float* src, int64_t rs, int64_t cs, void* dst);
using sb_ukr_edge_fn = void (*)(int64_t kcp, const void* a, const void* b, float* c,
                                int64_t ldc, float beta, int mv, int nv);

struct SbKernelInfo {
  const char* name;
  int mr, nr;     // register block
  int kc, mc, nc; // K panel depth, rows of A per packed block, columns of B per packed block
                  // (a kernel table's values are fallbacks: active_sb_kernel() derives them
                  // from the caches cpuid reports)
  int kpad;       // panels are zero-padded along K to a multiple of this
  SbLayout a_layout, b_layout;
  sb_ukr_fn ukr;        // null for the emulated kernels (they call f32_ukr)
  ukr_fn f32_ukr;       // the float32 micro-kernel, alpha = 1 (emulated kernels)
  void (*begin)();      // run on a thread before its first ukr call of a block (may be null)
  void (*end)();        // and after its last
  // Vector packer (may be null): packs like the portable one (the same bits), or returns
  // false for a layout or stride pattern it does not take.
  sb_pack_fn pack = nullptr;
  // Edge tile (may be null): the ukr's arithmetic on rows < mv and columns < nv only, C read
  // and written in place. Null: the ukr runs on a scratch tile.
  sb_ukr_edge_fn ukr_edge = nullptr;
};

// C = bf16(A) bf16(B) + beta C; m x n x k, C row-major with row stride ldc.
void sbgemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float beta, float* c,
            int64_t ldc, const Epilogue& ep = Epilogue{}, int nthreads = 0);

// Same with a given kernel (tests, benchmarks).
void sbgemm_with(const SbKernelInfo& kern, int64_t m, int64_t n, int64_t k, MatrixView a,
                 MatrixView b, float beta, float* c, int64_t ldc, const Epilogue& ep,
                 int nthreads);

// A B operand rounded and packed once, multiplied many times (a recurrent kernel at every
// time step), as sgemm_prepacked_b does for sgemm. sb_pack_b_whole writes B (k x n), in the
// active kernel's layout, into sb_packed_b_bytes(k, n) bytes at `packed` (64-byte aligned):
// every K panel sbgemm would use, each holding all n columns' micro-panels. sbgemm_prepacked_b
// then computes bit for bit what sbgemm computes with that B and the same other arguments, on
// any thread count, reading B's blocks from `packed` instead of rounding and packing them.
// `packed` holds for that k and n only, until B changes.
int64_t sb_packed_b_bytes(int64_t k, int64_t n);
void sb_pack_b_whole(int64_t k, int64_t n, MatrixView b, void* packed);
void sbgemm_prepacked_b(int64_t m, int64_t n, int64_t k, MatrixView a, const void* packed,
                        float beta, float* c, int64_t ldc, const Epilogue& ep = Epilogue{},
                        int nthreads = 0);

// The K panel depth the active kernel uses for a product of depth k (its KC; the one-row
// kernels of sbgemv.h follow it).
int64_t sb_k_panel_depth(int64_t k);

// The kernel in use (first call decides, asking Linux for AMX state if it gets that far).
const SbKernelInfo& active_sb_kernel();

#if defined(PYNN_X86)
// Defined in sbgemm_avx512bf16.cpp and sbgemm_amx.cpp (compiled for those ISAs).
extern const SbKernelInfo kSbKernelAvx512Bf16;
extern const SbKernelInfo kSbKernelAmx;
// AVX-512 packer of the pairs layout (sbgemm_avx512bf16.cpp; needs AVX512_BF16).
bool sb_pack_avx512(SbLayout layout, int w, int64_t count, int64_t kc, int64_t kcp,
                    const float* src, int64_t rs, int64_t cs, void* dst);
// Asks Linux for permission to use AMX tile data in this process (once); false if refused.
bool amx_permitted();
#endif

}  // namespace pynn::gemm

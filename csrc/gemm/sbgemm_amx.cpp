// The AMX micro-kernel of the bf16 GEMM (sbgemm.h): a 32 x 32 block of C in tiles 0..3,
// A in tiles 4..5 (16 rows x 32 bf16 each), B in tiles 6..7 (16 K pairs x 16 columns each).
// One TDPBF16PS per (A tile, B tile) pair consumes 32 steps of K. Compiled with -mamx-tile
// -mamx-bf16; called only when cpuid reports AMX and Linux granted the tile data state.
#if defined(PYNN_X86)
#include <immintrin.h>

#include <cstring>

#include "gemm/sbgemm.h"

namespace pynn::gemm {
namespace {

constexpr int kMR = 32;
constexpr int kNR = 32;

// The 64-byte tile configuration of palette 1.
struct alignas(64) TileConfig {
  unsigned char palette;
  unsigned char start_row;
  unsigned char reserved[14];
  unsigned short colsb[16];
  unsigned char rows[16];
};

void amx_begin() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

void amx_end() { _tile_release(); }

void ukr_amx(int64_t kcp, const void* av, const void* bv, float* c, int64_t ldc, float beta) {
  const char* a = static_cast<const char*>(av);  // [kcp/32][32 rows][32 bf16]: 2 KiB a step
  const char* b = static_cast<const char*>(bv);  // [kcp/2][32 cols][2 bf16]: 2 KiB a step
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t s = 0; s < kcp / 32; ++s) {
    const char* as = a + s * 2048;
    const char* bs = b + s * 2048;
    _tile_loadd(4, as, 64);
    _tile_loadd(5, as + 1024, 64);
    _tile_loadd(6, bs, 128);
    _tile_loadd(7, bs + 64, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float tmp[kMR * kNR];
  _tile_stored(0, tmp, 128);
  _tile_stored(1, tmp + 16, 128);
  _tile_stored(2, tmp + 16 * kNR, 128);
  _tile_stored(3, tmp + 16 * kNR + 16, 128);
  const __m512 vb = _mm512_set1_ps(beta);
  for (int i = 0; i < kMR; ++i) {
    float* ci = c + i * ldc;
    const __m512 t0 = _mm512_load_ps(tmp + i * kNR), t1 = _mm512_load_ps(tmp + i * kNR + 16);
    if (beta == 0.0f) {
      _mm512_storeu_ps(ci, t0);
      _mm512_storeu_ps(ci + 16, t1);
    } else {
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), t0));
      _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), t1));
    }
  }
}

}  // namespace

const SbKernelInfo kSbKernelAmx = {
    "amx_32x32", kMR, kNR, 512, 256, 512, 32, SbLayout::amx_a, SbLayout::pairs,
    ukr_amx, nullptr, amx_begin, amx_end, sb_pack_avx512, nullptr};

}  // namespace pynn::gemm
#endif

// The bf16 GEMM driver (sbgemm.h): packing with bf16 rounding, the blocked loops, threads and
// the kernel choice.
//
// Loop order per thread rectangle, as in sgemm: rows of A by MC, then K by KC (the A block is
// packed once per K panel), then columns by NC (B block packed into L2), then MR x NR tiles.
// A product that is a single block on several threads is packed by all threads together first
// (sb_one_block). Blocksizes come from the caches (with_cache_blocksizes).
// Edge tiles run through the kernel's masked edge variant, or on a zeroed scratch tile, so an
// element at the matrix edge sees exactly the arithmetic of an interior one.
#include "gemm/sbgemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "common/cpu.h"
#include "common/parallel.h"
#include "gemm/blocksizes.h"
#include "gemm/pack.h"

namespace pynn::gemm {
namespace {

struct FreeBytes {
  void operator()(unsigned char* p) const { std::free(p); }
};

// Per-thread, 64-byte aligned packing buffer that only grows.
class ByteScratch {
 public:
  void* get(size_t bytes) {
    if (bytes > cap_) {
      const size_t rounded = (bytes + 63) / 64 * 64;
      auto* p = static_cast<unsigned char*>(std::aligned_alloc(64, rounded));
      if (p == nullptr) throw std::bad_alloc();
      buf_.reset(p);
      cap_ = rounded;
    }
    return buf_.get();
  }

 private:
  std::unique_ptr<unsigned char, FreeBytes> buf_;
  size_t cap_ = 0;
};

thread_local ByteScratch tl_sb_a;
thread_local ByteScratch tl_sb_b;

inline int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// Element (r, q) of a strided block, 0 outside [0, rows) x [0, depth) (the zero padding).
struct Src {
  const float* p;
  int64_t rs, cs, rows, depth;
  uint32_t bits(int64_t r, int64_t q) const {
    if (r >= rows || q >= depth) return 0;
    uint32_t u;
    std::memcpy(&u, p + r * rs + q * cs, 4);
    return bf16_round_bits(u);
  }
};

// Packs `count` rows (of A, or columns of B: the "r" index) by depth kc into panels of w rows,
// padded depth kcp, in `layout`. For B the caller swaps the strides, so one routine serves both.
void pack_panels(SbLayout layout, int w, int64_t count, int64_t kc, int64_t kcp, const float* src,
                 int64_t rs, int64_t cs, void* dst) {
  for (int64_t r0 = 0; r0 < count; r0 += w) {
    const Src s{src + r0 * rs, rs, cs, std::min<int64_t>(w, count - r0), kc};
    const int64_t panel = int64_t(w) * kcp;  // elements
    switch (layout) {
      case SbLayout::f32: {
        uint32_t* d = static_cast<uint32_t*>(dst) + (r0 / w) * panel;
        if (s.rows == w && kcp == kc) {
          // A full panel: no padding to test for.
          const float* p = s.p;
          for (int64_t q = 0; q < kc; ++q)
            for (int i = 0; i < w; ++i) {
              uint32_t u;
              std::memcpy(&u, p + i * rs + q * cs, 4);
              d[q * w + i] = bf16_round_bits(u);
            }
        } else {
          for (int64_t q = 0; q < kcp; ++q)
            for (int i = 0; i < w; ++i) d[q * w + i] = s.bits(i, q);
        }
        break;
      }
      case SbLayout::pairs: {
        uint16_t* d = static_cast<uint16_t*>(dst) + (r0 / w) * panel;
        for (int64_t q = 0; q < kcp; q += 2)
          for (int i = 0; i < w; ++i) {
            d[q * w + 2 * i] = uint16_t(s.bits(i, q) >> 16);
            d[q * w + 2 * i + 1] = uint16_t(s.bits(i, q + 1) >> 16);
          }
        break;
      }
      case SbLayout::amx_a: {
        uint16_t* d = static_cast<uint16_t*>(dst) + (r0 / w) * panel;
        for (int64_t q0 = 0; q0 < kcp; q0 += 32)
          for (int i = 0; i < w; ++i)
            for (int q = 0; q < 32; ++q) d[q0 * w + i * 32 + q] = uint16_t(s.bits(i, q0 + q) >> 16);
        break;
      }
    }
  }
}

size_t elem_bytes(SbLayout l) { return l == SbLayout::f32 ? 4 : 2; }

// Rounds n packed floats in place (a contiguous pass the compiler vectorises).
void round_in_place(uint32_t* d, int64_t n) {
  // bf16_round_bits written with selects instead of branches, so that it vectorises.
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = d[i];
    uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    r &= (r & 0x7F800000u) == 0 ? 0x80000000u : 0xFFFFFFFFu;
    const uint32_t quiet = (u | 0x00400000u) & 0xFFFF0000u;
    d[i] = (u & 0x7FFFFFFFu) > 0x7F800000u ? quiet : r;
  }
}

// The f32 layout is the float32 GEMM's: its packing routines (pack.h), then one rounding pass.
bool pack_f32_then_round(bool is_a, int w, int64_t count, int64_t kc, const float* src,
                         int64_t rs, int64_t cs, void* dst) {
  float* d = static_cast<float*>(dst);
  switch (is_a ? w : -w) {
    case 4: pack_a<4>(count, kc, src, rs, cs, d); break;
    case 6: pack_a<6>(count, kc, src, rs, cs, d); break;
    case 8: pack_a<8>(count, kc, src, rs, cs, d); break;
    case 12: pack_a<12>(count, kc, src, rs, cs, d); break;
    case 14: pack_a<14>(count, kc, src, rs, cs, d); break;
    case 16: pack_a<16>(count, kc, src, rs, cs, d); break;
    case -8: pack_b<8>(kc, count, src, rs, cs, d); break;
    case -16: pack_b<16>(kc, count, src, rs, cs, d); break;
    case -32: pack_b<32>(kc, count, src, rs, cs, d); break;
    case -64: pack_b<64>(kc, count, src, rs, cs, d); break;
    default: return false;
  }
  round_in_place(static_cast<uint32_t*>(dst), round_up(count, w) * kc);
  return true;
}

void pack_a_block(const SbKernelInfo& k, int64_t mc, int64_t kc, int64_t kcp, const float* src,
                  int64_t rs, int64_t cs, void* dst) {
  if (k.a_layout == SbLayout::f32 && kcp == kc &&
      pack_f32_then_round(true, k.mr, mc, kc, src, rs, cs, dst))
    return;
  if (k.pack != nullptr && k.pack(k.a_layout, k.mr, mc, kc, kcp, src, rs, cs, dst)) return;
  pack_panels(k.a_layout, k.mr, mc, kc, kcp, src, rs, cs, dst);
}

void pack_b_block(const SbKernelInfo& k, int64_t kc, int64_t nc, int64_t kcp, const float* src,
                  int64_t rs, int64_t cs, void* dst) {
  if (k.b_layout == SbLayout::f32 && kcp == kc &&
      pack_f32_then_round(false, k.nr, nc, kc, src, rs, cs, dst))
    return;
  if (k.pack != nullptr && k.pack(k.b_layout, k.nr, nc, kc, kcp, src, cs, rs, dst)) return;
  pack_panels(k.b_layout, k.nr, nc, kc, kcp, src, cs, rs, dst);  // B's columns are the "rows"
}

// Panels of near-equal depth no deeper than kern.kc, rounded up to the kernel's K granularity.
int64_t sb_panel_depth(const SbKernelInfo& kern, int64_t k) {
  const int64_t panels = (k + kern.kc - 1) / kern.kc;
  return round_up((k + panels - 1) / panels, kern.kpad);
}

// A B packed whole beforehand (sb_pack_b_whole), or none (p null: sb_block packs its blocks).
// K panel number pc / KC starts panel_bytes * that into p and holds every column's micro-panels
// in pack_b_block's layout, so the block of columns from jc (a multiple of NR) starts
// jc * kcp elements further on: the very bits pack_b_block would write for that block.
struct PackedB {
  const unsigned char* p = nullptr;
  size_t panel_bytes = 0;
  const void* block(const SbKernelInfo& kern, int64_t pc, int64_t KC, int64_t jc,
                    int64_t kcp) const {
    return p + size_t(pc / KC) * panel_bytes + size_t(jc) * kcp * elem_bytes(kern.b_layout);
  }
};

// Bytes of one full K panel of a whole packed B, rounded up so that every panel starts
// 64-byte aligned, as the per-call packing buffer does.
size_t prepacked_panel_bytes(const SbKernelInfo& kern, int64_t k, int64_t n) {
  const int64_t npad = round_up(n, kern.nr);
  return size_t(round_up(npad * sb_panel_depth(kern, k) * int64_t(elem_bytes(kern.b_layout)),
                         64));
}

void run_ukr(const SbKernelInfo& kern, int64_t kcp, const void* a, const void* b, float* c,
             int64_t ldc, float beta) {
  if (kern.ukr != nullptr) kern.ukr(kcp, a, b, c, ldc, beta);
  else kern.f32_ukr(kcp, static_cast<const float*>(a), static_cast<const float*>(b), c, ldc,
                    1.0f, beta);
}

// The tiles of rows [ir0, ir1) x columns [jr0, jr1) (offsets into the packed blocks, on tile
// boundaries) of one K panel: A packed at abuf, B at bbuf, C's block starting at row ic,
// column jc. `last`: the panel ends K, the epilogue runs.
struct PanelTiles {
  const SbKernelInfo& kern;
  int64_t kcp;
  const void* abuf;
  const void* bbuf;
  int64_t mc, nc, ic, jc;
  float beta_p;
  bool last;
  float* c;
  int64_t ldc;
  const Epilogue& ep;

  void run(int64_t ir0, int64_t ir1, int64_t jr0, int64_t jr1) const {
    const int MR = kern.mr, NR = kern.nr;
    const size_t ab = elem_bytes(kern.a_layout), bb = elem_bytes(kern.b_layout);
    alignas(64) float edge[32 * 32] = {};
    for (int64_t ir = ir0; ir < std::min(ir1, mc); ir += MR) {
      const int64_t mv = std::min<int64_t>(MR, mc - ir);
      const void* ap = static_cast<const unsigned char*>(abuf) + size_t(ir) * kcp * ab;
      for (int64_t jr = jr0; jr < std::min(jr1, nc); jr += NR) {
        const int64_t nv = std::min<int64_t>(NR, nc - jr);
        const void* bp = static_cast<const unsigned char*>(bbuf) + size_t(jr) * kcp * bb;
        float* ct = c + (ic + ir) * ldc + (jc + jr);
        if (mv == MR && nv == NR) {
          run_ukr(kern, kcp, ap, bp, ct, ldc, beta_p);
        } else if (kern.ukr_edge != nullptr) {
          kern.ukr_edge(kcp, ap, bp, ct, ldc, beta_p, int(mv), int(nv));
        } else {
          if (beta_p != 0.0f)
            for (int64_t i = 0; i < mv; ++i)
              std::copy(ct + i * ldc, ct + i * ldc + nv, edge + i * NR);
          run_ukr(kern, kcp, ap, bp, edge, NR, beta_p);
          for (int64_t i = 0; i < mv; ++i)
            std::copy(edge + i * NR, edge + i * NR + nv, ct + i * ldc);
        }
        if (last && !ep.empty()) ep.apply(ct, ldc, ic + ir, jc + jr, mv, nv);
      }
    }
  }
};

// Rows [m0, m1) x columns [n0, n1) of C, all of K, on the calling thread.
void sb_block(const SbKernelInfo& kern, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
              int64_t k, MatrixView a, MatrixView b, const PackedB& pb, float beta, float* c,
              int64_t ldc, const Epilogue& ep) {
  const int MR = kern.mr, NR = kern.nr;
  // MC evened out over the blocks it needs (as sgemm does): a thin last block would pack all
  // of B again for a few rows. A multiple of MR, so tiles start on the same rows whatever MC is.
  const int64_t mc_max = std::max<int64_t>(MR, kern.mc / MR * MR);
  const int64_t mblocks = (m1 - m0 + mc_max - 1) / mc_max;
  const int64_t MC = ((m1 - m0 + mblocks - 1) / mblocks + MR - 1) / MR * MR;
  const int64_t NC = std::max<int64_t>(NR, kern.nc / NR * NR);
  const int64_t KC = sb_panel_depth(kern, k);
  const size_t ab = elem_bytes(kern.a_layout), bb = elem_bytes(kern.b_layout);
  void* abuf = tl_sb_a.get(size_t(round_up(std::min(MC, m1 - m0), MR)) * KC * ab);
  void* bbuf =
      pb.p ? nullptr : tl_sb_b.get(size_t(round_up(std::min(NC, n1 - n0), NR)) * KC * bb);
  if (kern.begin != nullptr) kern.begin();
  for (int64_t ic = m0; ic < m1; ic += MC) {
    const int64_t mc = std::min(MC, m1 - ic);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      const int64_t kcp = round_up(kc, kern.kpad);
      pack_a_block(kern, mc, kc, kcp, a.data + ic * a.rs + pc * a.cs, a.rs, a.cs, abuf);
      for (int64_t jc = n0; jc < n1; jc += NC) {
        const int64_t nc = std::min(NC, n1 - jc);
        const void* bblock = bbuf;
        if (pb.p) bblock = pb.block(kern, pc, KC, jc, kcp);
        else pack_b_block(kern, kc, nc, kcp, b.data + pc * b.rs + jc * b.cs, b.rs, b.cs, bbuf);
        const PanelTiles tiles{kern, kcp, abuf, bblock, mc, nc, ic, jc, pc == 0 ? beta : 1.0f,
                               pc + kc == k, c, ldc, ep};
        tiles.run(0, mc, 0, nc);
      }
    }
  }
  if (kern.end != nullptr) kern.end();
}

// The whole product is one block (one K panel, m <= MC, n <= NC: a layer of a small network)
// on nt threads: the threads first pack A and B together, each its share of the panels, into
// the caller's buffers, then each runs its share of the tiles. Split this way, no thread packs
// what another packs too (cut along N, each would pack all of A). The tiles see the same
// packed panels as on one thread, so results are bitwise the same.
void sb_one_block(const SbKernelInfo& kern, int nt, bool by_n, int64_t m, int64_t n, int64_t k,
                  MatrixView a, MatrixView b, const PackedB& pb, float beta, float* c,
                  int64_t ldc, const Epilogue& ep) {
  const int MR = kern.mr, NR = kern.nr;
  const int64_t kcp = round_up(k, kern.kpad);
  const int64_t mp = (m + MR - 1) / MR, np = (n + NR - 1) / NR;
  const size_t ab = elem_bytes(kern.a_layout), bb = elem_bytes(kern.b_layout);
  auto* abuf = static_cast<unsigned char*>(tl_sb_a.get(size_t(mp * MR * kcp) * ab));
  const auto* bbuf = pb.p ? static_cast<const unsigned char*>(pb.block(kern, 0, 1, 0, kcp))
                         : static_cast<unsigned char*>(tl_sb_b.get(size_t(np * NR * kcp) * bb));
  parallel::run(nt, [&](int t) {
    int64_t lo, hi;
    parallel::static_block(mp, nt, t, lo, hi);
    if (lo < hi)
      pack_a_block(kern, std::min(m, hi * MR) - lo * MR, k, kcp, a.data + lo * MR * a.rs, a.rs,
                   a.cs, abuf + size_t(lo * MR * kcp) * ab);
    if (pb.p) return;
    parallel::static_block(np, nt, t, lo, hi);
    if (lo < hi)
      pack_b_block(kern, k, std::min(n, hi * NR) - lo * NR, kcp, b.data + lo * NR * b.cs, b.rs,
                   b.cs, const_cast<unsigned char*>(bbuf) + size_t(lo * NR * kcp) * bb);
  });
  const PanelTiles tiles{kern, kcp, abuf, bbuf, m, n, 0, 0, beta, true, c, ldc, ep};
  parallel::run(nt, [&](int t) {
    int64_t lo, hi;
    parallel::static_block(by_n ? np : mp, nt, t, lo, hi);
    if (lo >= hi) return;
    if (kern.begin != nullptr) kern.begin();
    if (by_n) tiles.run(0, m, lo * NR, hi * NR);
    else tiles.run(lo * MR, hi * MR, 0, n);
    if (kern.end != nullptr) kern.end();
  });
}

// The emulated kernels: float32 micro-kernels on rounded panels, one per float32 ISA.
SbKernelInfo emulated_from(const KernelInfo& f) {
  SbKernelInfo s{};
  s.name = f.arch == Arch::avx512 ? "emulated_avx512"
           : f.arch == Arch::avx2 ? "emulated_avx2" : "emulated_generic";
  s.mr = f.mr;
  s.nr = f.nr;
  s.kc = f.kc;
  s.mc = f.mc;
  s.nc = f.nc;
  s.kpad = 1;
  s.a_layout = SbLayout::f32;
  s.b_layout = SbLayout::f32;
  s.ukr = nullptr;
  s.f32_ukr = f.ukr;
  return s;
}

// A bf16 kernel's table with KC, MC and NC from this CPU's caches, as sgemm derives its own
// (blocksizes.h), for packed elements of the kernel's size (2 bytes: twice the depth of a
// float32 panel fits the same cache):
//   KC  the A micro-panel (MR x KC) fills up to 3/4 of L1d, at most 1024 deep;
//   NC  the packed B block (KC x NC) fills L2;
//   MC  the packed A block (MC x KC) fills half of this core's share of L3.
// Larger than sgemm's halves: a deeper panel means fewer passes over C (one per K panel, each
// a read and write of all of C), and the bf16 micro-kernel streams B from L2 anyway. Measured
// on a Zen 4 (32 KB L1d, 1 MB L2) with benchmarks/ab_sbgemm.py, KC 1024 / NC 512 against the
// halves' 672 / 384: 2048^2 5-7% faster, 128x784.784x256 about 2%.
// KC is a multiple of 32, so of every kernel's kpad. A cache cpuid does not report keeps the
// table's value. KC decides the K panels and so the rounding: it never depends on the thread
// count.
SbKernelInfo with_cache_blocksizes(SbKernelInfo s) {
  const CacheSizes& c = cpu_caches();
  const int64_t eb = int64_t(elem_bytes(s.a_layout));
  auto fit = [](int64_t units, int64_t step, int64_t lo, int64_t hi) {
    return int(std::clamp<int64_t>(units / step * step, lo, hi));
  };
  if (c.l1d > 0) s.kc = fit(c.l1d * 3 / 4 / (s.mr * eb), 32, 128, 1024);
  if (c.l2 > 0) s.nc = fit(c.l2 / (s.kc * eb), s.nr, s.nr, 4096 / s.nr * s.nr);
  if (c.l3 > 0) {
    // As sgemm: a VM may report every host CPU as sharing the L3; a core's share is >= 1 MB.
    const int64_t share = std::max<int64_t>(c.l3 / std::max(1, c.l3_sharing), int64_t(1) << 20);
    s.mc = fit(share / 2 / (s.kc * eb), s.mr, 4 * s.mr, 8192 / s.mr * s.mr);
  }
  return s;
}

const SbKernelInfo& choose_sb_kernel() {
  static const SbKernelInfo emulated = emulated_from(active_kernel());
#if defined(PYNN_X86)
  static const SbKernelInfo avx512_bf16 = with_cache_blocksizes(kSbKernelAvx512Bf16);
  static const SbKernelInfo amx = [] {
    SbKernelInfo s = with_cache_blocksizes(kSbKernelAmx);
    if (!cpu_supports(Bf16Arch::avx512_bf16)) s.pack = nullptr;  // its packer needs that ISA
    return s;
  }();
#endif
  static const SbKernelInfo* chosen = [] {
    const Bf16Arch want = active_bf16_arch();
#if defined(PYNN_X86)
    // AMX needs the kernel's permission; without it, the next best kernel.
    if (want == Bf16Arch::amx && amx_permitted()) return &amx;
    if (want != Bf16Arch::emulated && cpu_supports(Bf16Arch::avx512_bf16)) return &avx512_bf16;
#endif
    (void)want;
    return &emulated;
  }();
  return *chosen;
}

}  // namespace

#if defined(PYNN_X86)
bool amx_permitted() {
  static const bool ok = [] {
#if defined(__linux__)
    constexpr long kArchReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM
    constexpr long kXfeatureXtiledata = 18;     // XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
  }();
  return ok;
}
#endif

const SbKernelInfo& active_sb_kernel() { return choose_sb_kernel(); }

int64_t sb_k_panel_depth(int64_t k) {
  return k > 0 ? sb_panel_depth(active_sb_kernel(), k) : 0;
}

namespace {

// The factorisation tm x tn of nt whose busiest thread has the least work, counting what each
// thread packs (as sgemm's choose_grid does). A thread packs its rows of A once per K panel,
// and its columns of B once per K panel and block of MC rows (none when B was packed
// beforehand); cut along N every thread rounds all of A, cut along M all of B, so the cheaper
// cut is the one that repeats the smaller operand. Packing here also rounds to bf16 (and for
// a strided operand transposes), so a packed element costs about as much as 20 multiply-adds
// of the bf16 micro-kernel: the ratio of the two in a perf profile of the MLP training step
// (benchmarks/bench_bf16.py's epoch; packing 11%, micro-kernel 59% on a Zen 4). Only the
// choice between cuts depends on it, never a result: every element of C is the same sequence
// of operations whichever rectangle computes it.
ThreadGrid choose_sb_grid(const SbKernelInfo& kern, int64_t m, int64_t n, int64_t k, int nt,
                          bool b_packed) {
  constexpr double kMacsPerPacked = 20.0;
  const int64_t mp = (m + kern.mr - 1) / kern.mr, np = (n + kern.nr - 1) / kern.nr;
  const int64_t mc_max = std::max<int64_t>(kern.mr, kern.mc / kern.mr * kern.mr);
  return least_cost_grid(mp, np, kern.mr, kern.nr, nt, [&](double rows, double cols) {
    const double mblocks = std::ceil(rows / double(mc_max));
    const double packed = rows * double(k) + (b_packed ? 0.0 : cols * double(k) * mblocks);
    return rows * cols * double(k) / kMacsPerPacked + packed;
  });
}

// sbgemm's threads and paths, B packed per block or read from pb.
void sb_run(const SbKernelInfo& kern, int64_t m, int64_t n, int64_t k, MatrixView a,
            MatrixView b, const PackedB& pb, float beta, float* c, int64_t ldc,
            const Epilogue& ep, int nthreads) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) {
      float* ci = c + i * ldc;
      if (beta == 0.0f) std::fill(ci, ci + n, 0.0f);
      else if (beta != 1.0f) for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
    }
    if (!ep.empty()) ep.apply(c, ldc, 0, 0, m, n);
    return;
  }
  const int nt = threads_for(m, n, k, nthreads);
  const int64_t mp = (m + kern.mr - 1) / kern.mr, np = (n + kern.nr - 1) / kern.nr;
  // A thread count with no factorisation that fits the panels (3 threads, 2 panels) tries
  // one thread fewer.
  ThreadGrid g;
  for (int t = nt; t >= 2 && g.tm * g.tn == 1; --t)
    g = choose_sb_grid(kern, m, n, k, t, pb.p != nullptr);
  const int used = g.tm * g.tn;
  if (used <= 1) {
    sb_block(kern, 0, m, 0, n, k, a, b, pb, beta, c, ldc, ep);
    return;
  }
  // One K panel and (per thread) one block of columns: the threads pack together and share
  // the panels, so no cut repeats any packing; the tiles are cut along N when there is a column
  // panel per thread (a layer's forward pass: even shares of the wider operand), else along M.
  const bool by_n = np >= used || np >= mp;
  const int shared = int(std::min<int64_t>(used, by_n ? np : mp));
  if (k <= sb_panel_depth(kern, k) && m <= kern.mc && n <= int64_t(by_n ? shared : 1) * kern.nc) {
    sb_one_block(kern, shared, by_n, m, n, k, a, b, pb, beta, c, ldc, ep);
    return;
  }
  parallel::run(used, [&](int t) {
    const int ti = t / g.tn, tj = t % g.tn;
    int64_t mlo, mhi, nlo, nhi;
    parallel::static_block(mp, g.tm, ti, mlo, mhi);
    parallel::static_block(np, g.tn, tj, nlo, nhi);
    const int64_t m0 = mlo * kern.mr, m1 = std::min(m, mhi * kern.mr);
    const int64_t n0 = nlo * kern.nr, n1 = std::min(n, nhi * kern.nr);
    if (m0 < m1 && n0 < n1) sb_block(kern, m0, m1, n0, n1, k, a, b, pb, beta, c, ldc, ep);
  });
}

}  // namespace

void sbgemm_with(const SbKernelInfo& kern, int64_t m, int64_t n, int64_t k, MatrixView a,
                 MatrixView b, float beta, float* c, int64_t ldc, const Epilogue& ep,
                 int nthreads) {
  sb_run(kern, m, n, k, a, b, PackedB{}, beta, c, ldc, ep, nthreads);
}

int64_t sb_packed_b_bytes(int64_t k, int64_t n) {
  if (k <= 0 || n <= 0) return 0;
  const SbKernelInfo& kern = active_sb_kernel();
  const int64_t panels = (k + sb_panel_depth(kern, k) - 1) / sb_panel_depth(kern, k);
  return panels * int64_t(prepacked_panel_bytes(kern, k, n));
}

void sb_pack_b_whole(int64_t k, int64_t n, MatrixView b, void* packed) {
  if (k <= 0 || n <= 0) return;
  if (reinterpret_cast<uintptr_t>(packed) % 64 != 0)
    throw std::invalid_argument("sb_pack_b_whole: the packed B must be 64-byte aligned");
  const SbKernelInfo& kern = active_sb_kernel();
  const int64_t KC = sb_panel_depth(kern, k);
  const size_t panel_bytes = prepacked_panel_bytes(kern, k, n);
  auto* dst = static_cast<unsigned char*>(packed);
  for (int64_t pc = 0; pc < k; pc += KC) {
    const int64_t kc = std::min(KC, k - pc);
    pack_b_block(kern, kc, n, round_up(kc, kern.kpad), b.data + pc * b.rs, b.rs, b.cs,
                 dst + size_t(pc / KC) * panel_bytes);
  }
}

void sbgemm_prepacked_b(int64_t m, int64_t n, int64_t k, MatrixView a, const void* packed,
                        float beta, float* c, int64_t ldc, const Epilogue& ep, int nthreads) {
  if (k > 0 && reinterpret_cast<uintptr_t>(packed) % 64 != 0)
    throw std::invalid_argument("sbgemm_prepacked_b: the packed B must be 64-byte aligned");
  const SbKernelInfo& kern = active_sb_kernel();
  const PackedB pb{static_cast<const unsigned char*>(packed),
                   k > 0 && n > 0 ? prepacked_panel_bytes(kern, k, n) : 0};
  sb_run(kern, m, n, k, a, MatrixView{nullptr, 0, 0}, pb, beta, c, ldc, ep, nthreads);
}

void sbgemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float beta, float* c,
            int64_t ldc, const Epilogue& ep, int nthreads) {
  sbgemm_with(active_sb_kernel(), m, n, k, a, b, beta, c, ldc, ep, nthreads);
}

}  // namespace pynn::gemm

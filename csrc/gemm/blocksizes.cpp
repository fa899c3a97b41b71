#include "gemm/blocksizes.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if defined(PYNN_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define PYNN_HAVE_CPUID 1
#endif

namespace pynn::gemm {
namespace {

#ifdef PYNN_HAVE_CPUID
// Walks the deterministic cache parameters leaf (4 on Intel, 0x8000001D on AMD: same layout).
CacheSizes read_cpuid() {
  CacheSizes c;
  unsigned a, b, cx, d;
  if (!__get_cpuid(0, &a, &b, &cx, &d)) return c;
  const unsigned max_leaf = a;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &cx, 4);
  unsigned leaf = 4;
  if (std::strcmp(vendor, "AuthenticAMD") == 0 || std::strcmp(vendor, "HygonGenuine") == 0) {
    if (!__get_cpuid(0x80000000u, &a, &b, &cx, &d) || a < 0x8000001Du) return c;
    leaf = 0x8000001Du;
  } else if (max_leaf < 4) {
    return c;
  }
  for (unsigned i = 0; i < 16; ++i) {
    __cpuid_count(leaf, i, a, b, cx, d);
    const unsigned type = a & 0x1f;  // 0: no more caches; 1 data, 2 instruction, 3 unified
    if (type == 0) break;
    if (type == 2) continue;
    const unsigned level = (a >> 5) & 0x7;
    const int64_t size = int64_t((b >> 22) + 1) * (((b >> 12) & 0x3ff) + 1) *
                         ((b & 0xfff) + 1) * (int64_t(cx) + 1);
    if (level == 1) c.l1d = size;
    if (level == 2) c.l2 = size;
    if (level == 3) {
      c.l3 = size;
      c.l3_sharing = int(((a >> 14) & 0xfff) + 1);
    }
  }
  return c;
}
#endif

int env_positive(const char* name) {
  const char* s = std::getenv(name);
  if (s == nullptr || *s == '\0') return 0;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  return (*end == '\0' && v > 0 && v <= 1 << 16) ? int(v) : 0;
}

// bytes / (floats_per_unit * 4) rounded down to a multiple of `step`, within [lo, hi].
int fit(int64_t bytes, int64_t floats_per_unit, int step, int lo, int hi) {
  const int64_t units = bytes / (floats_per_unit * 4) / step * step;
  return int(std::clamp<int64_t>(units, lo, hi));
}

}  // namespace

const CacheSizes& cpu_caches() {
  static const CacheSizes c = [] {
#ifdef PYNN_HAVE_CPUID
    return read_cpuid();
#else
    return CacheSizes{};
#endif
  }();
  return c;
}

Blocksizes derive_blocksizes(const CacheSizes& c, int mr, int nr, const Blocksizes& fallback) {
  Blocksizes s = fallback;
  if (c.l1d > 0) s.kc = fit(c.l1d / 2, mr, 16, 128, 512);
  if (c.l2 > 0) s.nc = fit(c.l2 / 2, s.kc, nr, nr, 4096 / nr * nr);
  if (c.l3 > 0) {
    // A VM may report every host CPU as sharing the L3; one core's share is at least 1 MB.
    const int64_t share = std::max<int64_t>(c.l3 / std::max(1, c.l3_sharing), int64_t(1) << 20);
    s.mc = fit(share / 2, s.kc, mr, 4 * mr, 8192 / mr * mr);
  }
  if (int v = env_positive("PYNN_GEMM_KC")) s.kc = v;
  if (int v = env_positive("PYNN_GEMM_NC")) s.nc = std::max(nr, v / nr * nr);
  if (int v = env_positive("PYNN_GEMM_MC")) s.mc = std::max(mr, v / mr * mr);
  return s;
}

int derive_sparse_depth(const CacheSizes& c, int width, int fallback) {
  int d = fallback;
  if (c.l1d > 0) d = fit(c.l1d, width, 16, 16, 512);
  if (int v = env_positive("PYNN_GEMM_SPARSE_DEPTH")) d = std::max(16, v / 16 * 16);
  return d;
}

}  // namespace pynn::gemm

#include "common/cpu.h"

#include <cstdlib>
#if defined(PYNN_X86)
#include <cpuid.h>
#endif
#include <cstring>

namespace pynn {
namespace {

struct ArchChoice {
  Arch arch = Arch::generic;
  Bf16Arch bf16 = Bf16Arch::emulated;
  std::string error;
};

ArchChoice choose() {
  ArchChoice c;
  Arch best = Arch::generic;
  if (cpu_supports(Arch::avx512)) best = Arch::avx512;
  else if (cpu_supports(Arch::avx2)) best = Arch::avx2;
  c.arch = best;
  if (cpu_supports(Bf16Arch::amx)) c.bf16 = Bf16Arch::amx;
  else if (cpu_supports(Bf16Arch::avx512_bf16)) c.bf16 = Bf16Arch::avx512_bf16;
  const char* env = std::getenv("PYNN_ARCH");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return c;
  Arch want;
  Bf16Arch want_bf16 = Bf16Arch::emulated;
  if (std::strcmp(env, "amx") == 0) {
    want = Arch::avx512;
    want_bf16 = Bf16Arch::amx;
  } else if (std::strcmp(env, "avx512_bf16") == 0) {
    want = Arch::avx512;
    want_bf16 = Bf16Arch::avx512_bf16;
  } else if (std::strcmp(env, "avx512") == 0) want = Arch::avx512;
  else if (std::strcmp(env, "avx2") == 0) want = Arch::avx2;
  else if (std::strcmp(env, "generic") == 0) want = Arch::generic;
  else {
    c.error = std::string("PYNN_ARCH must be one of 'amx', 'avx512_bf16', 'avx512', 'avx2', "
                          "'generic' or 'auto'; got '") + env + "'";
    return c;
  }
  if (!cpu_supports(want) || !cpu_supports(want_bf16)) {
    c.error = std::string("PYNN_ARCH=") + env + " but this CPU does not support that instruction set";
    return c;
  }
  c.arch = want;
  c.bf16 = want_bf16;
  return c;
}

const ArchChoice& choice() {
  static const ArchChoice c = choose();
  return c;
}

}  // namespace

bool cpu_supports(Arch arch) {
  switch (arch) {
    case Arch::generic:
      return true;
#if defined(PYNN_X86) && (defined(__GNUC__) || defined(__clang__))
    case Arch::avx2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Arch::avx512:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default:
      return false;
  }
}

bool cpu_supports(Bf16Arch arch) {
  switch (arch) {
    case Bf16Arch::emulated:
      return true;
#if defined(PYNN_X86) && (defined(__GNUC__) || defined(__clang__))
    case Bf16Arch::avx512_bf16: {
      // CPUID.(EAX=7,ECX=1):EAX bit 5
      unsigned a = 0, b = 0, c = 0, d = 0;
      if (!cpu_supports(Arch::avx512) || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
      return (a >> 5) & 1u;
    }
    case Bf16Arch::amx: {
      // CPUID.(EAX=7,ECX=0):EDX bits 22 (AMX-BF16) and 24 (AMX-TILE), and the OS saving
      // the tile state (XCR0 bits 17 and 18).
      unsigned a = 0, b = 0, c = 0, d = 0;
      if (!cpu_supports(Arch::avx512) || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
      if (!((d >> 22) & 1u) || !((d >> 24) & 1u)) return false;
      unsigned lo = 0, hi = 0;
      __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      return (lo & (3u << 17)) == (3u << 17);
    }
#endif
    default:
      return false;
  }
}

Bf16Arch active_bf16_arch() { return choice().bf16; }

const char* arch_name(Bf16Arch arch) {
  switch (arch) {
    case Bf16Arch::amx: return "amx";
    case Bf16Arch::avx512_bf16: return "avx512_bf16";
    default: return "emulated";
  }
}

Arch active_arch() { return choice().arch; }
const std::string& arch_error() { return choice().error; }

const char* arch_name(Arch arch) {
  switch (arch) {
    case Arch::avx512: return "avx512";
    case Arch::avx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace pynn

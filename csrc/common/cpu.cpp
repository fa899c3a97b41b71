#include "common/cpu.h"

#include <cstdlib>
#include <cstring>

namespace pynn {
namespace {

struct ArchChoice {
  Arch arch = Arch::generic;
  std::string error;
};

ArchChoice choose() {
  ArchChoice c;
  Arch best = Arch::generic;
  if (cpu_supports(Arch::avx512)) best = Arch::avx512;
  else if (cpu_supports(Arch::avx2)) best = Arch::avx2;
  c.arch = best;
  const char* env = std::getenv("PYNN_ARCH");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return c;
  Arch want;
  if (std::strcmp(env, "avx512") == 0) want = Arch::avx512;
  else if (std::strcmp(env, "avx2") == 0) want = Arch::avx2;
  else if (std::strcmp(env, "generic") == 0) want = Arch::generic;
  else {
    c.error = std::string("PYNN_ARCH must be one of 'avx512', 'avx2', 'generic' or 'auto'; got '") +
              env + "'";
    return c;
  }
  if (!cpu_supports(want)) {
    c.error = std::string("PYNN_ARCH=") + env + " but this CPU does not support that instruction set";
    return c;
  }
  c.arch = want;
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

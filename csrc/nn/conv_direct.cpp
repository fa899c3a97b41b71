// Picks the direct convolution kernels of the active ISA (see conv_direct.h).
#include "nn/conv_direct.h"

#include "common/cpu.h"

namespace pynn::nn {

const DirectConvKernels* direct_conv_kernels() {
#if defined(PYNN_X86)
  static const DirectConvKernels* k = [] {
    const Arch arch = active_arch();
    if (arch == Arch::avx512) return direct_conv_kernels_avx512();
    if (arch == Arch::avx2) return direct_conv_kernels_avx2();
    return static_cast<const DirectConvKernels*>(nullptr);
  }();
  return k;
#else
  return nullptr;
#endif
}

}  // namespace pynn::nn

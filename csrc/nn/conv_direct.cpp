// Picks the direct convolution kernels of the active ISA (see conv_direct.h).
#include "nn/conv_direct.h"

#include <cstring>

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

void wino_kernel(const float* k, const float* bias, int64_t C, int64_t F, int64_t FP,
                 float* wu) {
  std::memset(wu, 0, sizeof(float) * size_t(wino_kernel_size(C, FP)));
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t f = 0; f < F; ++f) {
      float g[3][3], t[4][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) g[i][j] = k[((i * 3 + j) * C + c) * F + f];
      for (int j = 0; j < 3; ++j) {  // G g
        t[0][j] = g[0][j];
        t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      for (int a = 0; a < 4; ++a) {  // (G g) G^T
        float* row = wu + (a * 4) * C * FP + c * FP + f;
        row[0] = t[a][0];
        row[C * FP] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
        row[2 * C * FP] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
        row[3 * C * FP] = t[a][2];
      }
    }
  }
  if (bias != nullptr) std::memcpy(wu + 16 * C * FP, bias, sizeof(float) * size_t(F));
}

}  // namespace pynn::nn

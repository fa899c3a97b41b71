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

void wino_finish_grad(const float* s, int64_t C, int64_t F, bool acc, float* dw) {
  const int64_t xs = C * F;  // from one xi to the next
  for (int64_t e = 0; e < C * F; ++e) {
    float m[4][4], t[3][4];
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b) m[a][b] = s[(a * 4 + b) * xs + e];
    for (int b = 0; b < 4; ++b) {  // G^T m, G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1]
      t[0][b] = m[0][b] + 0.5f * (m[1][b] + m[2][b]);
      t[1][b] = 0.5f * (m[1][b] - m[2][b]);
      t[2][b] = 0.5f * (m[1][b] + m[2][b]) + m[3][b];
    }
    for (int i = 0; i < 3; ++i) {  // (G^T m) G
      const float g[3] = {t[i][0] + 0.5f * (t[i][1] + t[i][2]), 0.5f * (t[i][1] - t[i][2]),
                          0.5f * (t[i][1] + t[i][2]) + t[i][3]};
      for (int j = 0; j < 3; ++j) {
        float& d = dw[(i * 3 + j) * xs + e];
        d = acc ? d + g[j] : g[j];
      }
    }
  }
}

}  // namespace pynn::nn

// Picks the direct convolution kernels of the active ISA (see conv_direct.h).
#include "nn/conv_direct.h"

#include <cstring>
#include <vector>

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

namespace {
// o1 = (a + b + c) / 2 and o2 = (a - b + c) / 2 over n floats (restrict: the loop vectorises).
void half_sums(const float* __restrict a, const float* __restrict b, const float* __restrict c,
               float* __restrict o1, float* __restrict o2, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    o1[i] = 0.5f * (a[i] + b[i] + c[i]);
    o2[i] = 0.5f * (a[i] - b[i] + c[i]);
  }
}
}  // namespace

void wino_kernel(const float* k, const float* bias, int64_t C, int64_t F, int64_t FP,
                 float* wu) {
  // By whole rows of F filters: each step reads and writes runs of consecutive floats and
  // vectorises. (It runs on every forward call; one (c, f) pair at a time, whose 16 writes
  // land 16 rows apart, it took most of a 1-image predict of the MNIST convnet.)
  std::vector<float> tmp(size_t(6 * F));
  for (int64_t c = 0; c < C; ++c) {
    const float* g[9];  // g[i * 3 + j]: the kernel's tap (i, j) for every filter
    for (int ij = 0; ij < 9; ++ij) g[ij] = k + (ij * C + c) * F;
    const float* t[4][3];  // G g, row a column j
    for (int j = 0; j < 3; ++j) {
      float* t1 = tmp.data() + j * F;
      float* t2 = tmp.data() + (3 + j) * F;
      half_sums(g[j], g[3 + j], g[6 + j], t1, t2, F);
      t[0][j] = g[j];
      t[1][j] = t1;
      t[2][j] = t2;
      t[3][j] = g[6 + j];
    }
    for (int a = 0; a < 4; ++a) {  // (G g) G^T, into rows (a * 4 + b) * C + c
      float* row[4];
      for (int b = 0; b < 4; ++b) row[b] = wu + ((a * 4 + b) * C + c) * FP;
      std::memcpy(row[0], t[a][0], sizeof(float) * size_t(F));
      half_sums(t[a][0], t[a][1], t[a][2], row[1], row[2], F);
      std::memcpy(row[3], t[a][2], sizeof(float) * size_t(F));
      for (int b = 0; b < 4; ++b)
        std::memset(row[b] + F, 0, sizeof(float) * size_t(FP - F));  // padded filters
    }
  }
  float* b = wu + 16 * C * FP;
  if (bias != nullptr) std::memcpy(b, bias, sizeof(float) * size_t(F));
  else std::memset(b, 0, sizeof(float) * size_t(F));
  std::memset(b + F, 0, sizeof(float) * size_t(FP - F));
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

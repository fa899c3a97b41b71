// The optimizer loops compiled with this file's instruction set (see optimizers_kernels.h);
// called only when pynn::active_arch() allows it.
#define PYNN_OPTIMIZER_KERNELS_BODY
#include "nn/optimizers_kernels.h"

namespace pynn::nn {

void update_avx2(const UpdateCoeffs& c, float* w, const float* g, float* const* s, int64_t n) {
  update_any(c, w, g, s, n);
}

}  // namespace pynn::nn

// Vectorised versions of the exp-based activations, one table per instruction set.
// Each table ends with a {nullptr, ...} entry; names match the portable table in
// activations.cpp, whose entries they replace when pynn::active_arch() selects that ISA.
#pragma once
#include "gemm/epilogue.h"
#include "nn/activations.h"

namespace pynn::nn {

struct SimdActivation {
  const char* name;
  gemm::act_fn forward;
  act_backward_fn backward;
};

// Only call these after active_arch() reports the matching ISA.
const SimdActivation* simd_activations_avx512();
const SimdActivation* simd_activations_avx2();

}  // namespace pynn::nn

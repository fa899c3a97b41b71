// Counter-based random numbers: value i of stream (seed, stream) is a pure function of
// (seed, stream, i), so any thread may generate any slice and the result never depends on the
// thread count. Used for dropout masks, RReLU slopes, shuffling and initializers.
#pragma once
#include <cstdint>

namespace pynn::nn {

// 64 random bits for counter i of (seed, stream).
uint64_t random_bits(uint64_t seed, uint64_t stream, uint64_t i);
// Uniform in [0, 1) with 24 random bits.
inline float random_uniform01(uint64_t seed, uint64_t stream, uint64_t i) {
  return float(random_bits(seed, stream, i) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace pynn::nn

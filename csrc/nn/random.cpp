#include "nn/random.h"

namespace pynn::nn {

// SplitMix64's finaliser is a bijection on 64 bits with full avalanche; chaining it over
// (seed, stream, i) gives independent-looking streams that any thread can index directly.
static inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t random_bits(uint64_t seed, uint64_t stream, uint64_t i) {
  const uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL * (stream + 1));
  return mix64(k ^ (i * 0xd1b54a32d192ed03ULL + 0x9e3779b97f4a7c15ULL));
}

}  // namespace pynn::nn

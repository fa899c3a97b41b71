// Counter-based random numbers: value i of stream (seed, stream) is a pure function of
// (seed, stream, i), so any thread may generate any slice and the result never depends on the
// thread count. Used for dropout masks, RReLU slopes, shuffling and initializers.
#pragma once
#include <cstdint>

namespace pynn::nn {

// 64 random bits for counter i of (seed, stream).
uint64_t random_bits(uint64_t seed, uint64_t stream, uint64_t i);

// The same bits in two inlinable halves, for loops over many counters of one stream: the
// stream's key once (random_stream_key), then random_bits_keyed(key, i) per counter, equal to
// random_bits(seed, stream, i). (Out of line, random_bits recomputed the key and cost ~10 ns
// an element in dropout's mask loop.) SplitMix64's finaliser is a bijection on 64 bits with
// full avalanche; chaining it over (seed, stream, i) gives independent-looking streams.
inline uint64_t random_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline uint64_t random_stream_key(uint64_t seed, uint64_t stream) {
  return random_mix64(seed + 0x9e3779b97f4a7c15ULL * (stream + 1));
}
inline uint64_t random_bits_keyed(uint64_t key, uint64_t i) {
  return random_mix64(key ^ (i * 0xd1b54a32d192ed03ULL + 0x9e3779b97f4a7c15ULL));
}

// Uniform in [0, 1) with 24 random bits.
inline float random_uniform01(uint64_t seed, uint64_t stream, uint64_t i) {
  return float(random_bits(seed, stream, i) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace pynn::nn

#include "nn/random.h"

namespace pynn::nn {

uint64_t random_bits(uint64_t seed, uint64_t stream, uint64_t i) {
  return random_bits_keyed(random_stream_key(seed, stream), i);
}

}  // namespace pynn::nn

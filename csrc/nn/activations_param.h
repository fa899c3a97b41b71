// Activations with state beyond fixed parameters: PReLU (a learnable slope per channel) and
// RReLU in training mode (a random slope per element, kept for the backward pass).
//
// Layout: x is n rows of c channels, row-major (the channel is the last axis, as for a Dense
// layer's output). Outputs may alias inputs where noted.
#pragma once
#include <cstdint>

namespace pynn::nn {

// PReLU: y = x for x > 0, alpha[j] * x otherwise (alpha has c entries). y may alias x.
void prelu_forward(const float* x, float* y, int64_t n, int64_t c, const float* alpha);
// dx = dy * (x > 0 ? 1 : alpha[j]) (dx may alias dy; null to skip);
// dalpha[j] = sum_i dy[i][j] * min(x[i][j], 0), summed over rows in a fixed order (in double),
// overwriting dalpha (null to skip).
void prelu_backward(const float* x, const float* dy, float* dx, float* dalpha, int64_t n,
                    int64_t c, const float* alpha);

// RReLU in training: for each element i a slope a_i = lower + (upper - lower) * u_i with
// u_i = random_uniform01(seed, stream, offset + i); y = x for x >= 0, a_i * x otherwise.
// slope[i] receives the multiplier actually used (1 for x >= 0, a_i otherwise), which is all
// the backward pass needs. y may alias x. Same (seed, stream, offset) -> same slopes.
void rrelu_forward_train(const float* x, float* y, float* slope, int64_t n, float lower,
                         float upper, uint64_t seed, uint64_t stream, uint64_t offset);
// dx = dy * slope (dx may alias dy). At inference RReLU is the "rrelu" entry of the
// activation table: leaky_relu with slope (lower + upper) / 2.
void rrelu_backward(const float* slope, const float* dy, float* dx, int64_t n);

}  // namespace pynn::nn

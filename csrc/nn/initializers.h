// Weight initializers with Keras 3 names and defaults, filled from the counter-based generator
// of random.h: value i of a fill is a function of (seed, i) only, so a seed gives the same
// tensor on any thread count. Values are not Keras's bitwise (its generators differ); the
// distributions are the same.
//
//   glorot_uniform  U(-l, l), l = sqrt(3 / fan_avg)    glorot_normal  TN(sqrt(1 / fan_avg))
//   he_uniform      U(-l, l), l = sqrt(6 / fan_in)     he_normal      TN(sqrt(2 / fan_in))
//   lecun_uniform   U(-l, l), l = sqrt(3 / fan_in)     lecun_normal   TN(sqrt(1 / fan_in))
//   random_normal   N(mean 0, stddev 0.05)             random_uniform U(minval -0.05, maxval 0.05)
//   truncated_normal N(mean 0, stddev 0.05) cut at 2 stddev (no correction, as in Keras)
//   zeros, ones, constant(value 0)
//   identity        gain * eye (2-D only)              orthogonal     gain * Q (>= 2-D)
// TN(s) is a normal cut at two of its standard deviations, that stddev being s divided by
// 0.87962566103423978 (the stddev of a unit normal cut to [-2, 2]) so that the values have
// standard deviation s, as in Keras's VarianceScaling.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pynn::nn {

struct InitParams {
  double mean = 0.0;       // random_normal, truncated_normal
  double stddev = 0.05;    // random_normal, truncated_normal
  double minval = -0.05;   // random_uniform
  double maxval = 0.05;    // random_uniform
  double gain = 1.0;       // identity, orthogonal
  double value = 0.0;      // constant
};

// Keras's compute_fans: (fan_in, fan_out) of a weight shape; convolution kernels count the
// receptive field.
void compute_fans(const std::vector<int64_t>& shape, double& fan_in, double& fan_out);

// The names initializer_fill accepts.
const std::vector<std::string>& initializer_names();
bool is_initializer(const std::string& name);

// Fills out[0 .. prod(shape)) with the named initializer. Returns "" on success, otherwise
// what was wrong (unknown name, identity on a non-2-D shape, orthogonal on a < 2-D shape).
std::string initializer_fill(const std::string& name, const std::vector<int64_t>& shape,
                             uint64_t seed, const InitParams& params, float* out);

// The factor that turns N(0, s) truncated at 2s into values of standard deviation s.
constexpr double kTruncatedNormalStd = 0.87962566103423978;

}  // namespace pynn::nn

// Regularisation kernels: inverted dropout, batch normalisation, L1/L2 penalties.
#include "nn/regularization.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/parallel.h"
#include "nn/random.h"

namespace pynn::nn {
namespace {

// Element-wise loops shorter than this stay on one thread.
constexpr int64_t kParallelElems = int64_t(1) << 16;

int threads_for_elems(int64_t n) {
  return n < kParallelElems ? 1 : parallel::available_threads();
}

// Per-column double accumulators, reused between calls (no allocation in the steady state).
thread_local std::vector<double> tl_sum;
thread_local std::vector<double> tl_sum2;
thread_local std::vector<float> tl_f0, tl_f1, tl_f2;

}  // namespace

// Invariants: mask[i] depends only on (seed, stream, i) and rate, so it is the same for any
// thread count and any split of the work; a kept element is multiplied by exactly
// 1 / (1 - rate), a dropped one becomes exactly 0.
void dropout_forward(float* x, float* mask, int64_t n, float rate, uint64_t seed,
                     uint64_t stream) {
  const float scale = 1.0f / (1.0f - rate);
  const int nt = threads_for_elems(n);
  const uint64_t key = random_stream_key(seed, stream);
  // u = b / 2^24 (b the top 24 random bits) is kept when u >= rate, that is when
  // b >= rate * 2^24 (a power-of-two scaling, exact), that is when b >= ceil(rate * 2^24):
  // an integer compare, and the mask (scale or +0) picked with bit operations. The float
  // select compiled to a branch, which rate 0.5 mispredicts half the time.
  const uint64_t keep_from = uint64_t(std::ceil(double(rate) * 16777216.0));
  uint32_t scale_bits = 0;
  std::memcpy(&scale_bits, &scale, sizeof scale_bits);
  parallel::parallel_for(n, nt, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const uint64_t b = random_bits_keyed(key, uint64_t(i)) >> 40;
      const uint32_t bits = scale_bits & (0u - uint32_t(b >= keep_from));
      float m;
      std::memcpy(&m, &bits, sizeof m);
      mask[i] = m;
      x[i] *= m;
    }
  });
}

void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n) {
  const int nt = threads_for_elems(n);
  parallel::parallel_for(n, nt, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = dy[i] * mask[i];
  });
}

// Invariants: every column's statistics are sums over rows 0..n-1 in order, in double (the
// mean of a few thousand float32 values keeps its full float32 accuracy), so results do not
// depend on the thread count. Two passes (mean, then squared deviations) avoid the
// cancellation of E[x^2] - E[x]^2.
void batchnorm_forward_train(const float* x, int64_t n, int64_t c, const float* gamma,
                             const float* beta, float momentum, float eps, float* moving_mean,
                             float* moving_var, float* xhat, float* inv_std, float* y) {
  if (c <= 0) return;
  std::vector<double>& mean = tl_sum;
  std::vector<double>& var = tl_sum2;
  mean.assign(size_t(c), 0.0);
  var.assign(size_t(c), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * c;
    for (int64_t j = 0; j < c; ++j) mean[j] += xi[j];
  }
  const double inv_n = n > 0 ? 1.0 / double(n) : 0.0;
  for (int64_t j = 0; j < c; ++j) mean[j] *= inv_n;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * c;
    for (int64_t j = 0; j < c; ++j) {
      const double d = double(xi[j]) - mean[j];
      var[j] += d * d;
    }
  }
  for (int64_t j = 0; j < c; ++j) {
    var[j] *= inv_n;
    inv_std[j] = float(1.0 / std::sqrt(var[j] + double(eps)));
    moving_mean[j] = float(double(momentum) * moving_mean[j] + (1.0 - momentum) * mean[j]);
    moving_var[j] = float(double(momentum) * moving_var[j] + (1.0 - momentum) * var[j]);
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * c;
    float* hi = xhat + i * c;
    float* yi = y + i * c;
    for (int64_t j = 0; j < c; ++j) {
      const float h = float(double(xi[j]) - mean[j]) * inv_std[j];
      hi[j] = h;
      yi[j] = gamma[j] * h + beta[j];
    }
  }
}

void batchnorm_forward_infer(const float* x, int64_t n, int64_t c, const float* gamma,
                             const float* beta, const float* moving_mean,
                             const float* moving_var, float eps, float* y) {
  if (c <= 0) return;
  // y = x * s + t with s = gamma / sqrt(var + eps), t = beta - mean * s: one FMA an element.
  std::vector<double>& s = tl_sum;
  std::vector<double>& t = tl_sum2;
  s.resize(size_t(c));
  t.resize(size_t(c));
  for (int64_t j = 0; j < c; ++j) {
    s[j] = double(gamma[j]) / std::sqrt(double(moving_var[j]) + double(eps));
    t[j] = double(beta[j]) - double(moving_mean[j]) * s[j];
  }
  std::vector<float>& sf = tl_f0;
  std::vector<float>& tf = tl_f1;
  sf.assign(s.begin(), s.end());
  tf.assign(t.begin(), t.end());
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * c;
    float* yi = y + i * c;
    for (int64_t j = 0; j < c; ++j) yi[j] = xi[j] * sf[j] + tf[j];
  }
}

// With xhat = (x - mean) * inv_std and y = gamma * xhat + beta, differentiating through the
// batch mean and variance gives, per column,
//   dbeta  = sum_i dy_i,   dgamma = sum_i dy_i xhat_i,
//   dx_i   = gamma * inv_std / n * (n dy_i - dbeta - xhat_i dgamma).
// Invariants: the column sums run over rows in order in double; dx may alias dy because the
// sums are complete before dx is written.
void batchnorm_backward(const float* dy, const float* xhat, const float* inv_std,
                        const float* gamma, int64_t n, int64_t c, float* dx, float* dgamma,
                        float* dbeta) {
  if (c <= 0) return;
  std::vector<double>& sb = tl_sum;
  std::vector<double>& sg = tl_sum2;
  sb.assign(size_t(c), 0.0);
  sg.assign(size_t(c), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const float* di = dy + i * c;
    const float* hi = xhat + i * c;
    for (int64_t j = 0; j < c; ++j) {
      sb[j] += di[j];
      sg[j] += double(di[j]) * hi[j];
    }
  }
  for (int64_t j = 0; j < c; ++j) {
    dbeta[j] = float(sb[j]);
    dgamma[j] = float(sg[j]);
  }
  if (n <= 0) return;
  const double inv_n = 1.0 / double(n);
  // Per column: dx = k * (dy - mb - xhat * mg) with k = gamma*inv_std, mb, mg the means.
  std::vector<float>& k = tl_f0;
  std::vector<float>& mb = tl_f1;
  std::vector<float>& mg = tl_f2;
  k.resize(size_t(c));
  mb.resize(size_t(c));
  mg.resize(size_t(c));
  for (int64_t j = 0; j < c; ++j) {
    k[j] = gamma[j] * inv_std[j];
    mb[j] = float(sb[j] * inv_n);
    mg[j] = float(sg[j] * inv_n);
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* di = dy + i * c;
    const float* hi = xhat + i * c;
    float* oi = dx + i * c;
    for (int64_t j = 0; j < c; ++j) oi[j] = k[j] * (di[j] - mb[j] - hi[j] * mg[j]);
  }
}

// Keras's L1L2 regulariser: value l1*sum|w| + l2*sum w^2, gradient l1*sign(w) + 2*l2*w
// (sign(0) = 0, the subgradient Keras's autodiff picks). The value is summed in double.
double l1_l2_penalty(const float* w, float* g, int64_t n, float l1, float l2) {
  double s1 = 0.0, s2 = 0.0;
  const float two_l2 = 2.0f * l2;
  for (int64_t i = 0; i < n; ++i) {
    const float wi = w[i];
    s1 += std::fabs(double(wi));
    s2 += double(wi) * wi;
    if (g != nullptr) {
      const float sgn = wi > 0.0f ? 1.0f : (wi < 0.0f ? -1.0f : 0.0f);
      g[i] += l1 * sgn + two_l2 * wi;
    }
  }
  return double(l1) * s1 + double(l2) * s2;
}

}  // namespace pynn::nn

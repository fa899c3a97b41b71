#include "nn/initializers.h"

#include <algorithm>
#include <cmath>

#include "common/parallel.h"
#include "nn/random.h"

namespace pynn::nn {

namespace {

// Initializer fills draw from their own streams so they never share numbers with dropout or
// shuffling under the same seed. Attempt k of the truncated normal's rejection uses stream
// kInitStream + 1 + k, so each element's draws depend on (seed, i) only.
constexpr uint64_t kInitStream = 0x696e6974ULL;  // "init"
constexpr int kMaxAttempts = 64;                 // P(64 rejections in a row) = 0.0455^64
constexpr int64_t kParallelMin = int64_t(1) << 16;
constexpr double kTwoPi = 6.283185307179586476925286766559;

// A unit normal from 64 bits by Box-Muller: u1 in (0, 1] (so the log is finite), u2 in [0, 1).
inline double normal_from_bits(uint64_t bits) {
  const double u1 = (double(bits >> 32) + 1.0) * (1.0 / 4294967296.0);
  const double u2 = double(bits & 0xffffffffULL) * (1.0 / 4294967296.0);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

inline double unit_normal(uint64_t seed, int64_t i) {
  return normal_from_bits(random_bits(seed, kInitStream, uint64_t(i)));
}

// A unit normal conditioned on |z| <= 2, by rejection.
inline double unit_truncated_normal(uint64_t seed, int64_t i) {
  for (int k = 0; k < kMaxAttempts; ++k) {
    const double z = normal_from_bits(random_bits(seed, kInitStream + 1 + uint64_t(k), uint64_t(i)));
    if (std::fabs(z) <= 2.0) return z;
  }
  return 0.0;
}

// Uniform in [0, 1) with 53 random bits.
inline double unit_uniform(uint64_t seed, int64_t i) {
  return double(random_bits(seed, kInitStream, uint64_t(i)) >> 11) * (1.0 / 9007199254740992.0);
}

template <class F>
void parallel_fill(float* out, int64_t n, const F& f) {
  const int nt = n >= kParallelMin ? parallel::available_threads() : 1;
  parallel::parallel_for(n, nt, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = f(i);
  });
}

// Thin QR of the m x n (m >= n) column-major matrix a by Householder reflections; on return
// q (column-major, m x n) has orthonormal columns and a = q r with r's diagonal >= 0 (the
// sign correction that makes q Haar-distributed when a is Gaussian).
void householder_q(int64_t m, int64_t n, std::vector<double>& a, std::vector<double>& q) {
  std::vector<double> vs(size_t(m * n), 0.0);  // reflector k in column k, rows k..m-1
  std::vector<double> rdiag(size_t(n), 0.0);
  for (int64_t k = 0; k < n; ++k) {
    double* x = &a[size_t(k * m)];
    double norm2 = 0.0;
    for (int64_t i = k; i < m; ++i) norm2 += x[i] * x[i];
    const double norm = std::sqrt(norm2);
    // alpha takes the sign opposite to x_k so that v = x - alpha e_k has no cancellation.
    const double alpha = x[k] > 0 ? -norm : norm;
    double* v = &vs[size_t(k * m)];
    for (int64_t i = k; i < m; ++i) v[i] = x[i];
    v[k] -= alpha;
    double vnorm2 = 0.0;
    for (int64_t i = k; i < m; ++i) vnorm2 += v[i] * v[i];
    rdiag[size_t(k)] = alpha;
    if (vnorm2 == 0.0) continue;  // x already a multiple of e_k: reflector is the identity
    const double inv = 1.0 / std::sqrt(vnorm2);
    for (int64_t i = k; i < m; ++i) v[i] *= inv;
    for (int64_t j = k + 1; j < n; ++j) {  // apply H_k = I - 2 v v^T to the later columns
      double* c = &a[size_t(j * m)];
      double d = 0.0;
      for (int64_t i = k; i < m; ++i) d += v[i] * c[i];
      for (int64_t i = k; i < m; ++i) c[i] -= 2.0 * d * v[i];
    }
  }
  // q = H_0 H_1 ... H_{n-1} [I_n; 0], applied right to left.
  q.assign(size_t(m * n), 0.0);
  for (int64_t j = 0; j < n; ++j) q[size_t(j * m + j)] = 1.0;
  for (int64_t k = n - 1; k >= 0; --k) {
    const double* v = &vs[size_t(k * m)];
    for (int64_t j = 0; j < n; ++j) {
      double* c = &q[size_t(j * m)];
      double d = 0.0;
      for (int64_t i = k; i < m; ++i) d += v[i] * c[i];
      if (d == 0.0) continue;
      for (int64_t i = k; i < m; ++i) c[i] -= 2.0 * d * v[i];
    }
  }
  // Column j of q times sign(r_jj): r's diagonal becomes positive, q unique.
  for (int64_t j = 0; j < n; ++j)
    if (rdiag[size_t(j)] < 0)
      for (int64_t i = 0; i < m; ++i) q[size_t(j * m + i)] = -q[size_t(j * m + i)];
}

std::string fill_orthogonal(const std::vector<int64_t>& shape, uint64_t seed, double gain,
                            float* out) {
  if (shape.size() < 2)
    return "orthogonal needs a shape of at least 2 dimensions, got " +
           std::to_string(shape.size());
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < shape.size(); ++d) rows *= shape[d];
  const int64_t cols = shape.back();
  if (rows == 0 || cols == 0) return "";
  // As Keras: QR of a tall (max x min) Gaussian matrix, transposed when the shape is wide.
  const int64_t m = std::max(rows, cols), n = std::min(rows, cols);
  std::vector<double> a(size_t(m * n)), q;
  for (int64_t i = 0; i < m; ++i)        // element (i, j) of the row-major m x n draw
    for (int64_t j = 0; j < n; ++j) a[size_t(j * m + i)] = unit_normal(seed, i * n + j);
  householder_q(m, n, a, q);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double v = rows >= cols ? q[size_t(c * m + r)] : q[size_t(r * m + c)];
      out[r * cols + c] = float(gain * v);
    }
  return "";
}

}  // namespace

void compute_fans(const std::vector<int64_t>& shape, double& fan_in, double& fan_out) {
  if (shape.empty()) {
    fan_in = fan_out = 1;
  } else if (shape.size() == 1) {
    fan_in = fan_out = double(shape[0]);
  } else if (shape.size() == 2) {
    fan_in = double(shape[0]);
    fan_out = double(shape[1]);
  } else {
    double rf = 1;
    for (size_t d = 0; d + 2 < shape.size(); ++d) rf *= double(shape[d]);
    fan_in = double(shape[shape.size() - 2]) * rf;
    fan_out = double(shape.back()) * rf;
  }
}

const std::vector<std::string>& initializer_names() {
  static const std::vector<std::string> names = {
      "glorot_uniform", "glorot_normal",  "he_uniform",     "he_normal",
      "lecun_uniform",  "lecun_normal",   "random_normal",  "random_uniform",
      "truncated_normal", "zeros",        "ones",           "constant",
      "identity",       "orthogonal"};
  return names;
}

bool is_initializer(const std::string& name) {
  const auto& names = initializer_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string initializer_fill(const std::string& name, const std::vector<int64_t>& shape,
                             uint64_t seed, const InitParams& p, float* out) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;

  // Keras's VarianceScaling family: scale / max(1, fan) per mode.
  struct Vs {
    const char* name;
    double scale;
    int mode;  // 0 fan_in, 2 fan_avg
    bool uniform;
  };
  static const Vs vs[] = {
      {"glorot_uniform", 1.0, 2, true}, {"glorot_normal", 1.0, 2, false},
      {"he_uniform", 2.0, 0, true},     {"he_normal", 2.0, 0, false},
      {"lecun_uniform", 1.0, 0, true},  {"lecun_normal", 1.0, 0, false},
  };
  for (const Vs& v : vs) {
    if (name != v.name) continue;
    double fan_in, fan_out;
    compute_fans(shape, fan_in, fan_out);
    const double fan = v.mode == 0 ? fan_in : (fan_in + fan_out) / 2.0;
    const double scale = v.scale / std::max(1.0, fan);
    if (v.uniform) {
      const double limit = std::sqrt(3.0 * scale);
      parallel_fill(out, n, [&](int64_t i) {
        return float(-limit + 2.0 * limit * unit_uniform(seed, i));
      });
    } else {
      const double stddev = std::sqrt(scale) / kTruncatedNormalStd;
      parallel_fill(out, n, [&](int64_t i) {
        return float(stddev * unit_truncated_normal(seed, i));
      });
    }
    return "";
  }
  if (name == "random_normal") {
    parallel_fill(out, n, [&](int64_t i) { return float(p.mean + p.stddev * unit_normal(seed, i)); });
  } else if (name == "truncated_normal") {
    parallel_fill(out, n, [&](int64_t i) {
      return float(p.mean + p.stddev * unit_truncated_normal(seed, i));
    });
  } else if (name == "random_uniform") {
    parallel_fill(out, n, [&](int64_t i) {
      return float(p.minval + (p.maxval - p.minval) * unit_uniform(seed, i));
    });
  } else if (name == "zeros" || name == "ones" || name == "constant") {
    const float v = name == "zeros" ? 0.0f : name == "ones" ? 1.0f : float(p.value);
    std::fill(out, out + n, v);
  } else if (name == "identity") {
    if (shape.size() != 2)
      return "identity needs a 2-D shape, got " + std::to_string(shape.size()) + "-D";
    const int64_t cols = shape[1];
    std::fill(out, out + n, 0.0f);
    for (int64_t i = 0; i < std::min(shape[0], cols); ++i) out[i * cols + i] = float(p.gain);
  } else if (name == "orthogonal") {
    return fill_orthogonal(shape, seed, p.gain, out);
  } else {
    return "unknown initializer '" + name + "'";
  }
  return "";
}

}  // namespace pynn::nn

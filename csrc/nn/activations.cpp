// The element-wise activation table: portable scalar kernels, with vectorised AVX-512 / AVX2
// versions of the exp-based ones swapped in when pynn::active_arch() allows.
//
// Invariants (every kernel below):
//  - forward maps each x[i] on its own, in place; backward writes dz[i] from z[i], y[i], dy[i]
//    only, so dz may alias dy and any slice may be processed by any thread.
//  - no exp/log/power is evaluated where it could overflow for finite input: for |x| up to
//    1e4 (and beyond) every function and derivative is finite except `exponential`, whose
//    value really is +inf above ~88.7 in float32.
//  - forward passes NaN through unchanged, as the NumPy twin does: a NaN never becomes a
//    plausible number (relu(NaN) = 0, sigmoid(NaN) = 1) that would hide a diverged model.
//  - derivatives at kinks follow one convention shared with pynn.reference.activations: the
//    "x > 0" branch is taken only for strictly positive x (relu'(0) = 0, leaky'(0) = slope).
#include "nn/activations.h"

#include <cmath>
#include <string>

#include "common/cpu.h"
#include "nn/activations_simd.h"

namespace pynn::nn {
namespace {

// Loops shared by every kernel: FWD applies `expr` (of float x and params p) in place; BWD
// computes the derivative `expr` (of z, y, p) and multiplies the incoming gradient.
#define PYNN_ACT_FWD(NAME, EXPR)                                     \
  void NAME##_fwd(float* xs, int64_t n, const float* p) {            \
    (void)p;                                                         \
    for (int64_t i = 0; i < n; ++i) {                                \
      const float x = xs[i];                                         \
      xs[i] = x != x ? x : (EXPR); /* NaN in, NaN out (as NumPy) */  \
    }                                                                \
  }
#define PYNN_ACT_BWD(NAME, EXPR)                                                            \
  void NAME##_bwd(const float* zs, const float* ys, const float* dy, float* dz, int64_t n, \
                  const float* p) {                                                         \
    (void)p;                                                                                \
    (void)zs;                                                                               \
    (void)ys;                                                                               \
    for (int64_t i = 0; i < n; ++i) {                                                       \
      const float z = zs[i];                                                                \
      const float y = ys[i];                                                                \
      (void)z;                                                                              \
      (void)y;                                                                              \
      dz[i] = dy[i] * (EXPR);                                                               \
    }                                                                                       \
  }

// For derivatives that are 1 or 0: pass dy through or write an exact 0 (so an inf or NaN
// gradient is not turned into NaN where the function is flat).
#define PYNN_ACT_BWD_MASK(NAME, COND)                                                       \
  void NAME##_bwd(const float* zs, const float*, const float* dy, float* dz, int64_t n,    \
                  const float* p) {                                                         \
    (void)p;                                                                                \
    for (int64_t i = 0; i < n; ++i) {                                                       \
      /* dy read unconditionally: a select, not a branch, so the loop vectorises */         \
      const float z = zs[i], g = dy[i];                                                     \
      dz[i] = (COND) ? g : 0.0f;                                                            \
    }                                                                                       \
  }

// Stable scalar building blocks.
inline float sigmoid1(float x) {
  const float e = std::exp(-std::fabs(x));  // in (0, 1]: never overflows
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}
// log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
inline float softplus1(float x) { return std::fmax(x, 0.0f) + std::log1p(std::exp(-std::fabs(x))); }

constexpr float kSeluAlpha = 1.6732632423543772848170429916717f;
constexpr float kSeluScale = 1.0507009873554804934193349852946f;
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluCubic = 0.044715f;

// --- linear: f = x ----------------------------------------------------------------------
void linear_fwd(float*, int64_t, const float*) {}
void linear_bwd(const float*, const float*, const float* dy, float* dz, int64_t n, const float*) {
  if (dz != dy)
    for (int64_t i = 0; i < n; ++i) dz[i] = dy[i];
}

// --- sigmoid: 1/(1+e^-x); f' = y(1-y) -----------------------------------------------------
PYNN_ACT_FWD(sigmoid, sigmoid1(x))
PYNN_ACT_BWD(sigmoid, y * (1.0f - y))

// --- tanh; f' = 1 - y^2 ---------------------------------------------------------------------
PYNN_ACT_FWD(tanh, std::tanh(x))
PYNN_ACT_BWD(tanh, 1.0f - y * y)

// --- relu: max(x, 0) ----------------------------------------------------------------------
PYNN_ACT_FWD(relu, x > 0.0f ? x : 0.0f)
PYNN_ACT_BWD_MASK(relu, z > 0.0f)

// --- leaky_relu(negative_slope = p[0]) ----------------------------------------------------
PYNN_ACT_FWD(leaky_relu, x > 0.0f ? x : p[0] * x)
PYNN_ACT_BWD(leaky_relu, z > 0.0f ? 1.0f : p[0])

// --- rrelu at inference: leaky with slope (lower + upper) / 2, p = {lower, upper} ---------
PYNN_ACT_FWD(rrelu, x > 0.0f ? x : 0.5f * (p[0] + p[1]) * x)
PYNN_ACT_BWD(rrelu, z > 0.0f ? 1.0f : 0.5f * (p[0] + p[1]))

// --- elu(alpha = p[0]): x for x > 0 else alpha (e^x - 1); f' = alpha e^x = y + alpha -------
PYNN_ACT_FWD(elu, x > 0.0f ? x : p[0] * std::expm1(x))
PYNN_ACT_BWD(elu, z > 0.0f ? 1.0f : p[0] * std::exp(z))

// --- selu: scale * elu(x, alpha) with the self-normalising constants ------------------------
PYNN_ACT_FWD(selu, kSeluScale * (x > 0.0f ? x : kSeluAlpha * std::expm1(x)))
PYNN_ACT_BWD(selu, kSeluScale * (z > 0.0f ? 1.0f : kSeluAlpha * std::exp(z)))

// --- softplus(beta = p[0]): log(1 + e^{beta x}) / beta; f' = sigmoid(beta x) ----------------
PYNN_ACT_FWD(softplus, softplus1(p[0] * x) / p[0])
PYNN_ACT_BWD(softplus, sigmoid1(p[0] * z))

// --- softsign: x / (1 + |x|); f' = 1 / (1 + |x|)^2 -----------------------------------------
PYNN_ACT_FWD(softsign, x / (1.0f + std::fabs(x)))
PYNN_ACT_BWD(softsign, 1.0f / ((1.0f + std::fabs(z)) * (1.0f + std::fabs(z))))

// --- gelu(approximate = p[0] != 0) ------------------------------------------------------------
// Exact: x Phi(x) written with erfc so the left tail keeps its relative accuracy;
// f' = Phi(x) + x phi(x). Tanh form: 0.5 x (1 + tanh u), u = sqrt(2/pi)(x + 0.044715 x^3),
// evaluated as x sigmoid(2u) because 1 + tanh u = 2 sigmoid(2u) and 1 - tanh^2 u =
// 4 sigmoid(2u) sigmoid(-2u) keep their relative accuracy where tanh u is near -1 or 1.
// Beyond |x| = 10 the sigmoid is 0 or 1 to far below float precision, and stopping there also
// keeps x^3 finite for huge x.
inline float gelu_exact(float x) { return 0.5f * x * std::erfc(-x * kInvSqrt2); }
inline float gelu_exact_d(float x) {
  return 0.5f * std::erfc(-x * kInvSqrt2) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
}
inline float gelu_tanh(float x) {
  if (std::fabs(x) > 10.0f) return x > 0.0f ? x : 0.0f;
  return x * sigmoid1(2.0f * kSqrt2OverPi * (x + kGeluCubic * x * x * x));
}
inline float gelu_tanh_d(float x) {
  if (std::fabs(x) > 10.0f) return x > 0.0f ? 1.0f : 0.0f;
  const float u2 = 2.0f * kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float e = std::exp(-std::fabs(u2));
  const float big = 1.0f / (1.0f + e), small = e * big;  // sigmoid(|2u|), sigmoid(-|2u|)
  const float s = u2 >= 0.0f ? big : small;
  // d/dx [x s(2u)] = s + x * 2 s (1 - s) * du/dx
  return s + 2.0f * x * big * small * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
}
PYNN_ACT_FWD(gelu_scalar, p[0] != 0.0f ? gelu_tanh(x) : gelu_exact(x))
PYNN_ACT_BWD(gelu_scalar, p[0] != 0.0f ? gelu_tanh_d(z) : gelu_exact_d(z))
// The vectorised tanh form, when this ISA has one (set once while the table is built).
gemm::act_fn g_gelu_tanh_fwd = nullptr;
act_backward_fn g_gelu_tanh_bwd = nullptr;
void gelu_fwd(float* x, int64_t n, const float* p) {
  if (p[0] != 0.0f && g_gelu_tanh_fwd != nullptr) return g_gelu_tanh_fwd(x, n, p);
  gelu_scalar_fwd(x, n, p);
}
void gelu_bwd(const float* z, const float* y, const float* dy, float* dz, int64_t n,
              const float* p) {
  if (p[0] != 0.0f && g_gelu_tanh_bwd != nullptr) return g_gelu_tanh_bwd(z, y, dy, dz, n, p);
  gelu_scalar_bwd(z, y, dy, dz, n, p);
}

// --- silu / swish: x sigmoid(x); f' = s (1 + x (1 - s)) ---------------------------------------
inline float silu_d(float x) {
  const float s = sigmoid1(x);
  return s * (1.0f + x * (1.0f - s));
}
PYNN_ACT_FWD(silu, x * sigmoid1(x))
PYNN_ACT_BWD(silu, silu_d(z))

// --- mish: x tanh(softplus(x)); f' = t + x sigmoid(x) (1 - t^2) -----------------------------
inline float mish_d(float x) {
  const float t = std::tanh(softplus1(x));
  return t + x * sigmoid1(x) * (1.0f - t * t);
}
PYNN_ACT_FWD(mish, x * std::tanh(softplus1(x)))
PYNN_ACT_BWD(mish, mish_d(z))

// --- hard_sigmoid (Keras 3): relu6(x + 3) / 6 ------------------------------------------------
PYNN_ACT_FWD(hard_sigmoid, std::fmin(std::fmax(x * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f))
PYNN_ACT_BWD(hard_sigmoid, (z > -3.0f && z < 3.0f) ? (1.0f / 6.0f) : 0.0f)

// --- hard_silu / hard_swish: x * hard_sigmoid(x) --------------------------------------------
PYNN_ACT_FWD(hard_silu, x * std::fmin(std::fmax(x * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f))
PYNN_ACT_BWD(hard_silu, z < -3.0f ? 0.0f : (z > 3.0f ? 1.0f : z * (1.0f / 3.0f) + 0.5f))

// --- hard_tanh(min_val = p[0], max_val = p[1]): clip --------------------------------------------
PYNN_ACT_FWD(hard_tanh, std::fmin(std::fmax(x, p[0]), p[1]))
PYNN_ACT_BWD_MASK(hard_tanh, z > p[0] && z < p[1])

// --- tanh_shrink: x - tanh x; f' = tanh^2 x --------------------------------------------------
inline float sq(float v) { return v * v; }
PYNN_ACT_FWD(tanh_shrink, x - std::tanh(x))
PYNN_ACT_BWD(tanh_shrink, sq(std::tanh(z)))

// --- soft_shrink(threshold = p[0]) ---------------------------------------------------------
PYNN_ACT_FWD(soft_shrink, x > p[0] ? x - p[0] : (x < -p[0] ? x + p[0] : 0.0f))
PYNN_ACT_BWD_MASK(soft_shrink, std::fabs(z) > p[0])

// --- hard_shrink(threshold = p[0]): x if |x| > threshold else 0 ------------------------------
PYNN_ACT_FWD(hard_shrink, std::fabs(x) > p[0] ? x : 0.0f)
PYNN_ACT_BWD_MASK(hard_shrink, std::fabs(z) > p[0])

// --- exponential: e^x (really +inf above ~88.7); f' = y. A zero gradient stays zero even
// where y is inf, so an unused output cannot turn into NaN. -----------------------------------
PYNN_ACT_FWD(exponential, std::exp(x))
void exponential_bwd(const float*, const float* y, const float* dy, float* dz, int64_t n,
                     const float*) {
  for (int64_t i = 0; i < n; ++i) dz[i] = dy[i] == 0.0f ? 0.0f : dy[i] * y[i];
}

// --- binary_step: 1 for x >= 0 else 0; f' = 0 (the step is not trained through) -----------
PYNN_ACT_FWD(binary_step, x >= 0.0f ? 1.0f : 0.0f)
void binary_step_bwd(const float*, const float*, const float*, float* dz, int64_t n,
                     const float*) {
  for (int64_t i = 0; i < n; ++i) dz[i] = 0.0f;
}

// --- arctan; f' = 1 / (1 + x^2) (x^2 may be inf for huge x: the quotient is then 0) --------
PYNN_ACT_FWD(arctan, std::atan(x))
PYNN_ACT_BWD(arctan, 1.0f / (1.0f + z * z))

#undef PYNN_ACT_FWD
#undef PYNN_ACT_BWD
#undef PYNN_ACT_BWD_MASK

std::vector<ActivationInfo> build_table() {
  std::vector<ActivationInfo> t = {
      {"linear", 0, {0, 0}, linear_fwd, linear_bwd},
      {"relu", 0, {0, 0}, relu_fwd, relu_bwd},
      {"sigmoid", 0, {0, 0}, sigmoid_fwd, sigmoid_bwd},
      {"tanh", 0, {0, 0}, tanh_fwd, tanh_bwd},
      {"leaky_relu", 1, {0.2f, 0}, leaky_relu_fwd, leaky_relu_bwd},
      {"elu", 1, {1.0f, 0}, elu_fwd, elu_bwd},
      {"selu", 0, {0, 0}, selu_fwd, selu_bwd},
      {"softplus", 1, {1.0f, 0}, softplus_fwd, softplus_bwd},
      {"softsign", 0, {0, 0}, softsign_fwd, softsign_bwd},
      {"gelu", 1, {0.0f, 0}, gelu_fwd, gelu_bwd},
      {"silu", 0, {0, 0}, silu_fwd, silu_bwd},
      {"swish", 0, {0, 0}, silu_fwd, silu_bwd},
      {"mish", 0, {0, 0}, mish_fwd, mish_bwd},
      {"hard_sigmoid", 0, {0, 0}, hard_sigmoid_fwd, hard_sigmoid_bwd},
      {"hard_silu", 0, {0, 0}, hard_silu_fwd, hard_silu_bwd},
      {"hard_swish", 0, {0, 0}, hard_silu_fwd, hard_silu_bwd},
      {"hard_tanh", 2, {-1.0f, 1.0f}, hard_tanh_fwd, hard_tanh_bwd},
      {"tanh_shrink", 0, {0, 0}, tanh_shrink_fwd, tanh_shrink_bwd},
      {"soft_shrink", 1, {0.5f, 0}, soft_shrink_fwd, soft_shrink_bwd},
      {"hard_shrink", 1, {0.5f, 0}, hard_shrink_fwd, hard_shrink_bwd},
      {"exponential", 0, {0, 0}, exponential_fwd, exponential_bwd},
      {"binary_step", 0, {0, 0}, binary_step_fwd, binary_step_bwd},
      {"arctan", 0, {0, 0}, arctan_fwd, arctan_bwd},
      {"rrelu", 2, {1.0f / 8.0f, 1.0f / 3.0f}, rrelu_fwd, rrelu_bwd},
  };
#if defined(PYNN_X86)
  // Swap in the vectorised exp-based kernels; the scalar ones stay the reference.
  const Arch arch = active_arch();
  const SimdActivation* simd = nullptr;
  if (arch == Arch::avx512) simd = simd_activations_avx512();
  else if (arch == Arch::avx2) simd = simd_activations_avx2();
  for (; simd != nullptr && simd->name != nullptr; ++simd) {
    if (std::string(simd->name) == "gelu_tanh") {
      g_gelu_tanh_fwd = simd->forward;
      g_gelu_tanh_bwd = simd->backward;
    }
    for (auto& a : t)
      if (std::string(a.name) == simd->name) {
        a.forward = simd->forward;
        if (simd->backward != nullptr) a.backward = simd->backward;
      }
  }
#endif
  return t;
}

}  // namespace

const std::vector<ActivationInfo>& activations() {
  static const std::vector<ActivationInfo> table = build_table();
  return table;
}

const ActivationInfo* find_activation(const std::string& name) {
  for (const auto& a : activations())
    if (name == a.name) return &a;
  return nullptr;
}

std::string activation_params_error(const ActivationInfo& act, const float* p) {
  const std::string name = act.name;
  for (int i = 0; i < act.nparams; ++i)
    if (!std::isfinite(p[i]))
      return "params: expected finite parameters for activation '" + name + "', got " +
             std::to_string(p[i]);
  auto fmt = [](float v) { return std::to_string(v); };
  if (name == "softplus" && !(p[0] > 0.0f))
    return "params: softplus expects beta > 0, got beta=" + fmt(p[0]);
  if (name == "hard_tanh" && !(p[0] <= p[1]))
    return "params: hard_tanh expects min_val <= max_val, got min_val=" + fmt(p[0]) +
           ", max_val=" + fmt(p[1]);
  if ((name == "soft_shrink" || name == "hard_shrink") && !(p[0] >= 0.0f))
    return "params: " + name + " expects threshold >= 0, got threshold=" + fmt(p[0]);
  if (name == "rrelu" && !(p[0] <= p[1]))
    return "params: rrelu expects lower <= upper, got lower=" + fmt(p[0]) +
           ", upper=" + fmt(p[1]);
  return {};
}

}  // namespace pynn::nn

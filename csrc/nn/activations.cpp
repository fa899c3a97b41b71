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
#include <initializer_list>
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

// One table entry; nparams and the float defaults the kernel reads come from the parameters.
ActivationInfo entry(const char* name, gemm::act_fn fwd, act_backward_fn bwd,
                     std::initializer_list<ParamDesc> params = {}, bool ordered = false,
                     const char* alias = nullptr) {
  ActivationInfo a{};
  a.name = name;
  a.forward = fwd;
  a.backward = bwd;
  a.ordered = ordered;
  a.alias = alias;
  for (const ParamDesc& p : params) {
    a.params[a.nparams] = p;
    a.defaults[a.nparams] = float(p.default_value);
    ++a.nparams;
  }
  return a;
}

std::vector<ActivationInfo> build_table() {
  // Parameter names and defaults are Keras 3's where Keras has the activation, PyTorch's
  // otherwise (softplus beta, hard_tanh, the shrinks, rrelu).
  std::vector<ActivationInfo> t = {
      entry("linear", linear_fwd, linear_bwd, {}, false, "identity"),
      entry("relu", relu_fwd, relu_bwd),
      entry("sigmoid", sigmoid_fwd, sigmoid_bwd),
      entry("tanh", tanh_fwd, tanh_bwd),
      entry("leaky_relu", leaky_relu_fwd, leaky_relu_bwd,
            {real_param("negative_slope", 0.2, kAnyReal)}),
      entry("elu", elu_fwd, elu_bwd, {real_param("alpha", 1.0, kAnyReal)}),
      entry("selu", selu_fwd, selu_bwd),
      entry("softplus", softplus_fwd, softplus_bwd, {real_param("beta", 1.0, kPositive)}),
      entry("softsign", softsign_fwd, softsign_bwd),
      entry("gelu", gelu_fwd, gelu_bwd, {bool_param("approximate", false)}),
      entry("silu", silu_fwd, silu_bwd),
      entry("swish", silu_fwd, silu_bwd),
      entry("mish", mish_fwd, mish_bwd),
      entry("hard_sigmoid", hard_sigmoid_fwd, hard_sigmoid_bwd),
      entry("hard_silu", hard_silu_fwd, hard_silu_bwd),
      entry("hard_swish", hard_silu_fwd, hard_silu_bwd),
      entry("hard_tanh", hard_tanh_fwd, hard_tanh_bwd,
            {real_param("min_val", -1.0, kAnyReal), real_param("max_val", 1.0, kAnyReal)}, true),
      entry("tanh_shrink", tanh_shrink_fwd, tanh_shrink_bwd),
      entry("soft_shrink", soft_shrink_fwd, soft_shrink_bwd,
            {real_param("threshold", 0.5, kNonNegative)}),
      entry("hard_shrink", hard_shrink_fwd, hard_shrink_bwd,
            {real_param("threshold", 0.5, kNonNegative)}),
      entry("exponential", exponential_fwd, exponential_bwd),
      entry("binary_step", binary_step_fwd, binary_step_bwd),
      entry("arctan", arctan_fwd, arctan_bwd),
      entry("rrelu", rrelu_fwd, rrelu_bwd,
            {real_param("lower", 1.0 / 8.0, kNonNegative),
             real_param("upper", 1.0 / 3.0, kNonNegative)},
            true),
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
  for (int i = 0; i < act.nparams; ++i) {
    const ParamDesc& d = act.params[i];
    // A boolean travels as a float (non-zero is true): it only has to be finite.
    const ParamDesc checked =
        d.type == ParamType::boolean ? ParamDesc{d.name, ParamType::real, 0.0, kAnyReal, false, false}
                                     : d;
    const std::string err = real_param_error(checked, double(p[i]), true);
    if (!err.empty()) return err;
  }
  if (act.ordered && act.nparams == 2 && !(p[0] <= p[1]))
    return std::string("expected ") + act.params[0].name + " <= " + act.params[1].name +
           ", got " + act.params[0].name + "=" + format_number(p[0], true) + ", " +
           act.params[1].name + "=" + format_number(p[1], true);
  return {};
}

}  // namespace pynn::nn

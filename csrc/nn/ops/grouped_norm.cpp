#include "nn/ops/grouped_norm.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/parallel.h"

namespace pynn::nn::ops {
namespace {

// Samples are independent; work below this many elements stays on one thread.
constexpr int64_t kParallelElems = int64_t(1) << 15;

int threads_for(int64_t n, int64_t size) {
  return n * size < kParallelElems ? 1 : parallel::available_threads();
}

}  // namespace

// Invariants: each group's statistics are sums over its members in layout order, in double,
// with two passes (mean, then squared deviations); a sample is handled by one thread, so the
// result does not depend on the thread count.
void grouped_norm_forward(const NormGroups& L, int64_t n, const float* x, const float* gamma,
                          const float* beta, float eps, float* y, float* xhat, float* inv_std) {
  const int64_t G = L.groups, M = L.members, S = L.size;
  parallel::parallel_for(n, threads_for(n, S), [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const float* xs = x + s * S;
      float* ys = y + s * S;
      float* hs = xhat + s * S;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t* off = L.offset.data() + g * M;
        const int32_t* pi = L.pidx.data() + g * M;
        double sum = 0.0;
        for (int64_t m = 0; m < M; ++m) sum += double(xs[off[m]]);
        const double mean = sum / double(M);
        double sq = 0.0;
        for (int64_t m = 0; m < M; ++m) {
          const double d = double(xs[off[m]]) - mean;
          sq += d * d;
        }
        const float inv = float(1.0 / std::sqrt(sq / double(M) + double(eps)));
        inv_std[s * G + g] = inv;
        const float mf = float(mean);
        for (int64_t m = 0; m < M; ++m) {
          const float h = (xs[off[m]] - mf) * inv;
          hs[off[m]] = h;
          const float gm = gamma ? gamma[pi[m]] : 1.0f;
          const float bt = beta ? beta[pi[m]] : 0.0f;
          ys[off[m]] = h * gm + bt;
        }
      }
    }
  });
}

// Invariants: dgamma/dbeta are summed over samples in order on one thread (their order never
// depends on the thread count); dx of a group reads all its dy before writing any element, so
// dx may alias dy.
void grouped_norm_backward(const NormGroups& L, int64_t n, int64_t nparam, float* dy,
                           const float* xhat, const float* inv_std, const float* gamma, float* dx,
                           float* dgamma, float* dbeta) {
  const int64_t G = L.groups, M = L.members, S = L.size;
  if (dgamma) std::fill(dgamma, dgamma + nparam, 0.0f);
  if (dbeta) std::fill(dbeta, dbeta + nparam, 0.0f);
  if (dgamma || dbeta) {
    const int64_t total = G * M;
    for (int64_t s = 0; s < n; ++s) {
      const float* d = dy + s * S;
      const float* h = xhat + s * S;
      for (int64_t k = 0; k < total; ++k) {
        const int64_t o = L.offset[size_t(k)];
        const int32_t p = L.pidx[size_t(k)];
        if (dgamma) dgamma[p] += d[o] * h[o];
        if (dbeta) dbeta[p] += d[o];
      }
    }
  }
  if (!dx) return;
  // dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma.
  parallel::parallel_for(n, threads_for(n, S), [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const float* d = dy + s * S;
      const float* h = xhat + s * S;
      float* out = dx + s * S;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t* off = L.offset.data() + g * M;
        const int32_t* pi = L.pidx.data() + g * M;
        double a = 0.0, b = 0.0;
        for (int64_t m = 0; m < M; ++m) {
          const double dh = double(d[off[m]]) * (gamma ? double(gamma[pi[m]]) : 1.0);
          a += dh;
          b += dh * double(h[off[m]]);
        }
        const float ma = float(a / double(M)), mb = float(b / double(M));
        const float inv = inv_std[s * G + g];
        for (int64_t m = 0; m < M; ++m) {
          const float dh = d[off[m]] * (gamma ? gamma[pi[m]] : 1.0f);
          out[off[m]] = inv * (dh - ma - h[off[m]] * mb);
        }
      }
    }
  });
}

void GroupedNormOp::configure_common(const Attrs& attrs, const std::vector<Shape>& in,
                                     const std::vector<Shape>& params,
                                     const Shape& param_shape) {
  epsilon_ = float(attrs.get_double("epsilon", 1e-3));
  center_ = attrs.get_bool("center", true);
  scale_ = attrs.get_bool("scale", true);
  if (!(epsilon_ > 0.0f && std::isfinite(epsilon_)))
    op_error(attrs, "epsilon must be positive, got " + std::to_string(epsilon_));
  const int np = int(scale_) + int(center_);
  check_arity(attrs, in, 1, 1, params, np, np);
  for (int k = 0; k < np; ++k)
    if (params[size_t(k)] != param_shape)
      op_error(attrs, std::string(k == 0 && scale_ ? "gamma" : "beta") + " shape " +
                          shape_str(params[size_t(k)]) + " does not match input shape " +
                          shape_str(in[0]) + ": expected " + shape_str(param_shape));
  nparam_ = shape_size(param_shape);
}

std::vector<ScratchNeed> GroupedNormOp::scratch(bool, bool backward) const {
  const ScratchLife life = backward ? ScratchLife::saved : ScratchLife::forward;
  std::vector<ScratchNeed> s(4);
  s[0] = {layout_.size, 0, life};
  s[1] = {layout_.groups, 0, life};
  if (backward) {
    s[2] = {0, nparam_, ScratchLife::backward};
    s[3] = {0, nparam_, ScratchLife::backward};
  }
  return s;
}

void GroupedNormOp::forward(const FwdArgs& a) {
  grouped_norm_forward(layout_, a.n, a.x[0], gamma(a.param), beta(a.param), epsilon_, a.y,
                       a.scratch[0], a.scratch[1]);
}

void GroupedNormOp::backward(const BwdArgs& a) {
  float* dx = a.dx[0];
  const bool accx = dx && a.dx_acc[0];
  float* dg = scale_ ? a.dparam[0] : nullptr;
  float* db = center_ ? a.dparam[int(scale_)] : nullptr;
  const bool accg = dg && a.dparam_acc[0];
  const bool accb = db && a.dparam_acc[int(scale_)];
  float* g_out = dg ? (accg ? a.scratch[2] : dg) : nullptr;
  float* b_out = db ? (accb ? a.scratch[3] : db) : nullptr;
  float* x_out = dx ? (accx ? a.dy : dx) : nullptr;  // the kernel lets dx alias dy
  grouped_norm_backward(layout_, a.n, nparam_, a.dy, a.scratch[0], a.scratch[1],
                        gamma(a.param), x_out, g_out, b_out);
  if (accg) store_or_add(dg, a.scratch[2], nparam_, true);
  if (accb) store_or_add(db, a.scratch[3], nparam_, true);
  if (accx) store_or_add(dx, a.dy, a.n * layout_.size, true);
}

}  // namespace pynn::nn::ops

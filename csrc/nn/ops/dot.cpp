// dot: per-sample dot products, Keras's Dot layer. Rank-1 samples: (d)·(d) -> (1,). Rank-2
// samples: x (a, b), y (c, e) contracted over x's axis axes[0] and y's axis axes[1]
// (1-based per-sample axes, as Keras counts them without the batch); the output is x's
// remaining axis then y's. With normalize, each vector along the contracted axis is first
// divided by its L2 norm (Keras's l2_normalize: sqrt(max(sum v^2, 1e-12))), i.e. cosine.
//
// Both operands are read as matrices: X (P x K) and Y (K x Q) through strides, so every case
// is out[p][q] = sum_k X[p][k] Y[k][q], summed in k order.
// Scratch with normalize: [0] normalised x, [1] normalised y, [2] 1/norm per x vector,
// [3] per y vector (negative when the norm was clamped), all saved; and always [4], a
// K-float row for backward.
#include <cmath>

#include "nn/op.h"

namespace pynn::nn {
namespace {

class DotOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    std::vector<int64_t> axes = attrs.require_ints("axes");
    normalize_ = attrs.get_bool("normalize", false);
    check_arity(attrs, in, 2, 2, params, 0, 0);
    if (axes.size() == 1) axes.push_back(axes[0]);
    if (axes.size() != 2) op_error(attrs, "axes must be one or two integers, got " + shape_str(axes));
    const Shape& xs = in[0];
    const Shape& ys = in[1];
    if (xs.size() != ys.size() || xs.empty() || xs.size() > 2)
      op_error(attrs, "expects two rank-1 or two rank-2 samples, got shapes " + shape_str(xs) +
                          " and " + shape_str(ys));
    const int64_t r = int64_t(xs.size());
    for (int64_t& a : axes) {
      if (a < 0) a += r + 1;  // Keras allows negative axes counted with the batch axis
      if (a < 1 || a > r)
        op_error(attrs, "axes " + shape_str(attrs.get_ints("axes")) + " out of range for rank-" +
                            std::to_string(r) + " samples");
    }
    sx_ = shape_size(xs);
    sy_ = shape_size(ys);
    if (r == 1) {
      P_ = 1; K_ = xs[0]; x_sp_ = 0; x_sk_ = 1;
      Q_ = 1; y_sq_ = 0; y_sk_ = 1;
    } else {
      if (axes[0] == 1) { K_ = xs[0]; P_ = xs[1]; x_sk_ = xs[1]; x_sp_ = 1; }
      else { K_ = xs[1]; P_ = xs[0]; x_sk_ = 1; x_sp_ = xs[1]; }
      const int64_t ky = axes[1] == 1 ? ys[0] : ys[1];
      if (ky != K_)
        op_error(attrs, "x shape " + shape_str(xs) + " and y shape " + shape_str(ys) +
                            " differ on the contracted axes " + shape_str(axes) + " (" +
                            std::to_string(K_) + " vs " + std::to_string(ky) + ")");
      if (axes[1] == 1) { Q_ = ys[1]; y_sk_ = ys[1]; y_sq_ = 1; }
      else { Q_ = ys[0]; y_sk_ = 1; y_sq_ = ys[1]; }
    }
    if (r == 1 && ys[0] != K_)
      op_error(attrs, "x shape " + shape_str(xs) + " and y shape " + shape_str(ys) +
                          " must have the same length");
    return r == 1 ? Shape{1} : Shape{P_, Q_};
  }

  std::vector<ScratchNeed> scratch(bool, bool backward) const override {
    std::vector<ScratchNeed> s(5);
    if (normalize_) {
      const ScratchLife life = backward ? ScratchLife::saved : ScratchLife::forward;
      s[0] = {sx_, 0, life};
      s[1] = {sy_, 0, life};
      s[2] = {P_, 0, life};
      s[3] = {Q_, 0, life};
    }
    if (backward) s[4] = {0, K_, ScratchLife::backward};
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds&) const override { return !normalize_; }

  void forward(const FwdArgs& a) override {
    for (int64_t s = 0; s < a.n; ++s) {
      const float* x = a.x[0] + s * sx_;
      const float* y = a.x[1] + s * sy_;
      if (normalize_) {
        float* xn = a.scratch[0] + s * sx_;
        float* yn = a.scratch[1] + s * sy_;
        normalise(x, xn, P_, x_sp_, x_sk_, a.scratch[2] + s * P_);
        normalise(y, yn, Q_, y_sq_, y_sk_, a.scratch[3] + s * Q_);
        x = xn;
        y = yn;
      }
      float* out = a.y + s * P_ * Q_;
      for (int64_t p = 0; p < P_; ++p)
        for (int64_t q = 0; q < Q_; ++q) {
          float acc = 0.0f;
          for (int64_t k = 0; k < K_; ++k) acc += x[p * x_sp_ + k * x_sk_] * y[k * y_sk_ + q * y_sq_];
          out[p * Q_ + q] = acc;
        }
    }
  }

  void backward(const BwdArgs& a) override {
    for (int64_t s = 0; s < a.n; ++s) {
      const float* x = normalize_ ? a.scratch[0] + s * sx_ : a.x[0] + s * sx_;
      const float* y = normalize_ ? a.scratch[1] + s * sy_ : a.x[1] + s * sy_;
      const float* g = a.dy + s * P_ * Q_;
      if (float* dx = a.dx[0])
        side(g, y, x, dx + s * sx_, a.dx_acc[0] != 0, P_, Q_, x_sp_, x_sk_, y_sk_, y_sq_, Q_, 1,
             normalize_ ? a.scratch[2] + s * P_ : nullptr, a.scratch[4]);
      if (float* dyo = a.dx[1])
        side(g, x, y, dyo + s * sy_, a.dx_acc[1] != 0, Q_, P_, y_sq_, y_sk_, x_sk_, x_sp_, 1, Q_,
             normalize_ ? a.scratch[3] + s * Q_ : nullptr, a.scratch[4]);
    }
  }

 private:
  // v (count vectors of K along stride sk, vector i at offset i*sv) -> vn, inv[i].
  void normalise(const float* v, float* vn, int64_t count, int64_t sv, int64_t sk,
                 float* inv) const {
    for (int64_t i = 0; i < count; ++i) {
      double ss = 0.0;
      for (int64_t k = 0; k < K_; ++k) {
        const double e = v[i * sv + k * sk];
        ss += e * e;
      }
      const bool clamped = ss < 1e-12;
      const float r = float(1.0 / std::sqrt(clamped ? 1e-12 : ss));
      for (int64_t k = 0; k < K_; ++k) vn[i * sv + k * sk] = v[i * sv + k * sk] * r;
      inv[i] = clamped ? -r : r;
    }
  }

  // Gradient for one operand A (its vectors i = 0..na-1 along k, A[i][k] at i*sa + k*sk),
  // given the other operand B (B[k][j] at k*bk + j*bj) and dy[i][j] at i*gi + j*gj:
  // dA[i][k] = sum_j dy[i][j] B[k][j], then through the normalisation when inv is given.
  void side(const float* g, const float* b, const float* a_hat, float* da, bool acc, int64_t na,
            int64_t nb, int64_t sa, int64_t sk, int64_t bk, int64_t bj, int64_t gi, int64_t gj,
            const float* inv, float* row) const {
    for (int64_t i = 0; i < na; ++i) {
      for (int64_t k = 0; k < K_; ++k) {
        float acc_k = 0.0f;
        for (int64_t j = 0; j < nb; ++j) acc_k += g[i * gi + j * gj] * b[k * bk + j * bj];
        row[k] = acc_k;
      }
      if (inv) {
        const float r = std::fabs(inv[i]);
        if (inv[i] > 0.0f) {  // d(v/|v|) = (d - vhat (vhat . d)) / |v|
          float proj = 0.0f;
          for (int64_t k = 0; k < K_; ++k) proj += a_hat[i * sa + k * sk] * row[k];
          for (int64_t k = 0; k < K_; ++k) row[k] = (row[k] - a_hat[i * sa + k * sk] * proj) * r;
        } else {
          for (int64_t k = 0; k < K_; ++k) row[k] *= r;
        }
      }
      for (int64_t k = 0; k < K_; ++k) {
        float& d = da[i * sa + k * sk];
        d = acc ? d + row[k] : row[k];
      }
    }
  }

  bool normalize_ = false;
  int64_t sx_ = 0, sy_ = 0, P_ = 1, K_ = 1, Q_ = 1;
  int64_t x_sp_ = 0, x_sk_ = 1, y_sq_ = 0, y_sk_ = 1;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("dot", pynn::nn::DotOp)

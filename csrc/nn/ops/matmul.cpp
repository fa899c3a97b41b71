// matmul: per-sample matrix product (pynn.ops.matmul on two symbolic tensors), batched over
// the batch axis: each sample of a times the same sample of b.
//
// Samples are rank 1 or 2, as NumPy's matmul treats them: a (m, k) or (k,) (a row), b (k, n)
// or (k,) (a column). The output is (m, n), with the axis of a vector operand dropped:
// (k,) @ (k, n) -> (n,), (m, k) @ (k,) -> (m,), (k,) @ (k,) -> () (a dot product).
//
// Every case is the (m x k) by (k x n) product of row-major matrices, one sgemm per sample;
// backward is da = dy b^T and db = a^T dy, two sgemm per sample, with beta = 1 when the
// gradient accumulates. sgemm's sums have a fixed order for a given shape, whatever the
// thread count.
#include "gemm/gemm.h"
#include "nn/op.h"

namespace pynn::nn {
namespace {

class MatmulOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    check_arity(attrs, in, 2, 2, params, 0, 0);
    const Shape& a = in[0];
    const Shape& b = in[1];
    if (a.empty() || a.size() > 2 || b.empty() || b.size() > 2)
      op_error(attrs, "expects samples of rank 1 or 2, got shapes " + shape_str(a) + " and " +
                          shape_str(b));
    m_ = a.size() == 2 ? a[0] : 1;
    k_ = a.back();
    const int64_t kb = b[0];
    n_ = b.size() == 2 ? b[1] : 1;
    if (kb != k_)
      op_error(attrs, "shapes " + shape_str(a) + " and " + shape_str(b) +
                          " do not match for a matrix product (" + std::to_string(k_) +
                          " vs " + std::to_string(kb) + ")");
    Shape out;
    if (a.size() == 2) out.push_back(m_);
    if (b.size() == 2) out.push_back(n_);
    return out;
  }

  bool needs_input(int k, bool, const BackwardNeeds& needs) const override {
    // da reads b, db reads a.
    return k == 0 ? needs.dx[1] != 0 : needs.dx[0] != 0;
  }

  void forward(const FwdArgs& a) override {
    const int64_t sa = m_ * k_, sb = k_ * n_, sy = m_ * n_;
    for (int64_t s = 0; s < a.n; ++s)
      gemm::sgemm(m_, n_, k_, 1.0f, {a.x[0] + s * sa, k_, 1}, {a.x[1] + s * sb, n_, 1}, 0.0f,
                  a.y + s * sy, n_);
  }

  void backward(const BwdArgs& a) override {
    const int64_t sa = m_ * k_, sb = k_ * n_, sy = m_ * n_;
    if (float* da = a.dx[0]) {
      const float beta = a.dx_acc[0] ? 1.0f : 0.0f;
      for (int64_t s = 0; s < a.n; ++s)  // (m x n) (n x k): b read transposed
        gemm::sgemm(m_, k_, n_, 1.0f, {a.dy + s * sy, n_, 1}, {a.x[1] + s * sb, 1, n_}, beta,
                    da + s * sa, k_);
    }
    if (float* db = a.dx[1]) {
      const float beta = a.dx_acc[1] ? 1.0f : 0.0f;
      for (int64_t s = 0; s < a.n; ++s)  // (k x m) (m x n): a read transposed
        gemm::sgemm(k_, n_, m_, 1.0f, {a.x[0] + s * sa, 1, k_}, {a.dy + s * sy, n_, 1}, beta,
                    db + s * sb, n_);
    }
  }

 private:
  int64_t m_ = 1, k_ = 1, n_ = 1;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("matmul", pynn::nn::MatmulOp)

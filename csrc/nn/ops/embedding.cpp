// embedding: a lookup table; each input value picks a row of the table (Keras's Embedding).
//
// attrs: input_dim (V > 0), output_dim (D > 0). params: [embeddings (V, D)].
// x holds integer indices as floats, any per-sample shape s; y has shape s + (D,), and
// y[..., :] = embeddings[int(x[...]), :]. An index that is not an integer in [0, V) (NaN,
// inf, 2.5, -1, V) is an error raised from forward(), naming the node and the value: a wrong
// row silently read would be worse.
//
// backward: d embeddings[v] = sum of dy over the positions holding v, summed in row-major
// order of the positions (one fixed order, whatever the thread count; the work is split over
// the D columns, so each element is summed by one thread). No gradient flows to the indices.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "common/parallel.h"
#include "nn/op.h"
#include "nn/ops/indexing.h"

namespace pynn::nn {
namespace {

class EmbeddingOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    vocab_ = attrs.require_int("input_dim");
    dim_ = attrs.require_int("output_dim");
    if (vocab_ <= 0) op_error(attrs, "input_dim must be positive, got " + std::to_string(vocab_));
    if (dim_ <= 0) op_error(attrs, "output_dim must be positive, got " + std::to_string(dim_));
    check_arity(attrs, in, 1, 1, params, 1, 1);
    if (params[0] != Shape{vocab_, dim_})
      op_error(attrs, "embeddings shape " + shape_str(params[0]) + " does not match input_dim " +
                          std::to_string(vocab_) + " and output_dim " + std::to_string(dim_));
    where_ = attrs.where();
    size_ = shape_size(in[0]);
    Shape out = in[0];
    out.push_back(dim_);
    return out;
  }
  bool needs_input(int, bool, const BackwardNeeds& needs) const override {
    return needs.dparam[0] != 0;
  }

  void forward(const FwdArgs& a) override {
    const int64_t total = a.n * size_;
    const float* x = a.x[0];
    const float* table = a.param[0];
    for (int64_t i = 0; i < total; ++i) {
      const int64_t v = index(x[i]);
      std::memcpy(a.y + i * dim_, table + v * dim_, size_t(dim_) * sizeof(float));
    }
  }

  void backward(const BwdArgs& a) override {
    ops::no_gradient(a.dx[0], a.n * size_, a.dx_acc[0] != 0);
    float* dw = a.dparam[0];
    if (!dw) return;
    const int64_t total = a.n * size_;
    const float* x = a.x[0];
    const float* dy = a.dy;
    const bool acc = a.dparam_acc[0] != 0;
    const int64_t d = dim_, v = vocab_;
    // Columns split among threads: every (row, column) sum runs over positions in order.
    const int nt = total * d >= (int64_t(1) << 16) ? parallel::available_threads() : 1;
    parallel::parallel_for(d, nt, [&](int64_t c0, int64_t c1) {
      if (!acc)
        for (int64_t r = 0; r < v; ++r) std::fill(dw + r * d + c0, dw + r * d + c1, 0.0f);
      for (int64_t i = 0; i < total; ++i) {
        float* dst = dw + int64_t(x[i]) * d;  // forward validated every index
        const float* src = dy + i * d;
        for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
      }
    });
  }

 private:
  int64_t index(float f) const {
    if (!(f >= 0.0f && f < float(vocab_)) || f != std::trunc(f))
      throw std::invalid_argument(where_ + ": index " + std::to_string(f) +
                                  " is not an integer in [0, input_dim=" +
                                  std::to_string(vocab_) + ")");
    return int64_t(f);
  }

  int64_t vocab_ = 1, dim_ = 1, size_ = 0;
  std::string where_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("embedding", pynn::nn::EmbeddingOp)

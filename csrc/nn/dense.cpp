// Dense layer kernels: one fused GEMM forward, and a backward made of one pass over dz
// (activation derivative + bias gradient) followed by two GEMMs on transposed views.
#include "nn/dense.h"

#include "gemm/sbgemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/parallel.h"
#include "gemm/gemm.h"

namespace pynn::nn {
namespace {

// Columns handled per block of the fused pass: the accumulators (kColBlock floats) stay in
// L1 and registers while the rows stream past. A multiple of 16 so blocks start on SIMD
// boundaries for any thread split.
constexpr int64_t kColBlock = 256;

// Up to this many elements the fused pass runs on one thread: a parallel region costs more
// than it saves for a small layer (a 128 x 256 pass, 128 KB, is a few microseconds).
constexpr int64_t kParallelElems = int64_t(1) << 16;

// Layers with at most this many outputs compute dW through its transpose (dense_weight_grad).
constexpr int64_t kNarrowOut = 16;

bool is_linear(const ActivationInfo* act) {
  return act == nullptr || std::strcmp(act->name, "linear") == 0;
}

// Columns [c0, c1) of the fused pass.
//
// Invariants: db[j] (j in [c0, c1)) is the float sum of dz[0][j], dz[1][j], ... dz[n-1][j]
// added in that order, starting from 0 (or from db[j] when accumulating), so the result does
// not depend on how the columns were split among threads.
void colsum_block(int64_t n, int64_t c, int64_t c0, int64_t c1, const float* z, const float* y,
                  float* dy, const ActivationInfo* act, const float* act_params, float* db,
                  bool accumulate) {
  const bool lin = is_linear(act);
  alignas(64) float acc[kColBlock];
  for (int64_t b0 = c0; b0 < c1; b0 += kColBlock) {
    const int64_t w = std::min(kColBlock, c1 - b0);
    for (int64_t j = 0; j < w; ++j) acc[j] = (accumulate && db) ? db[b0 + j] : 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      float* row = dy + i * c + b0;
      // The derivative is applied to a row segment that is then summed while still in L1:
      // dz is read from memory once.
      if (!lin) act->backward(z + i * c + b0, y + i * c + b0, row, row, w, act_params);
      for (int64_t j = 0; j < w; ++j) acc[j] += row[j];
    }
    if (db)  // null for a layer without bias: only dz is wanted
      for (int64_t j = 0; j < w; ++j) db[b0 + j] = acc[j];
  }
}

int pass_threads(int64_t n, int64_t c, int nthreads) {
  if (nthreads <= 0) nthreads = parallel::available_threads();
  if (n * c <= kParallelElems) return 1;
  // Each thread needs at least one 16-wide column group.
  return int(std::max<int64_t>(1, std::min<int64_t>(nthreads, (c + 15) / 16)));
}

}  // namespace

void activation_backward_colsum(int64_t n, int64_t c, const float* z, const float* y,
                                float* dy, const ActivationInfo* act, const float* act_params,
                                float* db, bool accumulate, int nthreads) {
  if (c <= 0) return;
  if (n <= 0) {
    if (!accumulate && db) std::fill(db, db + c, 0.0f);
    return;
  }
  const int nt = pass_threads(n, c, nthreads);
  if (nt <= 1) {
    colsum_block(n, c, 0, c, z, y, dy, act, act_params, db, accumulate);
    return;
  }
  const int64_t groups = (c + 15) / 16;
  parallel::run(nt, [&](int t) {
    const int64_t c0 = std::min(c, groups * t / nt * 16);
    const int64_t c1 = std::min(c, groups * (t + 1) / nt * 16);
    if (c0 < c1) colsum_block(n, c, c0, c1, z, y, dy, act, act_params, db, accumulate);
  });
}

void column_sums(const float* x, int64_t n, int64_t c, float* out) {
  // The linear case of the fused pass never writes to dy, so the cast is safe.
  activation_backward_colsum(n, c, nullptr, nullptr, const_cast<float*>(x), nullptr, nullptr,
                             out, false, 0);
}

void dense_forward(int64_t n, int64_t in, int64_t out, const float* x, int64_t ldx,
                   const float* W, const float* b, const ActivationInfo* act,
                   const float* act_params, float* z, float* y, int nthreads, bool bf16) {
  gemm::Epilogue ep;
  ep.bias = b;
  if (z != nullptr) {
    ep.preact = z;
    ep.ld_preact = out;
  }
  if (!is_linear(act)) {
    ep.act = act->forward;
    ep.act_params = act_params;
  }
  dense_gemm(bf16, n, out, in, {x, ldx, 1}, {W, out, 1}, false, y, out, ep, nthreads);
}

void dense_gemm(bool bf16, int64_t m, int64_t n, int64_t k, gemm::MatrixView a,
                gemm::MatrixView b, bool accumulate, float* c, int64_t ldc,
                const gemm::Epilogue& ep, int nthreads) {
  const float beta = accumulate ? 1.0f : 0.0f;
  if (!bf16) {
    gemm::sgemm(m, n, k, 1.0f, a, b, beta, c, ldc, ep, nthreads);
    return;
  }
  gemm::sbgemm(m, n, k, a, b, beta, c, ldc, ep, nthreads);
}

void dense_weight_grad(int64_t n, int64_t in, int64_t out, const float* x, int64_t ldx,
                       const float* dz, float* dW, int nthreads, bool accumulate, bool bf16) {
  if (!accumulate && out <= kNarrowOut && in > out && n > 0) {
    // A narrow layer (an output layer of 10 classes): dW^T = dz^T x is a product with a
    // few rows, which the GEMM runs unpacked, where dW = x^T dz would be an (in x 10) product
    // with a strided A. Every element is the same sum in the same order (the GEMM's results
    // do not depend on its path or shape, K being the same), so dW is bitwise the same.
    // The bf16 GEMM packs both operands either way, but transposed the few columns fill its
    // register tile's rows (10 of 12) instead of its columns (10 of 32): a third of the
    // micro-kernel calls, and dz is rounded into a 12-row panel instead of a 32-column one.
    // Its elements, too, do not depend on the shape (K pairs and panels depend on k only,
    // and a bf16 product is the same whichever operand it comes from), so dW is bitwise
    // what the direct product gives.
    thread_local std::vector<float> buf;
    std::vector<float>& t = buf;
    if (t.size() < size_t(in * out)) t.resize(size_t(in * out));
    dense_gemm(bf16, out, in, n, {dz, 1, out}, {x, ldx, 1}, false, t.data(), in,
               gemm::Epilogue{}, nthreads);
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < out; ++j) dW[i * out + j] = t[size_t(j * in + i)];
    return;
  }
  dense_gemm(bf16, in, out, n, {x, 1, ldx}, {dz, out, 1}, accumulate, dW, out, gemm::Epilogue{},
             nthreads);
}

void dense_backward(int64_t n, int64_t in, int64_t out, const float* x, int64_t ldx,
                    const float* W, const float* z, const float* y, float* dy,
                    const ActivationInfo* act, const float* act_params, float* dW, float* db,
                    float* dx, int nthreads, bool accumulate, bool bf16) {
  // dz = dy * act'(z) and db, in one pass; dy now holds dz.
  activation_backward_colsum(n, out, z, y, dy, act, act_params, db, accumulate, nthreads);
  const float* dz = dy;
  // dW = x^T dz (x^T is x read with its strides swapped) and dx = dz W^T (W^T is W read
  // column-wise): two independent products of the same rows * in * out multiply-adds.
  auto weight_grad = [&](int nt) {
    dense_weight_grad(n, in, out, x, ldx, dz, dW, nt, accumulate, bf16);
  };
  auto input_grad = [&](int nt) {
    dense_gemm(bf16, n, in, out, {dz, out, 1}, {W, 1, out}, false, dx, in, gemm::Epilogue{}, nt);
  };
  const int nt = nthreads > 0 ? nthreads : parallel::available_threads();
  if (dx != nullptr && nt == 2 && n * in * out >= gemm::kParallelThreshold) {
    // On two threads each product gets a thread of its own, in one parallel region instead of
    // two: equal work, each operand packed once, and one fork/join less per layer. A GEMM's
    // result does not depend on its thread count, so this is bitwise the sequential order.
    parallel::run(2, [&](int t) { t == 0 ? weight_grad(1) : input_grad(1); });
    return;
  }
  weight_grad(nthreads);
  if (dx != nullptr) input_grad(nthreads);
}

}  // namespace pynn::nn

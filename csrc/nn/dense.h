// Dense layer kernels.
//
// Forward:  z = x W + b,  y = act(z)     x (n, in), W (in, out) as Keras stores it, b (out)
//   One GEMM call with the bias and activation in its epilogue; z is saved for backward only
//   when the activation needs it (not for linear).
// Backward, given dy (n, out):
//   dz = dy * act'(z)        (in place in dy)
//   dW = x^T dz              (in, out)     accumulate=false overwrites, true adds
//   db = column sums of dz   (out)         summed over rows in a fixed order (deterministic);
//                                          accumulate applies to db as to dW
//   dx = dz W^T              (n, in)       skipped when dx is null (the first layer)
// dz and db come from one pass over dy (activation_backward_colsum below), the two products
// from sgemm reading x^T and W^T through swapped strides (no copies).
// All arrays row-major and contiguous; x may have a row stride ldx >= in. z (and y) may be
// null only for a linear activation (act == nullptr or "linear"), which reads neither.
#pragma once
#include <cstdint>

#include "gemm/gemm.h"
#include "nn/activations.h"

namespace pynn::nn {

void dense_forward(int64_t n, int64_t in, int64_t out, const float* x, int64_t ldx,
                   const float* W, const float* b, const ActivationInfo* act,
                   const float* act_params, float* z, float* y, int nthreads = 0,
                   bool bf16 = false);

void dense_backward(int64_t n, int64_t in, int64_t out, const float* x, int64_t ldx,
                    const float* W, const float* z, const float* y, float* dy,
                    const ActivationInfo* act, const float* act_params, float* dW, float* db,
                    float* dx, int nthreads = 0, bool accumulate = false,
                    bool bf16 = false);

// The products of a dense layer: C = A B (+ C when accumulate), with sgemm, or with the bf16
// GEMM (gemm/sbgemm.h: operands rounded to bfloat16, float32 sums) when bf16 is set (a layer
// under the "mixed_bfloat16" dtype policy).
void dense_gemm(bool bf16, int64_t m, int64_t n, int64_t k, gemm::MatrixView a,
                gemm::MatrixView b, bool accumulate, float* c, int64_t ldc,
                const gemm::Epilogue& ep, int nthreads);

// dW = x^T dz (dW += ... when accumulate): the weight gradient of dense_backward, for callers
// that run the steps one by one.
void dense_weight_grad(int64_t n, int64_t in, int64_t out, const float* x, int64_t ldx,
                       const float* dz, float* dW, int nthreads = 0, bool accumulate = false,
                       bool bf16 = false);

// Column sums of an (n, c) row-major matrix, in a fixed order.
void column_sums(const float* x, int64_t n, int64_t c, float* out);

// The fused pass of the backward: dz = dy * act'(z) in place in dy, and db = column sums of
// dz (db += ... when accumulate). Each column is summed over rows 0..n-1 in order whatever the
// thread count; threads split the columns only. act == nullptr means linear.
void activation_backward_colsum(int64_t n, int64_t c, const float* z, const float* y,
                                float* dy, const ActivationInfo* act, const float* act_params,
                                float* db, bool accumulate, int nthreads = 0);

}  // namespace pynn::nn

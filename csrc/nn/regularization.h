// Regularisation kernels: dropout, batch normalisation, L1/L2 penalties.
#pragma once
#include <cstdint>

namespace pynn::nn {

// Inverted dropout: keep each element with probability 1 - rate and scale kept ones by
// 1 / (1 - rate). mask[i] receives that scale or 0 (kept for backward). Element i of the mask
// is a pure function of (seed, stream, i). rate in [0, 1).
void dropout_forward(float* x, float* mask, int64_t n, float rate, uint64_t seed,
                     uint64_t stream);
// dx = dy * mask (dx may alias dy).
void dropout_backward(const float* dy, const float* mask, float* dx, int64_t n);

// Batch normalisation over the rows of x (n, c), per column j.
// Training: mean/var are the batch statistics (biased variance), y = gamma*(x-mean)/sqrt(var+eps)
// + beta; moving = momentum*moving + (1-momentum)*batch (Keras: momentum 0.99, eps 1e-3).
// xhat (n, c) and inv_std (c) are saved for backward.
void batchnorm_forward_train(const float* x, int64_t n, int64_t c, const float* gamma,
                             const float* beta, float momentum, float eps, float* moving_mean,
                             float* moving_var, float* xhat, float* inv_std, float* y);
void batchnorm_forward_infer(const float* x, int64_t n, int64_t c, const float* gamma,
                             const float* beta, const float* moving_mean,
                             const float* moving_var, float eps, float* y);
// dgamma, dbeta (c) overwritten; dx (n, c) may alias dy.
void batchnorm_backward(const float* dy, const float* xhat, const float* inv_std,
                        const float* gamma, int64_t n, int64_t c, float* dx, float* dgamma,
                        float* dbeta);

// Adds the gradient of l1*sum|w| + l2*sum w^2 to g and returns that penalty's value.
double l1_l2_penalty(const float* w, float* g, int64_t n, float l1, float l2);

}  // namespace pynn::nn

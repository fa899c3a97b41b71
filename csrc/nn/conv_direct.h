// Direct convolution kernels, used by the conv op (nn/ops/conv.cpp) instead of its implicit
// GEMM when the CPU has AVX2 or AVX-512: the forward pass of every groups-1 convolution with
// patches of at most 1152 values (conv.cpp says why), fused or not with a 2x2 max pooling,
// and the weight gradient of inputs with few channels (the first layer of an image network:
// 1 to 4 channels).
//
// Why: with C = 1 and a 3x3 window the GEMM's depth is K = 9. The micro-kernel then spends
// more time loading and storing its C tile than multiplying, and packing gathers one float
// per multiply-add; measured on the keras.io MNIST convnet (benchmarks/bench_conv.py) that
// layer ran at a seventh of the GEMM's speed on the 32-channel layer after it. These kernels
// keep a block of output positions x filters in registers, read the input where it lies
// (one broadcast per tap and position) and the kernel in place, so nothing is packed.
//
// Every kernel works on one sample; the op runs samples on threads and sums the per-sample
// weight gradients in sample order, so results do not depend on the thread count.
#pragma once
#include <cstdint>

#include "nn/ops/window.h"

namespace pynn::nn {

// Columns of the padded kernel rows the forward kernel reads (filters rounded up).
constexpr int64_t kDirectPad = 32;  // a multiple of every ISA's block of filters

struct DirectConvKernels {
  // y (positions, F) = bias + sum over k of x[corner + off[k]] * wp[k, :F] for every output
  // position, k in [0, K) ordered (tap, channel); taps outside the input count as zeros.
  // wp is (K + 1, FP) with FP = F rounded up to kDirectPad: K kernel rows then the bias,
  // columns past F zero. Nothing past y's F columns is written. With `relu`, y = relu of
  // that (a NaN stays NaN, as in the relu activation), applied in registers.
  void (*forward)(const ops::Window& w, const int64_t* off, int64_t K, const float* x,
                  const float* wp, int64_t F, int64_t FP, bool relu, float* y);
  // dw (K, F) = sum over positions p of x[corner_p + off[k]] * dz[p, :F] (overwritten),
  // positions summed in increasing order. With y non-null, dz is taken as dy where
  // y[p, f] > 0 and 0 elsewhere (relu's derivative, read from its output); with db non-null,
  // db (F) = sum over p of that dz (overwritten).
  void (*weight_grad)(const ops::Window& w, const int64_t* off, int64_t K, const float* x,
                      const float* dz, const float* y, int64_t F, float* dw, float* db);

  // Convolution fused with the 2x2 max pooling of stride 2 that follows it (conv.cpp, "conv
  // + max_pool"): the convolution's output is never stored. yp (POH, POW, F) gets the max of
  // each window of four outputs (after relu, with `relu`): the first maximum in the window's
  // row-major tap order, a NaN beating any number (the first NaN wins), exactly as the
  // max_pool op picks it; idx (when non-null) the winner's tap 0..3 as a float. Window
  // (i, j) covers output rows 2i, 2i+1 and columns 2j, 2j+1, and POH <= OH / 2, POW <= OW / 2.
  // Every value is bitwise forward() followed by max_pool's forward.
  void (*forward_pool)(const ops::Window& w, const int64_t* off, int64_t K, const float* x,
                       const float* wp, int64_t F, int64_t FP, bool relu, int64_t POH,
                       int64_t POW, float* yp, float* idx);
  // weight_grad for the dz that max_pool's backward (and relu's, with yp) forms from the
  // pooled gradient gp (POH, POW, F): dz at an output position is gp of its window where the
  // position won (idx) and, with yp, yp > 0; +0 elsewhere and at positions no window covers.
  // The same sums in the same order as weight_grad on that dz: bitwise equal.
  void (*weight_grad_pool)(const ops::Window& w, const int64_t* off, int64_t K, const float* x,
                           const float* gp, const float* yp, const float* idx, int64_t F,
                           int64_t POH, int64_t POW, float* dw, float* db);

  // A 3x3 convolution of strides 1 and dilation 1 by Winograd's F(2x2, 3x3): tiles of 2x2
  // outputs, each from 4x4 inputs, in 16 products per channel and filter instead of 36.
  // wu is wino_kernel()'s transformed kernel and bias. With POH == 0: y (OH, OW, F) as
  // forward() writes it (relu in registers with `relu`); with POH > 0 (POH <= OH / 2,
  // POW <= OW / 2): the tiles are the 2x2 max pooling's windows, and yp / idx are written as
  // forward_pool() writes them, the pooling applied to the values this kernel would store
  // without it (so that fused and apart agree bitwise). Values differ from the plain sums
  // by rounding only (the transforms are exact algebra).
  void (*wino_forward)(const ops::Window& w, const float* x, const float* wu, int64_t F,
                       int64_t FP, bool relu, int64_t POH, int64_t POW, float* y, float* idx);
  // The same algorithm's weight gradient, before its last transform (wino_finish_grad):
  // s[xi, c, f] (16, C, F) = sum over samples [0, n) and tiles t (row-major, 2x2 outputs
  // each, the last row / column cut by an odd output) of v_xi,t,c * z_xi,t,f, v = B^T d B of
  // the tile's inputs as wino_forward forms it, z = A dz_t A^T of its output gradients (dz
  // (n, OH, OW, F), zeros past the edge), for xi in [xi0, xi1) only. Each sum is one chain
  // in that order, so a split of the xi among threads gives the same bits.
  void (*wino_weight_sums)(const ops::Window& w, const float* x, const float* dz, int64_t n,
                           int64_t F, int64_t xi0, int64_t xi1, float* s);
};

// Floats of wino_kernel's output for C input channels and FP padded filters.
inline int64_t wino_kernel_size(int64_t C, int64_t FP) { return (16 * C + 1) * FP; }
// wu (16 * C + 1, FP): row xi * C + c, column f = (G k G^T)_xi of the 3x3 kernel
// k (3, 3, C, F) (channels_last, Keras's layout) for channel c and filter f, with
// G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], xi the row-major index of the 4x4 result;
// then the bias (zeros when null). Columns past F are zero.
void wino_kernel(const float* k, const float* bias, int64_t C, int64_t F, int64_t FP,
                 float* wu);
// dw (3, 3, C, F) = (or += with acc) G^T s G of wino_weight_sums's s for every (c, f).
void wino_finish_grad(const float* s, int64_t C, int64_t F, bool acc, float* dw);

// The kernels for the active ISA, or nullptr (portable builds, or PYNN_ARCH=generic).
const DirectConvKernels* direct_conv_kernels();
const DirectConvKernels* direct_conv_kernels_avx512();
const DirectConvKernels* direct_conv_kernels_avx2();

}  // namespace pynn::nn

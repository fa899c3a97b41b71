// Direct convolution kernels for inputs with few channels (the first layer of an image
// network: 1 to 4 channels), used by the conv op (nn/ops/conv.cpp) instead of its implicit
// GEMM when the CPU has AVX2 or AVX-512.
//
// Why: with C = 1 and a 3x3 window the GEMM's depth is K = 9. The micro-kernel then spends
// more time loading and storing its C tile than multiplying, and packing gathers one float
// per multiply-add; measured on the keras.io MNIST convnet (benchmarks/bench_conv.py) that
// layer ran at a seventh of the GEMM's speed on the 32-channel layer after it. These kernels
// keep a block of output positions x filters in registers, read the input where it lies
// (one broadcast per tap and position) and the kernel in place, so nothing is packed.
//
// Both kernels work on one sample; the op runs samples on threads and sums the per-sample
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
};

// The kernels for the active ISA, or nullptr (portable builds, or PYNN_ARCH=generic).
const DirectConvKernels* direct_conv_kernels();
const DirectConvKernels* direct_conv_kernels_avx512();
const DirectConvKernels* direct_conv_kernels_avx2();

}  // namespace pynn::nn

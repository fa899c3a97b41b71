// conv: 1-D and 2-D convolution, Keras's Conv1D / Conv2D on channels_last samples.
//
//   x (W, C) or (H, W, C);  kernel (kw, C/groups, F) or (kh, kw, C/groups, F);  bias (F)
//   y[oh, ow, f] = act(b[f] + sum_{i, j, c} x[oh*sh - ph + i*dh, ow*sw - pw + j*dw, g*Cg + c]
//                                           * kernel[i, j, c, f])      g = f / (F / groups)
// (a cross-correlation, as in Keras; positions outside the input are zeros). Geometry and
// padding rules: window.h.
//
// Forward is an implicit GEMM per group: Y (n*OH*OW, F/g) = patches (n*OH*OW, kh*kw*Cg) times
// the kernel (kh*kw*Cg, F/g) read in place, with the bias and activation in the GEMM's
// epilogue. The patch matrix is never built: the GEMM asks for one MC x KC block at a time
// and pack_rows gathers those patches from x straight into the micro-panels, so the extra
// memory is the GEMM's own packing buffers.
//
// Where the time goes (perf, one thread, the keras.io MNIST convnet at batch 128, AVX-512,
// after the convspeed2 branch: conv + max pooling fused, the direct forward for conv2): the
// GEMM micro-kernel 34% of a training step (conv2's dW and dz W^T, the dense layer), the
// fused direct forward + pooling 22% (conv2 19%, conv1 3%), col2im 7%, packing 10%
// (pack_cols for conv2's dW 6%, dz rows 3%, dz as B 2%), conv1's dW from the pooled gradient
// 5%, unpooling conv2's gradient 2%. Tried and dropped, measured in the same way: col2im as a
// gather (each input position summing its taps in registers: 8-10% of the step against 5-7%,
// the dz W^T rows being read at scattered addresses); dx by the direct kernel on a zero-
// bordered dz (28% against 26% for dz W^T + col2im + packing: 40% more products, a 73 KB
// kernel that leaves L1, a latency-bound last position of each 13-wide row); conv2's dW by
// batch-level direct blocks over samples chunked to stay in L2 (28% against 23% for the
// packed GEMM).
// Then (conv3 branch; perf record of 60 steps, the shares below are of the whole process,
// Python start included; A/B as process CPU time per step on one thread, same run, load
// 10-15 on 2 cores, 3 alternating runs each: 26.7-28.9 ms before, 19.4-23.4 ms after):
//  * backward of conv + fused pooling over the covered positions only (covered()): 17% of
//    conv2's dz, dW and dx products skipped;
//  * pack_cols copies a panel of MR consecutive channels as one fixed-size memcpy (the GEMM
//    asks for MR = 6 here, which the 4-float path never served): 9.7% -> 5.5%;
//  * Winograd F(2x2, 3x3) (conv_direct_impl.h) for 3x3 stride-1 layers with >= 16 input
//    channels: the forward (unfused, or fused with the pooling, whose windows are then the
//    tiles): conv2's forward from about 17% (direct kernel) to 11%; the weight gradient
//    (16 sums per channel and filter over the tiles, G^T s G at the end), replacing the GEMM
//    over packed patches: micro-kernel + pack_cols + packing dz from about 19% to 11%.
//    Results differ from the plain sums by rounding only; fused and apart stay bitwise
//    equal (the pooling is applied to the values the unfused kernel stores; the tile sums
//    add exact zeros for the tiles only the unfused layer has).
// Profile after: GEMM micro-kernel 12% (conv2's dz W^T, dense), Winograd forward blocks 9%,
// col2im 6%, conv1's dW 6%, Winograd dW sums 8% + transforms 3% + input transforms 4% (both
// passes), conv1's fused forward 4%, dropout 3%, unpooling 2%.
// Tried and dropped: Winograd product blocks of 64 filters x 6 tiles (the GEMM micro-
// kernel's shape, fewer broadcasts per FMA) instead of 32 x 8..12: 10.4% of the profile
// against 9.2% (0.81 against 0.78 of the GEMM micro-kernel's share in the same runs).
// Blocks of tiles are balanced (25 tiles: 9, 8, 8): blocks of 12, 12, 1 spent 1.6% in the
// one-tile block alone.
// Then (convspeed branch) Winograd for dx too (input_grad_wino), on the 12x12 of the 13x13
// input that the covered 10x10 positions reach: 36 tiles x 16 products against 100
// positions x 9 for dz W^T (the earlier estimate here took the whole 13x13, 49 tiles, and
// found only 13% fewer). perf, one thread, 60 steps: dz W^T's micro-kernel 23% + col2im 4%
// + packing before; the Winograd products 14% + input transforms of dz 4.4% + copying dz
// into its zero border 2.5% + adding into dx 1.4% after. A/B, CPU time per step of the
// whole fit on 7,680 images, best of 2, 3 alternating runs each, load 8 on 2 cores:
// 14.5 ms before, 12.9-13.5 after (1 thread); 16.1-17.6 and 14.0-15.0 (2 threads).
// Left: with 2 threads the dW sums split by xi and each thread transforms every tile (only
// its xi are needed); conv1's dW from the pooled gradient and its fused forward (each 5-6%
// of the step, at about half the FMA peak) are now the largest items after the Winograd
// kernels; the input transforms (wino_input, about 10% over the three passes) are slow for
// their arithmetic: their loads of x (and dz) miss the caches (a layer runs over the whole
// batch, 2.7 MB of input, before the next starts); explicit vector code for them and a
// padded xi stride were tried and changed nothing.
//
// Backward, with dz = dy * act'(z) computed in place in dy (plus the bias gradient, the
// column sums of dz, in the same pass):
//   dW = patches^T dz   an implicit GEMM again, patches^T packed by pack_cols;
//   dx = col2im(dz W^T) dz W^T is formed for a bounded chunk of output positions at a time
//                       (kChunkFloats floats of scratch), then each row's kh*kw*Cg values
//                       are added into the input positions they came from.
//
// Determinism: every GEMM element sums its K in the driver's fixed panels whatever the thread
// count and whatever M is, so a sample's outputs do not depend on the batch it is in; dW sums
// over positions in a fixed order; col2im adds each sample's rows in increasing order on one
// thread (ops::for_samples). Results are bitwise the same on any thread count.
//
// Few input channels (groups 1, at most kDirectMaxChannels per group, as in a network's first
// layer): the forward pass and dW use the direct kernels of nn/conv_direct.h instead (the
// GEMM's K would be 9..36, too shallow for it), on AVX2 / AVX-512; dx stays as above. dW is
// then summed per sample, and the samples' sums are added in sample order.
// 3x3 windows of stride 1 and dilation 1 with at least kWinoMinChannels input channels
// (groups 1, K up to kDirectMaxK): Winograd F(2x2, 3x3) for the forward pass (fused with a
// 2x2 max pooling or not), dW and, with kWinoMinChannels to kDirectMaxK / 9 filters, dx.
// (Measured figures above.)
// More channels (groups 1, K = kh*kw*C up to direct_many_channels_max_k(), about 128-192,
// from the L1d size; Winograd layers up to kDirectMaxK): the forward pass only takes the
// direct kernel too. Its block (12 positions of an output row x 32 filters on AVX-512) is the
// GEMM micro-kernel's shape, but it broadcasts the patch values from x where they lie (a
// position's window is at a fixed stride from its neighbour's), so nothing is packed: the
// indirect convolution algorithm's idea (Dukhan, 2019: the micro-kernel reads the input in
// place through a buffer of row pointers) with the pointers replaced by fixed strides, as the
// windows of one output row of a channels_last input have them. It pays while K is shallow
// (direct_many_channels_max_k), where packing would cost as much as the products; and
// relu (and a fused max pooling) happen in registers. Measured on the MNIST convnet's second
// layer before Winograd took it (13x13x32 -> 64, batch 128, one thread, same run, an earlier
// CPU): 5.7-6.0 ms against 6.8-6.9 ms for
// the implicit GEMM alone, and 4.3-4.6 ms against 6.3-6.8 ms for GEMM + max_pool when fused
// with its 2x2 pooling. (Its dW stays a GEMM: per-sample sums of a 288 x 64 kernel would cost
// more in memory than they save.) K is bounded so that a block of 32 filters' kernel rows
// stays in L1d (direct_many_channels_max_k), or in L2 for the Winograd layers (kDirectMaxK).
//
// Fused with a 2x2 max pooling (fusion.h): when the direct kernels run, the activation is
// relu or linear and the output's only reader is a MaxPooling2D((2, 2)) that tiles it, this op
// writes the pooled output (and the winning taps) straight from the kernel's registers; the
// convolution's output is never stored, nor read back by pooling. With few channels and no
// input gradient (a first layer) the pooled gradient goes straight into the direct dW (the
// winning taps and the pooled output give the mask that max_pool's and relu's backward
// passes would apply); otherwise the unfused dz is formed first (scratch [5]) and the unfused
// steps follow. The sums are those of the two ops apart, in the same order: results are
// bitwise equal.
//
// Scratch: [0] z, the pre-activation (saved, when backward needs it and the activation is
// not relu, whose derivative reads y), [1] the dz W^T chunk, [2] the direct kernel's padded
// weights and bias, [3] the direct kernel's per-sample dW; fused with max pooling, [4] the
// winning taps (saved), [5] the unpooled dz; in bf16 with the direct kernels or sb_implicit,
// [6] x rounded to bf16 (saved for dW).
//
// compute_dtype "bfloat16" (the mixed_bfloat16 policy): x, the kernel and dz are rounded to
// bfloat16 (gemm::bf16_round_bits) for every product (forward, dx, dW) and the products are
// summed in float32; the bias, the activation and db (summed from the unrounded dz) stay
// float32. The forward pass and dW are implicit GEMMs on the active bf16 micro-kernel
// (sb_implicit: the patch packers' float32 micro-panels rounded into its VDPBF16PS `pairs`
// or its emulated `f32` layout); with AMX, whose A layout sb_implicit does not write, the
// patch matrix is built kChunkFloats floats at a time (im2col_rows) for gemm::sbgemm. dx is
// sbgemm's dz W^T, then col2im as in float32. Few channels: the direct kernels on rounded
// copies (see configure). No Winograd, no fused pooling in bf16.
// Measured (this session's AMD Zen 4, load 12-35, so only roughly: the MNIST convnet epoch on
// 6,000 images, best of 3, pynn bf16 / pynn fp32 in alternating processes): im2col + sbgemm
// 2.5-2.8x on 1 thread, sb_implicit 1.8-2.3x, and 1.5-1.7x with the pair rounding
// vectorised (pack_pair_row: sb_convert_panel was 20% of the bf16 epoch). The rest of the
// gap: fp32's Winograd (2.25x fewer products in conv2's forward and dW) and pooling fusion
// have no bf16 counterpart.
// Then (convspeed branch) x is rounded once per forward pass into scratch [6] (kept for dW)
// and sb_implicit takes its patches, and dW's dz (rounded by backward), as bf16 already:
// sb_convert_panel only moves the top halves (rounding a bf16 value changes no bit, so the
// results are bitwise those of before). It had rounded each input kh*kw times in the forward
// pass and again in dW: 11.8% of the bf16 step (perf, one thread). A/B, CPU time per step,
// 3,840 images, best of 2, 2 alternating runs, load 6-8 on 2 cores: 24.5-25.2 ms before,
// 22.3-23.2 after (fp32 after this branch: 12.9-13.5).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "common/parallel.h"
#include "gemm/blocksizes.h"
#include "gemm/gemm.h"
#include "gemm/sbgemm.h"
#include "nn/conv_direct.h"
#include "nn/dense.h"
#include "nn/ops/common.h"
#include "nn/ops/conv_patches.h"
#include "nn/ops/fusion.h"
#include "nn/ops/window.h"
#include "nn/softmax.h"

namespace pynn::nn {
namespace {

using ops::Patches;
using ops::Window;

// Floats of scratch for one chunk of dz W^T (the input gradient's im2col-shaped rows).
constexpr int64_t kChunkFloats = int64_t(1) << 18;
// Input channels (per group) up to which the direct kernels replace the implicit GEMM.
constexpr int64_t kDirectMaxChannels = 4;
// Depth of the patches (kh*kw*Cg) up to which the direct kernel runs every forward pass with
// groups 1: 1152 x 32 filters are 144 KB of kernel rows.
constexpr int64_t kDirectMaxK = 1152;

// The deepest K (kh*kw*C) for which a many-channel layer that Winograd does not take runs the
// direct forward: its block of kDirectPad filters' kernel rows must stay in half of the L1d
// that cpuid reports (32 KB: K 128; 48 KB: K 192). Deeper, the direct kernel streams those
// rows from L2 for every block of 12 positions, and the implicit GEMM, whose packed panels
// are sized for the caches, is faster. Measured on a Zen 4 EPYC (32 KB L1d), one thread,
// batch 128, GFLOP/s of direct / implicit GEMM, two runs: K 32 (1x1, 32 channels) 51-53 / 41-43,
// K 64 (1x1) 56-61 / 51-53, K 72 (3x3 stride 2, 8 channels) 68-69 / 36-44; K 200 (5x5, 8
// channels) 47 / 59-60, K 288 (3x3 stride 2) 38-41 / 72-80, K 400 (5x5) 47 / 66, K 1125 (5x5,
// 45 channels) 39-47 / 85, K 1152 (3x3 stride 2, 128 channels) 40-41 / 86-87. Near the bound
// it is close either way (K 108, 3x3 stride 1, 12 channels: 44-45 / 53-57; K 144, 3x3
// stride 2, 16 channels: 59-64 / 45-46).
int64_t direct_many_channels_max_k() {
  static const int64_t max_k = [] {
    const int64_t l1d = gemm::cpu_caches().l1d > 0 ? gemm::cpu_caches().l1d : 32 * 1024;
    return std::min<int64_t>(kDirectMaxK, l1d / 2 / int64_t(kDirectPad * sizeof(float)));
  }();
  return max_k;
}
// Input channels from which a 3x3 convolution of stride 1 (groups 1, direct kernels
// available) runs its forward pass by Winograd F(2x2, 3x3) (see the header).
constexpr int64_t kWinoMinChannels = 16;

// Whether every tap of the window whose top-left input is (ih, iw) lies inside the input.
inline bool window_inside(const Window& w, int64_t ih, int64_t iw) {
  return ih >= 0 && ih + (w.KH - 1) * w.DH < w.H && iw >= 0 && iw + (w.KW - 1) * w.DW < w.W;
}

// Rows [i0, i0 + mc) x columns [p0, p0 + kc) of the patch matrix in pack_a's panel layout.
// Invariants: dst[p*MR + i] of a panel is patch row (panel start + i), column p0 + p; rows
// past mc and positions in the padding are 0.
// A panel whose MR windows all lie inside the input (every panel with padding "valid") is a
// gather: column p of row i is corner_i[offset[p]]. Other panels walk the columns one tap at a
// time, a tap giving each row a run of contiguous channels, or zeros where it is padding.
template <int MR>
void pack_rows(const Patches& pt, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  const Window& w = pt.w;
  const int64_t P = w.positions();
  for (int64_t ir = 0; ir < mc; ir += MR, dst += MR * kc) {
    const int64_t mv = std::min<int64_t>(MR, mc - ir);
    int64_t ih0[MR] = {}, iw0[MR] = {};
    const float* base[MR] = {};
    bool inside = mv == MR;
    for (int i = 0; i < mv; ++i) {
      const int64_t r = i0 + ir + i, s = r / P, q = r % P;
      ih0[i] = (q / w.OW) * w.SH - w.PH;
      iw0[i] = (q % w.OW) * w.SW - w.PW;
      base[i] = pt.x + s * w.in_size() + pt.c0;
      inside = inside && window_inside(w, ih0[i], iw0[i]);
    }
    if (inside) {
      const float* corner[MR];
      for (int i = 0; i < MR; ++i) corner[i] = base[i] + (ih0[i] * w.W + iw0[i]) * w.C;
      int64_t p = 0;
#if defined(__SSE2__)
      if constexpr (MR % 4 == 0) {
        // Four columns that are four consecutive floats of every row (offsets strictly
        // increase, so a difference of 3 means steps of 1): 4x4 transposes of rows.
        for (; p + 4 <= kc && pt.offset[p0 + p + 3] - pt.offset[p0 + p] == 3; p += 4) {
          const int64_t o = pt.offset[p0 + p];
          float* d = dst + p * MR;
          for (int i = 0; i < MR; i += 4) {
            __m128 r0 = _mm_loadu_ps(corner[i] + o), r1 = _mm_loadu_ps(corner[i + 1] + o);
            __m128 r2 = _mm_loadu_ps(corner[i + 2] + o), r3 = _mm_loadu_ps(corner[i + 3] + o);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(d + i, r0);
            _mm_storeu_ps(d + MR + i, r1);
            _mm_storeu_ps(d + 2 * MR + i, r2);
            _mm_storeu_ps(d + 3 * MR + i, r3);
          }
        }
      }
#endif
      for (; p < kc; ++p) {
        const int64_t o = pt.offset[p0 + p];
        float* d = dst + p * MR;
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) d[i] = corner[i][o];
      }
      continue;
    }
    for (int64_t col = p0; col < p0 + kc;) {
      const int64_t tap = col / pt.cg, c = col % pt.cg;
      const int64_t run = std::min(pt.cg - c, p0 + kc - col);
      const int64_t dh = (tap / w.KW) * w.DH, dw = (tap % w.KW) * w.DW;
      const float* src[MR];
      for (int i = 0; i < MR; ++i) {
        const int64_t ih = ih0[i] + dh, iw = iw0[i] + dw;
        const bool in = i < mv && ih >= 0 && ih < w.H && iw >= 0 && iw < w.W;
        src[i] = in ? base[i] + (ih * w.W + iw) * w.C + c : nullptr;
      }
      float* d = dst + (col - p0) * MR;
      for (int64_t q = 0; q < run; ++q)
        for (int i = 0; i < MR; ++i) d[q * MR + i] = src[i] != nullptr ? src[i][q] : 0.0f;
      col += run;
    }
  }
}

// Rows [i0, i0 + mc) x columns [p0, p0 + kc) of the transposed patch matrix (rows are
// (tap, c), columns output positions), for dW = patches^T dz. Same layout and zero rules as
// pack_rows. Each panel's MR (tap, c) rows become MR offsets from a position's window corner;
// away from the borders a column is a gather of MR floats at those offsets.
// The positions are taken kPosChunk at a time: first each one's window corner (or -1 when its
// window reaches the padding), then every panel copies from those corners. Walking the
// positions (divisions, bounds) once per chunk instead of once per panel halved this
// routine's time on the MNIST convnet's second layer (24 panels of 12 rows).
template <int MR>
void pack_cols(const Patches& pt, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  const Window& w = pt.w;
  const int64_t P = w.positions();
  constexpr int64_t kPosChunk = 256;
  int64_t corner[kPosChunk];
  for (int64_t pa = 0; pa < kc; pa += kPosChunk) {
    const int64_t pn = std::min(kPosChunk, kc - pa);
    {
      int64_t s = (p0 + pa) / P, q = (p0 + pa) % P, oh = q / w.OW, ow = q % w.OW;
      for (int64_t j = 0; j < pn; ++j) {
        const int64_t ihb = oh * w.SH - w.PH, iwb = ow * w.SW - w.PW;
        corner[j] = window_inside(w, ihb, iwb) ? s * w.in_size() + (ihb * w.W + iwb) * w.C : -1;
        if (++ow == w.OW) {
          ow = 0;
          if (++oh == w.OH) {
            oh = 0;
            ++s;
          }
        }
      }
    }
    float* panel = dst;
    for (int64_t ir = 0; ir < mc; ir += MR, panel += MR * kc) {
      const int64_t mv = std::min<int64_t>(MR, mc - ir);
      int64_t dh[MR] = {}, dw[MR] = {}, ch[MR] = {}, rel[MR] = {};
      for (int i = 0; i < mv; ++i) {
        const int64_t kidx = i0 + ir + i;
        dh[i] = (kidx / pt.cg / w.KW) * w.DH;
        dw[i] = (kidx / pt.cg % w.KW) * w.DW;
        ch[i] = pt.c0 + kidx % pt.cg;
        rel[i] = pt.c0 + pt.offset[kidx];
      }
      // When each group of rows 4q..4q+3 is four consecutive floats of the window (four
      // channels of one tap: always, with cg a multiple of 4), a column is MR / 4 vector copies.
      bool all_quads = mv == MR && MR % 4 == 0;
      for (int q = 0; q + 4 <= MR; q += 4) all_quads = all_quads && rel[q + 3] - rel[q] == 3;
      // Or, for any MR, when the panel's rows are MR consecutive floats of the window (MR
      // channels of one tap: with MR = 6 and cg = 32, 42 of the 48 panels), one copy of MR
      // floats. Measured on the MNIST convnet's second layer (MR 6): this routine went from
      // 9.7% to N% of a training step.
      bool run = mv == MR;
      for (int i = 1; i < MR; ++i) run = run && rel[i] - rel[0] == i;
      for (int64_t j = 0; j < pn; ++j) {
        float* d = panel + (pa + j) * MR;
        if (corner[j] >= 0) {
          const float* cp = pt.x + corner[j];
#if defined(__SSE2__)
          if constexpr (MR % 4 == 0) {
            if (all_quads) {
#pragma GCC unroll 4
              for (int q = 0; q < MR; q += 4) _mm_storeu_ps(d + q, _mm_loadu_ps(cp + rel[q]));
              continue;
            }
          }
#endif
          if (run) {
            std::memcpy(d, cp + rel[0], sizeof(float) * MR);  // a fixed size: vector moves
            continue;
          }
          if (mv == MR) {
#pragma GCC unroll 16
            for (int i = 0; i < MR; ++i) d[i] = cp[rel[i]];
          } else {
            for (int i = 0; i < MR; ++i) d[i] = i < mv ? cp[rel[i]] : 0.0f;
          }
          continue;
        }
        const int64_t r = p0 + pa + j, s = r / P, q = r % P;
        const int64_t ihb = (q / w.OW) * w.SH - w.PH, iwb = (q % w.OW) * w.SW - w.PW;
        const float* xs = pt.x + s * w.in_size();
        for (int i = 0; i < MR; ++i) {
          const int64_t ih = ihb + dh[i], iw = iwb + dw[i];
          d[i] = i < mv && ih >= 0 && ih < w.H && iw >= 0 && iw < w.W
                     ? xs[(ih * w.W + iw) * w.C + ch[i]]
                     : 0.0f;
        }
      }
    }
  }
}

template <bool kTransposed>
void pack_patches(const void* ctx, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int mr,
                  float* dst) {
  const Patches& pt = *static_cast<const Patches*>(ctx);
#define PYNN_CONV_PACK(MR)                                 \
  case MR:                                                 \
    if (kTransposed) pack_cols<MR>(pt, i0, mc, p0, kc, dst); \
    else pack_rows<MR>(pt, i0, mc, p0, kc, dst);           \
    return;
  switch (mr) {
    PYNN_CONV_PACK(4)
    PYNN_CONV_PACK(6)
    PYNN_CONV_PACK(8)
    PYNN_CONV_PACK(12)
    PYNN_CONV_PACK(14)
    PYNN_CONV_PACK(16)
    default: std::abort();  // a GEMM kernel with an MR not listed here is a build bug
  }
#undef PYNN_CONV_PACK
}

}  // namespace

// Exported through conv_patches.h (for the transposed convolution).
void ops::pack_patch_rows(const void* ctx, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                          int mr, float* dst) {
  pack_patches<false>(ctx, i0, mc, p0, kc, mr, dst);
}
void ops::pack_patch_cols(const void* ctx, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                          int mr, float* dst) {
  pack_patches<true>(ctx, i0, mc, p0, kc, mr, dst);
}

// dx rows [r0, r0 + rows) of the batch += col2im of `dcol` ((rows, KH*KW*cg), the gradient of
// each patch) for the group whose channels start at c0. Threads take whole samples; within a
// sample rows and taps are added in increasing order.
void ops::col2im_add(const Window& w, const float* dcol, int64_t r0, int64_t rows, int64_t c0,
                     int64_t cg, float* dx) {
  const int64_t P = w.positions(), Kg = w.taps() * cg;
  const int64_t s0 = r0 / P, s1 = (r0 + rows - 1) / P + 1;
  ops::for_samples(s0, s1, rows * Kg, [&](int64_t s) {
    float* xs = dx + s * w.in_size() + c0;
    const int64_t ra = std::max(r0, s * P), rb = std::min(r0 + rows, (s + 1) * P);
    for (int64_t r = ra; r < rb; ++r) {
      const int64_t q = r - s * P;
      const int64_t ihb = (q / w.OW) * w.SH - w.PH, iwb = (q % w.OW) * w.SW - w.PW;
      const float* src = dcol + (r - r0) * Kg;
      for (int64_t i = 0; i < w.KH; ++i) {
        const int64_t ih = ihb + i * w.DH;
        if (ih < 0 || ih >= w.H) continue;
        for (int64_t j = 0; j < w.KW; ++j) {
          const int64_t iw = iwb + j * w.DW;
          if (iw < 0 || iw >= w.W) continue;
          float* d = xs + (ih * w.W + iw) * w.C;
          const float* e = src + (i * w.KW + j) * cg;
          for (int64_t c = 0; c < cg; ++c) d[c] += e[c];
        }
      }
    }
  });
}

namespace {

using ops::col2im_add;

// dst[i] = the float32 value of the bfloat16 nearest src[i] (gemm::bf16_round_bits: ties to
// even, NaN kept quiet, results below FLT_MIN flushed to a signed zero), written with selects
// so that the loop vectorises; dst may be src.
void round_bf16(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, src + i, 4);
    uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    r &= (r & 0x7F800000u) == 0 ? 0x80000000u : 0xFFFFFFFFu;
    const uint32_t quiet = (u | 0x00400000u) & 0xFFFF0000u;
    r = (u & 0x7FFFFFFFu) > 0x7F800000u ? quiet : r;
    std::memcpy(dst + i, &r, 4);
  }
}

// Rows [r0, r0 + rows) of the group's patch matrix, row-major (rows, KH*KW*cg): the operand
// the bf16 GEMM (gemm::sbgemm) reads as a plain view. Positions in the padding are zeros.
void im2col_rows(const Patches& pt, int64_t r0, int64_t rows, float* dst) {
  const Window& w = pt.w;
  const int64_t P = w.positions(), kg = w.taps() * pt.cg;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t rr = r0 + r, s = rr / P, q = rr % P;
    const int64_t ihb = (q / w.OW) * w.SH - w.PH, iwb = (q % w.OW) * w.SW - w.PW;
    const float* xs = pt.x + s * w.in_size() + pt.c0;
    float* d = dst + r * kg;
    for (int64_t i = 0; i < w.KH; ++i) {
      const int64_t ih = ihb + i * w.DH;
      for (int64_t j = 0; j < w.KW; ++j) {
        const int64_t iw = iwb + j * w.DW;
        float* e = d + (i * w.KW + j) * pt.cg;
        if (ih >= 0 && ih < w.H && iw >= 0 && iw < w.W)
          std::memcpy(e, xs + (ih * w.W + iw) * w.C, sizeof(float) * size_t(pt.cg));
        else
          std::memset(e, 0, sizeof(float) * size_t(pt.cg));
      }
    }
  }
}

// --- the bf16 implicit GEMM -----------------------------------------------------------------
// The patch side of a product packed straight into the active bf16 kernel's panels: the
// float32 patch packers above fill one micro-panel of MR rows ([p][i], as for sgemm), which is
// then rounded to bf16 into the kernel's layout, so no patch matrix is ever built. Kernels
// with the `pairs` layout (VDPBF16PS) and the emulated `f32` one run here; AMX's A layout
// goes through im2col_rows and gemm::sbgemm instead.
bool sb_implicit_supported(const gemm::SbKernelInfo& k) {
  return (k.a_layout == gemm::SbLayout::pairs && k.b_layout == gemm::SbLayout::pairs &&
          k.ukr != nullptr) ||
         (k.a_layout == gemm::SbLayout::f32 && k.b_layout == gemm::SbLayout::f32 &&
          k.ukr == nullptr);
}

inline uint32_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;  // gemm::bf16_round_bits
  r &= (r & 0x7F800000u) == 0 ? 0x80000000u : 0xFFFFFFFFu;
  const uint32_t quiet = (u | 0x00400000u) & 0xFFFF0000u;
  return (u & 0x7FFFFFFFu) > 0x7F800000u ? quiet : r;
}

// d[i] = the bf16 pair (lo[i], hi[i]) as one 32-bit word, lo in the low half (a loop over
// non-overlapping arrays, so that it vectorises). kRounded: lo and hi are bf16 values already
// (each the float32 of a bf16, as round_bf16 leaves it), whose rounding changes no bit, so
// their top halves are taken as they are.
template <bool kRounded>
void pack_pair_row(const float* __restrict lo, const float* __restrict hi,
                   uint32_t* __restrict d, int w) {
  if constexpr (kRounded) {
    for (int i = 0; i < w; ++i) {
      uint32_t h, l;
      std::memcpy(&h, hi + i, 4);
      std::memcpy(&l, lo + i, 4);
      d[i] = (h & 0xFFFF0000u) | (l >> 16);
    }
  } else {
    for (int i = 0; i < w; ++i)
      d[i] = (bf16_bits(hi[i]) & 0xFFFF0000u) | (bf16_bits(lo[i]) >> 16);
  }
}

// One micro-panel src [kc][w] (float32, w rows or columns) into the kernel's layout of depth
// kcp (zeros past kc): pairs [kcp/2][w][2] bf16, or f32 [kcp][w] rounded. `rounded`: src
// holds bf16 values already (the bits are the same either way; only the work differs).
void sb_convert_panel(gemm::SbLayout layout, int w, int64_t kc, int64_t kcp, const float* src,
                      void* dst, bool rounded) {
  if (layout == gemm::SbLayout::pairs) {
    uint32_t* d = static_cast<uint32_t*>(dst);
    int64_t q = 0;
    for (; q + 2 <= kc; q += 2) {
      if (rounded) pack_pair_row<true>(src + q * w, src + (q + 1) * w, d + (q / 2) * w, w);
      else pack_pair_row<false>(src + q * w, src + (q + 1) * w, d + (q / 2) * w, w);
    }
    if (q < kc) {  // an odd depth: the last pair's second half is zero padding
      for (int i = 0; i < w; ++i) d[(q / 2) * w + i] = bf16_bits(src[q * w + i]) >> 16;
      q += 2;
    }
    std::memset(d + (q / 2) * w, 0, sizeof(uint32_t) * size_t((kcp - q) / 2 * w));
    return;
  }
  float* d = static_cast<float*>(dst);
  if (rounded) std::memcpy(d, src, sizeof(float) * size_t(kc * w));
  else round_bf16(src, d, kc * w);
  std::memset(d + kc * w, 0, sizeof(float) * size_t((kcp - kc) * w));
}

// C rows [m0, m1) (n columns, row stride ldc) = A B + beta C, then the epilogue (rows indexed
// from 0 at c, as for sgemm), on the calling thread, with A (m x k) from `pa` (a gemm::APacker
// callback) and B (k x n) a strided view; both rounded to bf16, float32 sums. K is cut into
// the same panels as gemm::sbgemm cuts it (depth from k alone) and tiles at the edges run on
// a scratch tile, so C[i][j] depends on row i of A, column j of B and k only: the same bits
// for any m0, m1, chunking or thread count. a_rounded / b_rounded: that operand's values are
// bf16 already (sb_convert_panel).
void sb_implicit(const gemm::SbKernelInfo& kern, const gemm::APacker& pa, int64_t m0, int64_t m1,
                 int64_t n, int64_t k, gemm::MatrixView b, float beta, float* c, int64_t ldc,
                 const gemm::Epilogue& ep, bool a_rounded, bool b_rounded) {
  const int MR = kern.mr, NR = kern.nr;
  const bool pairs = kern.a_layout == gemm::SbLayout::pairs;
  const size_t eb = pairs ? 2 : 4;
  const int64_t MC = std::max<int64_t>(MR, kern.mc / MR * MR);
  const int64_t panels = (k + kern.kc - 1) / kern.kc;
  const int64_t KC = ((k + panels - 1) / panels + kern.kpad - 1) / kern.kpad * kern.kpad;
  const int64_t NP = (n + NR - 1) / NR;
  thread_local std::vector<float> abuf, bbuf, tmp;
  const size_t afl = size_t(std::min(MC, (m1 - m0 + MR - 1) / MR * MR) * KC) * eb / 4 + 16;
  const size_t bfl = size_t(NP * NR * KC) * eb / 4 + 16;
  if (abuf.size() < afl) abuf.resize(afl);
  if (bbuf.size() < bfl) bbuf.resize(bfl);
  // The float32 packers fill up to kGroup micro-panels per call (pack_cols works out each
  // position's window once per call, so one panel per call would repeat that per panel).
  constexpr int64_t kGroup = 8;
  const size_t tfl = size_t(std::max<int64_t>(kGroup * MR, NR) * KC);
  if (tmp.size() < tfl) tmp.resize(tfl);
  // 64-byte aligned starts (the kernels load whole packed vectors with aligned loads)
  const auto aligned = [](std::vector<float>& v) {
    return reinterpret_cast<unsigned char*>(
        v.data() + (16 - (reinterpret_cast<uintptr_t>(v.data()) / sizeof(float)) % 16) % 16);
  };
  unsigned char* const ab = aligned(abuf);
  unsigned char* const bb = aligned(bbuf);
  alignas(64) float edge[32 * 64];
  if (kern.begin != nullptr) kern.begin();
  for (int64_t pc = 0; pc < k; pc += KC) {
    const int64_t kc = std::min(KC, k - pc), kcp = (kc + kern.kpad - 1) / kern.kpad * kern.kpad;
    const float beta_p = pc == 0 ? beta : 1.0f;
    const bool last = pc + kc == k;
    // B's K panel, every column (the layers' n are small: F / groups filters).
    for (int64_t jp = 0; jp < NP; ++jp) {
      const int64_t j0 = jp * NR, nv = std::min<int64_t>(NR, n - j0);
      for (int64_t p = 0; p < kc; ++p) {
        const float* row = b.data + (pc + p) * b.rs + j0 * b.cs;
        float* t = tmp.data() + p * NR;
        if (b.cs == 1) std::memcpy(t, row, sizeof(float) * size_t(nv));
        else for (int64_t j = 0; j < nv; ++j) t[j] = row[j * b.cs];
        for (int64_t j = nv; j < NR; ++j) t[j] = 0.0f;
      }
      sb_convert_panel(kern.b_layout, NR, kc, kcp, tmp.data(),
                       bb + size_t(jp * NR * kcp) * eb, b_rounded);
    }
    for (int64_t ic = m0; ic < m1; ic += MC) {
      const int64_t mc = std::min(MC, m1 - ic);
      for (int64_t ig = 0; ig < mc; ig += kGroup * MR) {
        const int64_t rows = std::min(kGroup * MR, mc - ig);
        pa.pack(pa.ctx, ic + ig, rows, pc, kc, MR, tmp.data());
        for (int64_t ir = ig; ir < ig + rows; ir += MR)
          sb_convert_panel(kern.a_layout, MR, kc, kcp, tmp.data() + (ir - ig) * kc,
                           ab + size_t(ir * kcp) * eb, a_rounded);
      }
      for (int64_t ir = 0; ir < mc; ir += MR) {
        const int64_t mv = std::min<int64_t>(MR, mc - ir);
        const void* ap = ab + size_t(ir * kcp) * eb;
        for (int64_t jp = 0; jp < NP; ++jp) {
          const int64_t j0 = jp * NR, nv = std::min<int64_t>(NR, n - j0);
          const void* bp = bb + size_t(jp * NR * kcp) * eb;
          float* ct = c + (ic + ir) * ldc + j0;
          const bool full = mv == MR && nv == NR;
          float* cc = full ? ct : edge;
          const int64_t ldcc = full ? ldc : NR;
          if (!full && beta_p != 0.0f)
            for (int64_t i = 0; i < mv; ++i) std::copy(ct + i * ldc, ct + i * ldc + nv, edge + i * NR);
          if (kern.ukr != nullptr) kern.ukr(kcp, ap, bp, cc, ldcc, beta_p);
          else kern.f32_ukr(kcp, static_cast<const float*>(ap), static_cast<const float*>(bp), cc,
                            ldcc, 1.0f, beta_p);
          if (!full)
            for (int64_t i = 0; i < mv; ++i) std::copy(edge + i * NR, edge + i * NR + nv, ct + i * ldc);
          if (last && !ep.empty()) ep.apply(ct, ldc, ic + ir, j0, mv, nv);
        }
      }
    }
  }
  if (kern.end != nullptr) kern.end();
}

class ConvOp : public Op, public ops::FusesConsumer {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    use_bias_ = attrs.get_bool("use_bias", true);
    groups_ = attrs.get_int("groups", 1);
    bf16_ = ops::bf16_compute(attrs);
    fused_.parse(attrs, "conv");
    check_arity(attrs, in, 1, 1, params, use_bias_ ? 2 : 1, use_bias_ ? 2 : 1);
    const Shape& x = in[0];
    if (x.size() != 2 && x.size() != 3)
      op_error(attrs, "expects samples of shape (width, channels) or (height, width, "
                      "channels), got input shape " + shape_str(x));
    const size_t rank = x.size() - 1;
    const Shape& k = params[0];
    const std::string want_k = rank == 1 ? "(kernel_width, input_channels / groups, filters)"
                                         : "(kernel_height, kernel_width, input_channels / "
                                           "groups, filters)";
    if (k.size() != rank + 2)
      op_error(attrs, "kernel shape " + shape_str(k) + " must be " + want_k + " for input "
                      "shape " + shape_str(x));
    if (groups_ < 1) op_error(attrs, "groups must be positive, got " + std::to_string(groups_));
    filters_ = k.back();
    const int64_t C = x.back();
    if (filters_ < 1) op_error(attrs, "kernel shape " + shape_str(k) + " has no filters");
    if (C % groups_ != 0)
      op_error(attrs, "input channels " + std::to_string(C) + " (input shape " + shape_str(x) +
                          ") are not divisible by groups " + std::to_string(groups_));
    if (filters_ % groups_ != 0)
      op_error(attrs, "filters " + std::to_string(filters_) + " are not divisible by groups " +
                          std::to_string(groups_));
    cg_ = C / groups_;
    fg_ = filters_ / groups_;
    if (k[rank] != cg_) {
      Shape want = k;
      want[rank] = cg_;
      op_error(attrs, "kernel shape " + shape_str(k) + " does not match input shape " +
                          shape_str(x) + " and groups " + std::to_string(groups_) +
                          ": expected " + shape_str(want) + ", " + want_k);
    }
    w_ = ops::make_window(attrs, x, std::vector<int64_t>(k.begin(), k.begin() + rank),
                          "kernel size", {}, true, rank == 1);
    kg_ = w_.taps() * cg_;
    offset_.resize(size_t(kg_));
    for (int64_t p = 0; p < kg_; ++p) {
      const int64_t tap = p / cg_;
      offset_[size_t(p)] = ((tap / w_.KW) * w_.DH * w_.W + (tap % w_.KW) * w_.DW) * w_.C + p % cg_;
    }
    if (use_bias_ && params[1] != Shape{filters_})
      op_error(attrs, "bias shape " + shape_str(params[1]) + " does not match filters " +
                          std::to_string(filters_) + ": expected " + shape_str({filters_}));
    chunk_rows_ = std::max<int64_t>(1, kChunkFloats / kg_);
    direct_dw_ = groups_ == 1 && cg_ <= kDirectMaxChannels;
    direct_ = groups_ == 1 && (direct_dw_ || kg_ <= kDirectMaxK) ? direct_conv_kernels()
                                                                 : nullptr;
    direct_dw_ = direct_dw_ && direct_ != nullptr;
    // bf16 (mixed precision): the products run on the bf16 GEMM, except with few channels,
    // where the direct kernels (float32 FMAs) run on bf16-rounded copies of x, the kernel and
    // dz: a product of two bf16 values is exact in float32, so that is the bf16 arithmetic
    // (rounded operands, float32 sums) with only the order of the sums differing, and a K of
    // 9..36 is too shallow for a GEMM of any kind (see conv_direct.h). Winograd is left out:
    // its transforms mix the operands (sums and halves of several kernel taps and inputs)
    // before the products, so rounding the transformed values to bf16 is not rounding x and
    // the kernel; the error would grow with the transforms' terms and the result would not
    // be the bf16 product the policy promises (nor the twin's).
    if (bf16_ && !direct_dw_) direct_ = nullptr;
    wino_ = !bf16_ && direct_ != nullptr && groups_ == 1 && cg_ >= kWinoMinChannels &&
            w_.KH == 3 && w_.KW == 3 && w_.SH == 1 && w_.SW == 1 && w_.DH == 1 && w_.DW == 1;
    // Many channels and no Winograd: the direct forward only while a block of filters'
    // kernel rows (K x kDirectPad floats) fits in half of this core's L1d (see the header).
    if (!wino_ && !direct_dw_ && kg_ > direct_many_channels_max_k()) direct_ = nullptr;
    fpad_ = (filters_ + kDirectPad - 1) / kDirectPad * kDirectPad;
    return ops::window_output_shape(w_, filters_);
  }

  // Takes over a 2x2 max pooling of stride 2 that alone reads this output (fusion.h), when
  // the direct kernels run and the activation is relu or linear (whose derivatives the
  // pooled output answers).
  bool fuse_consumer(Op* next) override {
    if (pool_ != nullptr) pool_->set_computed_by_producer(false);
    pool_ = nullptr;
    auto* p = dynamic_cast<ops::FusableMaxPool*>(next);
    // (Not in bf16: the direct kernel's weight gradient from the pooled gradient would need
    // a rounded copy of it and a separate bias sum; the ops run apart instead.)
    if (p == nullptr || direct_ == nullptr || bf16_ || fused_.softmax ||
        !(fused_.relu || fused_.act == &ops::linear_activation()))
      return false;
    const Window& pw = p->pool_window();
    if (!p->pool_tiles() || pw.KH != 2 || pw.KW != 2 || pw.H != w_.OH || pw.W != w_.OW ||
        pw.C != filters_)
      return false;
    pool_ = p;
    pool_win_ = pw;
    p->set_computed_by_producer(true);
    return true;
  }

  std::vector<ScratchNeed> scratch(bool training, bool backward) const override {
    std::vector<ScratchNeed> s(7);
    if (backward && keeps_z(training))
      s[0] = {w_.positions() * filters_, 0, ScratchLife::saved};
    if (backward && !wino_dx()) s[1] = {0, chunk_rows_ * kg_, ScratchLife::backward};
    if (direct_ != nullptr) {
      s[2] = {0, wino_ ? wino_kernel_size(cg_, fpad_) : (kg_ + 1) * fpad_,
              ScratchLife::forward};
    }
    if (direct_dw_ && backward) s[3] = {(kg_ + 1) * filters_, 0, ScratchLife::backward};
    if (pool_ != nullptr && backward) {
      s[4] = {pool_win_.positions() * filters_, 0, ScratchLife::saved};
      s[5] = {w_.positions() * filters_, 0, ScratchLife::backward};
    }
    // x rounded to bf16 for the direct kernels, or for sb_implicit (forward_implicit_bf16)
    if (bf16_ && (direct_ != nullptr || sb_implicit_supported(gemm::active_sb_kernel())))
      s[6] = {w_.in_size(), 0, backward ? ScratchLife::saved : ScratchLife::forward};
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds& needs) const override {
    return needs.dparam[0] != 0;  // only dW reads x
  }
  bool needs_output(bool, const BackwardNeeds&) const override {
    return (fused_.softmax && !logits_) || &effective() != &ops::linear_activation();
  }

  void forward(const FwdArgs& a) override {
    const int64_t M = a.n * w_.positions();
    const ActivationInfo& act = effective();
    float* z = keeps_z(a.training) ? a.scratch[0] : nullptr;
    if (pool_ != nullptr) {
      forward_pooled(a);
      return;
    }
    if (direct_ != nullptr) {
      forward_direct(a, act, z);
    } else if (bf16_ && sb_implicit_supported(gemm::active_sb_kernel())) {
      forward_implicit_bf16(a, act, z);
    } else if (bf16_) {
      forward_gemm_bf16(a, act, z);
    } else {
      forward_gemm(a, act, z);
    }
    if (fused_.softmax && !logits_) softmax_forward(a.y, M, filters_);
  }

  void forward_gemm(const FwdArgs& a, const ActivationInfo& act, float* z) const {
    const int64_t M = a.n * w_.positions();
    for (int64_t g = 0; g < groups_; ++g) {
      const Patches pt{w_, a.x[0], g * cg_, cg_, offset_.data()};
      const gemm::APacker packer{&pack_patches<false>, &pt};
      gemm::sgemm_packed_a(M, fg_, kg_, 1.0f, packer, {a.param[0] + g * fg_, filters_, 1}, 0.0f,
                           a.y + g * fg_, filters_, epilogue(a, act, z, g, 0));
    }
  }

  // The bf16 forward on sb_implicit: threads take contiguous ranges of output positions, in
  // whole micro-panels (the bits do not depend on the split, see sb_implicit).
  void forward_implicit_bf16(const FwdArgs& a, const ActivationInfo& act, float* z) const {
    const int64_t M = a.n * w_.positions();
    if (M == 0) return;
    const gemm::SbKernelInfo& kern = gemm::active_sb_kernel();
    // x rounded once (kept for dW): the patches then repeat bf16 values, which the packing
    // takes as they are instead of rounding each of the kh*kw copies of every input.
    const float* xr = rounded_input(a.x, a.scratch, a.n);
    by_panels(M, kern.mr, gemm::threads_for(M, filters_, kg_, parallel::available_threads()),
              [&](int64_t m0, int64_t m1) {
                for (int64_t g = 0; g < groups_; ++g) {
                  const Patches pt{w_, xr, g * cg_, cg_, offset_.data()};
                  sb_implicit(kern, {&pack_patches<false>, &pt}, m0, m1, fg_, kg_,
                              {a.param[0] + g * fg_, filters_, 1}, 0.0f, a.y + g * fg_,
                              filters_, epilogue(a, act, z, g, 0), true, false);
                }
              });
  }

  // fn(m0, m1) for rows [m0, m1) of m, cut among up to nt threads in whole panels of mr rows.
  template <class Fn>
  static void by_panels(int64_t m, int mr, int nt, const Fn& fn) {
    const int64_t panels = (m + mr - 1) / mr;
    nt = int(std::min<int64_t>(panels, nt));
    auto part = [&](int t) {
      int64_t lo, hi;
      parallel::static_block(panels, nt, t, lo, hi);
      if (lo < hi) fn(lo * mr, std::min(m, hi * mr));
    };
    if (nt <= 1) part(0);
    else parallel::run(nt, part);
  }

  // The forward GEMMs' epilogue for group g, C starting at output row r0: bias, the
  // pre-activation into z (when kept), the activation.
  gemm::Epilogue epilogue(const FwdArgs& a, const ActivationInfo& act, float* z, int64_t g,
                          int64_t r0) const {
    gemm::Epilogue ep;
    if (use_bias_) ep.bias = a.param[1] + g * fg_;
    if (z != nullptr) {
      ep.preact = z + r0 * filters_ + g * fg_;
      ep.ld_preact = filters_;
    }
    if (&act != &ops::linear_activation()) {
      ep.act = act.forward;
      ep.act_params = fused_.params.data();
    }
    return ep;
  }

  // The bf16 forward for the other kernels (AMX): threads take contiguous ranges of output positions (rows of the patch
  // matrix), each builds chunk_rows_ rows at a time in its own buffer and runs a one-thread
  // sbgemm on them with the bias and activation in its epilogue. An element of C depends on
  // its row, its column and K's panels only (sbgemm.h), so the bits do not depend on the
  // ranges, the chunks or the thread count.
  void forward_gemm_bf16(const FwdArgs& a, const ActivationInfo& act, float* z) const {
    const int64_t M = a.n * w_.positions();
    if (M == 0) return;
    const int nt = int(std::min<int64_t>(
        (M + 15) / 16, gemm::threads_for(M, filters_, kg_, parallel::available_threads())));
    auto part = [&](int t) {
      thread_local std::vector<float> col;
      if (col.size() < size_t(chunk_rows_ * kg_)) col.resize(size_t(chunk_rows_ * kg_));
      int64_t lo, hi;
      parallel::static_block(M, nt, t, lo, hi);
      for (int64_t r0 = lo; r0 < hi; r0 += chunk_rows_) {
        const int64_t rows = std::min(chunk_rows_, hi - r0);
        for (int64_t g = 0; g < groups_; ++g) {
          const Patches pt{w_, a.x[0], g * cg_, cg_, offset_.data()};
          im2col_rows(pt, r0, rows, col.data());
          gemm::sbgemm(rows, fg_, kg_, {col.data(), kg_, 1}, {a.param[0] + g * fg_, filters_, 1},
                       0.0f, a.y + r0 * filters_ + g * fg_, filters_,
                       epilogue(a, act, z, g, r0), 1);
        }
      }
    };
    if (nt <= 1) part(0);
    else parallel::run(nt, part);
  }

  // x for the direct kernels: in bf16, its copy rounded to bf16 (scratch [6]).
  const float* direct_input(const float* const* x, float* const* scratch, int64_t n,
                            bool round) const {
    if (!bf16_) return x[0];
    if (round) return rounded_input(x, scratch, n);
    return scratch[6];
  }
  // scratch [6] = x rounded to bf16, sample by sample.
  const float* rounded_input(const float* const* x, float* const* scratch, int64_t n) const {
    const int64_t size = w_.in_size();
    ops::for_samples(0, n, n * size, [&](int64_t s) {
      round_bf16(x[0] + s * size, scratch[6] + s * size, size);
    });
    return scratch[6];
  }

  // The kernel and bias copied into rows of fpad_ floats (the direct kernel reads whole
  // vectors), then each sample on its own: convolution, pre-activation, activation.
  const float* padded_weights(const FwdArgs& a) const {
    float* wp = a.scratch[2];
    std::memset(wp, 0, sizeof(float) * size_t((kg_ + 1) * fpad_));
    for (int64_t k = 0; k < kg_; ++k)
      std::memcpy(wp + k * fpad_, a.param[0] + k * filters_, sizeof(float) * size_t(filters_));
    if (bf16_) round_bf16(wp, wp, kg_ * fpad_);  // the kernel rows, not the bias
    if (use_bias_) std::memcpy(wp + kg_ * fpad_, a.param[1], sizeof(float) * size_t(filters_));
    return wp;
  }
  // The Winograd kernel's transformed kernel and bias (conv_direct.h), in scratch [2].
  const float* wino_weights(const FwdArgs& a) const {
    wino_kernel(a.param[0], use_bias_ ? a.param[1] : nullptr, cg_, filters_, fpad_,
                a.scratch[2]);
    return a.scratch[2];
  }
  void forward_direct(const FwdArgs& a, const ActivationInfo& act, float* z) const {
    const float* wp = wino_ ? wino_weights(a) : padded_weights(a);
    const int64_t out = w_.positions() * filters_;
    const bool linear = &act == &ops::linear_activation();
    // relu (never with z kept, see keeps_z) is applied in the kernel's registers.
    const bool relu = fused_.relu && !linear;
    const float* x = direct_input(a.x, a.scratch, a.n, true);
    ops::for_samples(0, a.n, a.n * out * kg_, [&](int64_t s) {
      float* y = a.y + s * out;
      if (wino_)
        direct_->wino_forward(w_, a.x[0] + s * w_.in_size(), wp, filters_, fpad_, relu, 0, 0, y,
                              nullptr);
      else
        direct_->forward(w_, offset_.data(), kg_, x + s * w_.in_size(), wp, filters_, fpad_,
                         relu, y);
      if (z != nullptr) std::memcpy(z + s * out, y, sizeof(float) * size_t(out));
      if (!linear && !relu) act.forward(y, out, fused_.params.data());
    });
  }

  // Fused with the max pooling after it: a.y is the pooled output, each sample's values
  // (POH, POW, F) packed one after another; the winning taps go to scratch [4].
  void forward_pooled(const FwdArgs& a) const {
    const float* wp = wino_ ? wino_weights(a) : padded_weights(a);
    const int64_t out = pool_win_.positions() * filters_;
    float* idx = a.scratch[4];
    ops::for_samples(0, a.n, a.n * w_.positions() * filters_ * kg_, [&](int64_t s) {
      if (wino_) {
        direct_->wino_forward(w_, a.x[0] + s * w_.in_size(), wp, filters_, fpad_, fused_.relu,
                              pool_win_.OH, pool_win_.OW, a.y + s * out,
                              idx != nullptr ? idx + s * out : nullptr);
        return;
      }
      direct_->forward_pool(w_, offset_.data(), kg_, a.x[0] + s * w_.in_size(), wp, filters_,
                            fpad_, fused_.relu, pool_win_.OH, pool_win_.OW, a.y + s * out,
                            idx != nullptr ? idx + s * out : nullptr);
    });
  }

  // dy is the pooled output's gradient. A first layer sums dW (and db) straight from it, the
  // taps and the pooled output; otherwise the unfused ops' dz is formed first (unpool_grad),
  // over the positions the pooling windows cover only: no window reads the last row (column)
  // of an odd output, so dz is exactly zero there (17% of the MNIST convnet's second layer),
  // and dW, db and dx are the sums over the covered positions, a convolution whose output is
  // cut to them (covered()).
  void backward_pooled(const BwdArgs& a) {
    const float* yp = fused_.relu ? a.y : nullptr;
    const float* idx = a.scratch[4];
    float* db = use_bias_ ? a.dparam[1] : nullptr;
    if (direct_dw_ && a.dx[0] == nullptr && a.dparam[0] != nullptr) {
      const int64_t pout = pool_win_.positions() * filters_;
      sum_weight_grads(a, a.dparam[0], db, [&](int64_t s, float* dw, float* dbs) {
        direct_->weight_grad_pool(w_, offset_.data(), kg_, a.x[0] + s * w_.in_size(),
                                  a.dy + s * pout, yp != nullptr ? yp + s * pout : nullptr,
                                  idx + s * pout, filters_, pool_win_.OH, pool_win_.OW, dw, dbs);
      });
      return;
    }
    const Window wc = covered();
    float* dz = a.scratch[5];
    unpool_grad(a.n, a.dy, yp, idx, dz);
    if (db != nullptr)
      activation_backward_colsum(a.n * wc.positions(), filters_, nullptr, nullptr, dz,
                                 &ops::linear_activation(), nullptr, db, a.dparam_acc[1]);
    if (float* dW = a.dparam[0]) weight_grad(a, wc, dz, dW);
    if (float* dx = a.dx[0]) input_grad(a, wc, dz, dx);
  }

  // The convolution's geometry cut to the output positions the fused pooling's windows
  // cover: rows [0, 2 POH) and columns [0, 2 POW) (each window's corner is where its first
  // output was; the input and its padding are unchanged).
  Window covered() const {
    Window wc = w_;
    wc.OH = 2 * pool_win_.OH;
    wc.OW = 2 * pool_win_.OW;
    return wc;
  }

  // The dz the unfused max_pool and relu backward passes would form, at the covered
  // positions (covered(), packed one sample after another): g of the window at the position
  // that won it (where, with yp, the pooled output is > 0), +0 elsewhere.
  void unpool_grad(int64_t n, const float* g, const float* yp, const float* idx,
                   float* dz) const {
    const Window& pw = pool_win_;
    const int64_t F = filters_, out = 4 * pw.positions() * F, pout = pw.positions() * F;
    ops::for_samples(0, n, n * out, [&](int64_t s) {
      float* d = dz + s * out;
      for (int64_t oh = 0; oh < 2 * pw.OH; ++oh) {
        for (int64_t ow = 0; ow < 2 * pw.OW; ++ow, d += F) {
          const float tap = float((oh % 2) * 2 + ow % 2);
          const int64_t o = s * pout + ((oh / 2) * pw.OW + ow / 2) * F;
          if (yp != nullptr) unpool_row<true>(g + o, yp + o, idx + o, tap, d, F);
          else unpool_row<false>(g + o, nullptr, idx + o, tap, d, F);
        }
      }
    });
  }
  // d[f] = g[f] where idx[f] == tap (and, kPositive, yp[f] > 0), else +0: selects over
  // non-overlapping arrays, so that the loop vectorises.
  template <bool kPositive>
  static void unpool_row(const float* __restrict g, const float* __restrict yp,
                         const float* __restrict idx, float tap, float* __restrict d,
                         int64_t F) {
    for (int64_t f = 0; f < F; ++f) {
      const float gv = g[f];
      const bool keep = kPositive ? (idx[f] == tap) & (yp[f] > 0.0f) : idx[f] == tap;
      d[f] = keep ? gv : 0.0f;
    }
  }

  void backward(const BwdArgs& a) override {
    if (pool_ != nullptr) {
      backward_pooled(a);
      return;
    }
    const int64_t M = a.n * w_.positions();
    float* dy = a.dy;
    if (fused_.softmax && !logits_) softmax_backward(a.y, dy, dy, M, filters_);
    const ActivationInfo& act = effective();
    const bool linear = &act == &ops::linear_activation();
    float* db = use_bias_ ? a.dparam[1] : nullptr;
    if (direct_dw_ && !bf16_ && a.dx[0] == nullptr && a.dparam[0] != nullptr &&
        (linear || fused_.relu)) {
      // A first layer: relu's derivative and db fused into the direct dW, dz never stored.
      weight_grad_direct(a, w_, dy, linear ? nullptr : a.y, a.dparam[0], db);
      return;
    }
    // dz = dy * act'(z) in place, and db = its column sums, in one pass.
    if (db != nullptr || !linear) {
      const float* z = linear ? nullptr : keeps_z(a.training) ? a.scratch[0] : a.y;
      activation_backward_colsum(M, filters_, z, a.y, dy, &act, fused_.params.data(), db,
                                 db != nullptr && a.dparam_acc[1]);
    }
    // bf16: both products read dz rounded (db above summed it unrounded); dy is this op's
    // own gradient buffer, already overwritten by dz above.
    if (bf16_ && (a.dparam[0] != nullptr || a.dx[0] != nullptr)) {
      ops::for_samples(0, a.n, M * filters_, [&](int64_t s) {
        const int64_t out = w_.positions() * filters_;
        round_bf16(dy + s * out, dy + s * out, out);
      });
    }
    const float* dz = dy;
    if (float* dW = a.dparam[0]) weight_grad(a, w_, dz, dW);
    if (float* dx = a.dx[0]) input_grad(a, w_, dz, dx);
  }

  // dW (or += with dparam_acc) = patches^T dz: the direct kernels' per-sample sums for few
  // input channels, else an implicit GEMM per group.
  // dz holds the output positions of w (w_, or the covered part of it).
  void weight_grad(const BwdArgs& a, const Window& w, const float* dz, float* dW) {
    if (wino_) {
      wino_weight_grad(a, w, dz, dW);
      return;
    }
    if (direct_dw_) {
      weight_grad_direct(a, w, dz, nullptr, dW, nullptr);
      return;
    }
    if (bf16_ && sb_implicit_supported(gemm::active_sb_kernel())) {
      weight_grad_implicit_bf16(a, w, dz, dW);
      return;
    }
    if (bf16_) {
      weight_grad_bf16(a, w, dz, dW);
      return;
    }
    const int64_t M = a.n * w.positions();
    const float beta = a.dparam_acc[0] ? 1.0f : 0.0f;
    for (int64_t g = 0; g < groups_; ++g) {
      const Patches pt{w, a.x[0], g * cg_, cg_, offset_.data()};
      const gemm::APacker packer{&pack_patches<true>, &pt};
      gemm::sgemm_packed_a(kg_, fg_, M, 1.0f, packer, {dz + g * fg_, filters_, 1}, beta,
                           dW + g * fg_, filters_);
    }
  }

  // dW (+)= patches^T dz on sb_implicit, the threads taking whole micro-panels of dW's rows
  // (each sums all positions in the same K panels: the same bits on any thread count).
  void weight_grad_implicit_bf16(const BwdArgs& a, const Window& w, const float* dz,
                                 float* dW) const {
    const int64_t M = a.n * w.positions();
    const float beta = a.dparam_acc[0] ? 1.0f : 0.0f;
    if (M == 0) {
      if (beta == 0.0f) std::memset(dW, 0, sizeof(float) * size_t(kg_ * filters_));
      return;
    }
    const gemm::SbKernelInfo& kern = gemm::active_sb_kernel();
    by_panels(kg_, kern.mr, gemm::threads_for(kg_, filters_, M, parallel::available_threads()),
              [&](int64_t m0, int64_t m1) {
                // the forward pass's rounded x (scratch [6]) and dz rounded by backward
                for (int64_t g = 0; g < groups_; ++g) {
                  const Patches pt{w, a.scratch[6], g * cg_, cg_, offset_.data()};
                  sb_implicit(kern, {&pack_patches<true>, &pt}, m0, m1, fg_, M,
                              {dz + g * fg_, filters_, 1}, beta, dW + g * fg_, filters_,
                              gemm::Epilogue{}, true, true);
                }
              });
  }

  // dW (+)= patches^T dz on the bf16 GEMM (AMX), chunk_rows_ positions at a time in scratch [1]:
  // each chunk's product is added to dW (beta 1) in chunk order, the chunks fixed by the
  // batch and the layer only, and sbgemm splits dW's rows and columns among the threads,
  // never the positions: the same bits on any thread count.
  void weight_grad_bf16(const BwdArgs& a, const Window& w, const float* dz, float* dW) {
    const int64_t M = a.n * w.positions();
    if (M == 0) {
      if (!a.dparam_acc[0]) std::memset(dW, 0, sizeof(float) * size_t(kg_ * filters_));
      return;
    }
    float* col = a.scratch[1];
    for (int64_t g = 0; g < groups_; ++g) {
      const Patches pt{w, a.x[0], g * cg_, cg_, offset_.data()};
      for (int64_t r0 = 0; r0 < M; r0 += chunk_rows_) {
        const int64_t rows = std::min(chunk_rows_, M - r0);
        int nt = int(std::min<int64_t>((rows + 63) / 64, parallel::available_threads()));
        if (gemm::threads_for(kg_, fg_, rows, nt) <= 1) nt = 1;  // a small copy stays serial
        auto build = [&](int t) {  // a plain copy: any split gives the same buffer
          int64_t lo, hi;
          parallel::static_block(rows, nt, t, lo, hi);
          im2col_rows(pt, r0 + lo, hi - lo, col + lo * kg_);
        };
        if (nt <= 1) build(0);
        else parallel::run(nt, build);
        const float beta = r0 == 0 && !a.dparam_acc[0] ? 0.0f : 1.0f;
        gemm::sbgemm(kg_, fg_, rows, {col, 1, kg_}, {dz + r0 * filters_ + g * fg_, filters_, 1},
                     beta, dW + g * fg_, filters_);
      }
    }
  }

  // dW by Winograd F(2x2, 3x3) (conv_direct.h): the 16 sums of each (c, f) over the tiles,
  // threads taking whole xi (each sum one chain, the same on any thread count), then G^T s G.
  void wino_weight_grad(const BwdArgs& a, const Window& w, const float* dz, float* dW) {
    wino_sums_.resize(size_t(16 * kg_ / 9 * filters_));
    float* s = wino_sums_.data();
    const int nt = int(std::min<int64_t>(16, gemm::threads_for(a.n * w.positions(), kg_, filters_,
                                                            parallel::available_threads())));
    auto part = [&](int t) {
      direct_->wino_weight_sums(w, a.x[0], dz, a.n, filters_, 16 * t / nt, 16 * (t + 1) / nt,
                                s);
    };
    if (nt <= 1) part(0);
    else parallel::run(nt, part);
    wino_finish_grad(s, cg_, filters_, a.dparam_acc[0], dW);
  }

  // dx (+)= col2im(dz W^T), group by group, a chunk of rows at a time. The threads take whole
  // samples: each runs its own chunks (one-thread GEMMs into its own dcol buffer, then its
  // samples' col2im), so a step opens one parallel region here instead of two per chunk (34
  // for the MNIST convnet's second layer, each a wake-up of the other thread), and the
  // group's W^T is packed once for every chunk (sgemm_prepacked_b) instead of once per
  // chunk and thread. Every GEMM element is independent of the rows computed with it, and
  // each sample's rows are added in increasing order: the same bits on any thread count.
  void input_grad(const BwdArgs& a, const Window& w, const float* dz, float* dx) {
    const int64_t P = w.positions();
    if (!a.dx_acc[0]) std::memset(dx, 0, sizeof(float) * size_t(a.n * w_.in_size()));
    if (wino_dx()) {
      input_grad_wino(a, w, dz, dx);
      return;
    }
    const float* W = a.param[0];
    const int64_t psize = gemm::packed_b_size(fg_, kg_);
    const int64_t pstride = (psize + 15) / 16 * 16;  // keeps every group's block 64-byte aligned
    float* packed = nullptr;
    if (!bf16_) {  // (sbgemm packs its own bf16 panels)
      packed_wt_.resize(size_t(pstride * groups_ + 16));
      packed = packed_wt_.data();
      packed += (16 - (reinterpret_cast<uintptr_t>(packed) / sizeof(float)) % 16) % 16;
      for (int64_t g = 0; g < groups_; ++g)
        gemm::pack_b_whole(fg_, kg_, {W + g * fg_, 1, filters_}, packed + g * pstride);
    }
    const auto samples = [&](int64_t s0, int64_t s1, float* dcol) {
      for (int64_t r0 = s0 * P; r0 < s1 * P; r0 += chunk_rows_) {
        const int64_t rows = std::min(chunk_rows_, s1 * P - r0);
        for (int64_t g = 0; g < groups_; ++g) {
          // (rows, fg) x (fg, kg): the group's kernel columns, transposed.
          const gemm::MatrixView dzg{dz + r0 * filters_ + g * fg_, filters_, 1};
          const gemm::MatrixView wt{W + g * fg_, 1, filters_};
          if (bf16_)
            gemm::sbgemm(rows, kg_, fg_, dzg, wt, 0.0f, dcol, kg_, gemm::Epilogue{}, 1);
          else
            gemm::sgemm_prepacked_b(rows, kg_, fg_, 1.0f, dzg, wt, packed + g * pstride, 0.0f,
                                    dcol, kg_, gemm::Epilogue{}, 1);
          col2im_add(w, dcol, r0, rows, g * cg_, cg_, dx);
        }
      }
    };
    const int64_t M = a.n * P;
    const int nt = int(std::min<int64_t>(
        a.n, gemm::threads_for(M, kg_, fg_ * groups_, parallel::available_threads())));
    if (nt <= 1) {
      samples(0, a.n, a.scratch[1]);
      return;
    }
    parallel::run(nt, [&](int t) {
      // Each thread's own dcol: the scratch for the first, a buffer kept by the thread for
      // the others (allocated once).
      thread_local std::vector<float> own;
      float* dcol = a.scratch[1];
      if (t != 0) {
        own.resize(size_t(chunk_rows_ * kg_));
        dcol = own.data();
      }
      samples(a.n * t / nt, a.n * (t + 1) / nt, dcol);
    });
  }

  // dx += the input gradient by Winograd F(2x2, 3x3), for the layers whose forward pass
  // runs by it (3x3, stride 1, dilation 1): dx is the "full" correlation of dz with the
  // kernel turned by 180 degrees and transposed (filters in, channels out),
  //   dx[ih, iw, c] = sum_{i, j, f} dzp[ih + i, iw + j, f] * W[2 - i, 2 - j, c, f],
  // dzp being dz shifted by (2 - PH, 2 - PW) in zeros: a 3x3 forward convolution of stride
  // 1 on dzp, which wino_forward runs on each sample (copied into a zero-bordered buffer so
  // that every tile lies inside it) with the turned kernel transformed once per call.
  // Only the rows (columns) of dx that some position of w reaches are computed (Hu x Wu:
  // with the fused pooling's covered positions, 12 x 12 of the MNIST convnet's 13 x 13).
  // Against dz W^T + col2im: 16 products per 2x2 outputs and (c, f) instead of 9 per
  // position (36 tiles x 16 against 100 positions x 9 on that layer, 36% fewer), no dz
  // packing and no col2im. Each sample on its own (the threads take whole samples): the
  // same bits on any thread count. Results differ from dz W^T + col2im by rounding only
  // (test_conv_winograd's tolerances).
  // (Its depth is 9 * filters: bounded as the forward pass's direct kernel bounds its K.)
  bool wino_dx() const {
    return wino_ && filters_ >= kWinoMinChannels && 9 * filters_ <= kDirectMaxK;
  }
  void input_grad_wino(const BwdArgs& a, const Window& w, const float* dz, float* dx) {
    const int64_t C = cg_, F = filters_, CP = (C + kDirectPad - 1) / kDirectPad * kDirectPad;
    const int64_t Hu = std::min(w_.H, w.OH + 2 - w_.PH), Wu = std::min(w_.W, w.OW + 2 - w_.PW);
    if (Hu <= 0 || Wu <= 0 || a.n == 0) return;
    // The turned kernel kt (3, 3, F, C), then its transform (no bias).
    std::vector<float> kt(size_t(9 * F * C));
    const float* W = a.param[0];
    for (int64_t ij = 0; ij < 9; ++ij)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t f = 0; f < F; ++f)
          kt[size_t((ij * F + f) * C + c)] = W[((8 - ij) * C + c) * F + f];
    wino_dx_kernel_.resize(size_t(wino_kernel_size(F, CP)));
    wino_kernel(kt.data(), nullptr, F, C, CP, wino_dx_kernel_.data());
    const float* wu = wino_dx_kernel_.data();
    Window wd;  // the correlation on the bordered buffer
    wd.C = F;
    wd.KH = wd.KW = 3;
    wd.OH = Hu;
    wd.OW = Wu;
    wd.H = 2 * ((Hu + 1) / 2) + 2;
    wd.W = 2 * ((Wu + 1) / 2) + 2;
    const int64_t sh = 2 - w_.PH, sw = 2 - w_.PW;  // dz's place in the buffer
    ops::for_samples(0, a.n, a.n * Hu * Wu * 4 * C * F, [&](int64_t s) {
      thread_local std::vector<float> buf, out;
      buf.resize(size_t(wd.in_size()));
      out.resize(size_t(Hu * Wu * C));
      const float* dzs = dz + s * w.positions() * F;
      for (int64_t r = 0; r < wd.H; ++r) {
        float* row = buf.data() + r * wd.W * F;
        const int64_t oh = r - sh;
        if (oh < 0 || oh >= w.OH) {
          std::memset(row, 0, sizeof(float) * size_t(wd.W * F));
          continue;
        }
        // columns [sw, sw + OW) hold dz's row oh (those past the buffer's width are never
        // read by a computed output), zeros around it
        const int64_t c0 = std::max<int64_t>(0, sw), c1 = std::min(wd.W, sw + w.OW);
        std::memset(row, 0, sizeof(float) * size_t(c0 * F));
        std::memcpy(row + c0 * F, dzs + (oh * w.OW + c0 - sw) * F,
                    sizeof(float) * size_t((c1 - c0) * F));
        std::memset(row + c1 * F, 0, sizeof(float) * size_t((wd.W - c1) * F));
      }
      direct_->wino_forward(wd, buf.data(), wu, C, CP, false, 0, 0, out.data(), nullptr);
      float* dxs = dx + s * w_.in_size();
      for (int64_t ih = 0; ih < Hu; ++ih) {
        float* d = dxs + ih * w_.W * C;
        const float* o = out.data() + ih * Wu * C;
        for (int64_t e = 0; e < Wu * C; ++e) d[e] += o[e];
      }
    });
  }

  // The direct dW (and db) summed over the samples (sum_weight_grads). With y, dz is masked
  // by relu's derivative on the fly.
  void weight_grad_direct(const BwdArgs& a, const Window& w, const float* dz, const float* y,
                          float* dW, float* db) const {
    const int64_t out = w.positions() * filters_;
    const float* x = direct_input(a.x, a.scratch, a.n, false);  // rounded by forward in bf16
    sum_weight_grads(a, dW, db, [&](int64_t s, float* dws, float* dbs) {
      direct_->weight_grad(w, offset_.data(), kg_, x + s * w.in_size(), dz + s * out,
                           y != nullptr ? y + s * out : nullptr, filters_, dws, dbs);
    });
  }
  // dW (and db when given) = (or +=) the sum over samples, in sample order, of what
  // per_sample(s, dW_s, db_s or null) writes for each sample.
  template <class Fn>
  void sum_weight_grads(const BwdArgs& a, float* dW, float* db, const Fn& per_sample) const {
    float* part = a.scratch[3];
    const int64_t kf = kg_ * filters_, stride = kf + filters_;
    ops::for_samples(0, a.n, a.n * w_.positions() * filters_ * kg_, [&](int64_t s) {
      float* ps = part + s * stride;
      per_sample(s, ps, db != nullptr ? ps + kf : nullptr);
    });
    const auto reduce = [&](float* dst, int64_t off, int64_t len, bool acc) {
      if (!acc) std::memset(dst, 0, sizeof(float) * size_t(len));
      for (int64_t s = 0; s < a.n; ++s) {
        const float* p = part + s * stride + off;
        for (int64_t i = 0; i < len; ++i) dst[i] += p[i];
      }
    };
    reduce(dW, 0, kf, a.dparam_acc[0]);
    if (db != nullptr) reduce(db, kf, filters_, a.dparam_acc[1]);
  }

  std::string tail_activation() const override {
    return fused_.softmax ? "softmax" : fused_.sigmoid ? "sigmoid" : "";
  }
  void set_emit_logits(bool on) override { logits_ = on; }

 private:
  // The activation the GEMM epilogue applies (and the backward differentiates).
  const ActivationInfo& effective() const {
    if (logits_ || fused_.softmax) return ops::linear_activation();
    return *fused_.act;
  }
  // relu's derivative only asks whether z > 0, which y = relu(z) > 0 answers as well: y
  // stands in for z, and the pre-activation (as large as the output) is never stored.
  bool keeps_z(bool) const {
    return &effective() != &ops::linear_activation() && !fused_.relu;
  }

  Window w_;
  int64_t groups_ = 1, filters_ = 0, cg_ = 0, fg_ = 0, kg_ = 0, chunk_rows_ = 1;
  bool use_bias_ = true, logits_ = false;
  ops::FusedActivation fused_;
  std::vector<int64_t> offset_;  // Patches::offset
  const DirectConvKernels* direct_ = nullptr;  // the direct forward, on AVX2 / AVX-512
  bool direct_dw_ = false;                     // dW by the direct kernels too (few channels)
  bool wino_ = false;                          // the forward by Winograd F(2x2, 3x3)
  bool bf16_ = false;  // compute_dtype "bfloat16": operands rounded to bf16, float32 sums
  int64_t fpad_ = 0;                           // filters rounded up to kDirectPad
  std::vector<float> wino_sums_;  // wino_weight_grad's 16 sums per (c, f)
  std::vector<float> wino_dx_kernel_;  // input_grad_wino's transformed turned kernel
  std::vector<float> packed_wt_;  // W^T of each group packed for the input gradient's GEMMs
  ops::FusableMaxPool* pool_ = nullptr;  // the max pooling this op computes (fuse_consumer)
  Window pool_win_;                      // its geometry: input (OH, OW, F), output (POH, POW)
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("conv", pynn::nn::ConvOp)

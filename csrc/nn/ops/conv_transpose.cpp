// conv_transpose: 1-D and 2-D transposed convolution, Keras's Conv1DTranspose /
// Conv2DTranspose on channels_last samples.
//
//   x (W, C) or (H, W, C);  kernel (kw, F, C) or (kh, kw, F, C) (Keras's layout);  bias (F)
//   y[o, f] = act(b[f] + sum over (q, i, c) with q*s + i*d - pad = o of x[q, c] * kernel[i, f, c])
// per spatial axis: each input position q spreads its kernel over the outputs q*s - pad +
// i*d, i = 0..k-1 (nothing is flipped, as in Keras and PyTorch); outputs outside [0, out)
// are dropped.
//
// Lengths, per axis (input L, kernel k, stride s, dilation d, span = (k - 1) d + 1,
// output_padding p, "None" when not given), as Keras 3 computes them:
//   valid   pad = 0, out = (L - 1) s + span + p, p defaulting to max(span, s) - span
//   same    pad_len = s + span - 2 (p None) or span + span % 2 - 2 + p,
//           left = min(ceil(pad_len / 2), span - 1), pad = span - 1 - left,
//           out = (L - 1) s - span + 2 + pad_len, that is L s (p None) or
//           (L - 1) s + span % 2 + p
// with 0 <= p < s. Outputs past the last one any input reaches are the bias alone.
//
// This is the adjoint of the convolution (conv.cpp) whose input is y's shape: window kernel
// (kh, kw), the same strides and dilation, `pad` zeros before, and output positions = x's
// positions, with C_conv = F and F_conv = C. The kernel, read as the (kh*kw*F, C) matrix W,
// is exactly that convolution's kernel. So, with the helpers of conv_patches.h:
//   forward   y = col2im(x W^T), with dcol = x W^T formed for a bounded chunk of input
//             positions at a time (kChunkFloats floats of scratch; whole samples when they
//             fit), y starting as the bias instead of zeros; each sample's activation right
//             after the chunk that completes it (still in cache);
//   dx        = patches(dz) W, the convolution's forward as an implicit GEMM;
//   dW        = patches(dz)^T x, the convolution's kernel gradient (patches from dz, the
//             role its input plays there);
//   db        = column sums of dz, in the same pass that forms dz = dy * act'(z).
// Extra memory: the chunk and the GEMM's packing buffers (plus z when the activation's
// derivative needs it); nothing grows with the square of any size.
//
// Determinism: the GEMMs sum each element's K in fixed panels whatever the thread count;
// col2im adds a sample's rows in increasing order on one thread; the activation pass is
// per element. Bitwise the same on any thread count.
//
// compute_dtype "bfloat16" (the mixed_bfloat16 policy): every product (forward, dx, dW) reads
// x, the kernel and dz rounded to bfloat16 and sums in float32 on the bf16 GEMM (gemm::sbgemm:
// VDPBF16PS or AMX where the CPU has them, its exact float32 emulation elsewhere); the bias,
// the activation and db (summed from the unrounded dz) stay float32, as do the weights.
//   forward   dcol = x W^T by sbgemm_prepacked_b, W^T rounded and packed once per pass,
//             then col2im as in float32;
//   dx, dW    on the patch matrix of dz built (transposed) a chunk of positions at a time
//             (patches_transposed), which both products then read: dx = sbgemm(patches, W)
//             with W packed once per pass, dW = the sum over chunks, in chunk order, of
//             sbgemm(patches^T, x). sbgemm cuts C among threads, never K, and its K panels
//             depend on k alone, so a row of dx is the same bits alone or in a batch, and
//             nothing depends on the thread count.
// (The convolution's bf16 path packs its patches straight into the bf16 kernel's panels,
// conv.cpp's sb_implicit. Tried here for dx and dW, dz rounded once beforehand, it was
// slower: the whole decoder's training step below (Zen 4, one thread, process CPU time, best
// of 15, two alternating rounds, load ~10) took 9.8-12.4 ms (F2 = 1) and 23.2-24.0 ms
// (F2 = 16) against 8.6-8.9 and 19.1 with the chunk; dx alone on it 9.7-9.9 / 21.0-22.1, dW
// alone 10.8-15.9 / 26.1-26.9.)
// Measured (AMD Zen 4 with AVX512_BF16, one thread, batch 128, thread CPU time, best of 15,
// three alternating runs, load 9 on 2 cores): the decoder layer (7, 7, 64) -> (14, 14, 32),
// 3x3, strides 2, 'same', relu: forward 3.0 ms float32 -> 1.75-1.9 ms bf16; training step
// (forward, dW, db) 8.4-8.5 -> 7.1-7.4 ms with the patches row-major, 6.6-7.3 ms
// transposed. Its dW gains little: the GEMM's time halves, but gathering the patches (the
// bulk of the backward pass in both dtypes), copying them into the chunk and packing that
// again for sbgemm cost nearly as much (packing them straight into the bf16 panels instead
// measured slower still, see above).
// Whole decoder (that layer, then (14, 14, 32) -> (28, 28, F2), dx and dW), training step:
// row-major 9.2-9.4 ms (F2 = 1), 19.2-20.2 ms (F2 = 16); transposed 8.9-9.3, 18.8-19.5.
//
// Scratch: [0] z, the pre-activation (saved when backward needs it), [1] the forward's chunk;
// in bf16, [2] backward's chunk of dz patches, [3] W^T packed for the forward's GEMMs, [4] W
// packed for dx's (scratch, not members: forward may run on several threads at once).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/parallel.h"
#include "gemm/gemm.h"
#include "gemm/sbgemm.h"
#include "nn/dense.h"
#include "nn/ops/common.h"
#include "nn/ops/conv_patches.h"
#include "nn/ops/window.h"
#include "nn/softmax.h"

namespace pynn::nn {
namespace {

using ops::Window;

// Floats of scratch for one chunk of x W^T (rows of kh*kw*F values, one row per input position).
constexpr int64_t kChunkFloats = int64_t(1) << 18;

std::string ints_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// One value per spatial axis: `key` as given (each >= lo), or `def` when absent.
std::vector<int64_t> per_axis(const Attrs& attrs, const char* key, size_t rank, int64_t def,
                              int64_t lo) {
  std::vector<int64_t> v = attrs.get_ints(key);
  if (!attrs.has(key)) v.assign(rank, def);
  if (v.size() != rank)
    op_error(attrs, std::string(key) + " must have " + std::to_string(rank) +
                        " value(s), one per spatial axis, got " + ints_str(v));
  for (int64_t s : v)
    if (s < lo)
      op_error(attrs, std::string(key) + " must be >= " + std::to_string(lo) + ", got " +
                          ints_str(v));
  return v;
}

// Floats of scratch that hold the bf16 GEMM's packed B (k x n) from a 64-byte boundary on.
int64_t packed_floats(int64_t k, int64_t n) {
  return (gemm::sb_packed_b_bytes(k, n) + 3) / 4 + 16;
}
// p advanced to the next 64-byte boundary (sb_pack_b_whole's requirement).
void* aligned64(float* p) {
  return p + (16 - (reinterpret_cast<uintptr_t>(p) / sizeof(float)) % 16) % 16;
}

// Rows [r0, r0 + rows) of pt's patch matrix, transposed: dst is (kg, rows) row-major, row p
// holding column p of those patch rows. Built with the convolution's exported packer of the
// patch matrix (ops::pack_patch_rows), whose panels of 16 positions hold each column's 16
// values contiguously: a panel is kg copies of 16 floats. Threads take blocks of positions (a
// plain copy: any split gives the same buffer).
// Transposed because dW = patches^T x then reads its A along K (the positions) contiguously,
// the bf16 packer's cheap direction, and dx reads it across; the other way round (patches
// row-major from pack_patch_cols) measured 3-10% slower on a decoder's training step (one
// thread, see the header).
void patches_transposed(const ops::Patches& pt, int64_t kg, int64_t r0, int64_t rows, int nt,
                        float* dst) {
  constexpr int kPanel = 16;           // an MR pack_patch_rows serves
  constexpr int64_t kPositions = 256;  // positions per call
  const int64_t blocks = (rows + kPositions - 1) / kPositions;
  nt = int(std::min<int64_t>(nt, blocks));
  auto part = [&](int t) {
    thread_local std::vector<float> tmp;  // (about the chunk's size at most)
    tmp.resize(size_t(kg * std::min<int64_t>(kPositions, (rows + kPanel - 1) / kPanel * kPanel)));
    int64_t lo, hi;
    parallel::static_block(blocks, nt, t, lo, hi);
    for (int64_t j0 = lo * kPositions; j0 < std::min(rows, hi * kPositions); j0 += kPositions) {
      const int64_t pn = std::min(kPositions, rows - j0);
      ops::pack_patch_rows(&pt, r0 + j0, pn, 0, kg, kPanel, tmp.data());
      for (int64_t ip = 0; ip * kPanel < pn; ++ip) {
        const int64_t width = std::min<int64_t>(kPanel, pn - ip * kPanel);
        const float* src = tmp.data() + ip * kPanel * kg;
        float* d = dst + j0 + ip * kPanel;
        if (width == kPanel) {  // a fixed size: vector moves
          for (int64_t p = 0; p < kg; ++p)
            std::memcpy(d + p * rows, src + p * kPanel, sizeof(float) * kPanel);
        } else {
          for (int64_t p = 0; p < kg; ++p)
            std::memcpy(d + p * rows, src + p * kPanel, sizeof(float) * size_t(width));
        }
      }
    }
  };
  if (nt <= 1) part(0);
  else parallel::run(nt, part);
}

class ConvTransposeOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    use_bias_ = attrs.get_bool("use_bias", true);
    bf16_ = ops::bf16_compute(attrs);
    fused_.parse(attrs, "conv_transpose");
    check_arity(attrs, in, 1, 1, params, use_bias_ ? 2 : 1, use_bias_ ? 2 : 1);
    const Shape& x = in[0];
    if (x.size() != 2 && x.size() != 3)
      op_error(attrs, "expects samples of shape (width, channels) or (height, width, "
                      "channels), got input shape " + shape_str(x));
    const size_t rank = x.size() - 1;
    const Shape& k = params[0];
    const std::string want_k = rank == 1 ? "(kernel_width, filters, input_channels)"
                                         : "(kernel_height, kernel_width, filters, "
                                           "input_channels)";
    if (k.size() != rank + 2 || k.back() != x.back())
      op_error(attrs, "kernel shape " + shape_str(k) + " must be " + want_k + " for input "
                      "shape " + shape_str(x));
    cin_ = x.back();
    filters_ = k[rank];
    for (size_t a = 0; a < rank + 1; ++a)
      if (k[a] < 1) op_error(attrs, "kernel shape " + shape_str(k) + " has an empty axis");
    if (use_bias_ && params[1] != Shape{filters_})
      op_error(attrs, "bias shape " + shape_str(params[1]) + " does not match filters " +
                          std::to_string(filters_) + ": expected " + shape_str({filters_}));
    make_geometry(attrs, x, k, rank);
    kg_ = w_.taps() * filters_;
    offset_.resize(size_t(kg_));
    for (int64_t p = 0; p < kg_; ++p) {
      const int64_t tap = p / filters_;
      offset_[size_t(p)] =
          ((tap / w_.KW) * w_.DH * w_.W + (tap % w_.KW) * w_.DW) * w_.C + p % filters_;
    }
    // whole samples per chunk when one fits (so the activation pass follows each chunk)
    chunk_rows_ = std::max<int64_t>(1, kChunkFloats / kg_);
    if (const int64_t P = w_.positions(); chunk_rows_ >= P) chunk_rows_ = chunk_rows_ / P * P;
    // The output is the underlying convolution's input.
    if (rank == 1) return {w_.W, filters_};
    return {w_.H, w_.W, filters_};
  }

  std::vector<ScratchNeed> scratch(bool training, bool backward) const override {
    std::vector<ScratchNeed> s(5);
    if (backward && keeps_z()) s[0] = {w_.in_size(), 0, ScratchLife::saved};
    s[1] = {0, chunk_rows_ * kg_, ScratchLife::forward};
    if (bf16_) {
      s[3] = {0, packed_floats(cin_, kg_), ScratchLife::forward};
      if (backward) {
        s[2] = {0, chunk_rows_ * kg_, ScratchLife::backward};
        s[4] = {0, packed_floats(kg_, cin_), ScratchLife::backward};
      }
    }
    return s;
  }
  bool needs_input(int, bool, const BackwardNeeds& needs) const override {
    return needs.dparam[0] != 0;  // only dW reads x
  }
  bool needs_output(bool, const BackwardNeeds&) const override {
    return (fused_.softmax && !logits_) || &effective() != &ops::linear_activation();
  }

  // Chunk by chunk of input positions: the samples a chunk reaches first get the bias, the
  // chunk's dcol is added in, and the samples it completes get their activation while they
  // are still in cache.
  void forward(const FwdArgs& a) override {
    const int64_t P = w_.positions(), M = a.n * P;  // input positions per sample, in all
    const int64_t out = w_.in_size(), rows_per_sample = w_.H * w_.W;
    const ActivationInfo& act = effective();
    float* y = a.y;
    float* z = keeps_z() && a.scratch[0] != nullptr ? a.scratch[0] : nullptr;
    const bool linear = &act == &ops::linear_activation();
    const bool softmax = fused_.softmax && !logits_;
    int64_t started = 0, finished = 0;  // samples holding the bias / their final values
    const auto start_until = [&](int64_t s1) {
      for (; started < s1; ++started) {
        float* ys = y + started * out;
        if (!use_bias_) {
          std::memset(ys, 0, sizeof(float) * size_t(out));
          continue;
        }
        for (int64_t r = 0; r < rows_per_sample; ++r)
          std::memcpy(ys + r * filters_, a.param[1], sizeof(float) * size_t(filters_));
      }
    };
    const auto finish_until = [&](int64_t s1) {
      if (!linear || softmax) {
        ops::for_samples(finished, s1, (s1 - finished) * out, [&](int64_t s) {
          float* ys = y + s * out;
          if (z != nullptr) std::memcpy(z + s * out, ys, sizeof(float) * size_t(out));
          if (!linear) act.forward(ys, out, fused_.params.data());
          if (softmax) softmax_forward(ys, rows_per_sample, filters_);
        });
      }
      finished = s1;
    };
    float* dcol = a.scratch[1];
    const float* W = a.param[0];
    // (rows, C) x (C, kh*kw*F): the kernel matrix read transposed in place (in bf16, rounded
    // and packed once for every chunk).
    void* packed = nullptr;
    if (bf16_ && M > 0) {
      packed = aligned64(a.scratch[3]);
      gemm::sb_pack_b_whole(cin_, kg_, {W, 1, cin_}, packed);
    }
    for (int64_t r0 = 0; r0 < M; r0 += chunk_rows_) {
      const int64_t rows = std::min(chunk_rows_, M - r0);
      start_until((r0 + rows - 1) / P + 1);
      const gemm::MatrixView xr{a.x[0] + r0 * cin_, cin_, 1};
      if (bf16_) gemm::sbgemm_prepacked_b(rows, kg_, cin_, xr, packed, 0.0f, dcol, kg_);
      else gemm::sgemm(rows, kg_, cin_, 1.0f, xr, {W, 1, cin_}, 0.0f, dcol, kg_);
      ops::col2im_add(w_, dcol, r0, rows, 0, filters_, y);
      finish_until((r0 + rows) / P);
    }
  }

  void backward(const BwdArgs& a) override {
    const int64_t M = a.n * w_.positions();
    const int64_t rows_out = a.n * w_.H * w_.W;
    float* dy = a.dy;
    if (fused_.softmax && !logits_) softmax_backward(a.y, dy, dy, rows_out, filters_);
    const ActivationInfo& act = effective();
    const bool linear = &act == &ops::linear_activation();
    float* db = use_bias_ ? a.dparam[1] : nullptr;
    // dz = dy * act'(z) in place, and db = its column sums, in one pass.
    if (db != nullptr || !linear) {
      const float* z = linear ? nullptr : keeps_z() ? a.scratch[0] : a.y;
      activation_backward_colsum(rows_out, filters_, z, a.y, dy, &act, fused_.params.data(), db,
                                 db != nullptr && a.dparam_acc[1]);
    }
    const ops::Patches pt{w_, dy, 0, filters_, offset_.data()};
    if (bf16_) {
      backward_bf16(a, pt, a.dx[0], a.dparam[0]);
      return;
    }
    if (float* dx = a.dx[0]) {
      const gemm::APacker packer{&ops::pack_patch_rows, &pt};
      gemm::sgemm_packed_a(M, cin_, kg_, 1.0f, packer, {a.param[0], cin_, 1},
                           a.dx_acc[0] ? 1.0f : 0.0f, dx, cin_);
    }
    if (float* dW = a.dparam[0]) {
      const gemm::APacker packer{&ops::pack_patch_cols, &pt};
      gemm::sgemm_packed_a(kg_, cin_, M, 1.0f, packer, {a.x[0], cin_, 1},
                           a.dparam_acc[0] ? 1.0f : 0.0f, dW, cin_);
    }
  }

  // dx (+)= patches(dz) W and dW (+)= patches(dz)^T x on the bf16 GEMM, both from one
  // row-major chunk of patches at a time (scratch [2]); see the header.
  void backward_bf16(const BwdArgs& a, const ops::Patches& pt, float* dx, float* dW) {
    const int64_t M = a.n * w_.positions();
    if (dW != nullptr && M == 0 && !a.dparam_acc[0])
      std::memset(dW, 0, sizeof(float) * size_t(kg_ * cin_));
    if ((dx == nullptr && dW == nullptr) || M == 0) return;
    void* packed = nullptr;
    if (dx != nullptr) {
      packed = aligned64(a.scratch[4]);
      gemm::sb_pack_b_whole(kg_, cin_, {a.param[0], cin_, 1}, packed);
    }
    float* col = a.scratch[2];
    for (int64_t r0 = 0; r0 < M; r0 += chunk_rows_) {
      const int64_t rows = std::min(chunk_rows_, M - r0);
      patches_transposed(pt, kg_, r0, rows,
                         gemm::threads_for(rows, cin_, kg_, parallel::available_threads()), col);
      if (dx != nullptr)
        gemm::sbgemm_prepacked_b(rows, cin_, kg_, {col, 1, rows}, packed,
                                 a.dx_acc[0] ? 1.0f : 0.0f, dx + r0 * cin_, cin_);
      if (dW != nullptr)
        gemm::sbgemm(kg_, cin_, rows, {col, rows, 1}, {a.x[0] + r0 * cin_, cin_, 1},
                     r0 == 0 && !a.dparam_acc[0] ? 0.0f : 1.0f, dW, cin_);
    }
  }

  std::string tail_activation() const override {
    return fused_.softmax ? "softmax" : fused_.sigmoid ? "sigmoid" : "";
  }
  void set_emit_logits(bool on) override { logits_ = on; }

 private:
  // The underlying convolution's window: its input is this op's output (H, W, F), its output
  // positions are this op's input positions. Lengths and padding as in the header comment.
  void make_geometry(const Attrs& attrs, const Shape& x, const Shape& k, size_t rank) {
    const std::vector<int64_t> strides = per_axis(attrs, "strides", rank, 1, 1);
    const std::vector<int64_t> dil = per_axis(attrs, "dilation_rate", rank, 1, 1);
    const bool given = attrs.has("output_padding") && !attrs.get_ints("output_padding").empty();
    const std::vector<int64_t> opad =
        given ? per_axis(attrs, "output_padding", rank, 0, 0) : std::vector<int64_t>(rank, 0);
    const std::string padding = attrs.get_string("padding", "valid");
    if (padding != "valid" && padding != "same")
      op_error(attrs, "padding must be 'valid' or 'same', got '" + padding + "'");
    w_ = Window{};
    w_.spatial = int(rank);
    w_.C = filters_;
    int64_t* out[2] = {&w_.H, &w_.W};
    int64_t* kk[2] = {&w_.KH, &w_.KW};
    int64_t* ss[2] = {&w_.SH, &w_.SW};
    int64_t* dd[2] = {&w_.DH, &w_.DW};
    int64_t* pad[2] = {&w_.PH, &w_.PW};
    int64_t* len[2] = {&w_.OH, &w_.OW};
    const size_t first = 2 - rank;
    for (size_t a = 0; a < rank; ++a) {
      const size_t g = first + a;
      const int64_t L = x[a], s = strides[a], span = (k[a] - 1) * dil[a] + 1;
      if (given && opad[a] >= s)
        op_error(attrs, "output_padding " + ints_str(opad) + " must be less than strides " +
                            ints_str(strides) + " on every axis");
      int64_t o = 0, p = 0;
      if (padding == "valid") {
        o = (L - 1) * s + span + (given ? opad[a] : std::max(span, s) - span);
      } else {
        const int64_t pad_len = given ? span + span % 2 - 2 + opad[a] : s + span - 2;
        const int64_t left = std::min(pad_len / 2 + pad_len % 2, span - 1);
        p = span - 1 - left;
        o = (L - 1) * s - span + 2 + pad_len;
      }
      if (o < 1)
        op_error(attrs, "the output would have " + std::to_string(o) + " positions on spatial "
                        "axis " + std::to_string(a) + " (input shape " + shape_str(x) +
                        ", kernel shape " + shape_str(k) + ", padding '" + padding + "')");
      *out[g] = o;
      *kk[g] = k[a];
      *ss[g] = s;
      *dd[g] = dil[a];
      *pad[g] = p;
      *len[g] = L;
    }
  }

  const ActivationInfo& effective() const {
    if (logits_ || fused_.softmax) return ops::linear_activation();
    return *fused_.act;
  }
  // relu's derivative only asks whether z > 0, which y = relu(z) answers as well.
  bool keeps_z() const { return &effective() != &ops::linear_activation() && !fused_.relu; }

  Window w_;
  int64_t cin_ = 0, filters_ = 0, kg_ = 0, chunk_rows_ = 1;
  bool use_bias_ = true, logits_ = false;
  bool bf16_ = false;  // compute_dtype "bfloat16": operands rounded to bf16, float32 sums
  ops::FusedActivation fused_;
  std::vector<int64_t> offset_;  // ops::Patches::offset of the underlying convolution
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("conv_transpose", pynn::nn::ConvTransposeOp)

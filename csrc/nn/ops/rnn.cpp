// rnn: a recurrent layer over the time axis (Keras's SimpleRNN, LSTM and GRU, one op).
//
// attrs: cell ("simple", "lstm", "gru"), units u, activation (default tanh),
// recurrent_activation (default sigmoid; unused by "simple"), use_bias, return_sequences,
// return_state, go_backwards, reset_after (gru only, default true), time_order (the
// sequence output indexed by time instead of processing order: a go_backwards layer's
// sequence the right way round, as Bidirectional wants it), zero_output_for_mask (a masked
// step's output, in the sequence or as the last output, is 0 instead of the carried h),
// dropout, recurrent_dropout and seed (training only, inverted dropout: one mask per sequence
// over the input features, kept at every step, and one over h' where it enters the recurrent
// GEMMs; element i of the input mask is the dropout op's draw i of (seed, stream), of the
// recurrent mask that of (seed + kRecurrentSeed, stream)). An lstm or gru with
// recurrent_dropout draws one of each per gate, as Keras 3 does: masks (n, G, F) and (n, G, u)
// in that order of draws; the lstm's kXH holds one A row per gate, and each gate's columns
// are their own GEMM (the gru's input side too, and its recurrent side per step; a gru
// without reset_after forms r h' from the candidate gate's mask of h').
// compute_dtype "bfloat16" (mixed precision) runs every product (the input projection, the
// recurrent GEMM of each step, and backward's dh', dx, dW and dU) on the bf16 GEMM: its
// operands rounded to bf16 (so h' and U in the recurrent one), float32 sums; the bias, the
// gates, the cell state and every buffer stay float32. simple and lstm then use the gru's
// unstacked layout below (a bias row in the stacked product would be rounded).
// inputs: x (T, F) [, mask (T,): a step is kept where mask != 0].
// params, with G gates (simple 1, lstm 4 in the order i f c o, gru 3 in the order z r h)
// and Keras's layouts: [kernel (F, G u), recurrent_kernel (u, G u), bias] where bias is
// (G u,), or (2, 3 u) for a gru with reset_after (input bias, then recurrent bias).
// output: the sequence of h in processing order (T, u) with return_sequences, else the last
// h (u,); with return_state the output is (R + S, u): those R rows (T or 1), then h_T and,
// for lstm, c_T. The layer slices that apart.
//
// Cells (a = activation, s = recurrent_activation, x_t W + b computed for all t at once):
//   simple  h = a(x W + b + h' U)
//   lstm    [zi zf zc zo] = x W + b + h' U;  c = s(zf) c' + s(zi) a(zc);  h = s(zo) a(c)
//   gru     z = s(xWz + bz + h'Uz [+ rbz]),  r = s(xWr + br + h'Ur [+ rbr])
//           reset_after:  hh = a(xWh + bh + r (h'Uh + rbh));  else hh = a(xWh + bh + (r h')Uh)
//           h = z h' + (1 - z) hh
// A masked step (mask 0) leaves h (and c) as they were; its output is the carried h.
//
// Invariants:
//  - simple and lstm in float32 (z = [x, 1, h'] [W; b; U]): per step ONE GEMM of the step's
//    rows [x, 1, h'] (kXH, filled with x and 1 up front, h' written by the step before) by
//    the stacked [W; b; U], packed once per call (the first step, whose h' is zero, takes
//    [x, 1] [W; b] alone, and adds no share to dU in backward; the bias row sits before h'
//    so that [x, 1] is a prefix); with sigmoid/tanh gates it writes the gate rows of kA
//    directly and they are activated there in place (their derivatives need only the output).
//    An lstm with sigmoid gates and tanh then runs each row's activations, cell update and h
//    (also into the next step's kXH row) as ONE pass (LstmLoops::fused_fwd), and backward
//    one pass per row from dh and dc to the step's dZ (fused_bwd).
//    Backward: per step one pass per row turning dh (and dc) into that step's dZ (one step's
//    rows only: it never leaves the cache), then from it dh' = dZ U^T, dx = dZ W^T and the
//    step's share of [dW; db; dU] = kXH^T dZ by GEMM (U^T and W^T packed once). The weight
//    gradients sum per block of batch rows cut by n alone (grad_blocks), the blocks' sums
//    added in order at the end. Their buffers with a row per step (kA, kC, kTC, kH, kXH) are
//    time major per backward block (RnnOp::ri): a step's rows of a block are adjacent, so
//    the step GEMMs read and write one contiguous run and the row passes stream.
//  - gru (and bf16 simple, lstm, whose step is the lstm's fused pass or the plain one):
//    one GEMM of (n T) x F by F x (G u) for the input side of every step, then per
//    step the recurrent GEMM (beta 1 straight into that step's rows, or into a step buffer
//    for reset_after) and ONE pass per row applying the gate activations and the cell
//    update (without reset_after a second GEMM for (r h')Uh runs between two passes; with
//    reset_after, sigmoid and tanh, that pass is LstmLoops::gru_fwd's single loop, and its
//    backward gru_bwd's).
//    Backward as above, then dW = X^T dZ and dU = H'^T dZ as one GEMM each; db is summed
//    per block of rows (grad_blocks) in the time loop while each step's dZ is in cache.
//  - gru: dx = dZ W^T is one GEMM over all rows. No sum's order depends on the thread count
//    (the GEMM never splits K; the row passes are independent per row, each thread runs the
//    whole recurrence on its own block of batch rows; backward's blocks are fixed by n).
//  - Every buffer is scratch planned by the graph: nothing is allocated per step or per call.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/parallel.h"
#include "gemm/gemm.h"
#include "gemm/sbgemm.h"
#include "nn/ops/common.h"
#include "nn/ops/indexing.h"
#include "nn/random.h"
#include "nn/rnn_cells.h"


namespace pynn::nn {
namespace {

enum class Cell { simple, lstm, gru };

constexpr uint64_t kRecurrentSeed = 0x5bd1e995u;

// A packed GEMM operand must start on 64 bytes; the graph's scratch is only 16-byte aligned,
// so its slot holds this many floats more and the operand starts at the next 64-byte boundary.
constexpr int64_t kAlignPad = 16;
float* align64(float* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<float*>((v + 63) / 64 * 64);
}

// The dropout op's mask: 1 / (1 - rate) where draw i of (seed, stream) is >= rate, else 0.
void dropout_mask(float* m, int64_t n, float rate, uint64_t seed, uint64_t stream) {
  const float scale = 1.0f / (1.0f - rate);
  for (int64_t i = 0; i < n; ++i)
    m[i] = random_uniform01(seed, stream, uint64_t(i)) >= rate ? scale : 0.0f;
}

// Scratch slots (per batch row unless noted).
enum Slot {
  kZ,      // pre-activations of every step, (T, G u)
  kA,      // activated gates of every step, (T, G u)
  kH,      // h of every step in time order, (T, u)
  kC,      // lstm: c of every step, (T, u)
  kRec,    // gru: h'Uh + rbh (reset_after) or r h' (not), per step (T, u)
  kStep,   // gru reset_after: the recurrent GEMM of one step, (G u)
  kDZ,     // backward: gate gradients, input side, (T, G u)
  kDZh,    // backward, gru reset_after: gate gradients, recurrent side, (T, G u)
  kDh,     // backward: dh carried between steps, (u)
  kDc,     // backward: dc carried between steps, (u)
  kTmp,    // backward, gru without reset_after: d(r h') of one step, (u)
  kHprev,  // backward: h' of every step in time order, (T, u)
  kXd,     // dropout: the dropped input (T, F); in backward the dx before its mask
  kMx,     // dropout: the input mask, (F)
  kMh,     // recurrent dropout: the mask of h', (u)
  kHd,     // recurrent dropout: one step's dropped h' (u); in backward dh' before its mask
  kTC,     // lstm: activation(c) of every step, (T, u)
  kUT,     // backward: the recurrent kernel transposed, (G u, u) (fixed: packs contiguously)
  kUP,     // forward: the recurrent kernel packed once for every step's GEMM (fixed)
  kUTP,    // backward: U^T packed once for every step's dh' GEMM (fixed)
  kXH,     // simple, lstm: per step the GEMM's A row [x, 1, h'], (T, F + 1 + u)
  kWcat,   // simple, lstm: [kernel; recurrent_kernel; bias] stacked, (F + u + 1, G u) (fixed)
  kWP,     // simple, lstm: kWcat packed once for every step (fixed)
  kG,      // backward, simple, lstm: [dW; db; dU] of each row block, (F + 1 + u, G u) (fixed)
  kWUT,    // backward, simple, lstm: [W^T, U^T], (G u, F + u) (fixed)
  kWUTP,   // backward, simple, lstm: kWUT packed once for every step's [dx, dh'] (fixed)
  kDXH,    // backward, simple, lstm: one step's [dx, dh'], (F + u)
  kGB,     // backward, gru: the bias gradients [db; rdb] of each row block, (2, G u) (fixed)
  kWP0,    // simple, lstm: [W; b] (kWcat's first rows) packed for the first step (fixed)
  kSlots
};

class RnnOp : public Op {
 public:
  Shape configure(const Attrs& attrs, const std::vector<Shape>& in,
                  const std::vector<Shape>& params) override {
    const std::string cell = attrs.get_string("cell", "lstm");
    if (cell == "simple") cell_ = Cell::simple, gates_ = 1;
    else if (cell == "lstm") cell_ = Cell::lstm, gates_ = 4;
    else if (cell == "gru") cell_ = Cell::gru, gates_ = 3;
    else op_error(attrs, "cell must be 'simple', 'lstm' or 'gru', got '" + cell + "'");
    u_ = attrs.require_int("units");
    if (u_ <= 0) op_error(attrs, "units must be positive, got " + std::to_string(u_));
    act_ = &ops::activation_for(attrs, attrs.get_string("activation", "tanh"), {}, act_p_);
    ract_ = &ops::activation_for(attrs, attrs.get_string("recurrent_activation", "sigmoid"), {},
                                 ract_p_);
    use_bias_ = attrs.get_bool("use_bias", true);
    seqs_ = attrs.get_bool("return_sequences", false);
    state_ = attrs.get_bool("return_state", false);
    back_ = attrs.get_bool("go_backwards", false);
    time_order_ = attrs.get_bool("time_order", false);
    zero_masked_ = attrs.get_bool("zero_output_for_mask", false);
    rate_x_ = attrs.get_double("dropout", 0.0);
    rate_h_ = attrs.get_double("recurrent_dropout", 0.0);
    seed_ = uint64_t(attrs.get_int("seed", 0));
    if (!(rate_x_ >= 0.0 && rate_x_ < 1.0) || !(rate_h_ >= 0.0 && rate_h_ < 1.0))
      op_error(attrs, "dropout and recurrent_dropout must be in [0, 1), got " +
                          std::to_string(rate_x_) + " and " + std::to_string(rate_h_));
    reset_after_ = attrs.get_bool("reset_after", true) && cell_ == Cell::gru;
    bf16_ = ops::bf16_compute(attrs);
    check_arity(attrs, in, 1, 2, params, use_bias_ ? 3 : 2, use_bias_ ? 3 : 2);
    if (in[0].size() != 2)
      op_error(attrs, "input must be (timesteps, features) per sample, got " + shape_str(in[0]));
    t_ = in[0][0];
    f_ = in[0][1];
    if (t_ <= 0) op_error(attrs, "the input needs at least one time step, got " +
                                     shape_str(in[0]));
    masked_ = in.size() == 2;
    if (masked_ && in[1] != Shape{t_})
      op_error(attrs, "mask shape " + shape_str(in[1]) + " does not match the input's " +
                          std::to_string(t_) + " time steps: expected " + shape_str({t_}));
    gu_ = gates_ * u_;
    const auto expect = [&](int k, const Shape& want, const char* what) {
      if (params[size_t(k)] != want)
        op_error(attrs, std::string(what) + " shape " + shape_str(params[size_t(k)]) +
                            " does not match: expected " + shape_str(want));
    };
    expect(0, {f_, gu_}, "kernel");
    expect(1, {u_, gu_}, "recurrent_kernel");
    if (use_bias_) expect(2, reset_after_ ? Shape{2, gu_} : Shape{gu_}, "bias");
    if (!use_bias_ && reset_after_) zero_bias_.assign(size_t(gu_), 0.0f);
    zeros_.assign(size_t(u_), 0.0f);
    // bf16: the bias must stay float32, so it cannot ride in the product as a row of 1s;
    // simple and lstm then take the gru's layout (input side of every step as one GEMM, bias
    // in its epilogue, then the recurrent GEMM per step).
    stacked_ = cell_ != Cell::gru && !bf16_;
    hoff_ = f_ + (use_bias_ ? 1 : 0);
    k1_ = hoff_ + u_;
    zrow_ = t_ * gu_;
    hrow_ = t_ * u_;
    // sigmoid and tanh take their derivative from the output alone: then the step's GEMM
    // writes straight into kA, activated there in place, and no pre-activation is kept.
    const auto from_output = [](const ActivationInfo* f) {
      const std::string name = f->name;
      return name == "sigmoid" || name == "tanh";
    };
    gates_in_a_ = cell_ != Cell::gru && from_output(act_) &&
                  (cell_ == Cell::simple || from_output(ract_));
    // Keras 3 gives an lstm or gru with recurrent_dropout independent masks per gate.
    pergate_ = cell_ != Cell::simple && rate_h_ > 0.0;
    // lstm with Keras's default activations runs each row's step as one fused pass.
    // so does a gru with reset_after and those activations (its forward).
    gru_fused_ = reset_after_ && std::string(act_->name) == "tanh" &&
                 std::string(ract_->name) == "sigmoid";
    fused_ = cell_ == Cell::lstm && std::string(act_->name) == "tanh" &&
             std::string(ract_->name) == "sigmoid";
    rows_out_ = seqs_ ? t_ : 1;
    nstate_ = state_ ? (cell_ == Cell::lstm ? 2 : 1) : 0;
    if (nstate_ == 0) return seqs_ ? Shape{t_, u_} : Shape{u_};
    return Shape{rows_out_ + nstate_, u_};
  }

  std::vector<ScratchNeed> scratch(bool training, bool backward) const override {
    std::vector<ScratchNeed> s(kSlots);
    const ScratchLife keep = backward ? ScratchLife::saved : ScratchLife::forward;
    const ScratchLife bw = ScratchLife::backward;
    s[kZ] = {gates_in_a_ ? 0 : zrow_, 0, keep};
    s[kA] = {zrow_, 0, keep};
    s[kH] = {hrow_, 0, keep};
    if (cell_ == Cell::lstm) s[kC] = {hrow_, 0, keep};
    if (cell_ == Cell::lstm) s[kTC] = {hrow_, 0, keep};
    if (cell_ == Cell::gru) s[kRec] = {t_ * u_, 0, keep};
    if (reset_after_) s[kStep] = {gu_, 0, ScratchLife::forward};
    if (stacked_) {
      s[kXH] = {t_ * k1_ * xh_copies(training), 0, keep};
      s[kWcat] = {0, k1_ * gu_, ScratchLife::forward};
      s[kWP] = {0, std::max(gemm::packed_b_size(k1_, gu_) + kAlignPad,
                            training && pergate_ ? gates_ * gate_pack_stride() + kAlignPad : 0),
                ScratchLife::forward};
      s[kWP0] = {0, gemm::packed_b_size(hoff_, gu_) + kAlignPad, ScratchLife::forward};
    } else {
      s[kUP] = {0, packed_size(u_, gu_) + kAlignPad, ScratchLife::forward};
    }
    if (backward) {
      s[kDZ] = {stacked_ ? gu_ : t_ * gu_, 0, bw};  // simple, lstm: one step's
      if (reset_after_) s[kDZh] = {t_ * gu_, 0, bw};
      s[kDh] = {u_, 0, bw};
      if (cell_ == Cell::lstm) s[kDc] = {u_, 0, bw};
      if (cell_ == Cell::gru && !reset_after_) s[kTmp] = {u_, 0, bw};
      // (bf16 simple, lstm: rows [x, h'] for the one GEMM of [dW; dU], into kG)
      if (!stacked_) s[kHprev] = {t_ * (cell_ == Cell::gru ? u_ : f_ + u_), 0, bw};
      if (stacked_) s[kG] = {0, kGradBlocks * k1_ * gu_, bw};
      else if (cell_ != Cell::gru) s[kG] = {0, (f_ + u_) * gu_, bw};
      if (!stacked_ && use_bias_) s[kGB] = {0, kGradBlocks * 2 * gu_, bw};
      if (stacked_) {
        s[kWUT] = {0, gu_ * (f_ + u_), bw};
        s[kWUTP] = {0, gemm::packed_b_size(gu_, f_ + u_) + kAlignPad, bw};
        s[kDXH] = {f_ + u_, 0, bw};
      }
      s[kUT] = {0, gu_ * u_, bw};
      s[kUTP] = {0, packed_size(gu_, u_) + kAlignPad, bw};
    }
    if (training && rate_x_ > 0) {
      s[kXd] = {t_ * f_, 0, keep};
      s[kMx] = {f_ * xh_copies(training), 0, keep};
    }
    if (training && rate_h_ > 0) {
      s[kMh] = {u_ * xh_copies(training), 0, keep};
      s[kHd] = {u_, 0, backward ? ScratchLife::saved : ScratchLife::forward};
    }
    return s;
  }
  bool needs_input(int k, bool, const BackwardNeeds& needs) const override {
    // x for dW (simple and lstm keep their own copy in kXH); the mask always
    return k == 0 ? needs.dparam[0] != 0 && !stacked_ : true;
  }

  void forward(const FwdArgs& a) override {
    const int64_t n = a.n;
    float* const* sc = a.scratch;
    float* Z = gates_in_a_ ? sc[kA] : sc[kZ];  // (unstacked simple, lstm: straight into kA)
    const float* W = a.param[0];
    const float* U = a.param[1];
    const float* bias = use_bias_ ? a.param[2] : nullptr;
    const float* rbias = reset_after_ ? (bias ? bias + gu_ : zero_bias_.data()) : nullptr;
    const float* mask = masked_ ? a.x[1] : nullptr;
    const int64_t zs = zrow_, hs = hrow_;  // row strides of one step's rows
    const bool drop_x = a.training && rate_x_ > 0, drop_h = a.training && rate_h_ > 0;
    const float* X = a.x[0];
    const int64_t xg = xh_copies(a.training);  // per-gate masks: G of each
    if (drop_x) dropout_mask(sc[kMx], n * xg * f_, float(rate_x_), seed_, a.stream);
    if (drop_x && xg == 1) {  // one mask per sequence, the same at every step
      gate_input(X, sc[kMx], 0, 1, n, sc[kXd]);
      X = sc[kXd];
    }
    const float* mh = drop_h ? sc[kMh] : nullptr;
    if (drop_h)
      dropout_mask(sc[kMh], n * xg * u_, float(rate_h_), seed_ + kRecurrentSeed, a.stream);

    const int64_t rcols = cell_ == Cell::gru && !reset_after_ ? 2 * u_ : gu_;
    float* UP = nullptr;
    float* XH = sc[kXH];
    const float* Wc = sc[kWcat];
    const float* WP = nullptr;
    if (stacked_) {
      WP = stack_weights(a, bias, xg);
    } else {
      // The input side of every step: one GEMM, bias in its epilogue.
      // Per-gate input masks: one GEMM per gate, from x through that gate's mask.
      gemm::Epilogue ep;
      ep.bias = bias;
      if (drop_x && xg > 1) {
        for (int64_t g = 0; g < xg; ++g) {
          gate_input(X, sc[kMx], g, xg, n, sc[kXd]);
          ep.bias = bias ? bias + g * u_ : nullptr;
          mm(n * t_, u_, f_, {sc[kXd], f_, 1}, {W + g * u_, gu_, 1}, 0.0f, Z + g * u_, gu_,
             ep);
        }
      } else {
        mm(n * t_, gu_, f_, {X, f_, 1}, {W, gu_, 1}, 0.0f, Z, gu_, ep);
      }
      // U packed once for all steps (gru without reset_after: only its z and r columns).
      UP = align64(sc[kUP]);
      if (t_ > 1 && xg == 1) pack_whole(u_, rcols, {U, gu_, 1}, UP);
    }
    const int64_t xs = xg * k1_;  // row stride of kXH's rows (stacked: one step's rows adjacent)

    // Batch rows never interact, through the whole recurrence: each thread runs every step on
    // its own block of rows, with no synchronisation between steps (a GEMM row's result does
    // not depend on how many rows it is computed with, so the split changes no bit).
    row_blocks(n, [&](int64_t b0, int64_t b1) {
      const int64_t nb = b1 - b0;
      if (stacked_) stack_rows(X, n, b0, b1, xg, drop_x && xg > 1 ? sc[kMx] : nullptr, XH);
      for (int64_t s = 0; s < t_; ++s) {
        const int64_t tt = time_of(s), pt = back_ ? tt + 1 : tt - 1;
        const bool first = s == 0;
        if (stacked_) {  // [x, 1, h'] [W; b; U] for this step's rows
          float* zt = (gates_in_a_ ? sc[kA] : Z) + ri(n, b0, tt) * gu_;
          const float* xh = XH + ri(n, b0, tt) * xs;
          if (xg == 1) {  // the first step's h' is zero: [x, 1] [W; b] alone
            gemm::sgemm_prepacked_b(nb, gu_, first ? hoff_ : k1_, 1.0f, {xh, xs, 1},
                                    {Wc, gu_, 1}, first ? align64(sc[kWP0]) : WP, 0.0f, zt,
                                    gu_);
          } else {  // per-gate masks: each gate's columns from its own A rows
            for (int64_t g = 0; g < xg; ++g)
              gemm::sgemm_prepacked_b(nb, u_, k1_, 1.0f, {xh + g * k1_, xs, 1},
                                      {Wc + g * u_, gu_, 1}, packed_gate(WP, g), 0.0f,
                                      zt + g * u_, gu_);
          }
          for (int64_t b = b0; b < b1; ++b) {
            if (b + kPrefetchRows < b1) prefetch_row_forward(a, b + kPrefetchRows, tt, s, xg);
            float* next = s + 1 < t_ ? XH + ri(n, b, time_of(s + 1)) * xs + hoff_ : nullptr;
            if (fused_ && (mask == nullptr || mask[b * t_ + tt] != 0.0f) && xg == 1) {
              fused_forward(a, b, tt, pt, first, next, drop_h ? mh + b * u_ : nullptr);
              continue;
            }
            if (fused_ && (mask == nullptr || mask[b * t_ + tt] != 0.0f))
              fused_forward(a, b, tt, pt, first, nullptr, nullptr);
            else
              step_forward(a, b, tt, pt, first, mask, mh, nullptr, false);
            if (next == nullptr) continue;
            // h (through the recurrent mask, per gate with per-gate masks) into the next
            // step's A rows
            const float* h = sc[kH] + ri(n, b, tt) * u_;
            for (int64_t g = 0; g < xg; ++g) {
              float* dst = next + g * k1_;
              if (drop_h) {
                const float* m = mh + (b * xg + g) * u_;
                for (int64_t j = 0; j < u_; ++j) dst[j] = h[j] * m[j];
              } else {
                std::memcpy(dst, h, bytes(u_));
              }
            }
          }
          continue;
        }
        float* Zt = Z + b0 * zs + tt * gu_;
        float* step = reset_after_ ? sc[kStep] : nullptr;
        if (first) {  // h' is the zero state: h'U is 0 (plus the recurrent bias)
          if (reset_after_)
            for (int64_t b = b0; b < b1; ++b) std::memcpy(step + b * gu_, rbias, bytes(gu_));
        } else {
          // h'U + recurrent bias into the step buffer (reset_after), else h'U's z and r
          // columns added into the step's rows; per-gate masks: gate by gate, each from h'
          // through its own mask (one mask: the packed U for all columns at once).
          const int64_t groups = xg > 1 ? rcols / u_ : 1, gcols = rcols / groups;
          for (int64_t g = 0; g < groups; ++g) {
            gemm::MatrixView hp{sc[kH] + b0 * hs + pt * u_, hs, 1};
            if (drop_h) {  // h' as the recurrent GEMM sees it
              masked_state(sc, b0, b1, pt, g, xg, sc[kHd] + b0 * u_);
              hp = {sc[kHd] + b0 * u_, u_, 1};
            }
            float* out = reset_after_ ? step + b0 * gu_ + g * gcols : Zt + g * gcols;
            const int64_t ldo = reset_after_ ? gu_ : zs;
            const float beta = reset_after_ ? 0.0f : 1.0f;
            gemm::Epilogue rb;
            if (reset_after_) rb.bias = rbias + g * gcols;
            if (groups == 1)
              mm_packed(nb, rcols, u_, hp, {U, gu_, 1}, UP, beta, out, ldo, rb);
            else
              mm(nb, gcols, u_, hp, {U + g * gcols, gu_, 1}, beta, out, ldo, rb);
          }
        }
        for (int64_t b = b0; b < b1; ++b) {
          if (fused_ && (mask == nullptr || mask[b * t_ + tt] != 0.0f)) {  // (bf16 lstm)
            fused_forward(a, b, tt, pt, first, nullptr, nullptr);
            continue;
          }
          if (gru_fused_ && (mask == nullptr || mask[b * t_ + tt] != 0.0f)) {
            const int64_t zo = b * zs + tt * gu_, ho = b * hs + tt * u_;
            const float* hp = first ? zeros_.data() : sc[kH] + b * hs + pt * u_;
            loops_->gru_fwd(u_, Z + zo, step + b * gu_, hp, sc[kA] + zo, sc[kRec] + ho,
                            sc[kH] + ho);
            continue;
          }
          step_forward(a, b, tt, pt, first, mask, mh, step, false);
        }
        if (cell_ == Cell::gru && !reset_after_) {  // (r h') Uh, then the candidate and h
          if (!first)
            mm(nb, u_, u_, {sc[kRec] + b0 * hs + tt * u_, hs, 1}, {U + 2 * u_, gu_, 1}, 1.0f,
               Zt + 2 * u_, zs);
          for (int64_t b = b0; b < b1; ++b)
            step_forward(a, b, tt, pt, first, mask, mh, step, true);
        }
      }
    });

    // The output rows.
    const int64_t orow = (rows_out_ + nstate_) * u_;
    const int64_t last = time_of(t_ - 1);
    for (int64_t b = 0; b < n; ++b) {
      float* y = a.y + b * (nstate_ ? orow : rows_out_ * u_);
      for (int64_t s = seqs_ ? 0 : t_ - 1; s < t_; ++s) {
        float* dst = y + (seqs_ ? out_row(s) : 0) * u_;
        if (zeroed(mask, b, time_of(s))) std::fill(dst, dst + u_, 0.0f);
        else std::memcpy(dst, sc[kH] + ri(n, b, time_of(s)) * u_, bytes(u_));
      }
      if (nstate_ >= 1)
        std::memcpy(y + rows_out_ * u_, sc[kH] + ri(n, b, last) * u_, bytes(u_));
      if (nstate_ == 2)
        std::memcpy(y + (rows_out_ + 1) * u_, sc[kC] + ri(n, b, last) * u_, bytes(u_));
    }
  }

  void backward(const BwdArgs& a) override {
    const int64_t n = a.n;
    float* const* sc = a.scratch;
    const float* W = a.param[0];
    const float* U = a.param[1];
    const float* mask = masked_ ? a.x[1] : nullptr;
    const int64_t zs = t_ * gu_;
    float* dZ = sc[kDZ];
    float* dZh = reset_after_ ? sc[kDZh] : dZ;  // the recurrent side's gate gradients
    float* dh = sc[kDh];
    std::fill(dh, dh + n * u_, 0.0f);
    float* UT = sc[kUT];  // U^T: the dh' GEMMs' B operand with unit column stride
    // dh' = dZ U^T at every step: U^T (its first k rows) packed once (simple and lstm with dx
    // take dh' from the [dx, dh'] GEMM below instead).
    const int64_t k = cell_ == Cell::gru && !reset_after_ ? 2 * u_ : gu_;
    float* UTP = align64(sc[kUTP]);
    const int64_t xg = xh_copies(a.training);  // per-gate masks: G A rows per (row, step)
    if (!(stacked_ && a.dx[0]) || xg > 1) {
      for (int64_t j = 0; j < u_; ++j)
        for (int64_t k2 = 0; k2 < gu_; ++k2) UT[k2 * u_ + j] = U[j * gu_ + k2];
      if (t_ > 1) pack_whole(k, u_, {UT, u_, 1}, UTP);
    }
    if (cell_ == Cell::lstm) std::fill(sc[kDc], sc[kDc] + n * u_, 0.0f);
    const int64_t orow = (rows_out_ + nstate_) * u_;
    const int64_t ystride = nstate_ ? orow : rows_out_ * u_;
    const bool drop_x = a.training && rate_x_ > 0, drop_h = a.training && rate_h_ > 0;
    const float* mh = drop_h ? sc[kMh] : nullptr;

    // simple and lstm: per step, while the step's gate gradients are in cache, their share
    // of [dW; db; dU] (added into the block's own partial sum) and, when dx is wanted, [dx,
    // dh'] = dZ [W^T, U^T] as one GEMM ([W^T, U^T] packed once); gru keeps dZ of every step
    // for its gradients after the loop.
    const bool want_g = stacked_ && (a.dparam[0] || a.dparam[1] || (use_bias_ && a.dparam[2]));
    // dx before any mask (per-gate masks: dx itself, through the masks step by step)
    float* dxs = a.dx[0] ? (drop_x && xg == 1 ? sc[kXd] : a.dx[0]) : nullptr;
    const bool with_dx = stacked_ && dxs != nullptr && xg == 1;
    const int64_t nc = f_ + u_;  // columns of [W^T, U^T]
    float* WUT = sc[kWUT];
    float* WUTP = align64(sc[kWUTP]);
    if (with_dx) {
      for (int64_t k2 = 0; k2 < gu_; ++k2) {
        for (int64_t f = 0; f < f_; ++f) WUT[k2 * nc + f] = W[f * gu_ + k2];
        for (int64_t j = 0; j < u_; ++j) WUT[k2 * nc + f_ + j] = U[j * gu_ + k2];
      }
      if (t_ > 1) gemm::pack_b_whole(gu_, nc, {WUT, nc, 1}, WUTP);
    }
    const int64_t xs = xg * k1_, gsize = k1_ * gu_;

    grad_blocks(n, [&](int p, int64_t b0, int64_t b1) {  // independent rows, as in forward
      const int64_t nb = b1 - b0;
      for (int64_t s = t_ - 1; s >= 0; --s) {
        const int64_t tt = time_of(s), pt = back_ ? tt + 1 : tt - 1;
        const bool first = s == 0;
        for (int64_t b = b0; b < b1; ++b) {  // gradients of the outputs read at this step
          float* d = dh + b * u_;
          const float* dy = a.dy + b * ystride;
          if ((seqs_ || s == t_ - 1) && !zeroed(mask, b, tt))
            add(d, dy + (seqs_ ? out_row(s) : 0) * u_, u_);
          if (s == t_ - 1 && nstate_ >= 1) add(d, dy + rows_out_ * u_, u_);
          if (s == t_ - 1 && nstate_ == 2)
            add(sc[kDc] + b * u_, dy + (rows_out_ + 1) * u_, u_);
          if (b + kPrefetchRows < b1) prefetch_row_backward(a, b + kPrefetchRows, tt, pt, first);
          step_backward(a, b, tt, pt, first, mask, mh, false);
        }
        if (cell_ == Cell::gru && !reset_after_) {
          // d(r h') = dzh Uh^T, then the reset gate's gradient and h''s share through r.
          mm(nb, u_, u_, {dZ + b0 * zs + tt * gu_ + 2 * u_, zs, 1}, {UT + 2 * u_ * u_, u_, 1},
             0.0f, sc[kTmp] + b0 * u_, u_);
          for (int64_t b = b0; b < b1; ++b) step_backward(a, b, tt, pt, first, mask, mh, true);
        }
        if (!stacked_ && use_bias_ && a.dparam[2]) {  // the block's bias sums, rows in cache
          float* gb = sc[kGB] + p * 2 * gu_;
          if (s == t_ - 1) std::fill(gb, gb + 2 * gu_, 0.0f);
          for (int64_t b = b0; b < b1; ++b) {
            add(gb, dZ + b * zs + tt * gu_, gu_);
            if (reset_after_) add(gb + gu_, dZh + b * zs + tt * gu_, gu_);
          }
        }
        if (stacked_) {
          const float* dzb = dZ + b0 * gu_;
          if (want_g) {  // per-gate masks: each gate's columns from its own A rows
            const float* xh = sc[kXH] + ri(n, b0, tt) * xs;
            const int64_t ng = gu_ / xg;
            // the first step's h' is zero: no share of dU (unless its rows start the sum)
            const int64_t m = first && s != t_ - 1 ? hoff_ : k1_;
            for (int64_t g = 0; g < xg; ++g)
              gemm::sgemm(m, ng, nb, 1.0f, {xh + g * k1_, 1, xs}, {dzb + g * ng, gu_, 1},
                          s == t_ - 1 ? 0.0f : 1.0f, sc[kG] + p * gsize + g * ng, gu_,
                          gemm::Epilogue{}, 1);
          }
          if (xg > 1) {  // per-gate masks: dx and dh' gate by gate, each through its masks
            gate_dx_dh(a, b0, b1, tt, first, xg);
            if (first) break;
            continue;
          }
          if (with_dx) {
            float* out = sc[kDXH] + b0 * nc;  // [dx, dh'] of the block's rows
            if (first)  // h' is the zero state: dx alone
              gemm::sgemm(nb, f_, gu_, 1.0f, {dzb, gu_, 1}, {WUT, nc, 1}, 0.0f, out, nc,
                          gemm::Epilogue{}, 1);
            else
              gemm::sgemm_prepacked_b(nb, nc, gu_, 1.0f, {dzb, gu_, 1}, {WUT, nc, 1}, WUTP,
                                      0.0f, out, nc, gemm::Epilogue{}, 1);
            for (int64_t b = b0; b < b1; ++b) {
              const float* o = out + (b - b0) * nc;
              float* dxr = dxs + (b * t_ + tt) * f_;
              if (a.dx_acc[0] && !drop_x) add(dxr, o, f_);
              else std::memcpy(dxr, o, bytes(f_));
              if (first) continue;
              float* d = dh + b * u_;
              if (drop_h) {  // through the mask of h'
                for (int64_t j = 0; j < u_; ++j) d[j] += o[f_ + j] * mh[b * u_ + j];
              } else {
                add(d, o + f_, u_);
              }
            }
            if (first) break;
            continue;
          }
        }
        if (first) break;  // h' of the first step is the zero state: its gradient is unused
        const gemm::MatrixView dzt = stacked_ ? gemm::MatrixView{dZ + b0 * gu_, gu_, 1}
                                              : gemm::MatrixView{dZh + b0 * zs + tt * gu_, zs, 1};
        if (!drop_h) {
          mm_packed(nb, u_, k, dzt, {UT, u_, 1}, UTP, 1.0f, dh + b0 * u_, u_);
        } else if (xg == 1) {  // through the mask of h'
          float* dhd = sc[kHd];
          mm_packed(nb, u_, k, dzt, {UT, u_, 1}, UTP, 0.0f, dhd + b0 * u_, u_);
          for (int64_t i = b0 * u_; i < b1 * u_; ++i) dh[i] += dhd[i] * mh[i];
        } else {  // gru, per-gate masks: gate by gate, each through its own mask of h'
          float* dhd = sc[kHd] + b0 * u_;
          for (int64_t g = 0; g < k / u_; ++g) {
            mm(nb, u_, u_, {dzt.data + g * u_, dzt.rs, 1}, {UT + g * u_ * u_, u_, 1}, 0.0f,
               dhd, u_);
            for (int64_t b = b0; b < b1; ++b) {
              const float* m = mh + (b * xg + g) * u_;
              const float* o = dhd + (b - b0) * u_;
              float* d = dh + b * u_;
              for (int64_t j = 0; j < u_; ++j) d[j] += o[j] * m[j];
            }
          }
        }
      }
    });

    const int64_t rows_all = n * t_;
    if (stacked_) {
      if (want_g) stacked_grads(a, grad_block_count(n));
    } else {
      unstacked_grads(a, dZ, dZh, drop_x, mh);
    }
    if (float* dx = a.dx[0]) {
      if (stacked_) {
        if (drop_x && xg == 1) {  // through the input mask
          const float* mx = sc[kMx];
          for (int64_t b = 0; b < n; ++b)
            for (int64_t i = b * t_ * f_; i < (b + 1) * t_ * f_; ++i) {
              const float v = dxs[i] * mx[b * f_ + i % f_];
              dx[i] = a.dx_acc[0] ? dx[i] + v : v;
            }
        }
      } else if (!drop_x) {
        mm(rows_all, f_, gu_, {dZ, gu_, 1}, {W, 1, gu_}, a.dx_acc[0] ? 1.0f : 0.0f, dx, f_);
      } else {  // through the input mask (the dropped input is no longer needed); per-gate
        // masks: the gates' shares in gate order, each through its own mask
        float* tmp = sc[kXd];
        const int64_t groups = xg, gcols = gu_ / groups;
        for (int64_t g = 0; g < groups; ++g) {
          mm(rows_all, f_, gcols, {dZ + g * gcols, gu_, 1}, {W + g * gcols, 1, gu_}, 0.0f, tmp,
             f_);
          const bool set = g == 0 && !a.dx_acc[0];
          for (int64_t b = 0; b < n; ++b) {
            const float* m = sc[kMx] + (b * xg + g) * f_;
            for (int64_t i = b * t_ * f_; i < (b + 1) * t_ * f_; ++i) {
              const float v = tmp[i] * m[i % f_];
              dx[i] = set ? v : dx[i] + v;
            }
          }
        }
      }
    }
   if (masked_) ops::no_gradient(a.dx[1], n * t_, a.dx_acc[1] != 0);
  }

 private:
  static size_t bytes(int64_t k) { return size_t(k) * sizeof(float); }
  void add(float* d, const float* s, int64_t k) const { loops_->add(d, s, k); }
  int64_t time_of(int64_t s) const { return back_ ? t_ - 1 - s : s; }
  // The output of a masked step is zero (zero_output_for_mask) rather than the carried h.
  bool zeroed(const float* mask, int64_t b, int64_t tt) const {
    return zero_masked_ && mask != nullptr && mask[b * t_ + tt] == 0.0f;
  }
  // The output row of processing step s in a sequence output.
  int64_t out_row(int64_t s) const { return time_order_ ? time_of(s) : s; }

  // body(b0, b1) on blocks of batch rows cut on the GEMM's MR boundaries, one per thread when
  // the recurrence is big enough to pay for a region; rows are independent, so the cut
  // changes nothing. The stacked path's blocks never straddle a backward block (a thread's
  // share that does runs as two pieces, one after the other): a step's rows of a block are
  // adjacent only inside its backward block (see ri).
  template <class F>
  void row_blocks(int64_t n, F&& body) const {
    const int64_t mr = block_mr();
    const int64_t np = (n + mr - 1) / mr;
    const int64_t split = stacked_ ? block_split(n) : n;
    const auto pieces = [&](int64_t b0, int64_t b1) {
      if (b0 < split && split < b1) {
        body(b0, split);
        body(split, b1);
      } else if (b0 < b1) {
        body(b0, b1);
      }
    };
    int nt = n * t_ * gu_ * u_ >= gemm::kParallelThreshold ? parallel::available_threads() : 1;
    if (nt > np) nt = int(np);
    if (nt <= 1) {
      pieces(int64_t(0), n);
      return;
    }
    parallel::run(nt, [&](int t) {
      pieces(np * t / nt * mr, std::min(n, np * (t + 1) / nt * mr));
    });
  }

  // The row of (batch row b, time index tt) in the buffers with a row per step (kZ, kA, kH,
  // kC, kTC, and kXH with xg A rows per step). The stacked path keeps each backward block
  // time major: block [B0, B1) holds its rows of the first time index, then those of the
  // next, so the rows one step's GEMMs and row passes touch are one contiguous run (with
  // every row of a sequence together instead, a step's rows lay T rows apart, and the row
  // passes and the packing of kXH for dW waited on memory at the start of every row). The
  // others keep each sequence's rows together, the input GEMM's (n T, F) order.
  int64_t ri(int64_t n, int64_t b, int64_t tt) const {
    if (!stacked_) return b * t_ + tt;
    const int64_t split = block_split(n);
    return b < split ? tt * split + b : split * t_ + tt * (n - split) + (b - split);
  }
  // The first row of the second backward block (n with one block).
  int64_t block_split(int64_t n) const {
    static_assert(kGradBlocks == 2, "ri and row_blocks know of two blocks");
    const int64_t mr = block_mr(), np = (n + mr - 1) / mr;
    return grad_block_count(n) == 2 ? std::min(n, np / 2 * mr) : n;
  }

  // Per-gate masks, one step's rows [b0, b1): dx += sum over gates g of (dZ_g W_g^T) mx_g
  // and, past the first step, dh += sum of (dZ_g U_g^T) mh_g, in gate order (kDXH holds
  // one gate's [dx, dh'] at a time).
  void gate_dx_dh(const BwdArgs& a, int64_t b0, int64_t b1, int64_t tt, bool first,
                  int64_t xg) const {
    float* const* sc = a.scratch;
    const int64_t nb = b1 - b0, nc = f_ + u_;
    const float* dzb = sc[kDZ] + b0 * gu_;
    const float* mx = a.training && rate_x_ > 0 ? sc[kMx] : nullptr;
    const float* mh = sc[kMh];
    float* out = sc[kDXH] + b0 * nc;
    for (int64_t g = 0; g < xg; ++g) {
      const gemm::MatrixView dzg{dzb + g * u_, gu_, 1};
      if (float* dx = a.dx[0]) {
        gemm::sgemm(nb, f_, u_, 1.0f, dzg, {a.param[0] + g * u_, 1, gu_}, 0.0f, out, nc,
                    gemm::Epilogue{}, 1);
        for (int64_t b = b0; b < b1; ++b) {
          const float* o = out + (b - b0) * nc;
          const float* m = mx ? mx + (b * xg + g) * f_ : nullptr;
          float* d = dx + (b * t_ + tt) * f_;
          const bool set = g == 0 && !a.dx_acc[0];
          for (int64_t j = 0; j < f_; ++j) {
            const float v = m ? o[j] * m[j] : o[j];
            d[j] = set ? v : d[j] + v;
          }
        }
      }
      if (first) continue;
      gemm::sgemm(nb, u_, u_, 1.0f, dzg, {sc[kUT] + g * u_ * u_, u_, 1}, 0.0f, out + f_, nc,
                  gemm::Epilogue{}, 1);
      for (int64_t b = b0; b < b1; ++b) {
        const float* o = out + (b - b0) * nc + f_;
        const float* m = mh + (b * xg + g) * u_;
        float* d = sc[kDh] + b * u_;
        for (int64_t j = 0; j < u_; ++j) d[j] += o[j] * m[j];
      }
    }
  }

  // The backward's blocks of batch rows: a fixed cut (by n alone, on MR boundaries, at most
  // kGradBlocks) because each block sums its own share of the weight gradients; threads take
  // whole blocks, so the sums and their order do not depend on the thread count.
  static constexpr int kGradBlocks = 2;
  int grad_block_count(int64_t n) const {
    const int64_t mr = block_mr();
    return int(std::min<int64_t>(kGradBlocks, (n + mr - 1) / mr));
  }
  template <class F>
  void grad_blocks(int64_t n, F&& body) const {
    const int64_t mr = block_mr();
    const int64_t np = (n + mr - 1) / mr;
    const int nb = grad_block_count(n);
    const auto block = [&](int p) {
      const int64_t b0 = np * p / nb * mr, b1 = std::min(n, np * (p + 1) / nb * mr);
      if (b0 < b1) body(p, b0, b1);
    };
    int nt = n * t_ * gu_ * u_ >= gemm::kParallelThreshold ? parallel::available_threads() : 1;
    nt = std::min(nt, nb);
    if (nt <= 1) {
      for (int p = 0; p < nb; ++p) block(p);
      return;
    }
    parallel::run(nt, [&](int t) {
      for (int p = t; p < nb; p += nt) block(p);
    });
  }

  // lstm with sigmoid gates and tanh, a kept step: the activations, the cell update and h
  // (into kH and, when hn is not null, the next step's GEMM row, through the mask row mhb)
  // in one pass over the row.
  void fused_forward(const FwdArgs& a, int64_t b, int64_t tt, int64_t pt, bool first, float* hn,
                     const float* mhb) const {
    float* const* sc = a.scratch;
    const int64_t r = ri(a.n, b, tt), ho = r * u_;
    float* g = sc[kA] + r * gu_;
    const float* cp = first ? zeros_.data() : sc[kC] + ri(a.n, b, pt) * u_;
    loops_->fused_fwd(u_, g, g + u_, g + 2 * u_, g + 3 * u_, cp, sc[kC] + ho, sc[kTC] + ho,
                      sc[kH] + ho, hn, mhb);
  }

  // The rows a step touches for batch row b are short runs in several buffers (far apart in
  // the unstacked layout, one after the other per buffer in the stacked one); fetching the
  // next rows' lines while this row computes hides the start of each stream. (Stacked,
  // without them: fused_bwd and its prefetch stalls 670 -> 813 perf samples.)
  template <int RW>
  static void prefetch(const float* p, int64_t k) {
    for (int64_t i = 0; i < k; i += 16) __builtin_prefetch(p + i, RW, 3);
  }
  void prefetch_row_forward(const FwdArgs& a, int64_t b, int64_t tt, int64_t s,
                            int64_t xg) const {
    if (cell_ != Cell::lstm) return;
    float* const* sc = a.scratch;
    const int64_t ho = ri(a.n, b, tt) * u_;
    prefetch<1>(sc[kC] + ho, u_);
    prefetch<1>(sc[kTC] + ho, u_);
    prefetch<1>(sc[kH] + ho, u_);
    if (s + 1 < t_) prefetch<1>(sc[kXH] + ri(a.n, b, time_of(s + 1)) * xg * k1_ + hoff_, u_);
  }
  void prefetch_row_backward(const BwdArgs& a, int64_t b, int64_t tt, int64_t pt,
                             bool first) const {
    if (cell_ != Cell::lstm) return;
    float* const* sc = a.scratch;
    const int64_t r = ri(a.n, b, tt), zo = r * gu_, ho = r * u_;
    prefetch<0>(sc[kA] + zo, gu_);
    prefetch<1>(sc[kDZ] + (stacked_ ? b * gu_ : zo), gu_);
    prefetch<0>(sc[kTC] + ho, u_);
    if (!first) prefetch<0>(sc[kC] + ri(a.n, b, pt) * u_, u_);
  }

  // One row's gate activations and state update at time index tt (h' at pt unless first).
  // For gru without reset_after the step runs in two phases around the (r h')Uh GEMM:
  // phase 0 activates z and r and forms r h'; phase 1 the candidate and h.
  void step_forward(const FwdArgs& a, int64_t b, int64_t tt, int64_t pt, bool first,
                    const float* mask, const float* mh, const float* step,
                    bool phase1) const {
    float* const* sc = a.scratch;
    const int64_t r = ri(a.n, b, tt), zo = r * gu_, ho = r * u_;
    float* z = (gates_in_a_ ? sc[kA] : sc[kZ]) + zo;  // the same as g when gates_in_a_
    float* g = sc[kA] + zo;
    float* h = sc[kH] + ho;
    const float* hp = first ? zeros_.data() : sc[kH] + ri(a.n, b, pt) * u_;
    const bool keep = mask == nullptr || mask[b * t_ + tt] != 0.0f;
    const int64_t u = u_;
    switch (cell_) {
      case Cell::simple:
        if (z != g) std::memcpy(g, z, bytes(u));
        act_->forward(g, u, act_p_.data());
        std::memcpy(h, keep ? g : hp, bytes(u));
        break;
      case Cell::lstm: {
        float* c = sc[kC] + ho;
        const float* cp = first ? zeros_.data() : sc[kC] + ri(a.n, b, pt) * u_;
        if (z != g) std::memcpy(g, z, bytes(4 * u));
        ract_->forward(g, 2 * u, ract_p_.data());
        act_->forward(g + 2 * u, u, act_p_.data());
        ract_->forward(g + 3 * u, u, ract_p_.data());
        if (!keep) {
          std::memcpy(c, cp, bytes(u));
          std::memcpy(h, hp, bytes(u));
          break;
        }
        float* tc = sc[kTC] + ho;
        loops_->cell(u, g, g + u, g + 2 * u, cp, c, tc);
        act_->forward(tc, u, act_p_.data());
        loops_->out(u, g + 3 * u, tc, h);
        break;
      }
      case Cell::gru: {
        float* rec = sc[kRec] + ho;
        if (reset_after_) {
          const float* st = step + b * gu_;
          for (int64_t j = 0; j < 2 * u; ++j) z[j] += st[j];
          std::memcpy(g, z, bytes(2 * u));
          ract_->forward(g, 2 * u, ract_p_.data());
          std::memcpy(rec, st + 2 * u, bytes(u));
          for (int64_t j = 0; j < u; ++j) z[2 * u + j] += g[u + j] * rec[j];
        } else if (!phase1) {
          std::memcpy(g, z, bytes(2 * u));
          ract_->forward(g, 2 * u, ract_p_.data());
          for (int64_t j = 0; j < u; ++j) rec[j] = g[u + j] * hp[j];
          if (mh) {  // (the candidate gate's mask of h')
            const float* m = state_mask_of(mh, b, 2, a.training);
            for (int64_t j = 0; j < u; ++j) rec[j] *= m[j];
          }
          return;
        }
        std::memcpy(g + 2 * u, z + 2 * u, bytes(u));
        act_->forward(g + 2 * u, u, act_p_.data());
        if (!keep) {
          std::memcpy(h, hp, bytes(u));
          break;
        }
        for (int64_t j = 0; j < u; ++j)
          h[j] = g[j] * hp[j] + (1.0f - g[j]) * g[2 * u + j];
        break;
      }
    }
  }

  // One row's step of backpropagation through time: dh (and dc) of this step in, the gate
  // gradients out, dh left holding the part of dh' that does not go through U (the GEMM
  // after this adds the rest). gru without reset_after: phase 0 everything but the reset
  // gate, phase 1 (after d(r h') is in kTmp) the reset gate.
  void step_backward(const BwdArgs& a, int64_t b, int64_t tt, int64_t pt, bool first,
                     const float* mask, const float* mh, bool phase1) const {
    float* const* sc = a.scratch;
    const int64_t r = ri(a.n, b, tt), zo = r * gu_, ho = r * u_;
    const float* z = (gates_in_a_ ? sc[kA] : sc[kZ]) + zo;  // unread by sigmoid and tanh
    const float* g = sc[kA] + zo;
    float* dz = sc[kDZ] + (stacked_ ? b * gu_ : zo);
    float* dh = sc[kDh] + b * u_;
    const float* hp = first ? zeros_.data() : sc[kH] + ri(a.n, b, pt) * u_;
    const bool keep = mask == nullptr || mask[b * t_ + tt] != 0.0f;
    const int64_t u = u_;
    if (!keep) {  // the state passed through unchanged: dh (and dc) go on as they are
      if (phase1) return;
      std::fill(dz, dz + gu_, 0.0f);
      if (reset_after_) std::fill(sc[kDZh] + zo, sc[kDZh] + zo + gu_, 0.0f);
      return;
    }
    switch (cell_) {
      case Cell::simple:
        act_->backward(z, g, dh, dz, u, act_p_.data());
        std::fill(dh, dh + u, 0.0f);
        break;
      case Cell::lstm: {
        const float* c = sc[kC] + ho;
        const float* cp = first ? zeros_.data() : sc[kC] + ri(a.n, b, pt) * u_;
        float* dc = sc[kDc] + b * u_;
        const float* tc = sc[kTC] + ho;
        if (fused_) {
          loops_->fused_bwd(u, g, g + u, g + 2 * u, g + 3 * u, tc, cp, dh, dc, dz, dz + u,
                            dz + 2 * u, dz + 3 * u);
          break;
        }
        loops_->dh_to_gates(u, dh, tc, g + 3 * u, dz + 3 * u, dz + 2 * u);
        act_->backward(c, tc, dz + 2 * u, dz + 2 * u, u, act_p_.data());
        loops_->dc_to_gates(u, g, g + u, g + 2 * u, cp, dz, dz + u, dz + 2 * u, dc, dh);
        ract_->backward(z, g, dz, dz, 2 * u, ract_p_.data());
        act_->backward(z + 2 * u, g + 2 * u, dz + 2 * u, dz + 2 * u, u, act_p_.data());
        ract_->backward(z + 3 * u, g + 3 * u, dz + 3 * u, dz + 3 * u, u, ract_p_.data());
        break;
      }
      case Cell::gru: {
        const float* rec = sc[kRec] + ho;
        if (gru_fused_) {
          loops_->gru_bwd(u, g, hp, rec, dh, dz, sc[kDZh] + zo);
          break;
        }
        if (phase1) {  // not reset_after: d r = d(r h') h', dh' += d(r h') r
          const float* drh = sc[kTmp] + b * u_;
          const float* mrow = mh ? state_mask_of(mh, b, 2, a.training) : nullptr;
          for (int64_t j = 0; j < u; ++j) {
            const float m = mrow ? mrow[j] : 1.0f;
            dz[u + j] = drh[j] * hp[j] * m;
            dh[j] += drh[j] * g[u + j] * m;
          }
          ract_->backward(z + u, g + u, dz + u, dz + u, u, ract_p_.data());
          return;
        }
        for (int64_t j = 0; j < u; ++j) {
          dz[j] = dh[j] * (hp[j] - g[2 * u + j]);
          dz[2 * u + j] = dh[j] * (1.0f - g[j]);
          dh[j] *= g[j];
        }
        act_->backward(z + 2 * u, g + 2 * u, dz + 2 * u, dz + 2 * u, u, act_p_.data());
        if (reset_after_) {
          float* dzh = sc[kDZh] + zo;
          for (int64_t j = 0; j < u; ++j) {
            dz[u + j] = dz[2 * u + j] * rec[j];
            dzh[2 * u + j] = dz[2 * u + j] * g[u + j];
          }
          ract_->backward(z, g, dz, dz, 2 * u, ract_p_.data());
          std::memcpy(dzh, dz, bytes(2 * u));
        } else {
          ract_->backward(z, g, dz, dz, u, ract_p_.data());
        }
        break;
      }
    }
  }

  // simple and lstm: [W; b; U] stacked into kWcat and packed into kWP (returned), [W; b]
  // alone into kWP0. Per-gate masks (xg = G): each gate's columns of [W; b; U] are packed on
  // their own (the pack of gate g at packed_gate(WP, g)).
  const float* stack_weights(const FwdArgs& a, const float* bias, int64_t xg) const {
    float* const* sc = a.scratch;
    float* Wc = sc[kWcat];
    std::memcpy(Wc, a.param[0], bytes(f_ * gu_));
    if (bias) std::memcpy(Wc + f_ * gu_, bias, bytes(gu_));
    std::memcpy(Wc + hoff_ * gu_, a.param[1], bytes(u_ * gu_));
    float* WP = align64(sc[kWP]);
    if (xg == 1) {
      gemm::pack_b_whole(k1_, gu_, {Wc, gu_, 1}, WP);
      gemm::pack_b_whole(hoff_, gu_, {Wc, gu_, 1}, align64(sc[kWP0]));
    } else {
      for (int64_t g = 0; g < xg; ++g)
        gemm::pack_b_whole(k1_, u_, {Wc + g * u_, gu_, 1}, packed_gate(WP, g));
    }
    return WP;
  }
  // Per (row, step) of rows [b0, b1) the A row [x, 1, h'] of kXH (XH) with its x (after
  // dropout) and 1 filled and h' zero for the first step; the time loop writes each later
  // step's h' as it goes. Per-gate masks (xg = G): one such A row per gate, with x through
  // that gate's input mask mx (when not null). Run by each thread on its own rows, just
  // before its recurrence (a serial pass over every row's T A rows kept the other thread
  // waiting).
  void stack_rows(const float* X, int64_t n, int64_t b0, int64_t b1, int64_t xg,
                  const float* mx, float* XH) const {
    const int64_t t0 = time_of(0);
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t t = 0; t < t_; ++t)
        for (int64_t g = 0; g < xg; ++g) {
          float* row = XH + (ri(n, b, t) * xg + g) * k1_;
          const float* x = X + (b * t_ + t) * f_;
          if (mx == nullptr) {
            std::memcpy(row, x, bytes(f_));
          } else {
            const float* m = mx + (b * xg + g) * f_;
            for (int64_t j = 0; j < f_; ++j) row[j] = x[j] * m[j];
          }
          if (use_bias_) row[f_] = 1.0f;
          if (t == t0) std::fill(row + hoff_, row + k1_, 0.0f);
        }
  }
  // Gate g's own pack of [W; b; U] (per-gate masks), each on a 64-byte boundary.
  int64_t gate_pack_stride() const { return gemm::packed_b_size(k1_, u_) + kAlignPad; }
  float* packed_gate(float* WP, int64_t g) const { return align64(WP + g * gate_pack_stride()); }
  const float* packed_gate(const float* WP, int64_t g) const {
    return packed_gate(const_cast<float*>(WP), g);
  }
  // A rows per (row, step) in kXH: one per gate with per-gate masks (training only); the
  // number of input and of recurrent masks per row.
  int64_t xh_copies(bool training) const { return training && pergate_ ? gates_ : 1; }
  // Row b's mask of h' for gate g (the one mask of every gate unless per-gate masks).
  const float* state_mask_of(const float* mh, int64_t b, int64_t g, bool training) const {
    const int64_t xg = xh_copies(training);
    return mh + (b * xg + (xg > 1 ? g : 0)) * u_;
  }
  // x (n T, F) through row b's input mask for gate g (xg masks per row) into out.
  void gate_input(const float* X, const float* mx, int64_t g, int64_t xg, int64_t n,
                  float* out) const {
    for (int64_t b = 0; b < n; ++b) {
      const float* m = mx + (b * xg + g) * f_;
      for (int64_t t = 0; t < t_; ++t) {
        const int64_t r = (b * t_ + t) * f_;
        for (int64_t f = 0; f < f_; ++f) out[r + f] = X[r + f] * m[f];
      }
    }
  }
  // gru: h' at time index pt of rows [b0, b1) through gate g's mask of h' (xg masks per
  // row) into out (row stride u).
  void masked_state(float* const* sc, int64_t b0, int64_t b1, int64_t pt, int64_t g,
                    int64_t xg, float* out) const {
    for (int64_t b = b0; b < b1; ++b) {
      const float* h = sc[kH] + b * hrow_ + pt * u_;
      const float* m = sc[kMh] + (b * xg + g) * u_;
      float* o = out + (b - b0) * u_;
      for (int64_t j = 0; j < u_; ++j) o[j] = h[j] * m[j];
    }
  }

  // simple and lstm: [dW; db; dU] = [X, 1, H']^T dZ, summed per block of rows over the
  // steps during the time loop: the blocks' partial sums added in block order, then each
  // part stored or accumulated into its parameter's gradient.
  void stacked_grads(const BwdArgs& a, int blocks) const {
    float* const* sc = a.scratch;
    const bool want_b = use_bias_ && a.dparam[2];
    float* G = sc[kG];
    if (blocks == 0) std::fill(G, G + k1_ * gu_, 0.0f);  // no rows: no step wrote a sum
    for (int p = 1; p < blocks; ++p) add(G, G + p * k1_ * gu_, k1_ * gu_);
    store_grad(a, 0, G, f_ * gu_);
    store_grad(a, 1, G + hoff_ * gu_, u_ * gu_);
    if (want_b) store_grad(a, 2, G + f_ * gu_, gu_);
  }

  // The gradient of parameter k (when wanted) set or accumulated from g.
  void store_grad(const BwdArgs& a, int k, const float* g, int64_t count) const {
    float* d = a.dparam[k];
    if (!d) return;
    if (a.dparam_acc[k]) add(d, g, count);
    else std::memcpy(d, g, bytes(count));
  }

  // gru (and bf16 simple, lstm): dW = X^T dZ, dU from h' (and r h' for a gru without
  // reset_after), db column sums.
  void unstacked_grads(const BwdArgs& a, const float* dZ, const float* dZh, bool drop_x,
                 const float* mh) const {
    float* const* sc = a.scratch;
    const int64_t n = a.n, hs = t_ * u_, rows_all = n * t_;
    const int64_t xg = xh_copies(a.training);  // per-gate masks: gate by gate
    float* Hp = sc[kHprev];  // h' of every step as a matrix (zero for the first step)
    if (cell_ != Cell::gru && xg == 1 && a.dparam[0] && a.dparam[1]) {
      // simple, lstm (dZh is dZ): [dW; dU] = [X, H']^T dZ as ONE GEMM, so that dZ, the
      // largest operand, is packed once; rows [x, h'] (through their masks) built here.
      const int64_t w = f_ + u_;
      const float* X = drop_x ? sc[kXd] : a.x[0];
      for (int64_t b = 0; b < n; ++b)
        for (int64_t s = 0; s < t_; ++s) {
          const int64_t tt = time_of(s), pt = back_ ? tt + 1 : tt - 1;
          float* row = Hp + (b * t_ + tt) * w;
          std::memcpy(row, X + (b * t_ + tt) * f_, bytes(f_));
          float* dst = row + f_;
          if (s == 0) std::fill(dst, dst + u_, 0.0f);
          else std::memcpy(dst, sc[kH] + b * hs + pt * u_, bytes(u_));
          if (mh)
            for (int64_t j = 0; j < u_; ++j) dst[j] *= mh[b * u_ + j];
        }
      float* G = sc[kG];
      mm(w, gu_, rows_all, {Hp, 1, w}, {dZ, gu_, 1}, 0.0f, G, gu_);
      store_grad(a, 0, G, f_ * gu_);
      store_grad(a, 1, G + f_ * gu_, u_ * gu_);
    } else {
      weight_grads(a, dZ, dZh, drop_x, mh);
    }
    if (use_bias_ && a.dparam[2]) {  // the row blocks' sums (taken in the time loop), in order
      float* G = sc[kGB];
      const int blocks = grad_block_count(n);
      if (blocks == 0) std::fill(G, G + 2 * gu_, 0.0f);  // no rows: no block wrote a sum
      for (int p = 1; p < blocks; ++p) add(G, G + p * 2 * gu_, 2 * gu_);
      store_grad(a, 2, G, reset_after_ ? 2 * gu_ : gu_);
    }
  }

  // unstacked_grads' dW and dU one by one (and gate by gate with per-gate masks).
  void weight_grads(const BwdArgs& a, const float* dZ, const float* dZh, bool drop_x,
                    const float* mh) const {
    float* const* sc = a.scratch;
    const int64_t n = a.n, hs = t_ * u_, rows_all = n * t_;
    const int64_t xg = xh_copies(a.training);
    float* Hp = sc[kHprev];
    const auto stack_states = [&](int64_t g) {  // through gate g's mask of h', if any
      for (int64_t b = 0; b < n; ++b)
        for (int64_t s = 0; s < t_; ++s) {
          const int64_t tt = time_of(s), pt = back_ ? tt + 1 : tt - 1;
          float* dst = Hp + b * hs + tt * u_;
          if (s == 0) std::fill(dst, dst + u_, 0.0f);
          else std::memcpy(dst, sc[kH] + b * hs + pt * u_, bytes(u_));
          if (mh) {
            const float* m = state_mask_of(mh, b, g, a.training);
            for (int64_t j = 0; j < u_; ++j) dst[j] *= m[j];
          }
        }
    };
    if (float* dW = a.dparam[0]) {
      const float beta = a.dparam_acc[0] ? 1.0f : 0.0f;
      if (drop_x && xg > 1) {  // each gate's columns from x through its own mask
        for (int64_t g = 0; g < xg; ++g) {
          gate_input(a.x[0], sc[kMx], g, xg, n, sc[kXd]);
          mm(f_, u_, rows_all, {sc[kXd], 1, f_}, {dZ + g * u_, gu_, 1}, beta, dW + g * u_,
             gu_);
        }
      } else {
        mm(f_, gu_, rows_all, {drop_x ? sc[kXd] : a.x[0], 1, f_}, {dZ, gu_, 1}, beta, dW, gu_);
      }
    }
    if (float* dU = a.dparam[1]) {
      const float beta = a.dparam_acc[1] ? 1.0f : 0.0f;
      // the columns h' reaches directly (all but the candidate's without reset_after), in
      // groups of one gate with per-gate masks, else all at once
      const int64_t cols = gru_split() ? 2 * u_ : gu_;
      const int64_t groups = xg > 1 ? cols / u_ : 1, gcols = cols / groups;
      for (int64_t g = 0; g < groups; ++g) {
        stack_states(g);
        mm(u_, gcols, rows_all, {Hp, 1, u_}, {dZh + g * gcols, gu_, 1}, beta, dU + g * gcols,
           gu_);
      }
      if (gru_split())  // the candidate's from r h' (through its mask)
        mm(u_, u_, rows_all, {sc[kRec], 1, u_}, {dZ + 2 * u_, gu_, 1}, beta, dU + 2 * u_, gu_);
    }
  }

  // Row blocks are cut on the register block of the GEMM the steps run on.
  int64_t block_mr() const {
    return bf16_ ? gemm::active_sb_kernel().mr : gemm::active_kernel().mr;
  }
  // A gru without reset_after: its candidate's recurrent product is (r h') Uh, apart.
  bool gru_split() const { return cell_ == Cell::gru && !reset_after_; }
  // C = A B + beta C (+ epilogue) on the float32 GEMM, or on the bf16 GEMM (operands
  // rounded to bf16, float32 sums) under compute_dtype bfloat16.
  void mm(int64_t m, int64_t n, int64_t k, gemm::MatrixView x, gemm::MatrixView w, float beta,
          float* c, int64_t ldc, const gemm::Epilogue& ep = gemm::Epilogue{}) const {
    if (bf16_) gemm::sbgemm(m, n, k, x, w, beta, c, ldc, ep);
    else gemm::sgemm(m, n, k, 1.0f, x, w, beta, c, ldc, ep);
  }
  // The same with B packed once by pack_whole (bitwise mm's result): a recurrent kernel is
  // multiplied at every step, and rounding and packing it each time costs a good share of a
  // step's small product.
  void mm_packed(int64_t m, int64_t n, int64_t k, gemm::MatrixView x, gemm::MatrixView w,
                 const float* packed, float beta, float* c, int64_t ldc,
                 const gemm::Epilogue& ep = gemm::Epilogue{}) const {
    if (bf16_) gemm::sbgemm_prepacked_b(m, n, k, x, packed, beta, c, ldc, ep);
    else gemm::sgemm_prepacked_b(m, n, k, 1.0f, x, w, packed, beta, c, ldc, ep);
  }
  // Floats of a packed B (k x n) for mm_packed, and the packing, on the GEMM mm uses.
  int64_t packed_size(int64_t k, int64_t n) const {
    return bf16_ ? (gemm::sb_packed_b_bytes(k, n) + 3) / 4 : gemm::packed_b_size(k, n);
  }
  void pack_whole(int64_t k, int64_t n, gemm::MatrixView b, float* packed) const {
    if (bf16_) gemm::sb_pack_b_whole(k, n, b, packed);
    else gemm::pack_b_whole(k, n, b, packed);
  }

  Cell cell_ = Cell::lstm;
  int64_t gates_ = 4, u_ = 1, t_ = 1, f_ = 1, gu_ = 4, rows_out_ = 1, nstate_ = 0;
  bool use_bias_ = true, seqs_ = false, state_ = false, back_ = false, reset_after_ = false;
  bool masked_ = false, time_order_ = false, zero_masked_ = false;
  bool bf16_ = false;    // compute_dtype bfloat16: every product on the bf16 GEMM
  bool stacked_ = true;  // simple, lstm (float32): z = [x, 1, h'] [W; b; U] per step
  int64_t k1_ = 1;       // that product's depth F + u (+ 1 with a bias)
  int64_t hoff_ = 1;     // where h' starts in its A row [x, 1, h'] (F, or F + 1 with a bias)
  int64_t zrow_ = 1, hrow_ = 1;  // per-row strides of kZ and kA, of kH, kC and kTC
  bool gates_in_a_ = false;  // no kZ: the step's GEMM writes kA (see configure)
  static constexpr int64_t kPrefetchRows = 2;  // rows ahead whose lines are prefetched
  bool pergate_ = false;     // lstm, gru with recurrent_dropout: one x and h' mask per gate
  bool gru_fused_ = false;   // gru, reset_after, sigmoid and tanh: LstmLoops::gru_fwd, _bwd
  bool fused_ = false;       // lstm, sigmoid and tanh: LstmLoops::fused_fwd / fused_bwd
  double rate_x_ = 0.0, rate_h_ = 0.0;
  uint64_t seed_ = 0;
  const ActivationInfo* act_ = nullptr;
  const ActivationInfo* ract_ = nullptr;
  const LstmLoops* loops_ = &lstm_loops();  // the element-wise loops of the active ISA
  std::vector<float> act_p_, ract_p_, zeros_, zero_bias_;
};

}  // namespace
}  // namespace pynn::nn

PYNN_REGISTER_OP("rnn", pynn::nn::RnnOp)

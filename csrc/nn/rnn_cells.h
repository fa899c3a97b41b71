// The LSTM's element-wise loops of the rnn op (csrc/nn/ops/rnn.cpp), compiled once per ISA
// (rnn_cells.cpp portable, rnn_cells_avx2.cpp, rnn_cells_avx512.cpp, each from the bodies in
// rnn_cells_impl.h) and picked by pynn::active_arch(), like the GEMM and activation kernels.
//
// Invariants: every function maps element j of its rows independently (any u >= 0; the rows
// of one call never overlap each other); the arithmetic per element is the same on every ISA
// up to the contraction of a * b + c into one FMA where the ISA has it.
#pragma once
#include <cstdint>

namespace pynn::nn {

struct LstmLoops {
  // c = f c' + i a(zc), and a copy of c in tc (for a(c) applied in place).
  void (*cell)(int64_t u, const float* gi, const float* gf, const float* gc, const float* cp,
               float* c, float* tc);
  // h = o a(c).
  void (*out)(int64_t u, const float* go, const float* tc, float* h);
  // dh into d o (times a(c)) and d a(c) (times o).
  void (*dh_to_gates)(int64_t u, const float* dh, const float* tc, const float* go, float* dzo,
                      float* dtc);
  // dc (carried) + dc (through h) into d i, d f, d a(zc), dc' = dc f; dh is zeroed.
  void (*dc_to_gates)(int64_t u, const float* gi, const float* gf, const float* gc,
                      const float* cp, float* dzi, float* dzf, float* dzc, float* dc, float* dh);
  // d += s.
  void (*add)(float* d, const float* s, int64_t k);
  // The whole step of a kept row with sigmoid gates and tanh activations, in one pass: the
  // pre-activations gi gf gc go are activated in place, c = f c' + i tanh(zc), tc = tanh(c),
  // h = o tc, and hn (the next step's GEMM row) = h, times mh[j] where mh is not null.
  void (*fused_fwd)(int64_t u, float* gi, float* gf, float* gc, float* go, const float* cp,
                    float* c, float* tc, float* h, float* hn, const float* mh);
  // Its backward in one pass: dh and the carried dc in; the four gates' pre-activation
  // gradients out, dc' = dc f in dc and dh zeroed (as dh_to_gates, dc_to_gates and the
  // activations' backward in turn, with the same arithmetic per element).
  void (*fused_bwd)(int64_t u, const float* gi, const float* gf, const float* gc,
                    const float* go, const float* tc, const float* cp, float* dh, float* dc,
                    float* dzi, float* dzf, float* dzc, float* dzo);
  // A gru step with reset_after, sigmoid gates and tanh, for a kept row, in one pass: from
  // zx (x W + b of the gates z r h) and st (h' U + recurrent bias), the activated gates into
  // g (z, r, hh), rec = st's h part, and h = z h' + (1 - z) hh.
  void (*gru_fwd)(int64_t u, const float* zx, const float* st, const float* hp, float* g,
                  float* rec, float* h);
  // Its backward for a kept row in one pass: dh in; the input side's gate gradients dz and
  // the recurrent side's dzh (its h part times r) out, dh left as dh z (the part of dh' that
  // does not go through U).
  void (*gru_bwd)(int64_t u, const float* g, const float* hp, const float* rec, float* dh,
                  float* dz, float* dzh);
};

// The loops of the active ISA.
const LstmLoops& lstm_loops();

#if defined(PYNN_X86)
const LstmLoops& lstm_loops_avx2();
const LstmLoops& lstm_loops_avx512();
#endif

}  // namespace pynn::nn

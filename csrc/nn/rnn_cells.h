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
};

// The loops of the active ISA.
const LstmLoops& lstm_loops();

#if defined(PYNN_X86)
const LstmLoops& lstm_loops_avx2();
const LstmLoops& lstm_loops_avx512();
#endif

}  // namespace pynn::nn

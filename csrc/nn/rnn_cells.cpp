// The LSTM loops (rnn_cells_impl.h) compiled portably, and the choice by active ISA.
#include "nn/rnn_cells_impl.h"

#include "common/cpu.h"

namespace pynn::nn {

const LstmLoops& lstm_loops() {
  static const LstmLoops& loops = [] () -> const LstmLoops& {
#if defined(PYNN_X86)
    switch (active_arch()) {
      case Arch::avx512: return lstm_loops_avx512();
      case Arch::avx2: return lstm_loops_avx2();
      default: break;
    }
#endif
    return kLoops;
  }();
  return loops;
}

}  // namespace pynn::nn

// The LSTM loops (rnn_cells_impl.h) compiled for AVX2 + FMA.
#include "nn/rnn_cells_impl.h"

namespace pynn::nn {

const LstmLoops& lstm_loops_avx2() { return kLoops; }

}  // namespace pynn::nn

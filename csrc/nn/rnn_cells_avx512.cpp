// The LSTM loops (rnn_cells_impl.h) compiled for AVX-512.
#include "nn/rnn_cells_impl.h"

namespace pynn::nn {

const LstmLoops& lstm_loops_avx512() { return kLoops; }

}  // namespace pynn::nn

// The pieces of the convolution op (conv.cpp) that the transposed convolution
// (conv_transpose.cpp) reuses: the implicit patch matrix packed straight into GEMM panels, and
// col2im. A transposed convolution is the adjoint of a convolution, so its forward pass is the
// convolution's input gradient and its backward passes are convolution products again.
//
// Geometry is a Window (window.h) of the underlying convolution: input (H, W, C), output
// positions (OH, OW), zeros PH/PW before the first row/column.
#pragma once
#include <cstdint>

#include "nn/ops/window.h"

namespace pynn::nn::ops {

// The patches of one group as an implicit (n*OH*OW) x (KH*KW*cg) matrix: row r is output
// position r (sample r / (OH*OW)), column (tap, c) is input channel c0 + c under that tap.
struct Patches {
  Window w;
  const float* x;         // the batch of inputs
  int64_t c0;             // first input channel of the group
  int64_t cg;             // input channels per group
  const int64_t* offset;  // per column (tap, c): its input's offset from the window's corner
};

// gemm::APacker callbacks, ctx a const Patches*: rows [i0, i0 + mc) x columns [p0, p0 + kc)
// of the patch matrix (pack_patch_rows, the A of a forward product) or of its transpose
// (pack_patch_cols, the A of a kernel gradient) in pack_a's panel layout for MR = mr.
void pack_patch_rows(const void* ctx, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int mr,
                     float* dst);
void pack_patch_cols(const void* ctx, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int mr,
                     float* dst);

// x rows of the batch += col2im of `dcol` ((rows, KH*KW*cg), one value per patch entry, for
// output positions [r0, r0 + rows)) for the group whose channels start at c0: each value is
// added to the input position it was read from (padding positions are dropped). Threads take
// whole samples; within a sample rows and taps are added in increasing order, so the sums do
// not depend on the thread count.
void col2im_add(const Window& w, const float* dcol, int64_t r0, int64_t rows, int64_t c0,
                int64_t cg, float* x);

}  // namespace pynn::nn::ops

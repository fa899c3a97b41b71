// Which one-row bf16 kernel (sbgemv.h) matches the active bf16 GEMM kernel.
//
// None for the emulation on the generic float32 micro-kernel: its sums are plain C++ (acc +=
// a * b), and which operand of an add the compiler puts first decides which NaN comes out
// when two meet (x86 returns the first), so a second copy of that loop, compiled apart, can
// differ from the micro-kernel in a NaN's sign and payload. The SIMD steps keep the sum as
// the accumulating operand of one instruction (VDPBF16PS, FMA), as the micro-kernels do, and
// tests/test_dense_chain_bf16_row.py holds them to the packed path's bits with NaN and
// infinities in inputs and weights.
#include "gemm/sbgemv.h"

#include <atomic>

#include "gemm/kernel.h"
#include "gemm/sbgemm.h"

namespace pynn::gemm {
namespace {
std::atomic<int64_t> row_calls[kSbRowsMax];
}  // namespace

int64_t sb_row_calls(int r) { return row_calls[r - 1].load(std::memory_order_relaxed); }
void sb_row_counted(int r) { row_calls[r - 1].fetch_add(1, std::memory_order_relaxed); }

const SbRowKernel* sb_row_kernel() {
  static const SbRowKernel* chosen = []() -> const SbRowKernel* {
    const SbKernelInfo& kern = active_sb_kernel();
#if defined(PYNN_X86)
    if (kern.ukr == kSbKernelAvx512Bf16.ukr) return &kSbRowAvx512Bf16;
    if (kern.ukr == nullptr && kern.f32_ukr == kKernelAvx512.ukr) return &kSbRowEmulatedAvx512;
#endif
    return nullptr;
  }();
  return chosen;
}

}  // namespace pynn::gemm

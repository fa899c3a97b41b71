// CPU feature detection and the choice of instruction set, made once per process.
#pragma once
#include <string>

namespace pynn {

enum class Arch { generic = 0, avx2 = 1, avx512 = 2 };

// What this CPU can run (cpuid), independent of PYNN_ARCH.
bool cpu_supports(Arch arch);

// The instruction set in use: the best the CPU supports, unless PYNN_ARCH forces another.
// Forcing an ISA the CPU lacks is an error reported at import (see arch_error()).
Arch active_arch();
const char* arch_name(Arch arch);

// The bf16 GEMM's kernel family (gemm/sbgemm.h). The best the CPU has unless PYNN_ARCH names
// one: 'amx' and 'avx512_bf16' also mean the avx512 float32 kernels; a float32 ISA
// ('avx512', 'avx2', 'generic') means bf16 emulated on that ISA's float32 kernel.
enum class Bf16Arch { emulated = 0, avx512_bf16 = 1, amx = 2 };
bool cpu_supports(Bf16Arch arch);
Bf16Arch active_bf16_arch();
const char* arch_name(Bf16Arch arch);

// Non-empty when PYNN_ARCH held something unusable; the Python layer raises it at import.
const std::string& arch_error();

}  // namespace pynn

// Subnormal numbers: pynn computes with them flushed to zero.
//
// An x86 core takes a microcode assist (on the order of a hundred cycles) for every subnormal
// operand or result of an SSE/AVX instruction unless MXCSR has FTZ (results that would be
// subnormal become 0) and DAZ (subnormal operands read as 0) set. Training drifts into them on
// its own: Adam's first moment of a weight whose gradient is always 0 (a pixel that is 0 in
// every image) decays towards 0, and under round-to-nearest m = k * 2^-149 with k < 5 is a fixed
// point of m <- 0.9 m, so such slots never leave the subnormal range and each step pays the
// assist on them again. Measured on an Intel Xeon: the Adam update of the MLP went from 0.12
// to 0.60 ms a step after five epochs.
//
// The policy:
//   - pynn's worker threads (common/parallel.cpp) run with FTZ and DAZ for their whole life;
//   - a thread that calls into the core gets FTZ and DAZ for the duration of that call only
//     (FlushDenormals around it: the bindings' ComputeCall, and every parallel region's owner)
//     and its own MXCSR back on return, so NumPy and anything else in the process keeps
//     IEEE gradual underflow;
//   - the optimizers never store a subnormal slot value (flush_subnormal in their loops),
//     which holds on CPUs or paths where the flags are not set.
// Every participant of a region computes under the same flags, so results stay bitwise the
// same for every thread count. Rounding mode and exception masks are left as the caller had
// them.
#pragma once
#include <cstdint>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define PYNN_HAVE_MXCSR 1
#endif

namespace pynn::fp {

#ifdef PYNN_HAVE_MXCSR
constexpr unsigned kFtzDaz = 0x8040u;  // MXCSR bit 15 (FTZ) and bit 6 (DAZ)

inline unsigned read_mxcsr() { return _mm_getcsr(); }
inline void write_mxcsr(unsigned v) { _mm_setcsr(v); }
#endif

// Sets FTZ and DAZ on this thread for the life of the object, then puts back the state it
// found (nesting is harmless: an inner object finds the flags already set and changes nothing).
class FlushDenormals {
 public:
#ifdef PYNN_HAVE_MXCSR
  FlushDenormals() : saved_(read_mxcsr()) {
    if ((saved_ & kFtzDaz) != kFtzDaz) write_mxcsr(saved_ | kFtzDaz);
  }
  ~FlushDenormals() {
    if ((saved_ & kFtzDaz) != kFtzDaz) write_mxcsr(saved_);
  }
#else
  FlushDenormals() = default;
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
#ifdef PYNN_HAVE_MXCSR
  unsigned saved_;
#endif
};

// Sets FTZ and DAZ on this thread for good (pynn's own worker threads).
inline void flush_denormals_forever() {
#ifdef PYNN_HAVE_MXCSR
  write_mxcsr(read_mxcsr() | kFtzDaz);
#endif
}

// True when this thread computes with FTZ and DAZ set (for tests).
inline bool flushing_denormals() {
#ifdef PYNN_HAVE_MXCSR
  return (read_mxcsr() & kFtzDaz) == kFtzDaz;
#else
  return false;
#endif
}

// x, or 0 when |x| is below the smallest normal float (a select, so loops stay vectorised).
inline float flush_subnormal(float x) {
  constexpr float kMinNormal = 1.17549435e-38f;  // FLT_MIN
  return (x < kMinNormal && x > -kMinNormal) ? 0.0f : x;
}

}  // namespace pynn::fp

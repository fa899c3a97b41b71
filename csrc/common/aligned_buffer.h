// A growable float buffer aligned to 64 bytes (a cache line, a zmm register): get(n) returns
// room for at least n floats and allocates only when asked for more than it holds, so a
// buffer kept per thread or per object costs nothing after its largest use. Growing discards
// the contents.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace pynn {

class AlignedBuffer {
 public:
  float* get(int64_t n) {
    if (n > cap_) {
      const size_t bytes = (size_t(n) * sizeof(float) + 63) / 64 * 64;
      float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (p == nullptr) throw std::bad_alloc();
      buf_.reset(p);
      cap_ = n;
    }
    return buf_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> buf_;
  int64_t cap_ = 0;
};

}  // namespace pynn

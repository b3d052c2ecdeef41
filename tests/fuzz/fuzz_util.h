// Shared by the fuzz targets (tests/fuzz/fuzz_<name>.cpp): a reader over the fuzzer's bytes,
// a check that aborts (libFuzzer and the corpus replay both report an abort as a crash), and
// quiet logs (the parsers log every rejection; at fuzzing speed that is noise).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/log.h"

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);      \
      abort();                                                                           \
    }                                                                                    \
  } while (0)

namespace chorus::fuzz {

// Takes bytes from the front of the input; past its end, reads give zeros / empty strings.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), left_(size) {}
  size_t left() const { return left_; }
  bool empty() const { return left_ == 0; }
  uint8_t byte() {
    if (!left_) return 0;
    --left_;
    return *p_++;
  }
  // Copies min(n, left) bytes into dst; the rest of dst is zeroed. Returns the bytes copied.
  size_t bytes(void* dst, size_t n) {
    size_t k = n < left_ ? n : left_;
    if (k) memcpy(dst, p_, k);
    if (k < n) memset(static_cast<char*>(dst) + k, 0, n - k);
    p_ += k;
    left_ -= k;
    return k;
  }
  template <class T>
  T pod() {
    T v;
    bytes(&v, sizeof(v));
    return v;
  }
  std::string rest() {
    std::string s(reinterpret_cast<const char*>(p_), left_);
    p_ += left_;
    left_ = 0;
    return s;
  }
  const uint8_t* data() const { return p_; }

 private:
  const uint8_t* p_;
  size_t left_;
};

// Set once per process, before the first input.
inline bool quietLogs() {
  setenv("CHORUS_DEBUG", "NONE", 1);
  logReloadConfig();
  return true;
}
[[maybe_unused]] static const bool kQuietLogs = quietLogs();

}  // namespace chorus::fuzz

// Typed errors inside Chorus. Internal code throws chorus::Error; the C API boundary
// (src/core/api.cpp) catches it and turns it into a chorusResult_t plus the text that
// chorusGetLastError returns. Each rethrow on the way up may add a "file:line" frame, so
// the message reads as a trail from the failing call outwards.
#pragma once

#include <chorus/chorus.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace chorus {

class Error : public std::runtime_error {
 public:
  Error(chorusResult_t code, const std::string& message) : std::runtime_error(message), code_(code) {}
  chorusResult_t code() const noexcept { return code_; }
  // The peer whose connection failed, when one did (the executor fills it in), else -1.
  int peer() const noexcept { return peer_; }
  void setPeer(int peer) noexcept { peer_ = peer; }

 private:
  chorusResult_t code_;
  int peer_ = -1;
};

// printf-style formatting into a std::string.
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Throws Error(code, "<message> (file:line)").
[[noreturn]] void throwError(chorusResult_t code, const char* file, int line, const std::string& message);
// Throws chorusSystemError with strerror(err) appended.
[[noreturn]] void throwSystemError(int err, const char* file, int line, const std::string& what);

}  // namespace chorus

#define CHORUS_THROW(code, ...) ::chorus::throwError((code), __FILE__, __LINE__, ::chorus::format(__VA_ARGS__))
// Throws chorusSystemError naming errno.
#define CHORUS_THROW_ERRNO(...) ::chorus::throwSystemError(errno, __FILE__, __LINE__, ::chorus::format(__VA_ARGS__))
// Argument check: throws chorusInvalidArgument with the formatted message when cond is false.
#define CHORUS_CHECK_ARG(cond, ...)                              \
  do {                                                           \
    if (!(cond)) CHORUS_THROW(chorusInvalidArgument, __VA_ARGS__); \
  } while (0)
// Internal invariant: a violation is chorusInternalError.
#define CHORUS_ASSERT(cond)                                                          \
  do {                                                                               \
    if (!(cond)) CHORUS_THROW(chorusInternalError, "internal check failed: %s", #cond); \
  } while (0)

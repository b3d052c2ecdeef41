#include "base/error.h"

#include <cstdarg>
#include <cstring>

namespace chorus {

std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string out(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) vsnprintf(out.data(), out.size() + 1, fmt, ap2);
  va_end(ap2);
  return out;
}

static const char* baseName(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

void throwError(chorusResult_t code, const char* file, int line, const std::string& message) {
  throw Error(code, format("%s (%s:%d)", message.c_str(), baseName(file), line));
}

void throwSystemError(int err, const char* file, int line, const std::string& what) {
  char buf[128];
  const char* text = strerror_r(err, buf, sizeof(buf));
  throw Error(chorusSystemError, format("%s: %s (errno %d) (%s:%d)", what.c_str(), text, err, baseName(file), line));
}

}  // namespace chorus

// The two JSON value forms the topology exports need: a quoted, escaped string and a number
// (non-finite numbers become null, which JSON requires).
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

namespace chorus {

inline std::string jsonString(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

inline std::string jsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace chorus

// FNV-1a, 64 bits: a stable hash of short strings (host identities, cache keys, job ids). Not
// for anything an adversary chooses.
#pragma once

#include <cstdint>
#include <string>

namespace chorus {

constexpr uint64_t kFnv1aOffset = 1469598103934665603ull;

inline uint64_t fnv1a(const std::string& s, uint64_t h = kFnv1aOffset) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace chorus

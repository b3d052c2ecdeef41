// See perf_common.h: fp16/bf16 storage helpers, the exact data pattern and its checker.
#include "perf_common.h"

#include "exec/half.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdarg>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>

namespace chorus::perf {

// ---------------------------------------------------------------------------------------------
// fp16 / bf16
// ---------------------------------------------------------------------------------------------

// The library's own conversions (src/exec/half.h, header-only): one rounding rule in the project.
uint16_t floatToHalf(float f) { return half::floatToHalfBits(f); }
float halfToFloat(uint16_t h) { return half::halfBitsToFloat(h); }
uint16_t floatToBfloat16(float f) { return half::floatToBf16Bits(f); }
float bfloat16ToFloat(uint16_t b) { return half::bf16BitsToFloat(b); }

// ---------------------------------------------------------------------------------------------
// Data pattern and checker
// ---------------------------------------------------------------------------------------------

namespace {

// Largest integer up to which every integer is exact in the type, and the sum bound for Avg.
long long exactLimit(chorusDataType_t type, chorusRedOp_t op) {
  switch (type) {
    case chorusFloat16: return 2048;
    case chorusBfloat16: return 256;
    case chorusFloat32: return 1LL << 24;
    case chorusFloat64: return 1LL << 53;
    case chorusInt8: return op == chorusAvg ? 127 : LLONG_MAX;  // Sum wraps like the type does
    case chorusUint8: return op == chorusAvg ? 255 : LLONG_MAX;
    case chorusInt32: return op == chorusAvg ? INT32_MAX : LLONG_MAX;
    case chorusUint32: return op == chorusAvg ? UINT32_MAX : LLONG_MAX;
    default: return LLONG_MAX;
  }
}

bool isSignedType(chorusDataType_t t) {
  return t != chorusUint8 && t != chorusUint32 && t != chorusUint64;
}

uint32_t mixHash(size_t index, int rank, uint32_t seed) {
  uint64_t x = static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ull;
  x ^= ((static_cast<uint64_t>(static_cast<uint32_t>(rank)) << 32) | seed) * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<uint32_t>(x);
}

// The value choice for one (type, op, nranks); see the comment in perf_common.h.
struct Pattern {
  chorusRedOp_t op;
  int nranks;
  bool isSigned;
  long long amp = 7;     // Sum/Avg: values in [0, amp] (Sum on signed types: shifted by -amp/2)
  long long stride = 1;  // Sum/Avg with more ranks than the exact range: only every stride-th
                         // rank contributes (0 or 1)
  long long q = 2;       // Prod: rank r contributes +-2 only where (r + i) % q == 0

  Pattern(chorusDataType_t type, chorusRedOp_t o, int n) : op(o), nranks(n), isSigned(isSignedType(type)) {
    const long long limit = exactLimit(type, op);
    amp = std::min<long long>(7, limit / std::max(1, n));
    if (amp < 1) {
      amp = 1;
      stride = (n + limit - 1) / limit;
    }
    q = std::max<long long>(2, (n + 13) / 14);
  }

  long long value(int r, size_t i, uint32_t seed) const {
    const uint32_t h = mixHash(i, r, seed);
    switch (op) {
      case chorusSum:
      case chorusAvg: {
        if (stride > 1) return ((static_cast<long long>(r) + static_cast<long long>(i % stride)) % stride == 0) ? (h & 1u) : 0;
        long long v = static_cast<long long>(h % static_cast<uint32_t>(amp + 1));
        return (op == chorusSum && isSigned) ? v - amp / 2 : v;
      }
      case chorusProd: {
        long long v = ((static_cast<long long>(r) + static_cast<long long>(i % q)) % q == 0 && h % 3 != 0) ? 2 : 1;
        return (isSigned && ((h >> 8) & 3u) == 0) ? -v : v;
      }
      default: {  // max, min
        long long v = static_cast<long long>(h % 64u);
        return isSigned ? v - 32 : v;
      }
    }
  }

  long long reduced(size_t i, uint32_t seed) const {
    long long acc = value(0, i, seed);
    for (int r = 1; r < nranks; ++r) {
      const long long v = value(r, i, seed);
      switch (op) {
        case chorusSum: case chorusAvg: acc += v; break;
        case chorusProd: acc *= v; break;
        case chorusMax: acc = std::max(acc, v); break;
        default: acc = std::min(acc, v); break;
      }
    }
    return acc;
  }
};

// Storage conversions per type: integers convert modulo 2^bits (C++20), floats exactly.
template <class T>
struct Codec {
  using Storage = T;
  static constexpr bool kFloat = std::is_floating_point_v<T>;
  static constexpr double kEps = kFloat ? std::numeric_limits<T>::epsilon() : 0;
  static Storage fromInt(long long v) { return static_cast<T>(v); }
  static Storage fromDouble(double d) { return static_cast<T>(d); }
  static double toDouble(Storage x) { return static_cast<double>(x); }
};
struct HalfTag {};
struct Bf16Tag {};
template <>
struct Codec<HalfTag> {
  using Storage = uint16_t;
  static constexpr bool kFloat = true;
  static constexpr double kEps = 1.0 / 1024;
  static Storage fromInt(long long v) { return floatToHalf(static_cast<float>(v)); }
  static Storage fromDouble(double d) { return floatToHalf(static_cast<float>(d)); }
  static double toDouble(Storage x) { return halfToFloat(x); }
};
template <>
struct Codec<Bf16Tag> {
  using Storage = uint16_t;
  static constexpr bool kFloat = true;
  static constexpr double kEps = 1.0 / 128;
  static Storage fromInt(long long v) { return floatToBfloat16(static_cast<float>(v)); }
  static Storage fromDouble(double d) { return floatToBfloat16(static_cast<float>(d)); }
  static double toDouble(Storage x) { return bfloat16ToFloat(x); }
};

template <class F>
auto dispatchType(chorusDataType_t type, F&& f) {
  switch (type) {
    case chorusInt8: return f(Codec<int8_t>{});
    case chorusUint8: return f(Codec<uint8_t>{});
    case chorusInt32: return f(Codec<int32_t>{});
    case chorusUint32: return f(Codec<uint32_t>{});
    case chorusInt64: return f(Codec<int64_t>{});
    case chorusUint64: return f(Codec<uint64_t>{});
    case chorusFloat16: return f(Codec<HalfTag>{});
    case chorusFloat32: return f(Codec<float>{});
    case chorusFloat64: return f(Codec<double>{});
    default: return f(Codec<Bf16Tag>{});
  }
}

}  // namespace

long long patternValue(chorusDataType_t type, chorusRedOp_t op, int rank, int nranks,
                       size_t index, uint32_t seed) {
  return Pattern(type, op, nranks).value(rank, index, seed);
}

long long patternReduced(chorusDataType_t type, chorusRedOp_t op, int nranks, size_t index,
                         uint32_t seed) {
  return Pattern(type, op, nranks).reduced(index, seed);
}

void fillInput(void* buf, size_t count, chorusDataType_t type, chorusRedOp_t op, int rank,
               int nranks, uint32_t seed) {
  const Pattern pat(type, op, nranks);
  dispatchType(type, [&](auto codec) {
    using C = decltype(codec);
    auto* p = static_cast<typename C::Storage*>(buf);
    for (size_t i = 0; i < count; ++i) p[i] = C::fromInt(pat.value(rank, i, seed));
    return 0;
  });
}

size_t countWrongResult(const void* buf, size_t count, chorusDataType_t type, chorusRedOp_t op,
                        int nranks, uint32_t seed) {
  const Pattern pat(type, op, nranks);
  return dispatchType(type, [&](auto codec) -> size_t {
    using C = decltype(codec);
    const auto* p = static_cast<const typename C::Storage*>(buf);
    size_t wrong = 0;
    for (size_t i = 0; i < count; ++i) {
      const long long r = pat.reduced(i, seed);
      if constexpr (C::kFloat) {
        const double got = C::toDouble(p[i]);
        if (op == chorusAvg) {
          const double want = C::toDouble(C::fromDouble(static_cast<double>(r) / nranks));
          const double tol = 2.0 * C::kEps * std::max(1.0, std::fabs(want));
          if (!(std::fabs(got - want) <= tol)) ++wrong;  // NaN counts as wrong
        } else if (!(got == static_cast<double>(r))) {
          ++wrong;
        }
      } else {
        const auto want = C::fromInt(op == chorusAvg ? r / nranks : r);
        if (p[i] != want) ++wrong;
      }
    }
    return wrong;
  });
}

size_t countChangedInput(const void* buf, size_t count, chorusDataType_t type, chorusRedOp_t op,
                         int rank, int nranks, uint32_t seed) {
  const Pattern pat(type, op, nranks);
  return dispatchType(type, [&](auto codec) -> size_t {
    using C = decltype(codec);
    const auto* p = static_cast<const typename C::Storage*>(buf);
    size_t changed = 0;
    for (size_t i = 0; i < count; ++i) {
      const typename C::Storage want = C::fromInt(pat.value(rank, i, seed));
      if (memcmp(&p[i], &want, sizeof want) != 0) ++changed;  // bit for bit
    }
    return changed;
  });
}

}  // namespace chorus::perf

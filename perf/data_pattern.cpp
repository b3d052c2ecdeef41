// See perf_common.h: narrow-float storage helpers, the exact data patterns and their checkers.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "exec/half.h"
#include "perf_common.h"

namespace chorus::perf {

// ---------------------------------------------------------------------------------------------
// fp16 / bf16 / fp8
// ---------------------------------------------------------------------------------------------

// The library's own conversions (src/exec/half.h, header-only): one rounding rule in the project.
uint16_t floatToHalf(float f) { return half::floatToHalfBits(f); }
float halfToFloat(uint16_t h) { return half::halfBitsToFloat(h); }
uint16_t floatToBfloat16(float f) { return half::floatToBf16Bits(f); }
float bfloat16ToFloat(uint16_t b) { return half::bf16BitsToFloat(b); }
uint8_t floatToFp8e4m3(float f) { return half::floatToFp8e4m3Bits(f); }
float fp8e4m3ToFloat(uint8_t b) { return half::fp8e4m3BitsToFloat(b); }
uint8_t floatToFp8e5m2(float f) { return half::floatToFp8e5m2Bits(f); }
float fp8e5m2ToFloat(uint8_t b) { return half::fp8e5m2BitsToFloat(b); }

// ---------------------------------------------------------------------------------------------
// Reduction pattern and checker
// ---------------------------------------------------------------------------------------------

namespace {

// Largest integer up to which every integer is exact in the type, and the sum bound for Avg.
long long exactLimit(chorusDataType_t type, chorusRedOp_t op) {
  switch (type) {
    case chorusFloat8e5m2: return 8;    // 3 significant bits
    case chorusFloat8e4m3: return 16;   // 4 significant bits
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

// Most factors of 2 a product may collect: 2^k must be exact and finite in the type (E4M3 stops
// at 448, so 2^8; every other type reaches 2^14).
int maxFactorsOfTwo(chorusDataType_t type) { return type == chorusFloat8e4m3 ? 8 : 14; }

bool isSignedType(chorusDataType_t t) {
  return t != chorusUint8 && t != chorusUint32 && t != chorusUint64;
}

uint64_t mixHash64(size_t index, int rank, uint32_t seed) {
  uint64_t x = static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ull;
  x ^= ((static_cast<uint64_t>(static_cast<uint32_t>(rank)) << 32) | seed) * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return x;
}

uint32_t mixHash(size_t index, int rank, uint32_t seed) { return static_cast<uint32_t>(mixHash64(index, rank, seed)); }

// The value choice for one (type, op, nranks); see the comment in perf_common.h.
struct Pattern {
  chorusRedOp_t op;
  int nranks;
  bool isSigned;
  long long amp = 7;     // Sum/Avg: values in [0, amp] (Sum on signed types: shifted by -amp/2)
  long long stride = 1;  // Sum/Avg with more ranks than the exact range: only every stride-th
                         // rank contributes (0 or 1)
  long long q = 2;       // Prod: rank r contributes +-2 only where (r + i) % q == 0
  long long span = 32;   // Max/Min: values in [-span, span) (unsigned: [0, 2 span))

  Pattern(chorusDataType_t type, chorusRedOp_t o, int n) : op(o), nranks(n), isSigned(isSignedType(type)) {
    const long long limit = exactLimit(type, op);
    amp = std::min<long long>(7, limit / std::max(1, n));
    if (amp < 1) {
      amp = 1;
      stride = (n + limit - 1) / limit;
    }
    const long long twos = maxFactorsOfTwo(type);
    q = std::max<long long>(2, (n + twos - 1) / twos);
    span = std::min<long long>(32, exactLimit(type, chorusSum));
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
        long long v = static_cast<long long>(h % static_cast<uint32_t>(2 * span));
        return isSigned ? v - span : v;
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
  static Storage fromInt(long long v) { return static_cast<T>(v); }
  static Storage fromDouble(double d) { return static_cast<T>(d); }
  static double toDouble(Storage x) { return static_cast<double>(x); }
};

// A narrow float stored as bits; To/From are its conversions.
template <typename S, float (*To)(S), S (*From)(float)>
struct NarrowCodec {
  using Storage = S;
  static constexpr bool kFloat = true;
  static Storage fromInt(long long v) { return From(static_cast<float>(v)); }
  static Storage fromDouble(double d) { return From(static_cast<float>(d)); }
  static double toDouble(Storage x) { return To(x); }
};
using HalfCodec = NarrowCodec<uint16_t, halfToFloat, floatToHalf>;
using Bf16Codec = NarrowCodec<uint16_t, bfloat16ToFloat, floatToBfloat16>;
using E4m3Codec = NarrowCodec<uint8_t, fp8e4m3ToFloat, floatToFp8e4m3>;
using E5m2Codec = NarrowCodec<uint8_t, fp8e5m2ToFloat, floatToFp8e5m2>;

template <class F>
auto dispatchType(chorusDataType_t type, F&& f) {
  switch (type) {
    case chorusInt8: return f(Codec<int8_t>{});
    case chorusUint8: return f(Codec<uint8_t>{});
    case chorusInt32: return f(Codec<int32_t>{});
    case chorusUint32: return f(Codec<uint32_t>{});
    case chorusInt64: return f(Codec<int64_t>{});
    case chorusUint64: return f(Codec<uint64_t>{});
    case chorusFloat16: return f(HalfCodec{});
    case chorusFloat32: return f(Codec<float>{});
    case chorusFloat64: return f(Codec<double>{});
    case chorusFloat8e4m3: return f(E4m3Codec{});
    case chorusFloat8e5m2: return f(E5m2Codec{});
    default: return f(Bf16Codec{});
  }
}

// Rank `rank`'s reduction input for global elements [first, first + count) into buf.
void fillReduceInput(void* buf, size_t count, size_t first, chorusDataType_t type, chorusRedOp_t op, int rank, int nranks,
                     uint32_t seed) {
  const Pattern pat(type, op, nranks);
  dispatchType(type, [&](auto codec) {
    using C = decltype(codec);
    auto* p = static_cast<typename C::Storage*>(buf);
    for (size_t i = 0; i < count; ++i) p[i] = C::fromInt(pat.value(rank, first + i, seed));
    return 0;
  });
}

// Elements of buf[0..count) that differ from the reduced global elements [first, first + count).
size_t countWrongReduced(const void* buf, size_t count, size_t first, chorusDataType_t type, chorusRedOp_t op, int nranks,
                         uint32_t seed) {
  const Pattern pat(type, op, nranks);
  return dispatchType(type, [&](auto codec) -> size_t {
    using C = decltype(codec);
    const auto* p = static_cast<const typename C::Storage*>(buf);
    size_t wrong = 0;
    for (size_t i = 0; i < count; ++i) {
      const long long r = pat.reduced(first + i, seed);
      if constexpr (C::kFloat) {
        const double got = C::toDouble(p[i]);
        // Avg: chorus.h says the sum is divided by the rank count; the sum is exact, so one
        // correctly rounded division gives exactly this (the double quotient rounds to the same
        // float, as 53 >= 2 * 24 + 2, and then to the same narrow value).
        const double want =
            op == chorusAvg ? C::toDouble(C::fromDouble(static_cast<double>(r) / nranks)) : static_cast<double>(r);
        if (!(got == want)) ++wrong;  // NaN counts as wrong
      } else {
        const auto want = C::fromInt(op == chorusAvg ? r / nranks : r);
        if (p[i] != want) ++wrong;
      }
    }
    return wrong;
  });
}

// Elements of buf[0..count) that are no longer rank's reduction input [first, first + count).
size_t countChangedReduceInput(const void* buf, size_t count, size_t first, chorusDataType_t type, chorusRedOp_t op,
                               int rank, int nranks, uint32_t seed) {
  const Pattern pat(type, op, nranks);
  return dispatchType(type, [&](auto codec) -> size_t {
    using C = decltype(codec);
    const auto* p = static_cast<const typename C::Storage*>(buf);
    size_t changed = 0;
    for (size_t i = 0; i < count; ++i) {
      const typename C::Storage want = C::fromInt(pat.value(rank, first + i, seed));
      if (memcmp(&p[i], &want, sizeof want) != 0) ++changed;  // bit for bit
    }
    return changed;
  });
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
  fillReduceInput(buf, count, 0, type, op, rank, nranks, seed);
}

size_t countWrongResult(const void* buf, size_t count, chorusDataType_t type, chorusRedOp_t op,
                        int nranks, uint32_t seed) {
  return countWrongReduced(buf, count, 0, type, op, nranks, seed);
}

size_t countChangedInput(const void* buf, size_t count, chorusDataType_t type, chorusRedOp_t op,
                         int rank, int nranks, uint32_t seed) {
  return countChangedReduceInput(buf, count, 0, type, op, rank, nranks, seed);
}

// ---------------------------------------------------------------------------------------------
// Copy pattern (collectives that move data without reducing it)
// ---------------------------------------------------------------------------------------------

namespace {

// Element `index` of source rank `rank`: hash bytes, never the poison pattern (so that a call
// that wrote nothing over a poisoned buffer cannot pass, even for one-byte types).
void copyElement(uint8_t* out, size_t size, int rank, size_t index, uint32_t seed) {
  uint64_t h = mixHash64(index, rank, seed ^ 0x5bd1e995u);
  bool allPoison = true;
  for (size_t b = 0; b < size; ++b) {
    out[b] = static_cast<uint8_t>(h >> (8 * (b % 8)));
    if (b % 8 == 7) h = h * 0x9E3779B97F4A7C15ull + 1;
    allPoison = allPoison && out[b] == kPoisonByte;
  }
  if (allPoison) out[0] ^= 0xff;
}

void fillCopy(void* buf, size_t count, size_t typeSize, int rank, size_t first, uint32_t seed) {
  auto* p = static_cast<uint8_t*>(buf);
  for (size_t i = 0; i < count; ++i) copyElement(p + i * typeSize, typeSize, rank, first + i, seed);
}

size_t countWrongCopy(const void* buf, size_t count, size_t typeSize, int rank, size_t first, uint32_t seed) {
  const auto* p = static_cast<const uint8_t*>(buf);
  uint8_t want[16];
  size_t wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    copyElement(want, typeSize, rank, first + i, seed);
    if (memcmp(p + i * typeSize, want, typeSize) != 0) ++wrong;
  }
  return wrong;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Per-collective fill and check
// ---------------------------------------------------------------------------------------------
// Layouts (n = ranks, c = CollCase::count; "copy(s, k)" is element k of source rank s's copy
// pattern, "red(k)" is the reduction of global element k over every rank):
//   AllReduce, Reduce   in: rank's red input [0, c)        out: red(i)
//   ReduceScatter       in: rank's red input [0, n c)      out: red(rank c + i)
//   Broadcast           in (root): copy(root, i)           out: copy(root, i)
//   AllGather, Gather   in: copy(rank, i)                  out block j: copy(j, i)
//   Scatter             in (root): copy(root, [0, n c))    out: copy(root, rank c + i)
//   AlltoAll            in: copy(rank, [0, n c)), block j to rank j    out block j: copy(j, rank c + i)
//   SendRecv            in: copy(rank, i)                  out: copy((rank - 1 + n) % n, i)

void fillCollInput(const CollCase& k, void* send) {
  if (!readsSend(k.coll, k.rank, k.root)) return;
  const size_t n = sendElems(k.coll, k.count, k.nranks);
  if (collInfo(k.coll).reduction) {
    fillReduceInput(send, n, 0, k.type, k.op, k.rank, k.nranks, k.seed);
  } else {
    fillCopy(send, n, typeSize(k.type), k.rank, 0, k.seed);
  }
}

size_t countWrongCollOutput(const CollCase& k, const void* recv) {
  if (!writesRecv(k.coll, k.rank, k.root)) return 0;
  const size_t ts = typeSize(k.type);
  const size_t c = k.count;
  const auto* out = static_cast<const uint8_t*>(recv);
  switch (k.coll) {
    case PerfColl::AllReduce:
    case PerfColl::Reduce: return countWrongReduced(recv, c, 0, k.type, k.op, k.nranks, k.seed);
    case PerfColl::ReduceScatter: return countWrongReduced(recv, c, k.rank * c, k.type, k.op, k.nranks, k.seed);
    case PerfColl::Broadcast: return countWrongCopy(recv, c, ts, k.root, 0, k.seed);
    case PerfColl::Scatter: return countWrongCopy(recv, c, ts, k.root, k.rank * c, k.seed);
    case PerfColl::SendRecv: return countWrongCopy(recv, c, ts, (k.rank - 1 + k.nranks) % k.nranks, 0, k.seed);
    case PerfColl::AllGather:
    case PerfColl::Gather:
    case PerfColl::AlltoAll: {
      size_t wrong = 0;
      const size_t first = k.coll == PerfColl::AlltoAll ? k.rank * c : 0;
      for (int j = 0; j < k.nranks; ++j) wrong += countWrongCopy(out + j * c * ts, c, ts, j, first, k.seed);
      return wrong;
    }
    default: return 0;
  }
}

size_t countChangedCollInput(const CollCase& k, const void* send) {
  if (!readsSend(k.coll, k.rank, k.root)) return 0;
  const size_t n = sendElems(k.coll, k.count, k.nranks);
  if (collInfo(k.coll).reduction) return countChangedReduceInput(send, n, 0, k.type, k.op, k.rank, k.nranks, k.seed);
  return countWrongCopy(send, n, typeSize(k.type), k.rank, 0, k.seed);
}

}  // namespace chorus::perf

#include "typed_values.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "rng.h"

namespace chorus::campaign {
namespace {

// A small binary float (fp16, bf16, fp8): exponent and mantissa widths and the bias.
struct MiniFloat {
  int expBits, manBits, bias;
};

bool miniFloatOf(chorusDataType_t t, MiniFloat* f) {
  switch (t) {
    case chorusFloat16:
      *f = {5, 10, 15};
      return true;
    case chorusBfloat16:
      *f = {8, 7, 127};
      return true;
    case chorusFloat8e4m3:
      *f = {4, 3, 7};
      return true;
    case chorusFloat8e5m2:
      *f = {5, 2, 15};
      return true;
    default:
      return false;
  }
}

// v: 0 or a normal positive value exact in f (the campaign's values are).
uint32_t encodeMini(const MiniFloat& f, double v) {
  if (v == 0) return 0;
  int e = 0;
  const double m = std::frexp(v, &e);  // v = m * 2^e, m in [0.5, 1)
  const uint32_t fraction = static_cast<uint32_t>(std::ldexp(m * 2 - 1, f.manBits));
  return (static_cast<uint32_t>(e - 1 + f.bias) << f.manBits) | fraction;
}

double decodeMini(const MiniFloat& f, uint32_t bits) {
  const uint32_t total = 1 + f.expBits + f.manBits;
  const bool negative = (bits >> (total - 1)) & 1;
  const uint32_t exponent = (bits >> f.manBits) & ((1u << f.expBits) - 1);
  const uint32_t fraction = bits & ((1u << f.manBits) - 1);
  double v = exponent == 0 ? std::ldexp(fraction, 1 - f.bias - f.manBits)
                           : std::ldexp(1.0 + std::ldexp(fraction, -f.manBits), static_cast<int>(exponent) - f.bias);
  return negative ? -v : v;
}

template <class T>
void put(void* buf, size_t idx, T v) {
  std::memcpy(static_cast<char*>(buf) + idx * sizeof(T), &v, sizeof(T));
}

template <class T>
T get(const void* buf, size_t idx) {
  T v;
  std::memcpy(&v, static_cast<const char*>(buf) + idx * sizeof(T), sizeof(T));
  return v;
}

}  // namespace

size_t typeSize(chorusDataType_t t) {
  switch (t) {
    case chorusInt8:
    case chorusUint8:
    case chorusFloat8e4m3:
    case chorusFloat8e5m2:
      return 1;
    case chorusFloat16:
    case chorusBfloat16:
      return 2;
    case chorusInt32:
    case chorusUint32:
    case chorusFloat32:
      return 4;
    default:
      return 8;
  }
}

const char* typeName(chorusDataType_t t) {
  switch (t) {
    case chorusInt8:
      return "int8";
    case chorusUint8:
      return "uint8";
    case chorusInt32:
      return "int32";
    case chorusUint32:
      return "uint32";
    case chorusInt64:
      return "int64";
    case chorusUint64:
      return "uint64";
    case chorusFloat16:
      return "float16";
    case chorusFloat32:
      return "float32";
    case chorusFloat64:
      return "float64";
    case chorusBfloat16:
      return "bfloat16";
    case chorusFloat8e4m3:
      return "fp8e4m3";
    case chorusFloat8e5m2:
      return "fp8e5m2";
    default:
      return "?";
  }
}

const char* opName(chorusRedOp_t op) {
  switch (op) {
    case chorusSum:
      return "sum";
    case chorusProd:
      return "prod";
    case chorusMax:
      return "max";
    case chorusMin:
      return "min";
    case chorusAvg:
      return "avg";
    default:
      return "?";
  }
}

double exactBound(chorusDataType_t t) {
  switch (t) {
    case chorusInt8:
      return 127;
    case chorusUint8:
      return 255;
    case chorusFloat16:
      return 2048;
    case chorusBfloat16:
      return 256;
    case chorusFloat8e4m3:
      return 16;
    case chorusFloat8e5m2:
      return 8;
    default:
      return 1 << 20;
  }
}

void storeValue(chorusDataType_t t, void* buf, size_t idx, double v) {
  MiniFloat f;
  if (miniFloatOf(t, &f)) {
    const uint32_t bits = encodeMini(f, v);
    if (typeSize(t) == 1)
      put<uint8_t>(buf, idx, static_cast<uint8_t>(bits));
    else
      put<uint16_t>(buf, idx, static_cast<uint16_t>(bits));
    return;
  }
  switch (t) {
    case chorusInt8:
      put<int8_t>(buf, idx, static_cast<int8_t>(v));
      break;
    case chorusUint8:
      put<uint8_t>(buf, idx, static_cast<uint8_t>(v));
      break;
    case chorusInt32:
      put<int32_t>(buf, idx, static_cast<int32_t>(v));
      break;
    case chorusUint32:
      put<uint32_t>(buf, idx, static_cast<uint32_t>(v));
      break;
    case chorusInt64:
      put<int64_t>(buf, idx, static_cast<int64_t>(v));
      break;
    case chorusUint64:
      put<uint64_t>(buf, idx, static_cast<uint64_t>(v));
      break;
    case chorusFloat32:
      put<float>(buf, idx, static_cast<float>(v));
      break;
    default:
      put<double>(buf, idx, v);
      break;
  }
}

double loadValue(chorusDataType_t t, const void* buf, size_t idx) {
  MiniFloat f;
  if (miniFloatOf(t, &f)) return decodeMini(f, typeSize(t) == 1 ? get<uint8_t>(buf, idx) : get<uint16_t>(buf, idx));
  switch (t) {
    case chorusInt8:
      return get<int8_t>(buf, idx);
    case chorusUint8:
      return get<uint8_t>(buf, idx);
    case chorusInt32:
      return get<int32_t>(buf, idx);
    case chorusUint32:
      return get<uint32_t>(buf, idx);
    case chorusInt64:
      return static_cast<double>(get<int64_t>(buf, idx));
    case chorusUint64:
      return static_cast<double>(get<uint64_t>(buf, idx));
    case chorusFloat32:
      return get<float>(buf, idx);
    default:
      return get<double>(buf, idx);
  }
}

ValueSource::ValueSource(chorusDataType_t t, chorusRedOp_t op, bool reduces, int p, uint64_t salt)
    : op_(op), reduces_(reduces), p_(p), salt_(salt), bound_(exactBound(t)) {}

uint64_t ValueSource::hash(int rank, uint64_t call, size_t idx) const {
  return mix64(salt_ ^ (static_cast<uint64_t>(rank) << 56) ^ (call << 40) ^ idx);
}

double ValueSource::value(int rank, uint64_t call, size_t idx) const {
  const uint64_t h = hash(rank, call, idx);
  if (!reduces_) return static_cast<double>(h % static_cast<uint64_t>(bound_ + 1));
  const uint64_t share = static_cast<uint64_t>(bound_) / static_cast<uint64_t>(p_);  // >= 1: bound >= 8 >= p
  switch (op_) {
    case chorusSum:
      return static_cast<double>(h % (share + 1));  // any partial sum <= p * share <= bound
    case chorusAvg: {
      // base + d(rank) with d = +1, -1 in pairs (0 for an odd rank out): the sum is p * base,
      // so the average is exact, also after an integer type's truncation.
      const double base = static_cast<double>(1 + (mix64(salt_ ^ (call << 40) ^ idx) % share));
      const int d = (rank == p_ - 1 && p_ % 2 == 1) ? 0 : (rank % 2 == 0 ? 1 : -1);
      return base + d;
    }
    case chorusProd: {
      // One rank contributes 2, one in 16 elements has a rank contributing 0, the rest 1.
      const uint64_t e = mix64(salt_ ^ (call << 40) ^ idx);
      if (e % 16 == 0 && static_cast<uint64_t>(rank) == (e >> 8) % static_cast<uint64_t>(p_)) return 0;
      return static_cast<uint64_t>(rank) == (e >> 20) % static_cast<uint64_t>(p_) ? 2 : 1;
    }
    default:
      return static_cast<double>(h % static_cast<uint64_t>(bound_ + 1));  // max, min
  }
}

double ValueSource::reduced(uint64_t call, size_t idx) const {
  double acc = value(0, call, idx);
  for (int q = 1; q < p_; ++q) {
    const double v = value(q, call, idx);
    switch (op_) {
      case chorusProd:
        acc *= v;
        break;
      case chorusMax:
        acc = std::max(acc, v);
        break;
      case chorusMin:
        acc = std::min(acc, v);
        break;
      default:
        acc += v;
        break;
    }
  }
  return op_ == chorusAvg ? acc / p_ : acc;
}

}  // namespace chorus::campaign

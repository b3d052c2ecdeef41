#include "core/premul.h"

#include <cstdint>
#include <cstring>

#include "base/error.h"
#include "exec/half.h"
#include "exec/reduce.h"

namespace chorus {
namespace {

template <typename T>
void scaleInt(void* dst, const void* src, size_t n, long long s) {
  const T* in = static_cast<const T*>(src);
  T* out = static_cast<T*>(dst);
  // Unsigned arithmetic: wraps like the sum does, without signed-overflow undefined behaviour.
  using U = std::make_unsigned_t<T>;
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<T>(static_cast<U>(in[i]) * static_cast<U>(s));
}

template <typename T>
void scaleFloat(void* dst, const void* src, size_t n, double s) {
  const T* in = static_cast<const T*>(src);
  T* out = static_cast<T*>(dst);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<T>(s * in[i]);
}

template <typename ToFloat, typename FromFloat>
void scaleBits(void* dst, const void* src, size_t n, double s, ToFloat toFloat, FromFloat fromFloat) {
  using Bits = decltype(fromFloat(0.0f));
  const Bits* in = static_cast<const Bits*>(src);
  Bits* out = static_cast<Bits*>(dst);
  float fs = static_cast<float>(s);
  for (size_t i = 0; i < n; ++i) out[i] = fromFloat(fs * toFloat(in[i]));
}

template <typename T>
T load(const void* p) {
  T v;
  memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

chorusRedOp_t PreMulSumOps::create(const void* scalar, chorusDataType_t dtype) {
  CHORUS_CHECK_ARG(scalar, "scalar is NULL");
  CHORUS_CHECK_ARG(dataTypeSize(dtype) != 0, "unknown datatype %d", static_cast<int>(dtype));
  PreMulSum op;
  op.dtype = dtype;
  switch (dtype) {
    case chorusInt8: op.iscalar = load<int8_t>(scalar); break;
    case chorusUint8: op.iscalar = load<uint8_t>(scalar); break;
    case chorusInt32: op.iscalar = load<int32_t>(scalar); break;
    case chorusUint32: op.iscalar = load<uint32_t>(scalar); break;
    case chorusInt64: op.iscalar = load<int64_t>(scalar); break;
    case chorusUint64: op.iscalar = static_cast<long long>(load<uint64_t>(scalar)); break;
    case chorusFloat16: op.scalar = half::halfBitsToFloat(load<uint16_t>(scalar)); break;
    case chorusBfloat16: op.scalar = half::bf16BitsToFloat(load<uint16_t>(scalar)); break;
    case chorusFloat32: op.scalar = load<float>(scalar); break;
    case chorusFloat64: op.scalar = load<double>(scalar); break;
    case chorusFloat8e4m3: op.scalar = half::fp8e4m3BitsToFloat(load<uint8_t>(scalar)); break;
    case chorusFloat8e5m2: op.scalar = half::fp8e5m2BitsToFloat(load<uint8_t>(scalar)); break;
    default: CHORUS_THROW(chorusInvalidArgument, "chorusRedOpCreatePreMulSum: %s is not supported", dataTypeName(dtype));
  }
  std::lock_guard<std::mutex> g(mu_);
  size_t slot = 0;
  while (slot < live_.size() && live_[slot]) ++slot;
  CHORUS_CHECK_ARG(slot < 1u << 20, "too many live PreMulSum operators (destroy unused ones)");
  if (slot == live_.size()) {
    live_.push_back(false);
    ops_.emplace_back();
  }
  live_[slot] = true;
  ops_[slot] = op;
  return static_cast<chorusRedOp_t>(chorusNumOps + static_cast<int>(slot));
}

void PreMulSumOps::destroy(chorusRedOp_t op) {
  std::lock_guard<std::mutex> g(mu_);
  long long slot = static_cast<long long>(op) - chorusNumOps;
  CHORUS_CHECK_ARG(slot >= 0 && slot < static_cast<long long>(live_.size()) && live_[slot],
                   "operator %d is not a live PreMulSum operator of this communicator", static_cast<int>(op));
  live_[slot] = false;
}

bool PreMulSumOps::lookup(chorusRedOp_t op, PreMulSum* out) const {
  std::lock_guard<std::mutex> g(mu_);
  long long slot = static_cast<long long>(op) - chorusNumOps;
  if (slot < 0 || slot >= static_cast<long long>(live_.size()) || !live_[slot]) return false;
  *out = ops_[slot];
  return true;
}

void scaleInto(void* dst, const void* src, size_t n, const PreMulSum& op) {
  switch (op.dtype) {
    case chorusInt8: return scaleInt<int8_t>(dst, src, n, op.iscalar);
    case chorusUint8: return scaleInt<uint8_t>(dst, src, n, op.iscalar);
    case chorusInt32: return scaleInt<int32_t>(dst, src, n, op.iscalar);
    case chorusUint32: return scaleInt<uint32_t>(dst, src, n, op.iscalar);
    case chorusInt64: return scaleInt<int64_t>(dst, src, n, op.iscalar);
    case chorusUint64: return scaleInt<uint64_t>(dst, src, n, op.iscalar);
    case chorusFloat32: return scaleFloat<float>(dst, src, n, op.scalar);
    case chorusFloat64: return scaleFloat<double>(dst, src, n, op.scalar);
    case chorusFloat16: return scaleBits(dst, src, n, op.scalar, half::halfBitsToFloat, half::floatToHalfBits);
    case chorusBfloat16: return scaleBits(dst, src, n, op.scalar, half::bf16BitsToFloat, half::floatToBf16Bits);
    case chorusFloat8e4m3: return scaleBits(dst, src, n, op.scalar, half::fp8e4m3BitsToFloat, half::floatToFp8e4m3Bits);
    case chorusFloat8e5m2: return scaleBits(dst, src, n, op.scalar, half::fp8e5m2BitsToFloat, half::floatToFp8e5m2Bits);
    default: break;
  }
  CHORUS_THROW(chorusInvalidArgument, "PreMulSum: %s is not supported", dataTypeName(op.dtype));
}

}  // namespace chorus

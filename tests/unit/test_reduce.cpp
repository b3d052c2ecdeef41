// Reduction kernels (src/exec/reduce.h): every type x op against a plain reference, on both
// kernel implementations (portable and AVX2+F16C where the CPU has it), with aliasing, odd
// lengths, integer wrap-around, and the fp16/bf16/fp8 conversions down to the last bit.
//
// The fp16/bf16 references work in double and round once with their own (slow, obvious)
// rounding code. Double holds any sum or product of two fp16 values exactly, and rounding a
// double or float result again to fp16/bf16 cannot change a correctly rounded answer (both carry
// more than 2p+2 bits), so the kernels must match these references bit for bit.
#include "exec/reduce.h"

#include "base/error.h"
#include "fixtures/sweep.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace chorus {
namespace {

constexpr chorusDataType_t kAllTypes[] = {chorusInt8,     chorusUint8,      chorusInt32,     chorusUint32,
                                          chorusInt64,    chorusUint64,     chorusFloat16,   chorusFloat32,
                                          chorusFloat64,  chorusBfloat16,   chorusFloat8e4m3, chorusFloat8e5m2};
constexpr chorusRedOp_t kKernelOps[] = {chorusSum, chorusProd, chorusMax, chorusMin};

// ---- reference conversions (independent of half.h) -----------------------------------------

// Decodes a binary float of 1 + exponentBits + mantissaBits bits with the given exponent bias.
// IEEE-like formats: an all-ones exponent is infinity (mantissa 0) or NaN. Otherwise (fp8 E4M3)
// only the all-ones code is NaN and the rest of the top binade holds normal numbers.
double refDecode(uint32_t bits, int mantissaBits, int exponentBits, int bias, bool ieeeSpecials) {
  const double sign = ((bits >> (mantissaBits + exponentBits)) & 1) ? -1.0 : 1.0;
  const int maxExponent = (1 << exponentBits) - 1, maxMantissa = (1 << mantissaBits) - 1;
  const int exponent = (bits >> mantissaBits) & maxExponent;
  const int mantissa = bits & maxMantissa;
  if (exponent == maxExponent && (ieeeSpecials || mantissa == maxMantissa)) {
    return (mantissa || !ieeeSpecials) ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, 1 - bias - mantissaBits);
  return sign * std::ldexp(mantissa + maxMantissa + 1, exponent - bias - mantissaBits);
}

double refHalfToDouble(uint16_t h) { return refDecode(h, 10, 5, 15, true); }
double refBf16ToDouble(uint16_t b) { return refDecode(b, 7, 8, 127, true); }
// OCP fp8. E4M3: bias 7, no infinities, S.1111.111 is NaN; E5M2: bias 15, IEEE-like.
double refE4m3ToDouble(uint8_t b) { return refDecode(b, 3, 4, 7, false); }
double refE5m2ToDouble(uint8_t b) { return refDecode(b, 2, 5, 15, true); }

// Rounds a non-NaN double to a binary format with `mantissaBits` stored mantissa bits and the
// given exponent bias, to nearest even. Returns sign | exponent | mantissa bits.
uint16_t refRound(double x, int mantissaBits, int bias, int exponentBits) {
  const uint16_t sign = std::signbit(x) ? uint16_t(1u << (mantissaBits + exponentBits)) : 0;
  const uint16_t inf = uint16_t(((1u << exponentBits) - 1) << mantissaBits);
  const double a = std::fabs(x);
  const int minExponent = 1 - bias;  // of the smallest normal
  if (std::isinf(a)) return sign | inf;
  if (a < std::ldexp(1.0, minExponent)) {
    // Subnormal grid: multiples of 2^(minExponent - mantissaBits); a result of 2^mantissaBits
    // units is the smallest normal, whose bits are exactly that count.
    const double units = std::nearbyint(std::ldexp(a, mantissaBits - minExponent));
    return sign | uint16_t(units);
  }
  int e = 0;
  std::frexp(a, &e);
  int exponent = e - 1;  // a in [2^exponent, 2^(exponent+1))
  double significand = std::nearbyint(std::ldexp(a, mantissaBits - exponent));
  if (significand == std::ldexp(1.0, mantissaBits + 1)) {
    significand /= 2;
    ++exponent;
  }
  if (exponent + bias >= (1 << exponentBits) - 1) return sign | inf;
  return sign | uint16_t(((exponent + bias) << mantissaBits) |
                         (uint32_t(significand) - (1u << mantissaBits)));
}

uint16_t refDoubleToHalf(double x) { return refRound(x, 10, 15, 5); }
uint16_t refDoubleToBf16(double x) { return refRound(x, 7, 127, 8); }

// E4M3 "satfinite": |x| >= 448 (infinity included) is +-448; below that, round as a format with
// one more exponent bit would (so that exponent 15 is not taken for infinity) and keep the low
// 7 bits, which are then E4M3's exponent and mantissa.
uint8_t refDoubleToE4m3(double x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  if (std::fabs(x) >= 448.0) return sign | 0x7e;
  return sign | uint8_t(refRound(std::fabs(x), 3, 7, 5) & 0x7f);
}
uint8_t refDoubleToE5m2(double x) { return uint8_t(refRound(x, 2, 15, 5)); }

bool isHalfNan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
bool isBf16Nan(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f); }
bool isE4m3Nan(uint8_t b) { return (b & 0x7f) == 0x7f; }
bool isE5m2Nan(uint8_t b) { return (b & 0x7c) == 0x7c && (b & 0x3); }

// ---- reference reductions --------------------------------------------------------------------

template <typename T>
T refInt(T a, T b, chorusRedOp_t op) {
  // Arithmetic modulo 2^64, then truncated: the low bits of a sum or product depend only on the
  // low bits of the operands, so this is the wrapped result of any narrower type.
  const uint64_t ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
  switch (op) {
    case chorusSum: return static_cast<T>(ua + ub);
    case chorusProd: return static_cast<T>(ua * ub);
    case chorusMax: return a > b ? a : b;
    default: return a < b ? a : b;
  }
}

// NaN in, NaN out; max/min return b when a and b compare equal.
double refFloat(double a, double b, chorusRedOp_t op) {
  if (op == chorusMax || op == chorusMin) {
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::quiet_NaN();
    if (op == chorusMax) return a > b ? a : b;
    return a < b ? a : b;
  }
  return op == chorusSum ? a + b : a * b;
}

template <typename T>
T loadAs(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string hex(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

template <typename T>
std::string checkInt(const uint8_t* pa, const uint8_t* pb, const uint8_t* pr, chorusRedOp_t op) {
  const T want = refInt(loadAs<T>(pa), loadAs<T>(pb), op);
  const T got = loadAs<T>(pr);
  if (want == got) return {};
  return "want " + std::to_string(want) + " got " + std::to_string(got);
}

// For float and double: bits must match, except that any NaN is a right answer to a NaN.
template <typename T>
std::string checkFloat(const uint8_t* pa, const uint8_t* pb, const uint8_t* pr, chorusRedOp_t op) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const T a = loadAs<T>(pa), b = loadAs<T>(pb), got = loadAs<T>(pr);
  const T want = static_cast<T>(refFloat(a, b, op));
  if (std::isnan(want) ? std::isnan(got) : std::bit_cast<Bits>(want) == std::bit_cast<Bits>(got)) return {};
  return "a " + hex(std::bit_cast<Bits>(a)) + " b " + hex(std::bit_cast<Bits>(b)) + " want " +
         hex(std::bit_cast<Bits>(want)) + " got " + hex(std::bit_cast<Bits>(got));
}

template <bool kHalf>
std::string checkNarrow(const uint8_t* pa, const uint8_t* pb, const uint8_t* pr, chorusRedOp_t op) {
  const uint16_t a = loadAs<uint16_t>(pa), b = loadAs<uint16_t>(pb), got = loadAs<uint16_t>(pr);
  const double exact = kHalf ? refFloat(refHalfToDouble(a), refHalfToDouble(b), op)
                             : refFloat(refBf16ToDouble(a), refBf16ToDouble(b), op);
  bool ok;
  uint16_t want = 0;
  if (std::isnan(exact)) {
    // Quiet NaN required.
    ok = kHalf ? (isHalfNan(got) && (got & 0x200)) : (isBf16Nan(got) && (got & 0x40));
  } else {
    want = kHalf ? refDoubleToHalf(exact) : refDoubleToBf16(exact);
    ok = want == got;
  }
  if (ok) return {};
  return "a " + hex(a) + " b " + hex(b) + " want " + (std::isnan(exact) ? "quiet NaN" : hex(want)) +
         " got " + hex(got);
}

template <bool kE4m3>
std::string checkFp8(const uint8_t* pa, const uint8_t* pb, const uint8_t* pr, chorusRedOp_t op) {
  const uint8_t a = *pa, b = *pb, got = *pr;
  const double exact = kE4m3 ? refFloat(refE4m3ToDouble(a), refE4m3ToDouble(b), op)
                             : refFloat(refE5m2ToDouble(a), refE5m2ToDouble(b), op);
  bool ok;
  uint8_t want = 0;
  if (std::isnan(exact)) {
    ok = kE4m3 ? isE4m3Nan(got) : (isE5m2Nan(got) && (got & 0x2));  // E5M2: quiet NaN
  } else {
    want = kE4m3 ? refDoubleToE4m3(exact) : refDoubleToE5m2(exact);
    ok = want == got;
  }
  if (ok) return {};
  return "a " + hex(a) + " b " + hex(b) + " want " + (std::isnan(exact) ? "NaN" : hex(want)) + " got " + hex(got);
}

// "" when *pr is the right result of *pa op *pb for type t, else what went wrong.
std::string checkElement(chorusDataType_t t, chorusRedOp_t op, const uint8_t* pa, const uint8_t* pb,
                         const uint8_t* pr) {
  switch (t) {
    case chorusInt8: return checkInt<int8_t>(pa, pb, pr, op);
    case chorusUint8: return checkInt<uint8_t>(pa, pb, pr, op);
    case chorusInt32: return checkInt<int32_t>(pa, pb, pr, op);
    case chorusUint32: return checkInt<uint32_t>(pa, pb, pr, op);
    case chorusInt64: return checkInt<int64_t>(pa, pb, pr, op);
    case chorusUint64: return checkInt<uint64_t>(pa, pb, pr, op);
    case chorusFloat16: return checkNarrow<true>(pa, pb, pr, op);
    case chorusFloat32: return checkFloat<float>(pa, pb, pr, op);
    case chorusFloat64: return checkFloat<double>(pa, pb, pr, op);
    case chorusBfloat16: return checkNarrow<false>(pa, pb, pr, op);
    case chorusFloat8e4m3: return checkFp8<true>(pa, pb, pr, op);
    case chorusFloat8e5m2: return checkFp8<false>(pa, pb, pr, op);
    default: return "bad type";
  }
}

// ---- random inputs -------------------------------------------------------------------------

// Values that stress each type: extremes, signed zeros, infinities, NaNs (quiet and signaling),
// subnormals, rounding ties. Stored as raw bits of the type's width.
std::vector<uint64_t> specialBits(chorusDataType_t t) {
  switch (t) {
    case chorusInt8:
    case chorusUint8: return {0, 1, 0x7f, 0x80, 0xff, 0x81, 0x10};
    case chorusInt32:
    case chorusUint32: return {0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000, 0xffff};
    case chorusInt64:
    case chorusUint64:
      return {0, 1, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff, 0x100000000};
    case chorusFloat16:
      return {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe55, 0x0001, 0x8001, 0x03ff, 0x0400,
              0x7bff, 0xfbff, 0x3c00, 0x3c01, 0x1000, 0x3800, 0x0002, 0x0003};
    case chorusBfloat16:
      return {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0x0001, 0x007f, 0x0080, 0x7f7f,
              0xff7f, 0x3f80, 0x3f81, 0x3b80, 0x3f00};
    case chorusFloat32:
      return {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0x00000001,
              0x007fffff, 0x00800000, 0x7f7fffff, 0x3f800000, 0x33800000, 0x3f800001};
    case chorusFloat64:
      return {0x0, 0x8000000000000000, 0x7ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000,
              0x7ff0000000000001, 0x1, 0x0010000000000000, 0x7fefffffffffffff, 0x3ff0000000000000};
    case chorusFloat8e4m3: return {0x00, 0x80, 0x7f, 0xff, 0x7e, 0xfe, 0x01, 0x81, 0x07, 0x08, 0x38, 0x39, 0x77, 0x3f};
    case chorusFloat8e5m2: return {0x00, 0x80, 0x7c, 0xfc, 0x7e, 0x7d, 0xfd, 0x01, 0x03, 0x04, 0x7b, 0xfb, 0x3c, 0x3d};
    default: return {};
  }
}

// Random elements: raw random bits, one in eight a special value, and for the float types also
// "ordinary" numbers of moderate magnitude, so sums and products round rather than overflow.
std::vector<uint8_t> randomInput(chorusDataType_t t, size_t count, std::mt19937_64& rng) {
  const size_t size = dataTypeSize(t);
  const std::vector<uint64_t> specials = specialBits(t);
  std::vector<uint8_t> out(count * size);
  std::uniform_real_distribution<double> mantissa(1.0, 2.0);
  for (size_t i = 0; i < count; ++i) {
    uint64_t bits = rng();
    const unsigned pick = bits & 7;
    bits >>= 3;
    if (pick == 0) {
      bits = specials[bits % specials.size()];
    } else if (pick <= 4 && (t == chorusFloat32 || t == chorusFloat64)) {
      const double v = std::ldexp(mantissa(rng), int(bits % 41) - 20) * ((bits >> 8) & 1 ? -1 : 1);
      if (t == chorusFloat32) {
        bits = std::bit_cast<uint32_t>(static_cast<float>(v));
      } else {
        bits = std::bit_cast<uint64_t>(v);
      }
    }
    std::memcpy(out.data() + i * size, &bits, size);  // little-endian: the low bytes
  }
  return out;
}

// ---- running a kernel ------------------------------------------------------------------------

enum class Placement { kApart, kDstIsA, kDstIsB, kSameAB, kAll };

// Runs the (type, op) kernel of isa on count random elements placed as asked, and checks every
// element against the reference and the bytes around the output against overruns.
void runAndCheck(ReduceIsa isa, chorusDataType_t t, chorusRedOp_t op, size_t count, Placement placement,
                 uint64_t seed) {
  SCOPED_TRACE(std::string(reduceIsaName(isa)) + " " + dataTypeName(t) + " " + redOpName(op) +
               " count " + std::to_string(count) + " placement " + std::to_string(int(placement)));
  std::mt19937_64 rng(seed);
  const size_t size = dataTypeSize(t);
  const std::vector<uint8_t> a = randomInput(t, count, rng);
  const std::vector<uint8_t> b = placement == Placement::kSameAB || placement == Placement::kAll
                                     ? a
                                     : randomInput(t, count, rng);
  constexpr size_t kGuard = 64;  // bytes on each side of every buffer
  constexpr uint8_t kGuardByte = 0xa5;
  auto guarded = [&](const std::vector<uint8_t>& init) {
    std::vector<uint8_t> buf(init.size() + 2 * kGuard, kGuardByte);
    std::copy(init.begin(), init.end(), buf.begin() + kGuard);
    return buf;
  };
  std::vector<uint8_t> bufA = guarded(a), bufB = guarded(b), bufD = guarded(std::vector<uint8_t>(count * size, 0x5a));
  uint8_t* pa = bufA.data() + kGuard;
  uint8_t* pb = bufB.data() + kGuard;
  uint8_t* pd = bufD.data() + kGuard;
  std::vector<uint8_t>* out = &bufD;
  const ReduceFn fn = reduceFunctionForIsa(t, op, isa);
  switch (placement) {
    case Placement::kApart: fn(pd, pa, pb, count); break;
    case Placement::kDstIsA: fn(pa, pa, pb, count); out = &bufA; break;
    case Placement::kDstIsB: fn(pb, pa, pb, count); out = &bufB; break;
    case Placement::kSameAB: fn(pd, pa, pa, count); break;
    case Placement::kAll: fn(pa, pa, pa, count); out = &bufA; break;
  }
  const uint8_t* result = out->data() + kGuard;
  int failures = 0;
  for (size_t i = 0; i < count && failures < 5; ++i) {
    const std::string why = checkElement(t, op, a.data() + i * size, b.data() + i * size, result + i * size);
    if (!why.empty()) {
      ADD_FAILURE() << "element " << i << ": " << why;
      ++failures;
    }
  }
  for (const std::vector<uint8_t>* buf : {&bufA, &bufB, &bufD}) {
    for (size_t i = 0; i < kGuard; ++i) {
      ASSERT_EQ((*buf)[i], kGuardByte) << "write before the buffer";
      ASSERT_EQ((*buf)[buf->size() - 1 - i], kGuardByte) << "write after the buffer";
    }
  }
  // The inputs that are not the output stay as they were.
  if (out != &bufA) {
    EXPECT_TRUE(std::equal(a.begin(), a.end(), pa)) << "a was modified";
  }
  if (out != &bufB) {
    EXPECT_TRUE(std::equal(b.begin(), b.end(), pb)) << "b was modified";
  }
}

class ReduceKernelTest : public ::testing::TestWithParam<ReduceIsa> {
 protected:
  void SetUp() override {
    if (!reduceIsaSupported(GetParam())) GTEST_SKIP() << reduceIsaName(GetParam()) << " not supported here";
  }
};

INSTANTIATE_TEST_SUITE_P(Isa, ReduceKernelTest, ::testing::Values(ReduceIsa::kPortable, ReduceIsa::kAvx2),
                         [](const auto& info) { return std::string(reduceIsaName(info.param)); });

TEST_P(ReduceKernelTest, EveryTypeAndOpMatchesReferenceAtManyLengths) {
  // Lengths around the 64-byte blocks and 8-lane F16C steps of every type, plus long odd ones.
  const size_t counts[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 1000, 4099};
  uint64_t seed = 1;
  for (chorusDataType_t t : kAllTypes) {
    for (chorusRedOp_t op : kKernelOps) {
      for (size_t count : counts) runAndCheck(GetParam(), t, op, count, Placement::kApart, seed++);
    }
  }
}

// A long odd length: sum for every type, every op for the hot float types. (Short sweeps, as
// under sanitizers: a tenth of it, still thousands of 64-byte blocks and an odd tail.)
TEST_P(ReduceKernelTest, LongOddLength) {
  uint64_t seed = 1000;
  const size_t count = test::shortSweeps() ? 100003 : 1000003;
  for (chorusDataType_t t : kAllTypes) {
    const bool hot = t == chorusFloat32 || t == chorusFloat16 || t == chorusBfloat16;
    for (chorusRedOp_t op : kKernelOps) {
      if (hot || op == chorusSum) runAndCheck(GetParam(), t, op, count, Placement::kApart, seed++);
    }
  }
}

TEST_P(ReduceKernelTest, OutputMayAliasEitherInput) {
  const size_t counts[] = {1, 5, 33, 64, 65, 1001};
  const Placement placements[] = {Placement::kDstIsA, Placement::kDstIsB, Placement::kSameAB, Placement::kAll};
  uint64_t seed = 2000;
  for (chorusDataType_t t : kAllTypes) {
    for (chorusRedOp_t op : kKernelOps) {
      for (Placement p : placements) {
        for (size_t count : counts) runAndCheck(GetParam(), t, op, count, p, seed++);
      }
    }
  }
}

TEST_P(ReduceKernelTest, CountZeroTouchesNothing) {
  for (chorusDataType_t t : kAllTypes) {
    for (chorusRedOp_t op : kKernelOps) reduceFunctionForIsa(t, op, GetParam())(nullptr, nullptr, nullptr, 0);
  }
}

TEST_P(ReduceKernelTest, IntegerSumAndProdWrapAround) {
  const ReduceIsa isa = GetParam();
  {
    int32_t a[] = {INT32_MAX, INT32_MIN, -1, INT32_MAX};
    int32_t b[] = {1, -1, INT32_MIN, INT32_MAX};
    int32_t r[4];
    reduceFunctionForIsa(chorusInt32, chorusSum, isa)(r, a, b, 4);
    EXPECT_EQ(r[0], INT32_MIN);
    EXPECT_EQ(r[1], INT32_MAX);
    EXPECT_EQ(r[2], INT32_MAX);
    EXPECT_EQ(r[3], -2);
    reduceFunctionForIsa(chorusInt32, chorusProd, isa)(r, a, b, 4);
    EXPECT_EQ(r[0], INT32_MAX);
    EXPECT_EQ(r[1], INT32_MIN);  // INT32_MIN * -1 wraps to itself
    EXPECT_EQ(r[2], INT32_MIN);
    EXPECT_EQ(r[3], 1);
  }
  {
    int8_t a[] = {127, -128, 100, -128};
    int8_t b[] = {1, -1, 100, -128};
    int8_t r[4];
    reduceFunctionForIsa(chorusInt8, chorusSum, isa)(r, a, b, 4);
    EXPECT_EQ(r[0], -128);
    EXPECT_EQ(r[1], 127);
    EXPECT_EQ(r[2], -56);
    EXPECT_EQ(r[3], 0);
    reduceFunctionForIsa(chorusInt8, chorusProd, isa)(r, a, b, 4);
    EXPECT_EQ(r[0], 127);
    EXPECT_EQ(r[1], -128);
    EXPECT_EQ(r[2], 16);  // 10000 mod 256
    EXPECT_EQ(r[3], 0);
  }
  {
    int64_t a[] = {INT64_MAX, INT64_MIN};
    int64_t b[] = {1, INT64_MIN};
    int64_t r[2];
    reduceFunctionForIsa(chorusInt64, chorusSum, isa)(r, a, b, 2);
    EXPECT_EQ(r[0], INT64_MIN);
    EXPECT_EQ(r[1], 0);
    uint64_t ua[] = {UINT64_MAX, 1ull << 63};
    uint64_t ub[] = {2, 2};
    uint64_t ur[2];
    reduceFunctionForIsa(chorusUint64, chorusSum, isa)(ur, ua, ub, 2);
    EXPECT_EQ(ur[0], 1u);
    reduceFunctionForIsa(chorusUint64, chorusProd, isa)(ur, ua, ub, 2);
    EXPECT_EQ(ur[0], UINT64_MAX - 1);
    EXPECT_EQ(ur[1], 0u);
  }
}

TEST_P(ReduceKernelTest, FloatMaxMinPropagateNaNAndReturnBOnTies) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float as[] = {nan, 1.0f, nan, 0.0f, -0.0f, -INFINITY};
  const float bs[] = {1.0f, nan, nan, -0.0f, 0.0f, INFINITY};
  constexpr size_t kCount = 40;  // past one 16-float block, so both the vector body and the tail
  for (chorusRedOp_t op : {chorusMax, chorusMin}) {
    for (Placement placement : {Placement::kApart, Placement::kDstIsA, Placement::kDstIsB}) {
      std::vector<float> a(kCount), b(kCount), d(kCount);
      for (size_t i = 0; i < kCount; ++i) {
        a[i] = as[i % 6];
        b[i] = bs[i % 6];
      }
      float* out = placement == Placement::kDstIsA ? a.data() : placement == Placement::kDstIsB ? b.data() : d.data();
      reduceFunctionForIsa(chorusFloat32, op, GetParam())(out, a.data(), b.data(), kCount);
      for (size_t i = 0; i < kCount; ++i) {
        SCOPED_TRACE(std::string(redOpName(op)) + " placement " + std::to_string(int(placement)) + " element " +
                     std::to_string(i));
        switch (i % 6) {
          case 0:
          case 1:
          case 2: EXPECT_TRUE(std::isnan(out[i])); break;
          case 3: EXPECT_TRUE(out[i] == 0.0f && std::signbit(out[i])); break;   // b = -0
          case 4: EXPECT_TRUE(out[i] == 0.0f && !std::signbit(out[i])); break;  // b = +0
          default: EXPECT_EQ(out[i], op == chorusMax ? INFINITY : -INFINITY);
        }
      }
    }
  }
}

// Half-precision rounding at the cases that matter, through the kernels (so through F16C on the
// AVX2 path): ties to even, overflow to infinity, subnormal results, NaN and infinity arithmetic.
TEST_P(ReduceKernelTest, HalfRoundingCases) {
  struct Case {
    chorusRedOp_t op;
    uint16_t a, b, want;
  };
  const Case cases[] = {
      {chorusSum, 0x3c00, 0x1000, 0x3c00},   // 1 + 2^-11: tie, stays on even 1.0
      {chorusSum, 0x3c01, 0x1000, 0x3c02},   // 1+ulp + half ulp: tie, up to even
      {chorusSum, 0x3c00, 0x1001, 0x3c01},   // just above the tie
      {chorusSum, 0x7bff, 0x4c00, 0x7c00},   // 65504 + 16 = 65520: tie, rounds to infinity
      {chorusSum, 0x7bff, 0x4bff, 0x7bff},   // just below: stays finite
      {chorusSum, 0x0001, 0x0001, 0x0002},   // subnormal arithmetic is exact
      {chorusSum, 0x03ff, 0x0001, 0x0400},   // largest subnormal + smallest = smallest normal
      {chorusSum, 0x0001, 0x8001, 0x0000},   // x + -x = +0
      {chorusSum, 0x8000, 0x8000, 0x8000},   // -0 + -0 = -0
      {chorusProd, 0x0001, 0x3800, 0x0000},  // 2^-24 * 0.5 = 2^-25: tie, to even 0
      {chorusProd, 0x0003, 0x3800, 0x0002},  // 1.5 * 2^-24: tie, to even 2
      {chorusProd, 0x0001, 0x3a00, 0x0001},  // 0.75 * 2^-24: rounds up to 2^-24
      {chorusProd, 0x8001, 0x3400, 0x8000},  // -2^-26 underflows to -0
      {chorusProd, 0x7bff, 0x4000, 0x7c00},  // overflow
      {chorusSum, 0x7c00, 0xfc00, 0x7e00},   // inf - inf = NaN (checked as NaN below)
      {chorusProd, 0x7c00, 0x0000, 0x7e00},  // inf * 0 = NaN
      {chorusSum, 0x7c00, 0x7bff, 0x7c00},   // inf + finite = inf
      {chorusMax, 0x7c01, 0x3c00, 0x7e01},   // signaling NaN comes out quiet, payload kept
      {chorusMin, 0x3c00, 0xfd00, 0xff00},   // NaN in b
  };
  // Repeated so that each case also lands in the 8-wide F16C body, not only in the tail.
  constexpr size_t kCopies = 9;
  for (const Case& c : cases) {
    std::vector<uint16_t> a(kCopies, c.a), b(kCopies, c.b), r(kCopies);
    reduceFunctionForIsa(chorusFloat16, c.op, GetParam())(r.data(), a.data(), b.data(), kCopies);
    for (size_t i = 0; i < kCopies; ++i) {
      if (isHalfNan(c.want) && c.op != chorusMax && c.op != chorusMin) {
        EXPECT_TRUE(isHalfNan(r[i]) && (r[i] & 0x200)) << hex(c.a) << " " << redOpName(c.op) << " " << hex(c.b);
      } else {
        EXPECT_EQ(r[i], c.want) << hex(c.a) << " " << redOpName(c.op) << " " << hex(c.b) << " got " << hex(r[i]);
      }
    }
  }
}

// Every fp16 and bf16 bit pattern through the kernels, against the reference, with partners
// that keep the value (x + 0, max(x, -inf), min(x, +inf)) and that round (x * ~0.1, x + 1,
// x * smallest subnormal).
TEST_P(ReduceKernelTest, AllHalfAndBf16PatternsThroughKernels) {
  std::vector<uint16_t> a(65536), b(65536), r(65536);
  for (uint32_t i = 0; i < 65536; ++i) a[i] = uint16_t(i);
  struct Partner {
    chorusRedOp_t op;
    uint16_t half, bf16;
  };
  const Partner partners[] = {{chorusSum, 0x0000, 0x0000}, {chorusMax, 0xfc00, 0xff80}, {chorusMin, 0x7c00, 0x7f80},
                              {chorusProd, 0x2e66, 0x3dcd}, {chorusSum, 0x3c00, 0x3f80}, {chorusProd, 0x0001, 0x0001}};
  for (chorusDataType_t t : {chorusFloat16, chorusBfloat16}) {
    const bool isHalf = t == chorusFloat16;
    for (const Partner& p : partners) {
      const uint16_t partner = isHalf ? p.half : p.bf16;
      std::fill(b.begin(), b.end(), partner);
      reduceFunctionForIsa(t, p.op, GetParam())(r.data(), a.data(), b.data(), a.size());
      int failures = 0;
      for (size_t i = 0; i < a.size() && failures < 5; ++i) {
        const std::string why = checkElement(t, p.op, reinterpret_cast<const uint8_t*>(&a[i]),
                                             reinterpret_cast<const uint8_t*>(&b[i]),
                                             reinterpret_cast<const uint8_t*>(&r[i]));
        // When the partner keeps the value, a NaN keeps its payload and only gains the quiet bit.
        const bool nan = isHalf ? isHalfNan(a[i]) : isBf16Nan(a[i]);
        const bool payloadKept = p.op != chorusMax || !nan || r[i] == (a[i] | (isHalf ? 0x200 : 0x40));
        if (!why.empty() || !payloadKept) {
          ADD_FAILURE() << dataTypeName(t) << " " << redOpName(p.op) << " " << hex(partner) << ": " << why
                        << " a " << hex(a[i]) << " got " << hex(r[i]);
          ++failures;
        }
      }
    }
  }
}

// Every pair of fp8 codes (256 x 256) under every op, through the kernels, against the reference:
// rounding ties, subnormals, E4M3 saturation, E5M2 overflow to infinity and NaN all occur.
TEST_P(ReduceKernelTest, AllFp8PairsThroughKernels) {
  std::vector<uint8_t> a(65536), b(65536), r(65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    a[i] = uint8_t(i);
    b[i] = uint8_t(i >> 8);
  }
  for (chorusDataType_t t : {chorusFloat8e4m3, chorusFloat8e5m2}) {
    for (chorusRedOp_t op : kKernelOps) {
      reduceFunctionForIsa(t, op, GetParam())(r.data(), a.data(), b.data(), a.size());
      int failures = 0;
      for (size_t i = 0; i < a.size() && failures < 5; ++i) {
        const std::string why = checkElement(t, op, &a[i], &b[i], &r[i]);
        if (!why.empty()) {
          ADD_FAILURE() << dataTypeName(t) << " " << redOpName(op) << ": " << why;
          ++failures;
        }
      }
    }
  }
}

TEST_P(ReduceKernelTest, Fp8SaturationAndOverflow) {
  // E4M3: 448 + 448, 448 * 2 and -448 - 448 saturate; E5M2: 57344 + 57344 is infinity.
  const uint8_t e4a[] = {0x7e, 0x7e, 0xfe, 0x77, 0x7e};
  const uint8_t e4b[] = {0x7e, 0x40, 0xfe, 0x01, 0xfe};  // 448, 2, -448, 2^-9, -448
  uint8_t r[5];
  reduceFunctionForIsa(chorusFloat8e4m3, chorusSum, GetParam())(r, e4a, e4b, 5);
  EXPECT_EQ(r[0], 0x7e);
  EXPECT_EQ(r[2], 0xfe);
  EXPECT_EQ(r[3], 0x77);  // 240 + 2^-9 rounds back to 240
  EXPECT_EQ(r[4], 0x00);  // 448 - 448 = +0
  reduceFunctionForIsa(chorusFloat8e4m3, chorusProd, GetParam())(r, e4a, e4b, 5);
  EXPECT_EQ(r[1], 0x7e);
  const uint8_t e5a[] = {0x7b, 0xfb, 0x7c};
  const uint8_t e5b[] = {0x7b, 0xfb, 0xfc};  // inf + -inf = NaN
  reduceFunctionForIsa(chorusFloat8e5m2, chorusSum, GetParam())(r, e5a, e5b, 3);
  EXPECT_EQ(r[0], 0x7c);
  EXPECT_EQ(r[1], 0xfc);
  EXPECT_TRUE(isE5m2Nan(r[2])) << hex(r[2]);
}

// ---- the two implementations agree bit for bit ------------------------------------------------

TEST(ReduceIsaTest, Avx2MatchesPortableBitForBit) {
  if (!reduceIsaSupported(ReduceIsa::kAvx2)) GTEST_SKIP() << "no AVX2+F16C here";
  constexpr size_t kCount = 100003;
  uint64_t seed = 3000;
  for (chorusDataType_t t : kAllTypes) {
    const size_t size = dataTypeSize(t);
    std::mt19937_64 rng(seed++);
    const std::vector<uint8_t> a = randomInput(t, kCount, rng), b = randomInput(t, kCount, rng);
    for (chorusRedOp_t op : kKernelOps) {
      std::vector<uint8_t> portable(a.size()), avx2(a.size());
      reduceFunctionForIsa(t, op, ReduceIsa::kPortable)(portable.data(), a.data(), b.data(), kCount);
      reduceFunctionForIsa(t, op, ReduceIsa::kAvx2)(avx2.data(), a.data(), b.data(), kCount);
      int failures = 0;
      for (size_t i = 0; i < kCount && failures < 5; ++i) {
        if (std::memcmp(&portable[i * size], &avx2[i * size], size) == 0) continue;
        uint64_t pa = 0, pb = 0;
        std::memcpy(&pa, &a[i * size], size);
        std::memcpy(&pb, &b[i * size], size);
        const auto isNan = [&](uint64_t bits) {
          switch (t) {
            case chorusFloat16: return isHalfNan(uint16_t(bits));
            case chorusBfloat16: return isBf16Nan(uint16_t(bits));
            case chorusFloat32: return std::isnan(std::bit_cast<float>(uint32_t(bits)));
            case chorusFloat64: return std::isnan(std::bit_cast<double>(bits));
            case chorusFloat8e4m3: return isE4m3Nan(uint8_t(bits));
            case chorusFloat8e5m2: return isE5m2Nan(uint8_t(bits));
            default: return false;
          }
        };
        // Documented exception: which payload a NaN result carries when both inputs are NaN.
        if (isNan(pa) && isNan(pb)) continue;
        ADD_FAILURE() << dataTypeName(t) << " " << redOpName(op) << " element " << i << ": a " << hex(pa)
                      << " b " << hex(pb);
        ++failures;
      }
    }
  }
}

// ---- conversions -------------------------------------------------------------------------------

TEST(ReduceHalfTest, AllHalfPatternsRoundTripThroughFloat) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = uint16_t(i);
    const float f = halfToFloat(h);
    const double want = refHalfToDouble(h);
    if (isHalfNan(h)) {
      // Quiet NaN, sign and payload kept in the top mantissa bits.
      const uint32_t bits = std::bit_cast<uint32_t>(f);
      ASSERT_EQ(bits, (uint32_t(h & 0x8000) << 16) | 0x7fc00000u | (uint32_t(h & 0x3ff) << 13)) << hex(h);
      ASSERT_EQ(floatToHalf(f), h | 0x200) << hex(h);
    } else {
      ASSERT_EQ(double(f), want) << hex(h);
      ASSERT_EQ(std::signbit(f), bool(h & 0x8000)) << hex(h);
      ASSERT_EQ(floatToHalf(f), h) << hex(h);
    }
  }
}

TEST(ReduceHalfTest, FloatToHalfRoundsToNearestEven) {
  EXPECT_EQ(floatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(floatToHalf(1.0f + 0x1p-11f), 0x3c00);          // tie: to even
  EXPECT_EQ(floatToHalf(1.0f + 3 * 0x1p-11f), 0x3c02);      // tie: to even, upwards
  EXPECT_EQ(floatToHalf(1.0f + 0x1p-11f + 0x1p-23f), 0x3c01);  // just above the tie
  EXPECT_EQ(floatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(floatToHalf(65519.996f), 0x7bff);
  EXPECT_EQ(floatToHalf(65520.0f), 0x7c00);                 // tie above the largest: infinity
  EXPECT_EQ(floatToHalf(1e10f), 0x7c00);
  EXPECT_EQ(floatToHalf(-1e10f), 0xfc00);
  EXPECT_EQ(floatToHalf(INFINITY), 0x7c00);
  EXPECT_EQ(floatToHalf(0x1p-24f), 0x0001);                 // smallest subnormal
  EXPECT_EQ(floatToHalf(0x1p-25f), 0x0000);                 // tie: to even zero
  EXPECT_EQ(floatToHalf(0x1p-25f + 0x1p-40f), 0x0001);
  EXPECT_EQ(floatToHalf(3 * 0x1p-25f), 0x0002);             // tie: to even
  EXPECT_EQ(floatToHalf(0x1p-14f - 0x1p-25f), 0x0400);      // tie between 0x3ff and 0x400
  EXPECT_EQ(floatToHalf(-0x1p-30f), 0x8000);                // underflow keeps the sign
  EXPECT_EQ(floatToHalf(std::bit_cast<float>(0x00000001u)), 0x0000);  // float subnormal
  EXPECT_EQ(floatToHalf(std::bit_cast<float>(0x7fa55555u)), 0x7f2a);  // NaN: quiet, payload top
  EXPECT_EQ(floatToHalf(std::bit_cast<float>(0xff800001u)), 0xfe00);
}

// Random floats and floats at every rounding boundary of the half range, against the reference.
TEST(ReduceHalfTest, FloatToHalfMatchesReference) {
  std::mt19937_64 rng(42);
  auto check = [](uint32_t bits) {
    const float f = std::bit_cast<float>(bits);
    if (std::isnan(f)) return;
    ASSERT_EQ(floatToHalf(f), refDoubleToHalf(f)) << hex(bits);
  };
  for (int i = 0; i < 2000000; ++i) check(uint32_t(rng()));
  // Every exponent that reaches the half range, with the 13 dropped bits at and around the
  // halfway point and with random kept bits.
  const uint32_t lows[] = {0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x0800, 0x17ff};
  for (uint32_t exponent = 90; exponent < 146; ++exponent) {
    for (int k = 0; k < 2000; ++k) {
      const uint32_t kept = uint32_t(rng()) & 0x3ff;
      for (uint32_t low : lows) {
        for (uint32_t sign : {0u, 0x80000000u}) check(sign | (exponent << 23) | (kept << 13) | low);
      }
    }
  }
}

TEST(ReduceBf16Test, AllPatternsRoundTripAndRoundingCases) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t b = uint16_t(i);
    const float f = bfloat16ToFloat(b);
    if (isBf16Nan(b)) {
      ASSERT_TRUE(std::isnan(f));
      ASSERT_EQ(floatToBfloat16(f), b | 0x40) << hex(b);  // quiet, payload kept
    } else {
      ASSERT_EQ(double(f), refBf16ToDouble(b)) << hex(b);
      ASSERT_EQ(floatToBfloat16(f), b) << hex(b);
    }
  }
  EXPECT_EQ(floatToBfloat16(1.0f + 0x1p-8f), 0x3f80);              // tie: to even
  EXPECT_EQ(floatToBfloat16(1.0f + 3 * 0x1p-8f), 0x3f82);          // tie: to even, upwards
  EXPECT_EQ(floatToBfloat16(1.0f + 0x1p-8f + 0x1p-23f), 0x3f81);   // above the tie
  EXPECT_EQ(floatToBfloat16(std::bit_cast<float>(0x7f7fffffu)), 0x7f80);  // FLT_MAX: infinity
  EXPECT_EQ(floatToBfloat16(std::bit_cast<float>(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(floatToBfloat16(std::bit_cast<float>(0xff7f8000u)), 0xff80);  // tie, odd: -infinity
  EXPECT_EQ(floatToBfloat16(std::bit_cast<float>(0x00008000u)), 0x0000);  // subnormal tie: even
  EXPECT_EQ(floatToBfloat16(std::bit_cast<float>(0x00018000u)), 0x0002);
  EXPECT_EQ(floatToBfloat16(std::bit_cast<float>(0x7f800001u)), 0x7fc0);  // signaling NaN: quiet
  EXPECT_EQ(floatToBfloat16(std::bit_cast<float>(0xffa12345u)), 0xffe1);
  EXPECT_EQ(floatToBfloat16(-INFINITY), 0xff80);

  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    const uint32_t bits = uint32_t(rng());
    const float f = std::bit_cast<float>(bits);
    if (!std::isnan(f)) {
      ASSERT_EQ(floatToBfloat16(f), refDoubleToBf16(f)) << hex(bits);
    }
  }
}

TEST(ReduceFp8Test, AllPatternsRoundTripThroughFloat) {
  for (uint32_t i = 0; i < 256; ++i) {
    const uint8_t c = uint8_t(i);
    const float e4 = fp8e4m3ToFloat(c);
    if (isE4m3Nan(c)) {
      ASSERT_TRUE(std::isnan(e4)) << hex(c);
      ASSERT_EQ(std::signbit(e4), bool(c & 0x80)) << hex(c);
      ASSERT_EQ(floatToFp8e4m3(e4), c) << hex(c);  // one NaN per sign: comes back as itself
    } else {
      ASSERT_EQ(double(e4), refE4m3ToDouble(c)) << hex(c);
      ASSERT_EQ(std::signbit(e4), bool(c & 0x80)) << hex(c);
      ASSERT_EQ(floatToFp8e4m3(e4), c) << hex(c);
    }
    const float e5 = fp8e5m2ToFloat(c);
    if (isE5m2Nan(c)) {
      // Quiet NaN, sign and payload kept, as fp16 does; back in E5M2 the quiet bit is set.
      ASSERT_EQ(std::bit_cast<uint32_t>(e5), (uint32_t(c & 0x80) << 24) | 0x7fc00000u | (uint32_t(c & 0x3) << 21)) << hex(c);
      ASSERT_EQ(floatToFp8e5m2(e5), c | 0x2) << hex(c);
    } else {
      ASSERT_EQ(double(e5), refE5m2ToDouble(c)) << hex(c);
      ASSERT_EQ(std::signbit(e5), bool(c & 0x80)) << hex(c);
      ASSERT_EQ(floatToFp8e5m2(e5), c) << hex(c);
      ASSERT_EQ(e5, halfToFloat(uint16_t(c << 8))) << hex(c);  // the top byte of fp16
    }
  }
  EXPECT_EQ(fp8e4m3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3ToFloat(0x01), 0x1p-9f);
  EXPECT_EQ(fp8e4m3ToFloat(0x08), 0x1p-6f);
  EXPECT_EQ(fp8e5m2ToFloat(0x7b), 57344.0f);
  EXPECT_EQ(fp8e5m2ToFloat(0x01), 0x1p-16f);
  EXPECT_TRUE(std::isinf(fp8e5m2ToFloat(0xfc)) && fp8e5m2ToFloat(0xfc) < 0);
}

TEST(ReduceFp8Test, E4m3RoundsToNearestEvenAndSaturates) {
  EXPECT_EQ(floatToFp8e4m3(1.0f), 0x38);
  EXPECT_EQ(floatToFp8e4m3(1.0f + 0x1p-4f), 0x38);              // tie: to even
  EXPECT_EQ(floatToFp8e4m3(1.0f + 3 * 0x1p-4f), 0x3a);          // tie: to even, upwards
  EXPECT_EQ(floatToFp8e4m3(1.0f + 0x1p-4f + 0x1p-20f), 0x39);   // just above the tie
  EXPECT_EQ(floatToFp8e4m3(17.0f), 0x58);                        // 16 | 18: tie to 16
  EXPECT_EQ(floatToFp8e4m3(448.0f), 0x7e);
  EXPECT_EQ(floatToFp8e4m3(464.0f), 0x7e);                       // tie above the largest
  EXPECT_EQ(floatToFp8e4m3(465.0f), 0x7e);                       // would round to 480: saturates
  EXPECT_EQ(floatToFp8e4m3(1e30f), 0x7e);
  EXPECT_EQ(floatToFp8e4m3(-1000.0f), 0xfe);
  EXPECT_EQ(floatToFp8e4m3(INFINITY), 0x7e);                     // satfinite: no infinity
  EXPECT_EQ(floatToFp8e4m3(-INFINITY), 0xfe);
  EXPECT_EQ(floatToFp8e4m3(0x1p-9f), 0x01);                      // smallest subnormal
  EXPECT_EQ(floatToFp8e4m3(0x1p-10f), 0x00);                     // tie: to even zero
  EXPECT_EQ(floatToFp8e4m3(0x1p-10f + 0x1p-30f), 0x01);
  EXPECT_EQ(floatToFp8e4m3(3 * 0x1p-10f), 0x02);                 // tie: to even
  EXPECT_EQ(floatToFp8e4m3(0x1p-6f - 0x1p-10f), 0x08);           // tie between 0x07 and 0x08
  EXPECT_EQ(floatToFp8e4m3(-0x1p-12f), 0x80);                    // underflow keeps the sign
  EXPECT_EQ(floatToFp8e4m3(-0.0f), 0x80);
  EXPECT_EQ(floatToFp8e4m3(std::bit_cast<float>(0x00000001u)), 0x00);  // float subnormal
  EXPECT_EQ(floatToFp8e4m3(NAN), 0x7f);
  EXPECT_EQ(floatToFp8e4m3(std::bit_cast<float>(0xff800001u)), 0xff);  // signaling, negative
}

TEST(ReduceFp8Test, E5m2RoundsToNearestEvenAndOverflowsToInfinity) {
  EXPECT_EQ(floatToFp8e5m2(1.0f), 0x3c);
  EXPECT_EQ(floatToFp8e5m2(1.0f + 0x1p-3f), 0x3c);             // tie: to even
  EXPECT_EQ(floatToFp8e5m2(1.0f + 3 * 0x1p-3f), 0x3e);         // tie: to even, upwards
  EXPECT_EQ(floatToFp8e5m2(1.0f + 0x1p-3f + 0x1p-20f), 0x3d);
  EXPECT_EQ(floatToFp8e5m2(9.0f), 0x48);                        // 8 | 10: tie to 8
  EXPECT_EQ(floatToFp8e5m2(57344.0f), 0x7b);
  EXPECT_EQ(floatToFp8e5m2(61439.0f), 0x7b);
  EXPECT_EQ(floatToFp8e5m2(61440.0f), 0x7c);                    // tie above the largest: infinity
  EXPECT_EQ(floatToFp8e5m2(-1e9f), 0xfc);
  EXPECT_EQ(floatToFp8e5m2(INFINITY), 0x7c);
  EXPECT_EQ(floatToFp8e5m2(0x1p-16f), 0x01);
  EXPECT_EQ(floatToFp8e5m2(0x1p-17f), 0x00);                    // tie: to even zero
  EXPECT_EQ(floatToFp8e5m2(3 * 0x1p-17f), 0x02);
  EXPECT_EQ(floatToFp8e5m2(0x1p-14f - 0x1p-17f), 0x04);         // tie between 0x03 and 0x04
  EXPECT_EQ(floatToFp8e5m2(-0x1p-20f), 0x80);
  EXPECT_EQ(floatToFp8e5m2(std::bit_cast<float>(0x7fc00000u)), 0x7e);  // quiet NaN
  EXPECT_EQ(floatToFp8e5m2(std::bit_cast<float>(0x7fa00000u)), 0x7f);  // signaling: quiet, payload bit kept
  EXPECT_EQ(floatToFp8e5m2(std::bit_cast<float>(0xff800001u)), 0xfe);
}

// Random floats and floats at every rounding boundary of both formats, against the reference.
TEST(ReduceFp8Test, ConversionsMatchReference) {
  auto check = [](uint32_t bits) {
    const float f = std::bit_cast<float>(bits);
    if (std::isnan(f)) return;
    ASSERT_EQ(floatToFp8e4m3(f), refDoubleToE4m3(f)) << hex(bits);
    ASSERT_EQ(floatToFp8e5m2(f), refDoubleToE5m2(f)) << hex(bits);
  };
  std::mt19937_64 rng(8);
  for (int i = 0; i < 1000000; ++i) check(uint32_t(rng()));
  // Every exponent that reaches either format, with the dropped bits at and around the halfway
  // point of the E5M2 (21 dropped bits) and E4M3 (20) grids, and random kept bits.
  const uint32_t lows[] = {0, 1, 0x7ffff, 0x80000, 0x80001, 0xfffff, 0x100000, 0x100001, 0x17ffff, 0x1fffff};
  for (uint32_t exponent = 95; exponent < 146; ++exponent) {
    for (int k = 0; k < 200; ++k) {
      const uint32_t kept = uint32_t(rng()) & 0x3;
      for (uint32_t low : lows) {
        for (uint32_t sign : {0u, 0x80000000u}) check(sign | (exponent << 23) | (kept << 21) | low);
      }
    }
  }
}

// ---- divideInPlace -------------------------------------------------------------------------------

TEST(ReduceDivideTest, IntegersTruncateTowardZero) {
  int32_t i32[] = {7, -7, 9, INT32_MIN, 0, INT32_MAX};
  divideInPlace(i32, 6, chorusInt32, 2);
  EXPECT_EQ(std::vector<int32_t>(i32, i32 + 6), (std::vector<int32_t>{3, -3, 4, INT32_MIN / 2, 0, INT32_MAX / 2}));
  int8_t i8[] = {-128, 127, -1, -3};
  divideInPlace(i8, 4, chorusInt8, 3);
  EXPECT_EQ(std::vector<int8_t>(i8, i8 + 4), (std::vector<int8_t>{-42, 42, 0, -1}));
  uint8_t u8[] = {255, 254, 1};
  divideInPlace(u8, 3, chorusUint8, 2);
  EXPECT_EQ(std::vector<uint8_t>(u8, u8 + 3), (std::vector<uint8_t>{127, 127, 0}));
  uint8_t big[] = {255};
  divideInPlace(big, 1, chorusUint8, 1000);  // divisor wider than the type
  EXPECT_EQ(big[0], 0);
  uint32_t u32[] = {UINT32_MAX};
  divideInPlace(u32, 1, chorusUint32, 5);
  EXPECT_EQ(u32[0], UINT32_MAX / 5);
  int64_t i64[] = {INT64_MIN, -15};
  divideInPlace(i64, 2, chorusInt64, 7);
  EXPECT_EQ(i64[0], INT64_MIN / 7);
  EXPECT_EQ(i64[1], -2);
  uint64_t u64[] = {UINT64_MAX};
  divideInPlace(u64, 1, chorusUint64, 3);
  EXPECT_EQ(u64[0], UINT64_MAX / 3);
}

TEST(ReduceDivideTest, FloatsUseTrueDivision) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> dist(-1e6, 1e6);
  std::vector<float> f(1003), f0;
  std::vector<double> d(1003), d0;
  for (size_t i = 0; i < f.size(); ++i) {
    f[i] = float(dist(rng));
    d[i] = dist(rng);
  }
  f[0] = 0.3f * 7;  // not a multiple of 7 in float: 1/7 multiplication would differ here or there
  f0 = f;
  d0 = d;
  divideInPlace(f.data(), f.size(), chorusFloat32, 7);
  divideInPlace(d.data(), d.size(), chorusFloat64, 7);
  for (size_t i = 0; i < f.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(f[i]), std::bit_cast<uint32_t>(f0[i] / 7.0f)) << i;
    ASSERT_EQ(std::bit_cast<uint64_t>(d[i]), std::bit_cast<uint64_t>(d0[i] / 7.0)) << i;
  }
  // Average of equal values is exact.
  float same[] = {0.1f * 3, 0.1f * 3, 0.1f * 3};
  divideInPlace(same, 3, chorusFloat32, 1);
  EXPECT_EQ(same[0], 0.1f * 3);
}

// A narrow float format as the references see it: every code, NaN test and quiet bit (a NaN
// divided keeps its payload and gains this bit), and the reference conversions.
struct NarrowRef {
  chorusDataType_t type;
  uint32_t codes;
  bool (*isNan)(uint32_t);
  uint32_t quietBit;
  double (*decode)(uint32_t);
  uint32_t (*encode)(double);
};
const NarrowRef kNarrowRefs[] = {
    {chorusFloat16, 65536, [](uint32_t x) { return isHalfNan(uint16_t(x)); }, 0x200,
     [](uint32_t x) { return refHalfToDouble(uint16_t(x)); }, [](double v) { return uint32_t(refDoubleToHalf(v)); }},
    {chorusBfloat16, 65536, [](uint32_t x) { return isBf16Nan(uint16_t(x)); }, 0x40,
     [](uint32_t x) { return refBf16ToDouble(uint16_t(x)); }, [](double v) { return uint32_t(refDoubleToBf16(v)); }},
    {chorusFloat8e4m3, 256, [](uint32_t x) { return isE4m3Nan(uint8_t(x)); }, 0,
     [](uint32_t x) { return refE4m3ToDouble(uint8_t(x)); }, [](double v) { return uint32_t(refDoubleToE4m3(v)); }},
    {chorusFloat8e5m2, 256, [](uint32_t x) { return isE5m2Nan(uint8_t(x)); }, 0x2,
     [](uint32_t x) { return refE5m2ToDouble(uint8_t(x)); }, [](double v) { return uint32_t(refDoubleToE5m2(v)); }},
};

// Every fp16, bf16 and fp8 value divided by 3 and by 7: correctly rounded (via float).
TEST(ReduceDivideTest, NarrowFloatsAllPatterns) {
  for (const NarrowRef& f : kNarrowRefs) {
    const size_t size = dataTypeSize(f.type);
    for (int divisor : {3, 7}) {
      std::vector<uint8_t> buf(f.codes * size);
      for (uint32_t i = 0; i < f.codes; ++i) std::memcpy(&buf[i * size], &i, size);  // little-endian
      divideInPlace(buf.data(), f.codes, f.type, divisor);
      for (uint32_t x = 0; x < f.codes; ++x) {
        uint32_t got = 0;
        std::memcpy(&got, &buf[x * size], size);
        const uint32_t want = f.isNan(x) ? (x | f.quietBit) : f.encode(f.decode(x) / divisor);
        ASSERT_EQ(got, want) << dataTypeName(f.type) << " " << hex(x) << " / " << divisor;
      }
    }
  }
}

TEST(ReduceDivideTest, BadArgumentsThrow) {
  int32_t v[] = {4};
  for (int divisor : {0, -1}) {
    try {
      divideInPlace(v, 1, chorusInt32, divisor);
      ADD_FAILURE() << "divisor " << divisor << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), chorusInvalidArgument);
    }
  }
  EXPECT_EQ(v[0], 4);
  try {
    divideInPlace(v, 1, static_cast<chorusDataType_t>(chorusNumTypes), 2);
    ADD_FAILURE() << "unknown type accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidArgument);
  }
  divideInPlace(nullptr, 0, chorusFloat32, 2);  // nothing to do
}

// ---- names, sizes, lookup ----------------------------------------------------------------------

TEST(ReduceLookupTest, NamesAndSizes) {
  const std::pair<chorusDataType_t, size_t> sizes[] = {
      {chorusInt8, 1},    {chorusUint8, 1},   {chorusInt32, 4},   {chorusUint32, 4},  {chorusInt64, 8},
      {chorusUint64, 8},  {chorusFloat16, 2}, {chorusFloat32, 4}, {chorusFloat64, 8}, {chorusBfloat16, 2},
      {chorusFloat8e4m3, 1}, {chorusFloat8e5m2, 1}};
  for (auto [t, size] : sizes) EXPECT_EQ(dataTypeSize(t), size) << dataTypeName(t);
  EXPECT_EQ(dataTypeSize(chorusNumTypes), 0u);
  EXPECT_STREQ(dataTypeName(chorusFloat32), "float");
  EXPECT_STREQ(dataTypeName(chorusFloat16), "half");
  EXPECT_STREQ(dataTypeName(chorusBfloat16), "bfloat16");
  EXPECT_STREQ(dataTypeName(chorusFloat8e4m3), "float8e4m3");
  EXPECT_STREQ(dataTypeName(chorusFloat8e5m2), "float8e5m2");
  EXPECT_STREQ(dataTypeName(chorusInt32), "int32");
  EXPECT_STREQ(dataTypeName(chorusUint64), "uint64");
  EXPECT_STREQ(dataTypeName(chorusNumTypes), "unknown");
  EXPECT_STREQ(redOpName(chorusSum), "sum");
  EXPECT_STREQ(redOpName(chorusProd), "prod");
  EXPECT_STREQ(redOpName(chorusMax), "max");
  EXPECT_STREQ(redOpName(chorusMin), "min");
  EXPECT_STREQ(redOpName(chorusAvg), "avg");
  EXPECT_STREQ(redOpName(chorusNumOps), "unknown");
  EXPECT_STREQ(reduceIsaName(ReduceIsa::kPortable), "portable");
  EXPECT_TRUE(reduceIsaSupported(ReduceIsa::kPortable));
}

TEST(ReduceLookupTest, AvgUsesTheSumKernelAndDefaultIsTheBestIsa) {
  for (chorusDataType_t t : kAllTypes) {
    EXPECT_EQ(reduceFunction(t, chorusAvg), reduceFunction(t, chorusSum)) << dataTypeName(t);
    for (chorusRedOp_t op : kKernelOps) {
      EXPECT_EQ(reduceFunction(t, op), reduceFunctionForIsa(t, op, bestReduceIsa()));
    }
  }
}

TEST(ReduceLookupTest, UnknownTypeOrOpThrowsInvalidArgument) {
  const std::pair<int, int> bad[] = {{chorusNumTypes, chorusSum}, {15, chorusSum}, {chorusFloat32, chorusNumOps},
                                     {chorusInt8, 7}};
  for (auto [type, op] : bad) {
    try {
      reduceFunction(static_cast<chorusDataType_t>(type), static_cast<chorusRedOp_t>(op));
      ADD_FAILURE() << "type " << type << " op " << op << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), chorusInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("unknown"), std::string::npos) << e.what();
    }
  }
}

TEST(ReduceLookupTest, UnsupportedIsaThrowsInvalidUsage) {
  if (reduceIsaSupported(ReduceIsa::kAvx2)) GTEST_SKIP() << "AVX2 is supported here";
  try {
    reduceFunctionForIsa(chorusFloat32, chorusSum, ReduceIsa::kAvx2);
    ADD_FAILURE() << "unsupported isa accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidUsage);
  }
}

}  // namespace
}  // namespace chorus

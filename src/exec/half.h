// IEEE binary16 ("half", fp16), bfloat16 and OCP fp8 (E4M3, E5M2) <-> float conversions,
// header-only.
//
// Written without branches so that loops calling them vectorize with plain SSE2: every case is
// computed, and the answer is put together with bit masks rather than ?: (with a ?:, GCC moves
// the float arithmetic of the subnormal case into a branch, and then will not if-convert it
// because float arithmetic "could trap"). They give exactly the bits that x86 F16C (vcvtph2ps /
// vcvtps2ph with round-to-nearest-even) gives, NaN payloads included, so that the portable and
// the F16C reduction kernels agree bit for bit (tests/unit/test_reduce.cpp checks all 65536
// halves). Assumes the default floating-point environment (round to nearest, no DAZ/FTZ).
//
// NaN handling:
//   half -> float : a signaling NaN comes back quiet, payload kept (as vcvtph2ps).
//   float -> half : quiet bit set, the top 10 payload bits kept (as vcvtps2ph).
//   bf16 -> float : exact bit shift (a signaling NaN stays signaling).
//   float -> bf16 : quiet bit set, the top 7 payload bits kept.
//
// OCP 8-bit floats (OCP "8-bit Floating Point Specification (OFP8)" 1.0):
//   E4M3: bias 7, 3 mantissa bits, no infinities; S.1111.111 (0x7f, 0xff) is the only NaN, so
//         S.1111.000-110 are normal numbers and the largest is 1.75 * 2^8 = 448. Subnormals are
//         multiples of 2^-9.
//   E5M2: bias 15, 2 mantissa bits, IEEE-like: S.11111.00 is infinity, S.11111.01-11 are NaN
//         (the top mantissa bit is the quiet bit). Largest finite 1.75 * 2^15 = 57344. An E5M2
//         code is exactly the top byte of the binary16 code of the same value.
// float -> fp8 rounds to nearest even. Overflow, chosen per format:
//   E4M3: saturating ("satfinite", as NCCL's fp8 reductions and CUDA's __nv_fp8_e4m3(float) do):
//         anything that rounds above 448, infinities included, becomes +-448. The format has no
//         infinity, and the alternative (overflow to NaN) would turn one large sum into a NaN
//         that poisons every later step of a reduction.
//   E5M2: IEEE, like fp16 and bf16 here: [61440, inf] (61440 is the tie above 57344, and ties go
//         to the even mantissa 00 of the next binade) becomes infinity.
// NaN: E4M3 has a single NaN per sign (payload dropped). E5M2 behaves as fp16 does: fp8 -> float
// gives a quiet NaN with the payload kept; float -> fp8 sets the quiet bit and keeps the next
// payload bit.
#pragma once

#include <bit>
#include <cstdint>

namespace chorus::half {

// All ones when cond holds, else zero.
inline uint32_t maskIf(bool cond) { return 0u - static_cast<uint32_t>(cond); }

// binary16 bits -> float, exact for every non-NaN value (subnormals included).
inline float halfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t magnitude = h & 0x7fffu;  // exponent and mantissa
  const uint32_t shifted = magnitude << 13;  // mantissa lands in place; exponent is off by 112
  // Normal: rebias the exponent from 15 to 127.
  const uint32_t normal = shifted + (112u << 23);
  // Inf/NaN: exponent all ones; a NaN also gets the quiet bit.
  const uint32_t infNan = shifted | 0x7f800000u | (magnitude > 0x7c00u ? 0x00400000u : 0u);
  // Subnormal or zero (value = mantissa * 2^-24): 2^-14 * (1 + m/1024) - 2^-14, exact in float.
  const float subnormal =
      std::bit_cast<float>(shifted + (113u << 23)) - std::bit_cast<float>(113u << 23);
  const uint32_t isInfNan = maskIf(magnitude >= 0x7c00u);
  const uint32_t isSubnormal = maskIf(magnitude < 0x0400u);
  const uint32_t isNormal = ~(isInfNan | isSubnormal);
  const uint32_t bits = (infNan & isInfNan) | (normal & isNormal) |
                        (std::bit_cast<uint32_t>(subnormal) & isSubnormal);
  return std::bit_cast<float>(bits | sign);
}

// float -> binary16 bits, rounded to nearest even; overflow gives infinity.
inline uint16_t floatToHalfBits(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t magnitude = u & 0x7fffffffu;
  const uint32_t nan = 0x7e00u | ((magnitude >> 13) & 0x3ffu);
  // Normal result, |f| in [2^-14, 2^16): rebias, then round the 13 dropped bits to nearest even
  // (add 0xfff plus the lowest kept bit). A carry out of the mantissa bumps the exponent, which
  // is right, and turns [65520, 65536) into infinity (0x7c00), which is right too.
  const uint32_t normal = (magnitude - (112u << 23) + 0xfffu + ((magnitude >> 13) & 1u)) >> 13;
  // Subnormal result, |f| < 2^-14: adding 0.5 (ulp 2^-24, the half subnormal step) makes the
  // FPU round |f| to a multiple of 2^-24, nearest even; the mantissa bits are then the answer.
  const uint32_t subnormal =
      std::bit_cast<uint32_t>(std::bit_cast<float>(magnitude) + 0.5f) - (126u << 23);
  const uint32_t isNan = maskIf(magnitude > 0x7f800000u);
  const uint32_t isInf = maskIf(magnitude >= (143u << 23)) & ~isNan;  // |f| >= 65536 or inf
  const uint32_t isSubnormal = maskIf(magnitude < (113u << 23));
  const uint32_t isNormal = ~(isNan | isInf | isSubnormal);
  const uint32_t bits = (nan & isNan) | (0x7c00u & isInf) | (normal & isNormal) |
                        (subnormal & isSubnormal);
  return static_cast<uint16_t>(bits | sign);
}

// bfloat16 bits -> float, exact.
inline float bf16BitsToFloat(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// float -> bfloat16 bits, rounded to nearest even; overflow gives infinity.
inline uint16_t floatToBf16Bits(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  // Adding 0x7fff plus the lowest kept bit rounds the 16 dropped bits to nearest even; the sum
  // cannot carry out of the sign bit (the largest finite magnitude only reaches infinity).
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x0040u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// ---- OCP fp8 --------------------------------------------------------------------------------

// Rounds the magnitude bits of a non-NaN float to nearest even on the grid of a binary format
// with kMantissa stored mantissa bits and exponent bias kBias (subnormals included), and returns
// the narrow code's exponent and mantissa bits. No overflow handling: a result past the format's
// largest code comes back as a larger number, which the caller clamps.
template <int kMantissa, int kBias>
inline uint32_t roundMagnitudeToNarrow(uint32_t magnitude) {
  constexpr int kDropped = 23 - kMantissa;
  // Normal result, |f| >= 2^(1 - kBias): rebias, then round the dropped bits to nearest even
  // (add half an ulp minus one plus the lowest kept bit); a carry moves into the exponent.
  const uint32_t normal =
      (magnitude - ((127u - kBias) << 23) + ((1u << (kDropped - 1)) - 1u) + ((magnitude >> kDropped) & 1u)) >> kDropped;
  // Subnormal result: add a float whose ulp is the narrow subnormal step, 2^(1 - kBias - kMantissa);
  // the FPU rounds |f| to a multiple of that step, nearest even, and the low bits of the sum
  // count the steps (2^kMantissa steps is the smallest normal, which is also its code).
  constexpr uint32_t kStepAnchor = static_cast<uint32_t>(127 + 1 - kBias - kMantissa + 23) << 23;
  const uint32_t subnormal =
      std::bit_cast<uint32_t>(std::bit_cast<float>(magnitude) + std::bit_cast<float>(kStepAnchor)) - kStepAnchor;
  const uint32_t isSubnormal = maskIf(magnitude < (static_cast<uint32_t>(128 - kBias) << 23));
  return (normal & ~isSubnormal) | (subnormal & isSubnormal);
}

// E4M3 bits -> float, exact (0x7f / 0xff give a quiet NaN with the sign).
inline float fp8e4m3BitsToFloat(uint8_t b) {
  const uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  const uint32_t magnitude = b & 0x7fu;
  const uint32_t shifted = magnitude << 20;  // mantissa in place; exponent off by 120
  const uint32_t normal = shifted + (120u << 23);
  // Subnormal or zero (mantissa * 2^-9): 2^-6 * (1 + m/8) - 2^-6, exact in float.
  const float subnormal = std::bit_cast<float>(shifted + (121u << 23)) - std::bit_cast<float>(121u << 23);
  const uint32_t isNan = maskIf(magnitude == 0x7fu);
  const uint32_t isSubnormal = maskIf(magnitude < 0x08u);
  const uint32_t isNormal = ~(isNan | isSubnormal);
  const uint32_t bits = (0x7fc00000u & isNan) | (normal & isNormal) | (std::bit_cast<uint32_t>(subnormal) & isSubnormal);
  return std::bit_cast<float>(bits | sign);
}

// float -> E4M3 bits, nearest even, saturating to +-448 (see the top of this file).
inline uint8_t floatToFp8e4m3Bits(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t magnitude = u & 0x7fffffffu;
  const uint32_t rounded = roundMagnitudeToNarrow<3, 7>(magnitude);
  const uint32_t finite = rounded < 0x7eu ? rounded : 0x7eu;  // 448; infinity saturates too
  const uint32_t isNan = maskIf(magnitude > 0x7f800000u);
  return static_cast<uint8_t>(((0x7fu & isNan) | (finite & ~isNan)) | sign);
}

// E5M2 bits -> float, exact: the code is the top byte of the binary16 code of the same value.
inline float fp8e5m2BitsToFloat(uint8_t b) { return halfBitsToFloat(static_cast<uint16_t>(b << 8)); }

// float -> E5M2 bits, nearest even; overflow gives infinity (see the top of this file).
inline uint8_t floatToFp8e5m2Bits(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t magnitude = u & 0x7fffffffu;
  const uint32_t rounded = roundMagnitudeToNarrow<2, 15>(magnitude);
  const uint32_t finiteOrInf = rounded < 0x7cu ? rounded : 0x7cu;
  const uint32_t nan = 0x7eu | ((magnitude >> 21) & 1u);  // quiet bit, next payload bit kept
  const uint32_t isNan = maskIf(magnitude > 0x7f800000u);
  return static_cast<uint8_t>(((nan & isNan) | (finiteOrInf & ~isNan)) | sign);
}

}  // namespace chorus::half

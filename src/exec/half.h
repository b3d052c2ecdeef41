// IEEE binary16 ("half", fp16) and bfloat16 <-> float conversions, header-only.
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

}  // namespace chorus::half

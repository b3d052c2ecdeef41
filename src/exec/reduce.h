// Reduction kernels: dst[i] = a[i] OP b[i] for every dtype and op, written as plain loops over
// restrict pointers so the compiler vectorizes them. fp16 and bf16 are converted to float,
// reduced, and rounded back to nearest even (NaN stays NaN); so are fp8 E4M3 and E5M2, whose
// overflow rules (E4M3 saturates at +-448, E5M2 overflows to infinity) are in half.h. dst may
// alias a or b exactly (dst == a or dst == b); partial overlaps are not allowed. Pointers must
// be aligned to the element size.
//
// Floating-point max/min propagate NaN: if either input is NaN the result is NaN. When the
// inputs compare equal (only +0 and -0 can differ), b is returned. Which NaN payload comes out
// when both inputs are NaN is unspecified. Integer sum and prod wrap around (two's complement).
#pragma once

#include <chorus/chorus.h>

#include <cstddef>
#include <cstdint>

namespace chorus {

// dst[i] = a[i] op b[i] for i in [0, count).
using ReduceFn = void (*)(void* dst, const void* a, const void* b, size_t count);

// Size in bytes of one element; 0 for an unknown type.
size_t dataTypeSize(chorusDataType_t type);
const char* dataTypeName(chorusDataType_t type);  // "float", "half", "bfloat16", "float8e4m3", "int32", ...
const char* redOpName(chorusRedOp_t op);          // "sum", "prod", "max", "min", "avg"

// The kernel for (type, op). chorusAvg returns the sum kernel: the caller divides once at the
// end with divideInPlace. Throws chorusInvalidArgument for an unknown type or op.
ReduceFn reduceFunction(chorusDataType_t type, chorusRedOp_t op);

// buf[i] = buf[i] / divisor (integers: truncating division; floats: multiply by 1/divisor is
// NOT used, true division is, so that avg of equal values is exact; fp16/bf16/fp8 divide in float).
// Throws chorusInvalidArgument for an unknown type or a divisor <= 0.
void divideInPlace(void* buf, size_t count, chorusDataType_t type, int divisor);

// Kernel implementations. reduceFunction(type, op) hands out bestReduceIsa()'s; tests and
// benchmarks ask for one explicitly to compare them. All give bit-identical results (NaN
// payloads aside when both inputs are NaN).
enum class ReduceIsa {
  kPortable,  // plain C++, vectorized by the compiler for the baseline ISA (SSE2 on x86-64)
  kAvx2,      // x86 AVX2 + F16C, chosen at run time when the CPU and OS support it
};
ReduceIsa bestReduceIsa();
bool reduceIsaSupported(ReduceIsa isa);
const char* reduceIsaName(ReduceIsa isa);  // "portable", "avx2"
// Like reduceFunction, for the given implementation. Throws chorusInvalidArgument for an unknown
// type or op and chorusInvalidUsage for an implementation this CPU cannot run.
ReduceFn reduceFunctionForIsa(chorusDataType_t type, chorusRedOp_t op, ReduceIsa isa);

// IEEE binary16 and bfloat16 conversions (round to nearest even, NaN preserved; see half.h).
float halfToFloat(uint16_t h);
uint16_t floatToHalf(float f);
float bfloat16ToFloat(uint16_t b);
uint16_t floatToBfloat16(float f);
// OCP fp8 conversions (round to nearest even; E4M3 saturates, E5M2 overflows to inf; half.h).
float fp8e4m3ToFloat(uint8_t b);
uint8_t floatToFp8e4m3(float f);
float fp8e5m2ToFloat(uint8_t b);
uint8_t floatToFp8e5m2(float f);

}  // namespace chorus

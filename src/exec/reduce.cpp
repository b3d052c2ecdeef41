// Reduction kernels (see reduce.h).
//
// Shape: one template loop per (type, op, aliasing) over restrict pointers, cut into blocks of
// one cache line (64 bytes) whose inner loop has a constant trip count, plus a scalar tail.
// The blocks matter: at plain -O2, GCC 12 uses its "very cheap" vectorizer cost model, which
// refuses a loop whose trip count is unknown (it would need an epilogue) but takes a loop of
// constant count that is a multiple of the vector width. The aliasing cases (dst apart, dst == a,
// dst == b, all three equal) are separate instantiations so that no restrict pointer that is
// written ever shares memory with another.
//
// Each kernel is built twice: portable (baseline ISA: SSE2 on x86-64) and, on x86, inside
// target("avx2,f16c") functions chosen at run time (__builtin_cpu_supports). The AVX2 build is
// the same C++ compiled for 256-bit vectors, except fp16 (F16C intrinsics) and bf16 (integer
// intrinsics, see Bf16Avx2). half.h's portable conversions produce F16C's exact bits, so the
// two builds agree bit for bit (tests/unit/test_reduce.cpp).
//
// What vectorizes (GCC 12, -O2, checked with -fopt-info-vec / -fdump-tree-vect-details):
//   portable, 16-byte vectors: every type and op, fp16/bf16 conversions included, except
//     int64/uint64 prod, max and min (SSE2 has no 64-bit multiply or compare): those are scalar.
//   avx2, 32-byte vectors: every type and op (64-bit prod emulated with vpmuludq); fp16 and bf16
//     are explicit vector loops.
//   divideInPlace: the float types vectorize; integer division stays scalar (no SIMD divide).
//   fp8 (E4M3, E5M2): the generic loop in both builds (half.h's branch-free conversions), so
//     the two builds agree by construction; no hand-written vector code.
// Measured on the dev box (Zen 3, one thread, sum, GB/s per buffer; traffic is 3x that):
//                   256 KiB (in cache)        16 MiB (memory)
//   float           portable ~21, avx2 ~24    ~7.5-9 either
//   fp16            portable 0.7, avx2 ~21    portable 0.7, avx2 ~7.5
//   bf16            portable 2.8, avx2 ~11    portable 2.5, avx2 ~6.5
// The portable fp16 loop does vectorize, but needs ~35 instructions per element without F16C.
#include "exec/reduce.h"

#include "base/error.h"
#include "exec/half.h"

#include <array>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define CHORUS_REDUCE_X86 1
#define CHORUS_AVX2_TARGET __attribute__((target("avx2,f16c")))
#else
#define CHORUS_REDUCE_X86 0
#endif

#define CHORUS_ALWAYS_INLINE inline __attribute__((always_inline))

namespace chorus {
namespace {

// ---- element types: how a stored element becomes the value an operator works on, and back --

template <chorusDataType_t kType>
struct TypeTraits;

template <typename T>
struct PlainTraits {
  using Storage = T;
  using Value = T;
  static CHORUS_ALWAYS_INLINE Value load(Storage s) { return s; }
  static CHORUS_ALWAYS_INLINE Storage store(Value v) { return v; }
};

template <> struct TypeTraits<chorusInt8> : PlainTraits<int8_t> {};
template <> struct TypeTraits<chorusUint8> : PlainTraits<uint8_t> {};
template <> struct TypeTraits<chorusInt32> : PlainTraits<int32_t> {};
template <> struct TypeTraits<chorusUint32> : PlainTraits<uint32_t> {};
template <> struct TypeTraits<chorusInt64> : PlainTraits<int64_t> {};
template <> struct TypeTraits<chorusUint64> : PlainTraits<uint64_t> {};
template <> struct TypeTraits<chorusFloat32> : PlainTraits<float> {};
template <> struct TypeTraits<chorusFloat64> : PlainTraits<double> {};

// fp16, bf16 and fp8 are reduced in float. Rounding a float sum, product, max or min of two
// such values back to the narrow type gives the correctly rounded result: float carries more
// than 2p+2 bits of the narrow type's p, so the double rounding is harmless. Overflow follows
// half.h (fp8 E4M3 saturates at +-448; the others go to infinity). The conversions are
// template arguments, so they are inlined into the loops as direct calls would be.
template <typename S, float (*kLoad)(S), S (*kStore)(float)>
struct NarrowFloatTraits {
  using Storage = S;
  using Value = float;
  static CHORUS_ALWAYS_INLINE Value load(Storage s) { return kLoad(s); }
  static CHORUS_ALWAYS_INLINE Storage store(Value v) { return kStore(v); }
};

template <> struct TypeTraits<chorusFloat16> : NarrowFloatTraits<uint16_t, half::halfBitsToFloat, half::floatToHalfBits> {};
template <> struct TypeTraits<chorusBfloat16> : NarrowFloatTraits<uint16_t, half::bf16BitsToFloat, half::floatToBf16Bits> {};
template <> struct TypeTraits<chorusFloat8e4m3> : NarrowFloatTraits<uint8_t, half::fp8e4m3BitsToFloat, half::floatToFp8e4m3Bits> {};
template <> struct TypeTraits<chorusFloat8e5m2> : NarrowFloatTraits<uint8_t, half::fp8e5m2BitsToFloat, half::floatToFp8e5m2Bits> {};

// ---- operators ----------------------------------------------------------------------------

// Integer sum and prod run in the unsigned type of the same width: wrap-around is defined there
// (signed overflow would be undefined), and the conversion back is modular since C++20.
struct SumOp {
  template <typename V>
  static CHORUS_ALWAYS_INLINE V apply(V a, V b) {
    if constexpr (std::is_integral_v<V>) {
      using U = std::make_unsigned_t<V>;
      return static_cast<V>(static_cast<U>(a) + static_cast<U>(b));
    } else {
      return a + b;
    }
  }
};

struct ProdOp {
  template <typename V>
  static CHORUS_ALWAYS_INLINE V apply(V a, V b) {
    if constexpr (std::is_integral_v<V>) {
      using U = std::make_unsigned_t<V>;
      // 8-bit operands promote to int; 255 * 255 still fits, so no overflow there either.
      return static_cast<V>(static_cast<U>(a) * static_cast<U>(b));
    } else {
      return a * b;
    }
  }
};

// Floats: a NaN in either input gives NaN ("a != a" is the NaN test); equal inputs give b.
// This is x86 maxps(a, b) plus a select for a NaN a, so it vectorizes as compare + blend.
struct MaxOp {
  template <typename V>
  static CHORUS_ALWAYS_INLINE V apply(V a, V b) {
    if constexpr (std::is_floating_point_v<V>) {
      return (a > b || a != a) ? a : b;
    } else {
      return a > b ? a : b;
    }
  }
};

struct MinOp {
  template <typename V>
  static CHORUS_ALWAYS_INLINE V apply(V a, V b) {
    if constexpr (std::is_floating_point_v<V>) {
      return (a < b || a != a) ? a : b;
    } else {
      return a < b ? a : b;
    }
  }
};

// ---- the loops ----------------------------------------------------------------------

// Which operand dst is. Out of place: dst[i] = x[i] op y[i]. kDstIsA: dst[i] = dst[i] op x[i].
// kDstIsB: dst[i] = x[i] op dst[i]. kAll: dst[i] = dst[i] op dst[i]. Keeping the operand order
// keeps max/min's "b on ties". (Two read-only restrict pointers may share memory: a == b is fine.)
enum class Alias { kNone, kDstIsA, kDstIsB, kAll };

template <chorusDataType_t kType, typename Op, Alias kAlias>
CHORUS_ALWAYS_INLINE void reduceOne(typename TypeTraits<kType>::Storage* __restrict dst,
                                    const typename TypeTraits<kType>::Storage* __restrict x,
                                    const typename TypeTraits<kType>::Storage* __restrict y,
                                    size_t i) {
  using Tr = TypeTraits<kType>;
  typename Tr::Storage a, b;
  if constexpr (kAlias == Alias::kNone) {
    a = x[i];
    b = y[i];
  } else if constexpr (kAlias == Alias::kDstIsA) {
    a = dst[i];
    b = x[i];
  } else if constexpr (kAlias == Alias::kAll) {
    a = dst[i];
    b = dst[i];
  } else {
    a = x[i];
    b = dst[i];
  }
  dst[i] = Tr::store(Op::apply(Tr::load(a), Tr::load(b)));
}

template <chorusDataType_t kType, typename Op, Alias kAlias>
CHORUS_ALWAYS_INLINE void reduceLoop(typename TypeTraits<kType>::Storage* __restrict dst,
                                     const typename TypeTraits<kType>::Storage* __restrict x,
                                     const typename TypeTraits<kType>::Storage* __restrict y,
                                     size_t count) {
  // One cache line per block: at least two vectors of the widest ISA built here for every type.
  constexpr size_t kBlock = 64 / sizeof(typename TypeTraits<kType>::Storage);
  size_t i = 0;
  for (; i + kBlock <= count; i += kBlock) {
    for (size_t j = 0; j < kBlock; ++j) reduceOne<kType, Op, kAlias>(dst, x, y, i + j);
  }
  for (; i < count; ++i) reduceOne<kType, Op, kAlias>(dst, x, y, i);
}

// The loops proper. They must stay out-of-line functions whose own parameters are restrict:
// GCC computes restrict facts per function before always_inline callees are merged in, so a
// restrict parameter of an inlined helper is forgotten and the loop would need an alias check
// (which -O2's cost model refuses).
template <chorusDataType_t kType, typename Op, Alias kAlias>
struct PortableLoop {
  using S = typename TypeTraits<kType>::Storage;
  __attribute__((noinline)) static void run(S* __restrict dst, const S* __restrict x,
                                            const S* __restrict y, size_t count) {
    reduceLoop<kType, Op, kAlias>(dst, x, y, count);
  }
};

// Picks the aliasing instantiation of Loop (PortableLoop or Avx2Loop).
template <chorusDataType_t kType, typename Op, template <chorusDataType_t, typename, Alias> class Loop>
void reduceAnyAlias(void* dst, const void* a, const void* b, size_t count) {
  using S = typename TypeTraits<kType>::Storage;
  S* d = static_cast<S*>(dst);
  const S* pa = static_cast<const S*>(a);
  const S* pb = static_cast<const S*>(b);
  if (d == pa && d == pb) {
    Loop<kType, Op, Alias::kAll>::run(d, nullptr, nullptr, count);
  } else if (d == pa) {
    Loop<kType, Op, Alias::kDstIsA>::run(d, pb, nullptr, count);
  } else if (d == pb) {
    Loop<kType, Op, Alias::kDstIsB>::run(d, pa, nullptr, count);
  } else {
    Loop<kType, Op, Alias::kNone>::run(d, pa, pb, count);
  }
}

template <chorusDataType_t kType, typename Op>
void kernelPortable(void* dst, const void* a, const void* b, size_t count) {
  reduceAnyAlias<kType, Op, PortableLoop>(dst, a, b, count);
}

// ---- the AVX2 + F16C build ----------------------------------------------------------------

#if CHORUS_REDUCE_X86

CHORUS_AVX2_TARGET CHORUS_ALWAYS_INLINE __m256 applyVec(SumOp, __m256 a, __m256 b) {
  return _mm256_add_ps(a, b);
}
CHORUS_AVX2_TARGET CHORUS_ALWAYS_INLINE __m256 applyVec(ProdOp, __m256 a, __m256 b) {
  return _mm256_mul_ps(a, b);
}
// maxps(a, b) is (a > b ? a : b); the blend then takes a wherever a is NaN (MaxOp's rule).
CHORUS_AVX2_TARGET CHORUS_ALWAYS_INLINE __m256 applyVec(MaxOp, __m256 a, __m256 b) {
  return _mm256_blendv_ps(_mm256_max_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}
CHORUS_AVX2_TARGET CHORUS_ALWAYS_INLINE __m256 applyVec(MinOp, __m256 a, __m256 b) {
  return _mm256_blendv_ps(_mm256_min_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

// fp16 and bf16 a vector at a time: widen to floats, reduce, round back. Both round exactly as
// half.h does (tests compare the two paths bit for bit).
//
// fp16: eight per step through F16C.
struct HalfF16c {
  static constexpr size_t kStep = 8;
  template <typename Op>
  static CHORUS_AVX2_TARGET CHORUS_ALWAYS_INLINE void step(uint16_t* dst, const uint16_t* a, const uint16_t* b) {
    const __m256 fa = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)));
    const __m256 fb = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
    const __m128i r = _mm256_cvtps_ph(applyVec(Op{}, fa, fb), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), r);
  }
};

// bf16: sixteen per step with no shuffles. Seen as 32-bit lanes, a vector of bf16 holds the odd
// elements in the high halves, which are floats once the low halves are masked off, and the
// even elements in the low halves, which become floats by a shift left. Rounding is half.h's
// floatToBf16Bits recipe, done in place in the high halves. (GCC's own vectorization of the
// portable loop widens and narrows with shuffles and runs at about half this speed.)
struct Bf16Avx2 {
  static constexpr size_t kStep = 16;

  // Float lanes -> bf16 in the high 16 bits of each lane (low bits: garbage).
  static CHORUS_AVX2_TARGET CHORUS_ALWAYS_INLINE __m256i roundHigh(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
    const __m256i quietNan = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
    const __m256i isNan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(rounded, quietNan, isNan);
  }

  template <typename Op>
  static CHORUS_AVX2_TARGET CHORUS_ALWAYS_INLINE void step(uint16_t* dst, const uint16_t* a, const uint16_t* b) {
    const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
    const __m256i ra = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
    const __m256i rb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const __m256 evenA = _mm256_castsi256_ps(_mm256_slli_epi32(ra, 16));
    const __m256 evenB = _mm256_castsi256_ps(_mm256_slli_epi32(rb, 16));
    const __m256 oddA = _mm256_castsi256_ps(_mm256_and_si256(ra, high));
    const __m256 oddB = _mm256_castsi256_ps(_mm256_and_si256(rb, high));
    const __m256i even = roundHigh(applyVec(Op{}, evenA, evenB));
    const __m256i odd = roundHigh(applyVec(Op{}, oddA, oddB));
    const __m256i packed = _mm256_or_si256(_mm256_srli_epi32(even, 16), _mm256_and_si256(odd, high));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), packed);
  }
};

template <typename Codec, chorusDataType_t kType, typename Op, Alias kAlias>
CHORUS_AVX2_TARGET CHORUS_ALWAYS_INLINE void narrowLoopAvx2(uint16_t* __restrict dst,
                                                            const uint16_t* __restrict x,
                                                            const uint16_t* __restrict y,
                                                            size_t count) {
  size_t i = 0;
  for (; i + Codec::kStep <= count; i += Codec::kStep) {
    const uint16_t* pa = (kAlias == Alias::kDstIsA || kAlias == Alias::kAll) ? dst + i : x + i;
    const uint16_t* pb = kAlias == Alias::kNone     ? y + i
                         : kAlias == Alias::kDstIsA ? x + i
                                                    : dst + i;
    Codec::template step<Op>(dst + i, pa, pb);
  }
  for (; i < count; ++i) reduceOne<kType, Op, kAlias>(dst, x, y, i);
}

// The same C++ as PortableLoop, compiled for AVX2 (256-bit vectors); fp16 and bf16 use the
// explicit loop above.
template <chorusDataType_t kType, typename Op, Alias kAlias>
struct Avx2Loop {
  using S = typename TypeTraits<kType>::Storage;
  CHORUS_AVX2_TARGET __attribute__((noinline)) static void run(S* __restrict dst,
                                                               const S* __restrict x,
                                                               const S* __restrict y,
                                                               size_t count) {
    if constexpr (kType == chorusFloat16) {
      narrowLoopAvx2<HalfF16c, kType, Op, kAlias>(dst, x, y, count);
    } else if constexpr (kType == chorusBfloat16) {
      narrowLoopAvx2<Bf16Avx2, kType, Op, kAlias>(dst, x, y, count);
    } else {
      reduceLoop<kType, Op, kAlias>(dst, x, y, count);
    }
  }
};

template <chorusDataType_t kType, typename Op>
void kernelAvx2(void* dst, const void* a, const void* b, size_t count) {
  reduceAnyAlias<kType, Op, Avx2Loop>(dst, a, b, count);
}

bool cpuHasAvx2F16c() {
  // libgcc's avx2 check includes the OS saving YMM state (XCR0), which F16C needs too. F16C is
  // read from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows it.
  __builtin_cpu_init();
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  return __builtin_cpu_supports("avx2") && (ecx & bit_F16C) != 0;
}

#endif  // CHORUS_REDUCE_X86

// ---- kernel table ---------------------------------------------------------------------------

template <chorusDataType_t kType, typename Op>
ReduceFn kernelFor(ReduceIsa isa) {
#if CHORUS_REDUCE_X86
  if (isa == ReduceIsa::kAvx2) return &kernelAvx2<kType, Op>;
#endif
  (void)isa;
  return &kernelPortable<kType, Op>;
}

template <typename Op>
ReduceFn kernelForType(chorusDataType_t type, ReduceIsa isa) {
  switch (type) {
    case chorusInt8: return kernelFor<chorusInt8, Op>(isa);
    case chorusUint8: return kernelFor<chorusUint8, Op>(isa);
    case chorusInt32: return kernelFor<chorusInt32, Op>(isa);
    case chorusUint32: return kernelFor<chorusUint32, Op>(isa);
    case chorusInt64: return kernelFor<chorusInt64, Op>(isa);
    case chorusUint64: return kernelFor<chorusUint64, Op>(isa);
    case chorusFloat16: return kernelFor<chorusFloat16, Op>(isa);
    case chorusFloat32: return kernelFor<chorusFloat32, Op>(isa);
    case chorusFloat64: return kernelFor<chorusFloat64, Op>(isa);
    case chorusBfloat16: return kernelFor<chorusBfloat16, Op>(isa);
    case chorusFloat8e4m3: return kernelFor<chorusFloat8e4m3, Op>(isa);
    case chorusFloat8e5m2: return kernelFor<chorusFloat8e5m2, Op>(isa);
    default: break;
  }
  CHORUS_THROW(chorusInvalidArgument, "unknown data type %d", static_cast<int>(type));
}

// ---- divideInPlace ----------------------------------------------------------------------------

template <typename T>
void divideIntegers(T* __restrict buf, size_t count, int divisor) {
  // divisor > 0, so INT_MIN / -1 cannot happen; narrow types divide in int (truncating).
  using Wide = std::common_type_t<T, int>;
  const Wide d = static_cast<Wide>(divisor);
  for (size_t i = 0; i < count; ++i) buf[i] = static_cast<T>(static_cast<Wide>(buf[i]) / d);
}

template <chorusDataType_t kType>
void divideFloats(typename TypeTraits<kType>::Storage* __restrict buf, size_t count, int divisor) {
  using Tr = TypeTraits<kType>;
  // Exact conversion for any rank count (<= 2^24 for float).
  const typename Tr::Value d = static_cast<typename Tr::Value>(divisor);
  constexpr size_t kBlock = 64 / sizeof(typename Tr::Storage);
  size_t i = 0;
  for (; i + kBlock <= count; i += kBlock) {
    for (size_t j = 0; j < kBlock; ++j) buf[i + j] = Tr::store(Tr::load(buf[i + j]) / d);
  }
  for (; i < count; ++i) buf[i] = Tr::store(Tr::load(buf[i]) / d);
}

}  // namespace

// ---- public entry points --------------------------------------------------------------------

size_t dataTypeSize(chorusDataType_t type) {
  switch (type) {
    case chorusInt8:
    case chorusUint8:
    case chorusFloat8e4m3:
    case chorusFloat8e5m2: return 1;
    case chorusFloat16:
    case chorusBfloat16: return 2;
    case chorusInt32:
    case chorusUint32:
    case chorusFloat32: return 4;
    case chorusInt64:
    case chorusUint64:
    case chorusFloat64: return 8;
    default: return 0;
  }
}

const char* dataTypeName(chorusDataType_t type) {
  switch (type) {
    case chorusInt8: return "int8";
    case chorusUint8: return "uint8";
    case chorusInt32: return "int32";
    case chorusUint32: return "uint32";
    case chorusInt64: return "int64";
    case chorusUint64: return "uint64";
    case chorusFloat16: return "half";
    case chorusFloat32: return "float";
    case chorusFloat64: return "double";
    case chorusBfloat16: return "bfloat16";
    case chorusFloat8e4m3: return "float8e4m3";
    case chorusFloat8e5m2: return "float8e5m2";
    default: return "unknown";
  }
}

const char* redOpName(chorusRedOp_t op) {
  switch (op) {
    case chorusSum: return "sum";
    case chorusProd: return "prod";
    case chorusMax: return "max";
    case chorusMin: return "min";
    case chorusAvg: return "avg";
    default: return "unknown";
  }
}

ReduceIsa bestReduceIsa() {
#if CHORUS_REDUCE_X86
  static const ReduceIsa best = cpuHasAvx2F16c() ? ReduceIsa::kAvx2 : ReduceIsa::kPortable;
  return best;
#else
  return ReduceIsa::kPortable;
#endif
}

bool reduceIsaSupported(ReduceIsa isa) {
  switch (isa) {
    case ReduceIsa::kPortable: return true;
    case ReduceIsa::kAvx2: return bestReduceIsa() == ReduceIsa::kAvx2;
  }
  return false;
}

const char* reduceIsaName(ReduceIsa isa) {
  switch (isa) {
    case ReduceIsa::kPortable: return "portable";
    case ReduceIsa::kAvx2: return "avx2";
  }
  return "unknown";
}

ReduceFn reduceFunctionForIsa(chorusDataType_t type, chorusRedOp_t op, ReduceIsa isa) {
  if (!reduceIsaSupported(isa)) {
    CHORUS_THROW(chorusInvalidUsage, "reduction kernels for '%s' are not supported on this CPU",
                 reduceIsaName(isa));
  }
  switch (op) {
    case chorusSum:
    case chorusAvg: return kernelForType<SumOp>(type, isa);
    case chorusProd: return kernelForType<ProdOp>(type, isa);
    case chorusMax: return kernelForType<MaxOp>(type, isa);
    case chorusMin: return kernelForType<MinOp>(type, isa);
    default: break;
  }
  CHORUS_THROW(chorusInvalidArgument, "unknown reduction op %d", static_cast<int>(op));
}

ReduceFn reduceFunction(chorusDataType_t type, chorusRedOp_t op) {
  // Looked up for every reduction call: a table filled once (the CPU's ISA does not change).
  // A pair it does not hold goes the long way, which throws the reason.
  static const auto kTable = [] {
    std::array<std::array<ReduceFn, chorusNumOps>, chorusNumTypes> t{};
    for (int ty = 0; ty < chorusNumTypes; ++ty)
      for (int o = 0; o < chorusNumOps; ++o) {
        try {
          t[ty][o] = reduceFunctionForIsa(static_cast<chorusDataType_t>(ty), static_cast<chorusRedOp_t>(o), bestReduceIsa());
        } catch (const Error&) {
        }
      }
    return t;
  }();
  const int ty = static_cast<int>(type), o = static_cast<int>(op);
  if (ty >= 0 && ty < chorusNumTypes && o >= 0 && o < chorusNumOps && kTable[ty][o]) return kTable[ty][o];
  return reduceFunctionForIsa(type, op, bestReduceIsa());
}

void divideInPlace(void* buf, size_t count, chorusDataType_t type, int divisor) {
  CHORUS_CHECK_ARG(divisor > 0, "divideInPlace: divisor must be positive, got %d", divisor);
  switch (type) {
    case chorusInt8: return divideIntegers(static_cast<int8_t*>(buf), count, divisor);
    case chorusUint8: return divideIntegers(static_cast<uint8_t*>(buf), count, divisor);
    case chorusInt32: return divideIntegers(static_cast<int32_t*>(buf), count, divisor);
    case chorusUint32: return divideIntegers(static_cast<uint32_t*>(buf), count, divisor);
    case chorusInt64: return divideIntegers(static_cast<int64_t*>(buf), count, divisor);
    case chorusUint64: return divideIntegers(static_cast<uint64_t*>(buf), count, divisor);
    case chorusFloat16: return divideFloats<chorusFloat16>(static_cast<uint16_t*>(buf), count, divisor);
    case chorusFloat32: return divideFloats<chorusFloat32>(static_cast<float*>(buf), count, divisor);
    case chorusFloat64: return divideFloats<chorusFloat64>(static_cast<double*>(buf), count, divisor);
    case chorusBfloat16: return divideFloats<chorusBfloat16>(static_cast<uint16_t*>(buf), count, divisor);
    case chorusFloat8e4m3: return divideFloats<chorusFloat8e4m3>(static_cast<uint8_t*>(buf), count, divisor);
    case chorusFloat8e5m2: return divideFloats<chorusFloat8e5m2>(static_cast<uint8_t*>(buf), count, divisor);
    default: break;
  }
  CHORUS_THROW(chorusInvalidArgument, "divideInPlace: unknown data type %d", static_cast<int>(type));
}

float halfToFloat(uint16_t h) { return half::halfBitsToFloat(h); }
uint16_t floatToHalf(float f) { return half::floatToHalfBits(f); }
float bfloat16ToFloat(uint16_t b) { return half::bf16BitsToFloat(b); }
uint16_t floatToBfloat16(float f) { return half::floatToBf16Bits(f); }
float fp8e4m3ToFloat(uint8_t b) { return half::fp8e4m3BitsToFloat(b); }
uint8_t floatToFp8e4m3(float f) { return half::floatToFp8e4m3Bits(f); }
float fp8e5m2ToFloat(uint8_t b) { return half::fp8e5m2BitsToFloat(b); }
uint8_t floatToFp8e5m2(float f) { return half::floatToFp8e5m2Bits(f); }

}  // namespace chorus

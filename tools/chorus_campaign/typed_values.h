// Values that every element type holds exactly, so that every result can be checked bit for
// bit: non-negative integers no larger than the type's exact bound (8 for fp8 E5M2, 16 for
// E4M3, 256 for bf16, 2048 for fp16, 127 for int8, ...), chosen per reduction so that every
// partial result the algorithms form (any subset of ranks, in any order) stays exact too.
#pragma once

#include <chorus/chorus.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace chorus::campaign {

size_t typeSize(chorusDataType_t t);
const char* typeName(chorusDataType_t t);
const char* opName(chorusRedOp_t op);

// The largest integer M such that every integer in [0, M] is exact in t (capped at 2^20).
double exactBound(chorusDataType_t t);

// Writes the exact value v (a non-negative integer <= exactBound) as element idx of buf.
void storeValue(chorusDataType_t t, void* buf, size_t idx, double v);
// Reads element idx of buf as a number (for messages; any bit pattern gives some value).
double loadValue(chorusDataType_t t, const void* buf, size_t idx);

// The contribution of one rank to one element, for a trial of p ranks reducing with op (or
// moving data when reduces == false). salt makes every call's data differ from the last one's,
// so that a stale or skipped result cannot pass the check.
class ValueSource {
 public:
  ValueSource(chorusDataType_t t, chorusRedOp_t op, bool reduces, int p, uint64_t salt);
  double value(int rank, uint64_t call, size_t idx) const;
  // The reduction of value(q, call, idx) over every rank q (op applied exactly).
  double reduced(uint64_t call, size_t idx) const;

 private:
  uint64_t hash(int rank, uint64_t call, size_t idx) const;
  chorusRedOp_t op_;
  bool reduces_;
  int p_;
  uint64_t salt_;
  double bound_;
};

}  // namespace chorus::campaign

// chorusRedOpCreatePreMulSum: per-communicator reduction operators "sum of scalar * input".
// The scalar is read once, at creation. A call using such an op scales its input into a
// temporary buffer (scaleInto) and then runs an ordinary sum: the schedules and the kernels
// stay the same, at the cost of one extra pass over the input.
#pragma once

#include <chorus/chorus.h>

#include <mutex>
#include <vector>

namespace chorus {

struct PreMulSum {
  chorusDataType_t dtype = chorusFloat32;
  double scalar = 1;     // floating types
  long long iscalar = 1; // integer types (multiplied as integers, wrapping like the sum)
};

class PreMulSumOps {
 public:
  // Registers an op; returns its chorusRedOp_t value (chorusNumOps + slot).
  chorusRedOp_t create(const void* scalar, chorusDataType_t dtype);
  // Throws chorusInvalidArgument for an op that is not a live PreMulSum op of this table.
  void destroy(chorusRedOp_t op);
  // True for a live PreMulSum op; fills *out.
  bool lookup(chorusRedOp_t op, PreMulSum* out) const;

 private:
  mutable std::mutex mu_;
  std::vector<bool> live_;
  std::vector<PreMulSum> ops_;
};

// dst[i] = scalar * src[i] for count elements of op.dtype (fp16/bf16/fp8 through float).
void scaleInto(void* dst, const void* src, size_t count, const PreMulSum& op);

}  // namespace chorus

#include "torch_types.h"

#include <c10/util/Exception.h>

namespace chorus_torch {

namespace {
// Chorus's element type for a torch dtype it has (bool as uint8); false for the others.
bool nativeType(at::ScalarType type, chorusDataType_t* out) {
  switch (type) {
    case at::kFloat: *out = chorusFloat32; return true;
    case at::kDouble: *out = chorusFloat64; return true;
    case at::kHalf: *out = chorusFloat16; return true;
    case at::kBFloat16: *out = chorusBfloat16; return true;
    case at::kChar: *out = chorusInt8; return true;
    case at::kByte: *out = chorusUint8; return true;
    case at::kBool: *out = chorusUint8; return true;
    case at::kInt: *out = chorusInt32; return true;
    case at::kLong: *out = chorusInt64; return true;
    default: return false;
  }
}
}  // namespace

chorusDataType_t reductionType(at::ScalarType type) {
  chorusDataType_t t;
  TORCH_CHECK(nativeType(type, &t), "chorus backend: reductions on dtype ", c10::toString(type),
              " are not supported (supported: float32, float64, float16, bfloat16, int8, uint8, int32, int64, bool)");
  return t;
}

Movement movementType(at::ScalarType type) {
  chorusDataType_t t;
  if (nativeType(type, &t)) return {t, 1};
  return {chorusUint8, c10::elementSize(type)};
}

namespace {

const char* opName(c10d::ReduceOp::RedOpType op) {
  switch (op) {
    case c10d::ReduceOp::SUM: return "SUM";
    case c10d::ReduceOp::AVG: return "AVG";
    case c10d::ReduceOp::PRODUCT: return "PRODUCT";
    case c10d::ReduceOp::MIN: return "MIN";
    case c10d::ReduceOp::MAX: return "MAX";
    case c10d::ReduceOp::BAND: return "BAND";
    case c10d::ReduceOp::BOR: return "BOR";
    case c10d::ReduceOp::BXOR: return "BXOR";
    case c10d::ReduceOp::PREMUL_SUM: return "PREMUL_SUM";
    default: return "UNKNOWN";
  }
}

bool isFloating(at::ScalarType t) { return at::isFloatingType(t); }

}  // namespace

chorusRedOp_t toChorusOp(const c10d::ReduceOp& op, at::ScalarType type, bool* isPremul, double* premulFactor) {
  *isPremul = false;
  const auto kind = op.op_;
  if (type == at::kBool) {
    // Bytes 0/1: max is "or" and min is "and", which is what a sum or product of bools means.
    switch (kind) {
      case c10d::ReduceOp::SUM: case c10d::ReduceOp::BOR: case c10d::ReduceOp::MAX: return chorusMax;
      case c10d::ReduceOp::PRODUCT: case c10d::ReduceOp::BAND: case c10d::ReduceOp::MIN: return chorusMin;
      default:
        TORCH_CHECK(false, "chorus backend: ReduceOp.", opName(kind), " is not supported on bool tensors");
    }
  }
  switch (kind) {
    case c10d::ReduceOp::SUM: return chorusSum;
    case c10d::ReduceOp::PRODUCT: return chorusProd;
    case c10d::ReduceOp::MIN: return chorusMin;
    case c10d::ReduceOp::MAX: return chorusMax;
    case c10d::ReduceOp::AVG:
      TORCH_CHECK(isFloating(type), "chorus backend: ReduceOp.AVG needs a floating-point dtype (got ",
                  c10::toString(type), "); use SUM and divide");
      return chorusAvg;
    case c10d::ReduceOp::PREMUL_SUM: {
      TORCH_CHECK(isFloating(type), "chorus backend: PREMUL_SUM needs a floating-point dtype (got ", c10::toString(type), ")");
      auto* s = dynamic_cast<c10d::NCCLPreMulSumSupplement*>(op.supplement_.get());
      TORCH_CHECK(s, "chorus backend: PREMUL_SUM arrived without its factor (create it with "
                     "torch.distributed._make_nccl_premul_sum)");
      if (!s->tensor_factors.empty()) {
        const at::Tensor& f = s->tensor_factors.front();
        TORCH_CHECK(f.numel() == 1, "chorus backend: PREMUL_SUM's tensor factor must have one element");
        *premulFactor = f.to(at::kCPU).to(at::kDouble).item<double>();
      } else {
        *premulFactor = s->double_factor;
      }
      *isPremul = true;
      return chorusSum;
    }
    case c10d::ReduceOp::BAND: case c10d::ReduceOp::BOR: case c10d::ReduceOp::BXOR:
      TORCH_CHECK(false, "chorus backend: ReduceOp.", opName(kind),
                  " is not supported on ", c10::toString(type),
                  " tensors (Chorus reduces with SUM, PRODUCT, MIN, MAX, AVG and PREMUL_SUM; bitwise ops only on bool)");
    default:
      TORCH_CHECK(false, "chorus backend: unknown ReduceOp ", static_cast<int>(kind));
  }
}

void checkTensor(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.defined(), "chorus backend: ", what, " is an undefined tensor");
  TORCH_CHECK(t.device().is_cpu(), "chorus backend: ", what, " is on ", t.device().str(),
              "; this backend takes CPU tensors so far (device tensors: docs/DEVICES.md, Limits)");
  TORCH_CHECK(t.layout() == at::kStrided, "chorus backend: ", what, " must be a dense (strided) tensor, not ",
              t.layout());
}

void checkSameType(const std::vector<at::Tensor>& ts, at::ScalarType type, const char* what) {
  for (const auto& t : ts) {
    checkTensor(t, what);
    TORCH_CHECK(t.scalar_type() == type, "chorus backend: ", what, " mixes dtypes (", c10::toString(type), " and ",
                c10::toString(t.scalar_type()), ")");
  }
}

void checkSingle(const std::vector<at::Tensor>& ts, const char* opName) {
  TORCH_CHECK(ts.size() == 1, "chorus backend: ", opName, " takes exactly one tensor per process (got ", ts.size(), ")");
  checkTensor(ts[0], "the tensor");
}

}  // namespace chorus_torch

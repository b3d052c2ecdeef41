// How torch's tensors, dtypes and reduce ops map onto Chorus's C API, and the checks that
// turn a call Chorus cannot serve into a clear Python exception before anything is queued.
#pragma once

#include <chorus/chorus.h>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <ATen/ATen.h>
#include <string>
#include <vector>

namespace chorus_torch {

// Chorus's element type for a torch dtype; bool travels as uint8 (its reductions are remapped
// by toChorusOp). Throws c10::Error (RuntimeError in Python) for dtypes Chorus cannot reduce.
chorusDataType_t reductionType(at::ScalarType type);

// For collectives that only move bytes (broadcast, gathers, scatters, all-to-all, send/recv):
// the native type where there is one, else uint8 with the count scaled by the element size, so
// every dtype (int16, complex, ...) can travel. Returns the element count to pass to Chorus.
struct Movement {
  chorusDataType_t type;
  size_t elementsPer;  // Chorus elements per torch element (1, or the element size for bytes)
};
Movement movementType(at::ScalarType type);

// Chorus's operator for a torch ReduceOp on a dtype. SUM/PRODUCT/MIN/MAX/AVG map one to one;
// on bool SUM and BOR are "or" (max), PRODUCT and BAND are "and" (min), as torch's NCCL backend
// does. PREMUL_SUM returns chorusSum and sets *premulFactor (the caller creates the operator on
// its communicator). Other ops are refused with a message that names them.
chorusRedOp_t toChorusOp(const c10d::ReduceOp& op, at::ScalarType type, bool* isPremul, double* premulFactor);

// The checks every tensor argument gets: CPU, strided (dense) layout, one dtype across a call.
// Non-contiguous tensors are accepted; the caller stages them (see Staged in collectives.h).
void checkTensor(const at::Tensor& t, const char* what);
void checkSameType(const std::vector<at::Tensor>& ts, at::ScalarType type, const char* what);
void checkSingle(const std::vector<at::Tensor>& ts, const char* opName);

}  // namespace chorus_torch

// Chorus reads and writes flat, contiguous buffers; torch tensors may be strided views. A
// Staged tensor is the contiguous buffer a call uses for one of the caller's tensors, copied
// back after the call when it had to be a copy (contiguous tensors are used as they are).
#pragma once

#include <ATen/ATen.h>

namespace chorus_torch {

struct Staged {
  at::Tensor user;  // the caller's tensor
  at::Tensor flat;  // what Chorus sees: `user` itself, or a contiguous copy

  // Read only by the call.
  static Staged input(const at::Tensor& t) { return {t, t.contiguous()}; }
  // Read and written by the call (in-place collectives): staged as an input, copied back after.
  static Staged inout(const at::Tensor& t) { return input(t); }
  // Written only: a non-contiguous tensor gets an uninitialised contiguous buffer.
  static Staged output(const at::Tensor& t) {
    return {t, t.is_contiguous() ? t : at::empty(t.sizes(), t.options().memory_format(at::MemoryFormat::Contiguous))};
  }

  void* data() const { return flat.data_ptr(); }
  size_t numel() const { return static_cast<size_t>(flat.numel()); }
  // After a successful call: the result into the caller's tensor, where it was staged.
  void copyBack() const {
    if (!flat.is_same(user)) user.copy_(flat);
  }
};

}  // namespace chorus_torch

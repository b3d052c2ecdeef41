// ChorusWork: what every call of the chorus process group returns. It completes when its
// Chorus call has run (on the group's worker thread, or on the thread that waits for it: see
// op_queue.h), and carries that call's error, if any, as the exception PyTorch rethrows.
#pragma once

#include <torch/csrc/distributed/c10d/Work.hpp>

#include <ATen/core/ivalue.h>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <vector>

namespace chorus_torch {

class OpQueue;

class ChorusWork : public c10d::Work {
 public:
  ChorusWork(std::shared_ptr<OpQueue> queue, int rank, c10d::OpType type, std::vector<at::Tensor> outputs);

  bool isCompleted() override;
  bool isSuccess() const override;
  std::exception_ptr exception() const override;
  std::vector<at::Tensor> result() override;
  void synchronize() override {}
  // Runs queued calls on this thread until this one is done (in issue order), or waits for the
  // thread that runs it. A timeout (0 = none: every Chorus call has its own deadline, the
  // group's timeout) that passes first raises; the call itself goes on and completes later.
  bool wait(std::chrono::milliseconds timeout) override;
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override;

  // For the queue: the call's place in issue order, then its outcome.
  void setSequence(uint64_t seq) { seq_ = seq; }
  uint64_t sequence() const { return seq_; }
  // Records the outcome (nullptr = success) and wakes threads blocked in the base class.
  void complete(std::exception_ptr error);
  // Completes the future, if anyone asked for it yet (its callbacks run on this thread, as with
  // torch's own backends); one asked for later is created completed.
  void fireFuture();

 private:
  std::shared_ptr<OpQueue> queue_;  // outlives the process group while works are held
  uint64_t seq_ = 0;
  std::vector<at::Tensor> outputs_;
  // Created on the first getFuture() (blocking calls never ask for one); guarded by mutex_.
  c10::intrusive_ptr<c10::ivalue::Future> future_;
  bool futureDue_ = false;  // fireFuture() ran: a future created now starts completed
  // Completes `future` with this call's outcome.
  void settle(const c10::intrusive_ptr<c10::ivalue::Future>& future);
};

}  // namespace chorus_torch

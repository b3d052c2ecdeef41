#include "work.h"

#include "op_queue.h"

#include <c10/util/Exception.h>

namespace chorus_torch {

namespace {
const c10::TypePtr& tensorListType() {
  static const c10::TypePtr type = c10::ListType::create(c10::TensorType::get());
  return type;
}
}  // namespace

ChorusWork::ChorusWork(std::shared_ptr<OpQueue> queue, int rank, c10d::OpType type, std::vector<at::Tensor> outputs)
    : c10d::Work(rank, type),
      queue_(std::move(queue)),
      outputs_(std::move(outputs)) {}

bool ChorusWork::isCompleted() {
  std::lock_guard<std::mutex> g(mutex_);
  return completed_;
}

bool ChorusWork::isSuccess() const {
  std::lock_guard<std::mutex> g(mutex_);
  return completed_ && !exception_;
}

std::exception_ptr ChorusWork::exception() const {
  std::lock_guard<std::mutex> g(mutex_);
  return exception_;
}

std::vector<at::Tensor> ChorusWork::result() { return outputs_; }

bool ChorusWork::wait(std::chrono::milliseconds timeout) {
  TORCH_CHECK(seq_ != 0, "chorus backend: wait() on a call of a coalescing block that has not ended "
                         "(its calls are issued together when the block ends)");
  queue_->waitFor(seq_, timeout);
  std::lock_guard<std::mutex> g(mutex_);
  if (exception_) std::rethrow_exception(exception_);
  return true;
}

c10::intrusive_ptr<c10::ivalue::Future> ChorusWork::getFuture() {
  c10::intrusive_ptr<c10::ivalue::Future> future;
  bool due;
  {
    std::lock_guard<std::mutex> g(mutex_);
    if (future_) return future_;
    future_ = c10::make_intrusive<c10::ivalue::Future>(tensorListType());
    future = future_;
    due = futureDue_;
  }
  if (due) settle(future);
  return future;
}

void ChorusWork::complete(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> g(mutex_);
    completed_ = true;
    exception_ = error;
  }
  cv_.notify_all();
}

void ChorusWork::fireFuture() {
  c10::intrusive_ptr<c10::ivalue::Future> future;
  {
    std::lock_guard<std::mutex> g(mutex_);
    futureDue_ = true;
    future = future_;
  }
  if (future) settle(future);
}

void ChorusWork::settle(const c10::intrusive_ptr<c10::ivalue::Future>& future) {
  std::exception_ptr error = exception();
  if (error) future->setError(error);
  else future->markCompleted(c10::IValue(outputs_));
}

}  // namespace chorus_torch

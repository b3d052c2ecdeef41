#include "core/stream.h"

#include "core/deadline.h"

namespace chorus {

Stream::Stream() : thread_([this] { worker(); }) {}

Stream::~Stream() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Stream::enqueue(Task task) {
  {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(std::move(task));
    enqueued_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
}

// Both waits below spin for a few tens of microseconds before sleeping on the condition
// variable: a futex wake-up costs 5-50 us here, more than a small collective.
static constexpr auto kSpinBeforeSleep = std::chrono::microseconds(50);

chorusResult_t Stream::synchronize() {
  Backoff backoff;
  while (finished_.load(std::memory_order_acquire) != enqueued_.load(std::memory_order_acquire) && backoff.idleFor() < kSpinBeforeSleep)
    backoff.pause();
  std::unique_lock<std::mutex> g(mu_);
  cv_.wait(g, [this] { return queue_.empty() && !running_; });
  return firstError_;
}

chorusResult_t Stream::query() {
  std::lock_guard<std::mutex> g(mu_);
  if (!queue_.empty() || running_) return chorusInProgress;
  return firstError_;
}

void Stream::worker() {
  std::unique_lock<std::mutex> g(mu_);
  for (;;) {
    if (queue_.empty() && !stop_) {
      uint64_t seen = enqueued_.load(std::memory_order_acquire);
      g.unlock();
      Backoff backoff;
      while (enqueued_.load(std::memory_order_acquire) == seen && backoff.idleFor() < kSpinBeforeSleep) backoff.pause();
      g.lock();
    }
    cv_.wait(g, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop requested and drained
    Task task = std::move(queue_.front());
    queue_.pop_front();
    running_ = true;
    g.unlock();
    chorusResult_t r = task();
    g.lock();
    running_ = false;
    finished_.fetch_add(1, std::memory_order_release);
    if (r != chorusSuccess && firstError_ == chorusSuccess) firstError_ = r;
    cv_.notify_all();
  }
}

}  // namespace chorus

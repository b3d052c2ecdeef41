#include "core/stream.h"

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
  }
  cv_.notify_all();
}

chorusResult_t Stream::synchronize() {
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
    cv_.wait(g, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop requested and drained
    Task task = std::move(queue_.front());
    queue_.pop_front();
    running_ = true;
    g.unlock();
    chorusResult_t r = task();
    g.lock();
    running_ = false;
    if (r != chorusSuccess && firstError_ == chorusSuccess) firstError_ = r;
    cv_.notify_all();
  }
}

}  // namespace chorus

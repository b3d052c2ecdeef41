// Streams: an in-order queue with a worker thread, where the waiter helps.
//
// Tasks run one at a time, in order, on whichever thread gets to them first: the worker (so
// that enqueued work progresses while the caller does something else) or the thread blocked in
// synchronize() (so that a caller who waits does not pay a hand-off to another thread and back:
// on an oversubscribed host each hand-off costs a scheduler wake-up of tens of microseconds,
// more than a small collective takes).
#include "core/stream.h"

namespace chorus {

Stream::Stream() : thread_([this] { worker(); }) {}

Stream::~Stream() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  workCv_.notify_all();
  thread_.join();
}

void Stream::enqueue(Task task) {
  {
    std::unique_lock<std::mutex> g(mu_);
    if (queue_.size() >= kMaxQueued) {
      // Woken at half, not at every start: a full stream's caller then refills it in one go
      // instead of trading a thread wake-up per call with the worker.
      ++waitingForSpace_;
      spaceCv_.wait(g, [this] { return queue_.size() <= kMaxQueued / 2; });
      --waitingForSpace_;
    }
    queue_.push_back(std::move(task));
  }
  workCv_.notify_one();
}

size_t Stream::queued() {
  std::lock_guard<std::mutex> g(mu_);
  return queue_.size();
}

int Stream::blockedCallers() {
  std::lock_guard<std::mutex> g(mu_);
  return waitingForSpace_;
}

// Pops and runs the next task; the caller holds the lock, !running_ and the queue is not empty.
void Stream::runOne(std::unique_lock<std::mutex>& g) {
  Task task = std::move(queue_.front());
  queue_.pop_front();
  if (waitingForSpace_ > 0 && queue_.size() <= kMaxQueued / 2) spaceCv_.notify_all();
  running_ = true;
  g.unlock();
  chorusResult_t r = task();
  g.lock();
  running_ = false;
  if (r != chorusSuccess && firstError_ == chorusSuccess) firstError_ = r;
  // Waiters sleep until the queue drains; they are not woken per task.
  if (queue_.empty()) idleCv_.notify_all();
}

chorusResult_t Stream::synchronize() {
  std::unique_lock<std::mutex> g(mu_);
  for (;;) {
    if (!running_ && !queue_.empty()) runOne(g);
    else if (!running_) return firstError_;
    else idleCv_.wait(g);
  }
}

chorusResult_t Stream::query() {
  std::lock_guard<std::mutex> g(mu_);
  if (!queue_.empty() || running_) return chorusInProgress;
  return firstError_;
}

void Stream::noteErrorText(const std::string& text) {
  std::lock_guard<std::mutex> g(mu_);
  if (firstErrorText_.empty()) firstErrorText_ = text;
}

std::string Stream::errorText() {
  std::lock_guard<std::mutex> g(mu_);
  return firstErrorText_;
}

void Stream::worker() {
  std::unique_lock<std::mutex> g(mu_);
  for (;;) {
    workCv_.wait(g, [this] { return (stop_ && queue_.empty()) || (!running_ && !queue_.empty()); });
    if (queue_.empty()) return;  // stop requested and drained
    runOne(g);
  }
}

}  // namespace chorus

// Streams: an in-order queue with a worker thread, where the waiter helps.
//
// Tasks run one at a time, in order, on whichever thread holds the consumer lock: the worker (so
// that enqueued work progresses while the caller does something else) or the thread blocked in
// synchronize() (so that a caller who waits does not pay a hand-off to another thread and back:
// on an oversubscribed host each hand-off costs a scheduler wake-up of tens of microseconds,
// more than a small collective takes).
#include "core/stream.h"

#include <chrono>

namespace chorus {
namespace {

// How long the worker polls an empty queue before it sleeps: long enough to catch the next call
// of a caller in a loop (a wake-up costs it a futex call and the worker a context switch), short
// enough not to matter on a host with more threads than CPUs.
constexpr auto kPollFor = std::chrono::microseconds(20);

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

Stream::Stream() : ring_(new Task[kMaxQueued]), thread_([this] { worker(); }) {}

Stream::~Stream() {
  {
    std::lock_guard<std::mutex> g(sleepMu_);
    stop_.store(true);
  }
  workCv_.notify_all();
  thread_.join();
}

void Stream::enqueue(Task task) {
  std::lock_guard<std::mutex> producer(prod_.mu);
  const uint64_t h = prod_.head.load(std::memory_order_relaxed);
  if (h - prod_.tailSeen >= kMaxQueued && h - (prod_.tailSeen = cons_.tail.load()) >= kMaxQueued) {
    // Woken at half, not at every start: a full stream's caller then refills it in one go
    // instead of trading a thread wake-up per call with the worker.
    std::unique_lock<std::mutex> g(sleepMu_);
    waitingForSpace_.fetch_add(1);
    spaceCv_.wait(g, [&] { return h - (prod_.tailSeen = cons_.tail.load()) <= kMaxQueued / 2; });
    waitingForSpace_.fetch_sub(1);
  }
  ring_[h % kMaxQueued] = std::move(task);
  prod_.head.store(h + 1);  // publishes the slot (sequentially consistent: see workerAsleep_)
  if (workerAsleep_.load()) {
    std::lock_guard<std::mutex> g(sleepMu_);
    workCv_.notify_one();
  }
}

size_t Stream::queued() const { return static_cast<size_t>(prod_.head.load() - cons_.tail.load()); }

int Stream::blockedCallers() const { return waitingForSpace_.load(); }

void Stream::runAvailable() {
  for (;;) {
    const uint64_t t = cons_.tail.load(std::memory_order_relaxed);
    if (cons_.headSeen == t && (cons_.headSeen = prod_.head.load(std::memory_order_acquire)) == t) return;
    Task task = std::move(ring_[t % kMaxQueued]);
    cons_.running.store(true);  // before the start is counted: query() never sees neither
    cons_.tail.store(t + 1);    // the slot is free for an enqueuer
    if (waitingForSpace_.load() > 0 && prod_.head.load() - (t + 1) <= kMaxQueued / 2) {
      std::lock_guard<std::mutex> g(sleepMu_);
      spaceCv_.notify_all();
    }
    const chorusResult_t r = task();
    task.reset();  // releases its pins before the stream counts as idle
    if (r != chorusSuccess) {
      int expected = chorusSuccess;
      firstError_.compare_exchange_strong(expected, r);
    }
    cons_.running.store(false, std::memory_order_release);
  }
}

chorusResult_t Stream::synchronize() {
  std::lock_guard<std::mutex> g(cons_.mu);  // waits for the worker's task, then helps
  runAvailable();
  return static_cast<chorusResult_t>(firstError_.load());
}

chorusResult_t Stream::query() const {
  if (!empty() || cons_.running.load()) return chorusInProgress;
  return static_cast<chorusResult_t>(firstError_.load());
}

void Stream::noteErrorText(const std::string& text) {
  std::lock_guard<std::mutex> g(errorMu_);
  if (firstErrorText_.empty()) firstErrorText_ = text;
}

std::string Stream::errorText() {
  std::lock_guard<std::mutex> g(errorMu_);
  return firstErrorText_;
}

bool Stream::awaitWork() {
  const auto until = std::chrono::steady_clock::now() + kPollFor;
  for (int i = 0; empty(); ++i) {
    if (stop_.load()) return false;
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) break;
    cpuRelax();
  }
  if (!empty()) return true;
  std::unique_lock<std::mutex> g(sleepMu_);
  workerAsleep_.store(true);  // then look again: an enqueuer that missed the flag is seen here
  workCv_.wait(g, [this] { return !empty() || stop_.load(); });
  workerAsleep_.store(false);
  return !empty() || !stop_.load();
}

void Stream::worker() {
  do {
    std::lock_guard<std::mutex> g(cons_.mu);
    runAvailable();
  } while (awaitWork());
}

}  // namespace chorus

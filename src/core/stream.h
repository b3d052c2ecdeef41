// chorusStream_t: an in-order queue of work with one worker thread. Enqueued calls run one
// after another (on the worker, or on a thread waiting in synchronize, which helps); the first
// failure is kept and reported by synchronize/query.
//
// The queue is bounded, as a GPU stream's launch queue is: a caller that enqueues onto a full
// stream (kMaxQueued calls waiting) blocks until it has drained to half. Without the bound a
// loop of small stream calls grew each rank by ~100 bytes per call, ~200 MB a second (8-byte
// all-reduce, np 2), until the first synchronize. Each queued call ends by its own deadline, so
// the wait does too.
//
// The queue is a ring of preallocated task slots: enqueueing a call stores it and publishes one
// index, and neither side allocates or waits on the other's lock. Threads sleep only when they
// must (the worker on an empty queue after a short poll, a caller on a full one), and a wake-up
// is sent only to a thread that sleeps. Before, a mutex, a condition variable and two heap
// blocks per call made an 8-byte stream call 1.5-2x a blocking one (docs/PERFORMANCE.md).
#pragma once

#include <chorus/chorus.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/inline_task.h"

namespace chorus {

class Stream {
 public:
  // Room for a queued call's captures (a communicator pin and one CollCall) without allocation.
  static constexpr size_t kTaskBytes = 160;
  // A task returns chorusSuccess or an error code (its text already recorded by the task). It
  // is destroyed, releasing what it captured, right after it ran.
  using Task = InlineTask<chorusResult_t, kTaskBytes>;

  Stream();
  ~Stream();  // drains the queue, then joins the worker

  // The most calls waiting in the queue (the one running not counted).
  static constexpr size_t kMaxQueued = 1024;

  // Blocks while kMaxQueued calls wait, until half of them have started. Callers may be on
  // several threads.
  void enqueue(Task task);
  // Calls waiting, and callers blocked in enqueue on a full queue (tests).
  size_t queued() const;
  int blockedCallers() const;
  // Whether the worker sleeps, waiting for a task (tests).
  bool workerAsleep() const { return workerAsleep_.load(); }
  // Waits until the queue is empty and nothing runs; returns the first error seen.
  chorusResult_t synchronize();
  // chorusInProgress while work is queued or running, else the first error (or success).
  chorusResult_t query() const;
  // The text of the first error (tasks report it with noteErrorText), for chorusGetLastError on
  // the thread that synchronizes.
  void noteErrorText(const std::string& text);
  std::string errorText();

 private:
  void worker();
  // Runs tasks until the queue is empty; the caller holds cons_.mu.
  void runAvailable();
  // The worker's wait for work: false once stop was asked and the queue is empty.
  bool awaitWork();
  bool empty() const { return prod_.head.load() == cons_.tail.load(); }

  std::unique_ptr<Task[]> ring_;  // kMaxQueued slots; slot i % kMaxQueued holds task i
  // The enqueuers' line and the consumer's: each side writes only its own, and reads the other's
  // only when its cached copy says the ring is full (enqueuer) or empty (consumer).
  struct alignas(64) {
    std::atomic<uint64_t> head{0};  // tasks enqueued
    uint64_t tailSeen = 0;          // cons_.tail as last read
    std::mutex mu;                  // one enqueuer at a time
  } prod_;
  struct alignas(64) {
    std::atomic<uint64_t> tail{0};      // tasks started
    uint64_t headSeen = 0;              // prod_.head as last read
    std::atomic<bool> running{false};   // a task is executing
    std::mutex mu;  // held by the thread running tasks: the worker, or a synchronizer
  } cons_;
  std::atomic<int> firstError_{chorusSuccess};

  // Sleeping, only where a thread must (each flag is set before its condition is checked again,
  // and the other side wakes it under the mutex, so no wake-up is lost).
  std::mutex sleepMu_;
  std::condition_variable workCv_;   // the worker: a task was enqueued, or stop
  std::atomic<bool> workerAsleep_{false};
  std::condition_variable spaceCv_;  // enqueuers of a full queue: it drained to half
  std::atomic<int> waitingForSpace_{0};
  std::atomic<bool> stop_{false};

  std::mutex errorMu_;
  std::string firstErrorText_;
  std::thread thread_;
};

}  // namespace chorus

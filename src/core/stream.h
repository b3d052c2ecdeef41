// chorusStream_t: an in-order queue of work with one worker thread. Enqueued calls run one
// after another (on the worker, or on a thread waiting in synchronize, which helps); the first
// failure is kept and reported by synchronize/query.
//
// The queue is bounded, as a GPU stream's launch queue is: a caller that enqueues onto a full
// stream (kMaxQueued calls waiting) blocks until it has drained to half. Without the bound a
// loop of small stream calls grew each rank by ~100 bytes per call, ~200 MB a second (8-byte
// all-reduce, np 2), until the first synchronize. Each queued call ends by its own deadline, so
// the wait does too.
#pragma once

#include <chorus/chorus.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace chorus {

class Stream {
 public:
  // A task returns chorusSuccess or an error code (its text already recorded by the task).
  using Task = std::function<chorusResult_t()>;

  Stream();
  ~Stream();  // drains the queue, then joins the worker

  // The most calls waiting in the queue (the one running not counted).
  static constexpr size_t kMaxQueued = 1024;

  // Blocks while kMaxQueued calls wait, until half of them have started.
  void enqueue(Task task);
  // Calls waiting, and callers blocked in enqueue on a full queue (tests).
  size_t queued();
  int blockedCallers();
  // Waits until the queue is empty and nothing runs; returns the first error seen.
  chorusResult_t synchronize();
  // chorusInProgress while work is queued or running, else the first error (or success).
  chorusResult_t query();
  // The text of the first error (tasks report it with noteErrorText), for chorusGetLastError on
  // the thread that synchronizes.
  void noteErrorText(const std::string& text);
  std::string errorText();

 private:
  void worker();
  void runOne(std::unique_lock<std::mutex>& lock);

  std::mutex mu_;
  std::condition_variable workCv_;  // the worker: a task may be runnable, or stop
  std::condition_variable idleCv_;  // waiters: the queue drained
  std::condition_variable spaceCv_;  // enqueuers of a full queue: it drained to half
  int waitingForSpace_ = 0;
  std::deque<Task> queue_;
  bool running_ = false;  // a task is executing
  bool stop_ = false;
  chorusResult_t firstError_ = chorusSuccess;
  std::string firstErrorText_;
  std::thread thread_;
};

}  // namespace chorus

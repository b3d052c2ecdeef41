// chorusStream_t: an in-order queue of work with one worker thread. Enqueued calls run one
// after another; the first failure is kept and reported by synchronize/query.
#pragma once

#include <chorus/chorus.h>

#include <atomic>
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

  void enqueue(Task task);
  // Waits until the queue is empty and nothing runs; returns the first error seen.
  chorusResult_t synchronize();
  // chorusInProgress while work is queued or running, else the first error (or success).
  chorusResult_t query();

 private:
  void worker();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool running_ = false;  // a task is executing
  std::atomic<uint64_t> enqueued_{0}, finished_{0};  // for the spin phase of the waits
  bool stop_ = false;
  chorusResult_t firstError_ = chorusSuccess;
  std::thread thread_;
};

}  // namespace chorus

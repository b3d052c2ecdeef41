// chorusStream_t: an in-order queue of work with one worker thread. Enqueued calls run one
// after another (on the worker, or on a thread waiting in synchronize, which helps); the first
// failure is kept and reported by synchronize/query.
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

  void enqueue(Task task);
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
  std::deque<Task> queue_;
  bool running_ = false;  // a task is executing
  bool stop_ = false;
  chorusResult_t firstError_ = chorusSuccess;
  std::string firstErrorText_;
  std::thread thread_;
};

}  // namespace chorus

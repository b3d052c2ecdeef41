// The process group's in-order queue of Chorus calls.
//
// torch.distributed calls return at once with a Work; the calls must then run in issue order
// (every rank issues the same sequence). They run one batch at a time on whichever thread gets
// there first: the group's worker thread, so that work queued by DDP's backward progresses
// while autograd computes, or a thread blocked in Work::wait(), which runs the queue up to its
// own call itself instead of paying two thread hand-offs (on an oversubscribed host each costs
// a scheduler wake-up of tens of microseconds, more than a small all-reduce takes).
//
// Point-to-point calls need more: Chorus's send may block until the peer receives, so an
// isend that runs alone while its rank's matching irecv is still to be issued can deadlock
// against a peer doing the same (both sending first). Consecutive queued sends and receives
// therefore run as ONE Chorus group (chorusGroupStart/End: posted together, never deadlock),
// and the worker holds back a run of point-to-point calls at the queue's tail for a short window
// (CHORUS_TORCH_P2P_WINDOW_US) so that the calls issued right after it can join. A thread that
// waits for one of them does not wait out the window: the user has issued what belongs together.
// batch_isend_irecv (torch's coalescing) always forms one group.
#pragma once

#include <chorus/chorus.h>

#include <ATen/core/ivalue.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "work.h"

namespace chorus_torch {

// One Chorus call: `issue` makes it (throwing on failure), `finish` copies staged outputs
// back into the caller's tensors after success (may be empty).
struct QueuedOp {
  std::function<void()> issue;
  std::function<void()> finish;
  c10::intrusive_ptr<ChorusWork> work;
};

// What runs as one unit: one call, or the calls of a coalescing block (one Chorus group).
struct Batch {
  std::vector<QueuedOp> ops;
  bool pointToPoint = false;  // joins neighbouring point-to-point batches into one group
  bool grouped = false;       // run inside chorusGroupStart/End even when it holds one call
  uint64_t seq = 0;           // set by enqueue: the sequence of its last op
  std::chrono::steady_clock::time_point queuedAt;
};

class OpQueue {
 public:
  // comm is used only for error texts and groups; the queue does not own it.
  OpQueue(chorusComm_t comm, std::chrono::microseconds workerDelay, std::chrono::microseconds p2pWindow);
  // Runs what is queued, then stops the worker (shutdown()).
  ~OpQueue();
  OpQueue(const OpQueue&) = delete;
  OpQueue& operator=(const OpQueue&) = delete;

  // Gives each op's work its sequence number and queues the batch.
  void enqueue(Batch batch);
  // Returns once call `seq` has run, running queued calls on this thread meanwhile. A non-zero
  // timeout that passes first throws (the call stays queued and completes later).
  void waitFor(uint64_t seq, std::chrono::milliseconds timeout);
  // Waits for every queued call.
  void drain();
  // Runs what is queued and stops the worker; later waits return at once (idempotent).
  void shutdown();
  // Whether any call has failed (the communicator is then broken).
  bool anyFailed() const { return failed_.load(); }

  // Throws std::runtime_error with Chorus's last error for comm if r is not chorusSuccess.
  static void check(chorusResult_t r, chorusComm_t comm, const char* what);

 private:
  using Clock = std::chrono::steady_clock;
  void worker();
  // Whether the worker should leave the front batch for now (see the header comment).
  bool holdBack(Clock::time_point* until) const;
  // Pops the front batch (and the point-to-point batches right behind a point-to-point one) and
  // runs it; the caller holds the lock and !running_.
  void runFront(std::unique_lock<std::mutex>& g);
  std::exception_ptr execute(std::vector<Batch>& run);

  chorusComm_t comm_;
  const Clock::duration workerDelay_;
  const Clock::duration p2pWindow_;
  std::mutex mu_;
  std::condition_variable workCv_;  // the worker: work arrived, or the runner finished
  std::condition_variable doneCv_;  // waiters: a batch completed
  std::deque<Batch> queue_;
  uint64_t nextSeq_ = 1;
  uint64_t completedSeq_ = 0;
  bool running_ = false;
  bool workerIdle_ = false;
  bool stop_ = false;
  std::atomic<bool> failed_{false};
  std::thread thread_;
};

}  // namespace chorus_torch

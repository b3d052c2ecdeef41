// The process group's in-order queue of Chorus calls.
//
// torch.distributed calls return at once with a Work; the calls must then run in issue order
// (every rank issues the same sequence). They run one batch at a time on whichever thread gets
// there first: a runner thread of the group, so that work queued by DDP's backward progresses
// while autograd computes, or a thread blocked in Work::wait(), which runs the queue up to its
// own call itself instead of paying two thread hand-offs (on an oversubscribed host each costs
// a scheduler wake-up of tens of microseconds, more than a small all-reduce takes). Runners
// leave a fresh call alone for CHORUS_TORCH_WORKER_DELAY_US so that a caller about to wait runs
// it itself. Waking a runner costs scheduler time that a blocking caller pays for (measured: an
// 8-byte all-reduce at 2 ranks takes 20-40 us with a wake per call, 9-13 us without), so the
// queue adapts: after a few calls in a row that their callers ran themselves, enqueue stops
// waking runners and an idle runner polls every kLazyPoll instead (a call nobody waits for still
// starts within that); as soon as a runner has to run a call, enqueue wakes runners again; a
// runner idle for kLazyIdle goes back to sleeping until woken.
//
// The thread that ran a call completes its Work and then its future, whose callbacks (DDP's
// comm hooks) run right there and may issue more calls and block on them (PowerSGD waits on a
// future inside its callback). So that a blocked callback never stalls the queue, a runner that
// is inside callbacks does not count as available: when work is queued and no runner is
// available, another runner thread starts (at most kMaxRunners; usually one exists).
//
// Point-to-point calls need more: Chorus's send may block until the peer receives, so an
// isend that runs alone while its rank's matching irecv is still to be issued can deadlock
// against a peer doing the same (both sending first). Consecutive queued sends and receives
// therefore run as ONE Chorus group (chorusGroupStart/End: posted together, never deadlock),
// and runners hold back a run of point-to-point calls at the queue's tail for a short window
// (CHORUS_TORCH_P2P_WINDOW_US) so that the calls issued right after it can join. A thread that
// waits for one of them does not wait out the window: the user has issued what belongs together.
// batch_isend_irecv (torch's coalescing) always forms one group.
#pragma once

#include <chorus/chorus.h>

#include <ATen/core/ivalue.h>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
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

class OpQueue : public std::enable_shared_from_this<OpQueue> {
 public:
  // comm is used only for error texts and groups; the queue does not own it.
  OpQueue(chorusComm_t comm, std::chrono::microseconds workerDelay, std::chrono::microseconds p2pWindow);
  // Runs what is queued, then stops the runners (shutdown()).
  ~OpQueue();
  OpQueue(const OpQueue&) = delete;
  OpQueue& operator=(const OpQueue&) = delete;

  // Gives each op's work its sequence number and queues the batch.
  void enqueue(Batch batch);
  // Returns once call `seq` has run. Without a timeout (0) the calling thread runs queued calls
  // itself meanwhile; with one it only waits (a call it ran could not be interrupted), and
  // throws when the timeout passes first (the call completes later, on a runner).
  void waitFor(uint64_t seq, std::chrono::milliseconds timeout);
  // Runs what is queued and stops the runners; later waits return at once (idempotent). Called
  // on a runner (the last reference to a process group dropped inside a future callback), it
  // leaves that runner to joinOrphans().
  void shutdown();
  // Joins the runners that shut their own queue down (above), wherever they are: at interpreter
  // exit, before Python finalizes, no runner may be left inside a Python callback. Call without
  // the GIL (a runner may be waiting for it).
  static void joinOrphans();

  // Throws std::runtime_error with Chorus's last error for comm if r is not chorusSuccess.
  static void check(chorusResult_t r, chorusComm_t comm, const char* what);

  // Runner threads at most: one per level of callbacks blocked inside callbacks.
  static constexpr size_t kMaxRunners = 8;
  // Calls in a row run by their waiters before enqueue stops waking runners.
  static constexpr int kLazyAfter = 4;
  // How often an unwoken idle runner looks at the queue, and for how long it keeps doing so.
  static constexpr std::chrono::milliseconds kLazyPoll{1};
  static constexpr std::chrono::milliseconds kLazyIdle{1000};

 private:
  using Clock = std::chrono::steady_clock;
  void runner();
  // Starts a runner if work is queued and none is available; the caller holds the lock.
  void ensureRunner();
  // Whether runners should leave the front batch for now (see the header comment).
  bool holdBack(Clock::time_point* until) const;
  // Pops the front batch (and the point-to-point batches right behind a point-to-point one) and
  // runs it; the caller holds the lock and !running_. onRunner: called by a runner thread.
  void runFront(std::unique_lock<std::mutex>& g, bool onRunner);
  std::exception_ptr execute(std::vector<Batch>& run);

  chorusComm_t comm_;
  const Clock::duration workerDelay_;
  const Clock::duration p2pWindow_;
  std::mutex mu_;
  std::condition_variable workCv_;  // runners: work arrived, or the running batch finished
  std::condition_variable doneCv_;  // waiters: a batch completed
  std::deque<Batch> queue_;
  uint64_t nextSeq_ = 1;
  uint64_t completedSeq_ = 0;
  bool running_ = false;
  bool stop_ = false;
  bool wakeRunners_ = true;      // enqueue wakes idle runners (see the header comment)
  int waiterRuns_ = 0;           // calls in a row run by the threads that waited for them
  Clock::time_point lastRun_;    // when a batch last finished
  size_t idleRunners_ = 0;       // runners blocked waiting for work
  size_t availableRunners_ = 0;  // runners not inside future callbacks
  // Each runner holds the queue (shared_from_this), so the queue outlives every runner even when
  // its last other reference goes on a runner; so the queue is always owned by a shared_ptr, and
  // the first runner starts with the first call (ensureRunner), not in the constructor.
  std::vector<std::thread> runners_;
};

}  // namespace chorus_torch

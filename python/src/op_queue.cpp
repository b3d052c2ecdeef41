#include "op_queue.h"

#include <stdexcept>

namespace chorus_torch {

namespace {

// Runners that shut their own queue down (OpQueue::shutdown on a runner), until joinOrphans().
std::mutex gOrphansMutex;
std::vector<std::thread> gOrphans;

}  // namespace

OpQueue::OpQueue(chorusComm_t comm, std::chrono::microseconds workerDelay, std::chrono::microseconds p2pWindow)
    : comm_(comm), workerDelay_(workerDelay), p2pWindow_(p2pWindow) {}

void OpQueue::joinOrphans() {
  std::vector<std::thread> orphans;
  {
    std::lock_guard<std::mutex> g(gOrphansMutex);
    orphans.swap(gOrphans);
  }
  for (auto& t : orphans) {
    if (t.get_id() == std::this_thread::get_id()) t.detach();
    else t.join();
  }
}

OpQueue::~OpQueue() { shutdown(); }

void OpQueue::shutdown() {
  std::vector<std::thread> runners;
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;  // runners drain the queue, then leave; no new runner starts
    runners.swap(runners_);
  }
  workCv_.notify_all();
  for (auto& t : runners) {
    if (t.get_id() == std::this_thread::get_id()) {
      // The process group's last reference went inside a future callback on this runner: it
      // finishes its loop on its own, and the interpreter's exit joins it (joinOrphans).
      std::lock_guard<std::mutex> g(gOrphansMutex);
      gOrphans.push_back(std::move(t));
    } else {
      t.join();
    }
  }
}

void OpQueue::check(chorusResult_t r, chorusComm_t comm, const char* what) {
  if (r == chorusSuccess) return;
  std::string text = chorusGetLastError(comm);
  if (text.empty()) text = chorusGetErrorString(r);
  throw std::runtime_error(std::string("chorus backend: ") + what + " failed: " + chorusGetErrorString(r) + ": " + text);
}

void OpQueue::ensureRunner() {
  if (stop_ || queue_.empty() || availableRunners_ > 0 || runners_.size() >= kMaxRunners) return;
  ++availableRunners_;
  runners_.emplace_back([self = shared_from_this()] { self->runner(); });
}

void OpQueue::enqueue(Batch batch) {
  bool wake;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& op : batch.ops) op.work->setSequence(nextSeq_++);
    batch.seq = nextSeq_ - 1;
    batch.queuedAt = Clock::now();
    queue_.push_back(std::move(batch));
    ensureRunner();
    wake = wakeRunners_ && idleRunners_ > 0;
  }
  if (wake) workCv_.notify_one();
}

bool OpQueue::holdBack(Clock::time_point* until) const {
  if (stop_) return false;
  const Batch& front = queue_.front();
  if (front.pointToPoint) {
    // A run of point-to-point calls that reaches the tail may still grow: wait for the window
    // to pass since the newest one was queued.
    for (const Batch& b : queue_)
      if (!b.pointToPoint) return false;
    *until = queue_.back().queuedAt + p2pWindow_;
  } else {
    *until = front.queuedAt + workerDelay_;
  }
  return Clock::now() < *until;
}

void OpQueue::runner() {
  std::unique_lock<std::mutex> g(mu_);
  for (;;) {
    if (running_ || queue_.empty()) {
      if (stop_ && queue_.empty()) {
        --availableRunners_;
        return;
      }
      ++idleRunners_;
      if (wakeRunners_) {
        workCv_.wait(g);
      } else {
        workCv_.wait_for(g, kLazyPoll);
        // Long quiet: sleep until woken again.
        if (queue_.empty() && Clock::now() - lastRun_ > kLazyIdle) wakeRunners_ = true;
      }
      --idleRunners_;
      continue;
    }
    Clock::time_point until;
    if (holdBack(&until)) {
      // Timed, so nobody needs to wake the runner when the hold-back ends.
      workCv_.wait_until(g, until);
      continue;
    }
    runFront(g, /*onRunner=*/true);
  }
}

std::exception_ptr OpQueue::execute(std::vector<Batch>& run) {
  size_t nops = 0;
  bool grouped = false;
  for (const Batch& b : run) {
    nops += b.ops.size();
    grouped = grouped || b.grouped;
  }
  try {
    if (nops > 1 || grouped) {
      check(chorusGroupStart(), comm_, "chorusGroupStart");
      try {
        for (Batch& b : run)
          for (QueuedOp& op : b.ops) op.issue();
      } catch (...) {
        chorusGroupEnd();  // cancels the recorded calls; the first error is what we report
        throw;
      }
      check(chorusGroupEnd(), comm_, nops > 1 ? "a group of calls" : "a grouped call");
    } else {
      run.front().ops.front().issue();
    }
    for (Batch& b : run)
      for (QueuedOp& op : b.ops)
        if (op.finish) op.finish();
    return nullptr;
  } catch (...) {
    return std::current_exception();
  }
}

void OpQueue::runFront(std::unique_lock<std::mutex>& g, bool onRunner) {
  std::vector<Batch> run;
  run.push_back(std::move(queue_.front()));
  queue_.pop_front();
  if (run.front().pointToPoint) {
    while (!queue_.empty() && queue_.front().pointToPoint) {
      run.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  running_ = true;
  g.unlock();
  std::exception_ptr error = execute(run);
  // The works' state is set before the sequence is published, so that a waiter that sees the
  // sequence done also sees the outcome.
  for (Batch& b : run)
    for (QueuedOp& op : b.ops) op.work->complete(error);
  g.lock();
  running_ = false;
  completedSeq_ = run.back().seq;
  lastRun_ = Clock::now();
  if (onRunner) {
    waiterRuns_ = 0;
    wakeRunners_ = true;  // calls are left to the runners: wake them at once
  } else if (++waiterRuns_ >= kLazyAfter && wakeRunners_) {
    // Callers run their own calls: stop waking runners for them. Runners asleep until woken
    // are woken this once, so that they poll from now on.
    wakeRunners_ = false;
    if (idleRunners_ > 0) workCv_.notify_all();
  }
  doneCv_.notify_all();
  // Idle runners need to hear of the next call only if it is already queued (and they are woken
  // at all): a wake per call is what the lazy mode avoids.
  if (idleRunners_ > 0 && wakeRunners_ && !queue_.empty()) workCv_.notify_one();
  if (onRunner) {
    // Callbacks may block on calls queued after this one: this runner does not count until
    // they return, and another one starts if work is waiting.
    --availableRunners_;
    ensureRunner();
  }
  g.unlock();
  // Futures last and unlocked: their callbacks (DDP's comm hooks) may queue and wait for more.
  for (Batch& b : run)
    for (QueuedOp& op : b.ops) op.work->fireFuture();
  run.clear();  // the calls' tensors and closures go before the lock is taken again
  g.lock();
  if (onRunner) ++availableRunners_;
}

void OpQueue::waitFor(uint64_t seq, std::chrono::milliseconds timeout) {
  const bool timed = timeout.count() > 0;
  const auto deadline = Clock::now() + timeout;
  std::unique_lock<std::mutex> g(mu_);
  while (completedSeq_ < seq) {
    if (!timed && !running_ && !queue_.empty()) {
      runFront(g, /*onRunner=*/false);
      continue;
    }
    if (!timed) {
      doneCv_.wait(g);
    } else if (doneCv_.wait_until(g, deadline) == std::cv_status::timeout && completedSeq_ < seq) {
      throw std::runtime_error("chorus backend: Work.wait timed out after " + std::to_string(timeout.count()) +
                               " ms (the call is still queued or running and completes later)");
    }
  }
}

}  // namespace chorus_torch

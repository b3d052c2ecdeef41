#include "core/run_ahead.h"

#include <algorithm>
#include <thread>

#include "base/error.h"

namespace chorus {
namespace {

// a is at or after b, in ordinals that wrap at 2^32.
bool atOrAfter(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) >= 0; }

Clock::duration seconds(double s) { return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)); }

}  // namespace

RunAheadWatch::RunAheadWatch(int nranks, double timeoutSec, double probePeriodSec, const std::atomic<bool>* abortFlag)
    : pending_(static_cast<size_t>(nranks)),
      timeout_(seconds(timeoutSec)),
      period_(seconds(probePeriodSec)),
      timeoutSec_(timeoutSec),
      abortFlag_(abortFlag) {}

void RunAheadWatch::drop(int peer) {
  pending_[peer].active = false;
  active_.erase(std::find(active_.begin(), active_.end(), peer));
}

void RunAheadWatch::watch(const ExecPlan& plan, uint32_t firstSeq, uint32_t lastSeq, const CallStamp& ours, const Prober& probe) {
  bool sendOnly = false;
  for (const ExecPlan::PeerSteps& ps : plan.peers) {
    if (!ps.recvs.empty()) {
      // It sent to this rank in this run: it entered the run's collectives, so it has passed
      // every earlier one (and took their data).
      if (pending_[ps.peer].active) drop(ps.peer);
    } else if (!ps.sends.empty()) {
      sendOnly = true;
    }
  }
  if (!sendOnly && active_.empty()) return;  // the common case: every peer also sent to us
  const Clock::time_point now = Clock::now();
  for (const ExecPlan::PeerSteps& ps : plan.peers) {
    Pending& p = pending_[ps.peer];
    if (!ps.recvs.empty() || ps.sends.empty() || p.active) continue;
    p.active = true;
    p.seq = firstSeq;
    p.since = now;
    p.nextProbe = now + period_;
    active_.push_back(ps.peer);
  }
  for (size_t k = 0; k < active_.size();) {
    const int peer = active_[k];
    if (now < pending_[peer].nextProbe) {
      ++k;
      continue;
    }
    check(peer, lastSeq, ours, probe, now);
    if (k < active_.size() && active_[k] == peer) ++k;  // else dropped: active_[k] is the next one
  }
  // Too far ahead: wait (asking) until the peer is back within half the lead.
  for (size_t k = 0; k < active_.size();) {
    const int peer = active_[k];
    if (lead(peer, lastSeq) > kMaxLead) holdBack(peer, lastSeq, ours, probe);
    if (k < active_.size() && active_[k] == peer) ++k;
  }
}

uint32_t RunAheadWatch::lead(int peer, uint32_t lastSeq) const { return lastSeq - pending_[peer].seq + 1; }

void RunAheadWatch::holdBack(int peer, uint32_t lastSeq, const CallStamp& ours, const Prober& probe) {
  auto pause = std::chrono::microseconds(100);
  for (;;) {
    check(peer, lastSeq, ours, probe, Clock::now());  // throws at the deadline, as a wait would
    if (!pending_[peer].active || lead(peer, lastSeq) <= kMaxLead / 2) return;
    if (abortFlag_ && abortFlag_->load(std::memory_order_relaxed))
      CHORUS_THROW(chorusInvalidUsage, "aborted by chorusCommAbort while waiting for rank %d to catch up", peer);
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
}

void RunAheadWatch::check(int peer, uint32_t lastSeq, const CallStamp& ours, const Prober& probe, Clock::time_point now) {
  Pending& p = pending_[peer];
  // Bounded: a silent peer costs this rank at most half a second per question, and the
  // question is never asked past the deadline it serves.
  double left = std::chrono::duration<double>(p.since + timeout_ - now).count();
  PeerProbe got = probe(peer, Deadline::after(std::clamp(left, 0.05, 0.5)));
  if (got.reach == HealthService::Reach::Gone) {
    // Gone is no error here: a peer that took this rank's data, finished its last call and
    // destroyed its communicator is gone too (a ring all-reduce of fewer elements than ranks
    // only sends to the next rank; CI saw the last rank of a perf run blamed this way). Its
    // data went out and this rank's part is done; if the peer died instead, the ranks that
    // wait on it fail, and so does this rank's next exchange with it (the transports watch
    // their peers).
    drop(peer);
    return;
  }
  throwIfPeerWillNotCome(peer, got, ours, "a check that it takes the data this rank sent it");
  const Clock::time_point after = Clock::now();
  if (got.reach == HealthService::Reach::Answered && got.status.startedSeq != 0 && atOrAfter(got.status.startedSeq, p.seq)) {
    // It came that far. Anything sent after the collective it is in is pending from now on.
    if (atOrAfter(got.status.startedSeq, lastSeq)) {
      drop(peer);
      return;
    }
    p.seq = got.status.startedSeq + 1;
    p.since = after;
    p.nextProbe = after + period_;
    return;
  }
  if (after - p.since > timeout_) {
    Error e(chorusTimeout,
            got.reach == HealthService::Reach::Answered
                ? format("rank %d has not entered collective #%u within %.1f s (CHORUS_TIMEOUT) of this rank sending it its part "
                         "of it; it is at #%u",
                         peer, p.seq, timeoutSec_, got.status.startedSeq)
                : format("rank %d does not answer (stopped, stuck, or cut off), and has not been seen to take the data this rank "
                         "sent it since collective #%u, %.1f s ago (CHORUS_TIMEOUT)",
                         peer, p.seq, std::chrono::duration<double>(after - p.since).count()));
    e.setPeer(peer);
    throw e;
  }
  p.nextProbe = after + period_;
}

}  // namespace chorus

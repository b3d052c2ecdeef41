// Bounds how long data this rank sent may stay untaken by a peer it only sends to.
//
// A rank that only sends to a peer in a collective (a broadcast root, a tree's inner ranks
// towards their children, reduce's non-roots with `direct`) completes the call as soon as the
// transport takes the bytes - a kernel socket buffer, a shared-memory FIFO, a UCX or libfabric
// queue - and never waits on that peer. With the peer stopped it would run on, call after call,
// until those buffers fill: hundreds of thousands of small calls, long past CHORUS_TIMEOUT,
// while the ranks that do wait on the peer fail at their deadline.
//
// So per such peer the watch keeps the oldest collective whose data the peer has not been seen
// to reach, and asks the peer's health service (at most every `probePeriod`, one small TCP
// round trip; a rank that also receives from the peer needs no question) how far it got. A peer
// that has not entered that collective within CHORUS_TIMEOUT of it is a timeout, as a wait for
// it would be; a peer that is broken, or in the same collective with another stamp, ends the
// call at once (core/peer_probe.h). A peer that is gone is dropped from the watch instead: it
// may have taken the data, finished and destroyed its communicator, which looks the same from
// here as a death; a dead peer fails the ranks that wait on it and this rank's next exchange
// with it.
//
// The lead is bounded too: a rank more than kMaxLead collectives ahead of such a peer waits,
// asking, until the peer is back within half of it (or the deadline passes). Transports buffer
// a bounded number of bytes, not of calls, and a flood of small calls into a rank that cannot
// take them costs that rank (libfabric's rxm drains its whole queue inside one fi_cq_read while
// a peer keeps sending, campaign finding 5).
#pragma once

#include <atomic>
#include <functional>
#include <vector>

#include "base/deadline.h"
#include "core/peer_probe.h"
#include "exec/executor.h"

namespace chorus {

class RunAheadWatch {
 public:
  using Prober = std::function<PeerProbe(int peer, Deadline deadline)>;
  // abortFlag (may be null): chorusCommAbort's flag; a held-back sender gives up when it is set.
  RunAheadWatch(int nranks, double timeoutSec, double probePeriodSec, const std::atomic<bool>* abortFlag = nullptr);

  // After this rank ran collectives firstSeq..lastSeq (one run: a call or a group) with `plan`,
  // whose first collective is stamped `ours`. Throws chorusTimeout naming the peer that has not
  // come within the deadline, or what throwIfPeerWillNotCome throws.
  void afterRun(const ExecPlan& plan, uint32_t firstSeq, uint32_t lastSeq, const CallStamp& ours, const Prober& probe) {
    if (active_.empty() && !plan.sendOnlyPeer) return;  // the common case: every peer also sends to this rank
    watch(plan, firstSeq, lastSeq, ours, probe);
  }

  // How many peers have data pending (tests).
  size_t pendingPeers() const { return active_.size(); }

  // The most collectives this rank may be ahead of a peer it only sends to.
  static constexpr uint32_t kMaxLead = 4096;

 private:
  struct Pending {
    bool active = false;
    uint32_t seq = 0;                 // the oldest collective the peer has not been seen to enter
    Clock::time_point since, nextProbe;  // when this rank finished its part of it; the next question
  };
  void watch(const ExecPlan& plan, uint32_t firstSeq, uint32_t lastSeq, const CallStamp& ours, const Prober& probe);
  void check(int peer, uint32_t lastSeq, const CallStamp& ours, const Prober& probe, Clock::time_point now);
  void drop(int peer);
  // Collectives this rank may be ahead of peer (from the last answer: an upper bound).
  uint32_t lead(int peer, uint32_t lastSeq) const;
  // Waits until peer is within kMaxLead / 2 again, asking it; throws as check() does.
  void holdBack(int peer, uint32_t lastSeq, const CallStamp& ours, const Prober& probe);

  std::vector<Pending> pending_;  // per peer
  std::vector<int> active_;       // peers with pending data
  Clock::duration timeout_, period_;
  double timeoutSec_;
  const std::atomic<bool>* abortFlag_;
};

}  // namespace chorus

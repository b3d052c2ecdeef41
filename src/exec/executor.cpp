#include "exec/executor.h"

#include <algorithm>
#include <cstring>

#include "base/deadline.h"
#include "base/error.h"
#include "base/log.h"
#include "transports/transport.h"

namespace chorus {
namespace {

using PeerCursor = ExecPlan::PeerCursor;

class Runner {
 public:
  explicit Runner(const ExecArgs& a)
      : a_(a), s_(a.plan->schedule), done_(a.plan->done), ticket_(a.plan->ticket), peers_(a.plan->cursors) {
    std::fill(done_.begin(), done_.end(), 0);
    for (size_t k = 0; k < peers_.size(); ++k) {
      PeerCursor& c = peers_[k];
      c = PeerCursor{};
      c.steps = &a.plan->peers[k];
      c.conn = (*a.connections)[c.steps->peer];
      CHORUS_ASSERT(c.conn != nullptr);
    }
    remaining_ = s_.steps.size();
    CHORUS_ASSERT(a.plan->numBuffers <= a.numBuffers);
    if (a.gate) {
      for (const Step& st : s_.steps)
        if (st.kind != StepKind::Send && st.dst.count) a.gate->expectWrite(ptr(st.dst), bytes(st.dst));
      a.gate->start();
    }
  }

  void run() {
    // The clock is read only on idle passes (every 16th): on these VMs a clock read costs as
    // much as a whole small step, so "when did we last progress" is recorded lazily: progress
    // since the previous check counts as progress at this check.
    Backoff backoff;
    Clock::time_point lastProgress{}, lastAliveCheck{}, lastProbe{};
    bool progressedSinceCheck = true;
    const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a_.timeoutSec));
    const auto probeAfter = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a_.probeAfterSec));
    while (remaining_ > 0) {
      bool progressed = false;
      for (PeerCursor& q : peers_) progressed |= advanceNamingPeer(q);
      progressed |= runLocalSteps();
      if (a_.abortFlag && a_.abortFlag->load(std::memory_order_relaxed))
        CHORUS_THROW(chorusInvalidUsage, "%s: aborted by chorusCommAbort", describeCall(a_.call).c_str());
      if (progressed) {
        backoff.reset();
        progressedSinceCheck = true;
        continue;
      }
      backoff.pause();
      // Past the short spin every idle pass yields or sleeps, so reading the clock every 16th
      // pass costs nothing and keeps liveness probes near their 10 ms period.
      if (backoff.idlePasses() % 16 != 0) continue;
      Clock::time_point now = Clock::now();
      if (progressedSinceCheck) {
        lastProgress = now;
        progressedSinceCheck = false;
        if (lastAliveCheck == Clock::time_point{}) lastAliveCheck = now;
      }
      if (now - lastAliveCheck > std::chrono::milliseconds(10)) {
        lastAliveCheck = now;
        int owing = -1;
        for (PeerCursor& q : peers_) {
          if (!q.busy()) continue;
          if (owing < 0) owing = q.steps->peer;
          try {
            q.conn->checkAlive();
          } catch (Error& e) {
            if (e.peer() < 0) e.setPeer(q.steps->peer);
            throw;
          }
        }
        if (a_.waitingOn) a_.waitingOn->store(owing, std::memory_order_relaxed);
      }
      if (a_.probe && now - lastProgress > probeAfter && now - lastProbe > probeAfter) {
        probeBusyPeers();
        lastProbe = Clock::now();
      }
      if (now - lastProgress > timeout) throwTimeout();
    }
  }

 private:
  bool depsDone(uint32_t i) const {
    const Step& st = s_.steps[i];
    for (uint32_t d = 0; d < st.depCount; ++d)
      if (!done_[s_.deps[st.depBegin + d]]) return false;
    return true;
  }

  const ExecBuffer& buffer(const Region& r) const { return a_.buffers[static_cast<size_t>(r.buf)]; }
  void* ptr(const Region& r) const {
    const ExecBuffer& b = buffer(r);
    return static_cast<char*>(b.base) + r.offset * b.elemSize;
  }
  size_t bytes(const Region& r) const { return r.count * buffer(r).elemSize; }
  const CallStamp& stamp(const Region& r) const {
    static const CallStamp kUnstamped;
    size_t call = static_cast<size_t>(r.buf) / kBuffersPerCall;
    return call < a_.numStamps ? a_.stamps[call] : kUnstamped;
  }

  void finish(uint32_t i) {
    done_[i] = 1;
    --remaining_;
    if (a_.gate) {
      const Step& st = s_.steps[i];
      if (st.kind != StepKind::Send && st.dst.count) a_.gate->written(ptr(st.dst), bytes(st.dst));
    }
  }
  // Whether the gate (if any) lets a step touch r now.
  bool arrived(const Region& r) const { return !a_.gate || !r.count || a_.gate->ready(ptr(r), bytes(r)); }
  bool stepArrived(const Step& st) const {
    if (!a_.gate) return true;
    bool readsSrc = st.kind == StepKind::Send || st.kind == StepKind::RecvReduce || st.kind == StepKind::Copy;
    bool writesDst = st.kind != StepKind::Send;
    return (!readsSrc || arrived(st.src)) && (!writesDst || arrived(st.dst));
  }

  // advance(), with the peer named in whatever a transport throws.
  bool advanceNamingPeer(PeerCursor& q) {
    try {
      return advance(q);
    } catch (Error& e) {
      if (e.peer() < 0) e.setPeer(q.steps->peer);
      throw;
    }
  }

  bool advance(PeerCursor& q) {
    bool progressed = false;
    const std::vector<uint32_t>& sends = q.steps->sends;
    const std::vector<uint32_t>& recvs = q.steps->recvs;
    while (q.sendIssued < sends.size() && depsDone(sends[q.sendIssued]) && stepArrived(s_.steps[sends[q.sendIssued]])) {
      uint32_t i = sends[q.sendIssued++];
      const Step& st = s_.steps[i];
      ticket_[i] = q.conn->postSend(ptr(st.src), bytes(st.src), stamp(st.src));
      progressed = true;
    }
    while (q.recvIssued < recvs.size() && depsDone(recvs[q.recvIssued]) && stepArrived(s_.steps[recvs[q.recvIssued]])) {
      uint32_t i = recvs[q.recvIssued++];
      const Step& st = s_.steps[i];
      RecvSink sink;
      const ExecBuffer& b = buffer(st.dst);
      sink.dst = ptr(st.dst);
      sink.bytes = st.dst.count * b.elemSize;
      sink.elemSize = b.elemSize;
      sink.stamp = stamp(st.dst);
      if (st.kind == StepKind::RecvReduce) {
        sink.local = ptr(st.src);
        sink.reduce = b.reduce;
      }
      ticket_[i] = q.conn->postRecv(sink);
      progressed = true;
    }
    if (q.sendDone == q.sendIssued && q.recvDone == q.recvIssued) return progressed;
    progressed |= q.conn->progress();
    uint64_t sent = q.conn->sendsCompleted();
    while (q.sendDone < q.sendIssued && ticket_[sends[q.sendDone]] < sent) {
      finish(sends[q.sendDone++]);
      progressed = true;
    }
    uint64_t received = q.conn->recvsCompleted();
    while (q.recvDone < q.recvIssued && ticket_[recvs[q.recvDone]] < received) {
      finish(recvs[q.recvDone++]);
      progressed = true;
    }
    return progressed;
  }

  bool runLocalSteps() {
    bool progressed = false;
    const std::vector<uint32_t>& local = a_.plan->local;
    for (size_t k = localDone_; k < local.size(); ++k) {
      uint32_t i = local[k];
      if (done_[i] || !depsDone(i)) continue;
      const Step& st = s_.steps[i];
      if (!stepArrived(st)) continue;
      if (st.kind == StepKind::Copy) {
        if (ptr(st.src) != ptr(st.dst)) memmove(ptr(st.dst), ptr(st.src), bytes(st.dst));
      } else if (st.kind == StepKind::Divide) {
        divideInPlace(ptr(st.dst), st.dst.count, buffer(st.dst).dtype, st.divisor);
      } else {
        CHORUS_THROW(chorusInternalError, "step %u: %s without a peer", i, stepKindName(st.kind));
      }
      finish(i);
      progressed = true;
    }
    while (localDone_ < local.size() && done_[local[localDone_]]) ++localDone_;
    return progressed;
  }

  // Two busy peers per round, taking turns (a probe of a silent peer costs its own deadline).
  void probeBusyPeers() {
    int asked = 0;
    for (size_t k = 0; k < peers_.size() && asked < 2; ++k) {
      const PeerCursor& q = peers_[probeNext_];
      probeNext_ = (probeNext_ + 1) % peers_.size();
      if (!q.busy()) continue;
      ++asked;
      (*a_.probe)(q.steps->peer);
    }
  }

  [[noreturn]] void throwTimeout() {
    std::string pending;
    for (const PeerCursor& q : peers_) {
      if (!q.busy()) continue;
      pending += format("%s rank %d (%s: %zu of %zu sends, %zu of %zu receives done)", pending.empty() ? "" : ",", q.steps->peer,
                        q.conn->kind(), q.sendDone, q.steps->sends.size(), q.recvDone, q.steps->recvs.size());
    }
    if (a_.gate) pending += pending.empty() ? " the device's copies of staged buffers" : ", or the device's copies of staged buffers";
    CHORUS_THROW(chorusTimeout, "%s: no progress for %.1f s (CHORUS_TIMEOUT); waiting on%s", describeCall(a_.call).c_str(),
                 a_.timeoutSec, pending.c_str());
  }

  const ExecArgs& a_;
  const RankSchedule& s_;
  std::vector<uint8_t>& done_;
  std::vector<uint64_t>& ticket_;
  std::vector<PeerCursor>& peers_;
  size_t localDone_ = 0;
  size_t probeNext_ = 0;
  size_t remaining_ = 0;
};

}  // namespace

ExecPlan::ExecPlan(const RankSchedule& s) : schedule(s), done(s.steps.size(), 0), ticket(s.steps.size(), 0) {
  std::vector<int> slot(s.nranks, -1);
  for (uint32_t i = 0; i < s.steps.size(); ++i) {
    const Step& st = s.steps[i];
    for (const Region* r : {&st.src, &st.dst})
      if (r->count) numBuffers = std::max(numBuffers, static_cast<size_t>(r->buf) + 1);
    if (st.peer < 0) {
      local.push_back(i);
      continue;
    }
    if (slot[st.peer] < 0) {
      slot[st.peer] = static_cast<int>(peers.size());
      peers.emplace_back();
      peers.back().peer = st.peer;
    }
    PeerSteps& q = peers[slot[st.peer]];
    (st.kind == StepKind::Send ? q.sends : q.recvs).push_back(i);
  }
  for (const PeerSteps& q : peers) sendOnlyPeer |= q.recvs.empty() && !q.sends.empty();
  cursors.resize(peers.size());
}

std::string describeCall(const CallInfo& c) {
  return format("%s %s#%llu (%s, %zu x %s%s%s, rank %d/%d)", c.collective, c.pointToPoint ? "before collective " : "",
                static_cast<unsigned long long>(c.seq), c.algorithm, c.count,
                dataTypeName(c.dtype), c.hasOp ? " " : "", c.hasOp ? redOpName(c.op) : "", c.rank, c.nranks);
}

void execute(const ExecArgs& args) {
  CHORUS_ASSERT(args.plan && args.connections && args.buffers);
  Runner(args).run();
}

}  // namespace chorus

#include "core/peer_probe.h"

#include "core/call_stamps.h"
#include "base/error.h"

namespace chorus {

bool sameOrdinalOtherCall(const CallStamp& theirs, const CallStamp& ours) {
  return theirs.kind == StampKind::Collective && ours.kind == StampKind::Collective && theirs.seq == ours.seq &&
         !stampsMatch(theirs, ours);
}

bool peerFinished(const PeerProbe& probe, const CallStamp& ours) {
  return probe.reach == HealthService::Reach::Answered && ours.kind == StampKind::Collective && probe.status.finishedSeq != 0 &&
         static_cast<int32_t>(probe.status.finishedSeq - ours.seq) >= 0;
}

void throwIfPeerWillNotCome(int peer, const PeerProbe& probe, const CallStamp& ours, const char* during, bool finishedIsMismatch) {
  if (probe.reach == HealthService::Reach::Gone) {
    Error e(chorusRemoteError, format("rank %d is gone (its process died, or it destroyed its communicator) during %s", peer, during));
    e.setPeer(peer);
    throw e;
  }
  if (probe.reach != HealthService::Reach::Answered) return;
  const RankStatus& s = probe.status;
  if (s.state == RankState::Broken) {
    Error e(chorusRemoteError, format("rank %d's communicator failed (seen during %s)", peer, during));
    e.setPeer(peer);
    throw e;
  }
  if (sameOrdinalOtherCall(s.call, ours))
    throw CallMismatch(peer, s.call, ours, rawMismatchText(peer, s.call, ours) + format(" (seen during %s)", during));
  if (finishedIsMismatch && peerFinished(probe, ours)) {
    // Its call did not need this rank where this rank's needs it: another root, or a size for
    // which the tuner chose an algorithm with other peers. Its stamp of that call is gone.
    Error e(chorusInvalidUsage,
            format("collective mismatch: rank %d has finished collective #%u (it is at #%u) while this rank, in %s, still "
                   "waits on it during %s: the ranks disagree about #%u (another root, count or type?); every rank must "
                   "make the same collective calls, with the same arguments, in the same order",
                   peer, ours.seq, s.startedSeq, describeStamp(ours).c_str(), during, ours.seq));
    e.setPeer(peer);
    throw e;
  }
}

}  // namespace chorus

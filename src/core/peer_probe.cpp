#include "core/peer_probe.h"

#include "core/error.h"

namespace chorus {

bool sameOrdinalOtherCall(const CallStamp& theirs, const CallStamp& ours) {
  return theirs.kind == StampKind::Collective && ours.kind == StampKind::Collective && theirs.seq == ours.seq &&
         !stampsMatch(theirs, ours);
}

void throwIfPeerWillNotCome(int peer, const PeerProbe& probe, const CallStamp& ours, const char* during) {
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
}

}  // namespace chorus

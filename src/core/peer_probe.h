// Asking a peer's health service, from inside a call, whether waiting for it still makes sense.
//
// Three waits would otherwise end only at CHORUS_TIMEOUT although the peer could say at once
// that they never will:
//  * connection setup with a peer that died or broke before it connected (core/comm.cpp's
//    OobForwarder, the tcp and network transports' setup loops, via TransportContext::peerGone);
//  * an executor wait that stalls (exec/executor.h, ExecArgs::probe);
//  * data this rank sent that a peer has not taken (core/run_ahead.h).
// In each, the peer's RankStatus tells: gone (process or communicator), broken (its own call
// failed: ask it why), or in the same collective with another stamp - ranks that disagree about
// a call whose messages never meet (another root, or a size for which the tuner picks an
// algorithm with other peers), which message stamps alone cannot see.
#pragma once

#include "exec/call_stamp.h"
#include "health/health_service.h"

namespace chorus {

struct PeerProbe {
  HealthService::Reach reach = HealthService::Reach::Silent;
  RankStatus status;  // when answered
};

// Throws what the probe shows, or returns when the peer may still come: chorusRemoteError
// naming `peer` when it is gone or broken, CallMismatch when it waits in collective
// #ours.seq with another stamp (ours: this rank's current collective; kind Unchecked when it
// is in none), and - when finishedIsMismatch - chorusInvalidUsage when it has already finished
// #ours.seq: it did without this rank what this rank's part needs from it. `during` says what
// this rank was doing ("connection setup", "a stalled wait").
void throwIfPeerWillNotCome(int peer, const PeerProbe& probe, const CallStamp& ours, const char* during,
                            bool finishedIsMismatch = false);

// Whether the probe shows the peer past collective #ours.seq (finished it).
bool peerFinished(const PeerProbe& probe, const CallStamp& ours);

// Whether `theirs` (a peer's current collective) is the same ordinal as ours but another call.
bool sameOrdinalOtherCall(const CallStamp& theirs, const CallStamp& ours);

}  // namespace chorus

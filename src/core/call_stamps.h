// The communicator's side of mismatch detection (exec/call_stamp.h): the stamp of each call it
// runs, and the message that names both calls when a peer's message carries another stamp.
#pragma once

#include <string>

#include "collectives/collective.h"
#include "core/coll_call.h"
#include "exec/call_stamp.h"

namespace chorus {

// "chorusAllReduce" for Coll::AllReduce (a Coll as a byte, as stamps and statuses carry it).
const char* collApiName(uint8_t coll);

// The stamp's count of a V form (stampCall's slow path).
uint64_t stampCountOfV(const CollCall& call);

// Writes the stamp of a validated call to *out: seq is the collective's ordinal on the
// communicator (ignored for send/recv), algo the family its schedule was built by.
void stampCall(CallStamp* out, const CollCall& call, uint64_t seq, Algo algo);

// "chorusAllReduce #57 (ring, 1024 x float32 sum)", "chorusBroadcast #3 (tree, 16 x int8, root 2)",
// "a send or receive".
std::string describeStamp(const CallStamp& stamp);

// The error of a CallMismatch seen by `rank`: "rank 3 called chorusAllReduce #57 (...), rank 4
// called chorusAllReduce #57 (...)" and what to do about it.
std::string mismatchText(const CallMismatch& m, int rank);

}  // namespace chorus

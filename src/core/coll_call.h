// One call as the C API received it: which collective (or point-to-point half), its buffers and
// arguments. The communicator validates it (validateCall), turns it into CollArgs for the
// schedule builders, and runs one call or a group of them.
#pragma once

#include <chorus/chorus.h>

#include <memory>
#include <vector>

#include "collectives/collective.h"

namespace chorus {

class StagedCall;

enum class CallKind : uint8_t { Collective, Send, Recv };

struct CollCall {
  CallKind kind = CallKind::Collective;
  Coll coll = Coll::AllReduce;
  const char* apiName = "chorusAllReduce";  // for errors and logs
  const void* sendbuf = nullptr;
  void* recvbuf = nullptr;
  size_t count = 0;
  chorusDataType_t dtype = chorusFloat32;
  chorusRedOp_t op = chorusSum;  // reductions only
  int root = 0;                  // Broadcast, Reduce, Gather, Scatter
  int peer = -1;                 // Send, Recv
  // V forms, copied from the caller's arrays (nranks entries each); null for the other calls,
  // which keeps a call small and cheap to move (shared, so that a queued call can be copied).
  struct Arrays {
    std::vector<size_t> counts, displs;                                  // AllGatherV, ReduceScatterV
    std::vector<size_t> sendCounts, sendDispls, recvCounts, recvDispls;  // AlltoAllV
  };
  std::shared_ptr<Arrays> v;
  // Filled in by validation.
  bool inPlace = false;
  std::shared_ptr<void> owned;  // memory the call owns (the barrier's byte)
  // Device buffers: their host staging, set up when the call was queued on a stream bound to a
  // device stream (else by the run itself). device/staging.h.
  std::shared_ptr<StagedCall> staged;
};

// Copies a caller's array of n entries (throws chorusInvalidArgument naming `what` if NULL).
std::vector<size_t> copyCounts(const size_t* array, int n, const char* what);

}  // namespace chorus

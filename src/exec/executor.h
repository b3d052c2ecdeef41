// The executor: runs one rank's RankSchedule over its connections.
//
// It posts every Send and Recv as soon as its dependencies are done, in schedule order per
// peer and direction (the matching rule of schedule.h), drives progress on the connections
// that have work in flight, and runs local steps (Copy, Divide) when they become ready. It
// never blocks in the kernel: idle passes back off (base/deadline.h) and, every few
// milliseconds, probe the busy peers' liveness; after probeAfterSec without progress it asks
// about them further (ExecArgs::probe). No progress for `timeoutSec` seconds is chorusTimeout
// naming the peers still owing data.
#pragma once

#include <chorus/chorus.h>

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "exec/call_stamp.h"
#include "exec/reduce.h"
#include "exec/schedule.h"

namespace chorus {

class Connection;

// What an executor derives once from a RankSchedule: the per-peer queues and the local steps,
// plus scratch state reused by each run. One run at a time per plan (the communicator
// serializes its collectives); cache it next to the schedule.
struct ExecPlan {
  struct PeerSteps {
    int peer = -1;
    std::vector<uint32_t> sends, recvs;  // step indices, schedule order
  };
  explicit ExecPlan(const RankSchedule& schedule);
  const RankSchedule& schedule;
  std::vector<PeerSteps> peers;
  std::vector<uint32_t> local;
  bool sendOnlyPeer = false;  // some peer is only sent to (core/run_ahead.h watches those)
  size_t numBuffers = 0;  // 1 + the highest BufferId a step uses
  // Scratch for a run, sized once (a run allocates nothing).
  std::vector<uint8_t> done;
  std::vector<uint64_t> ticket;
  // Progress through one peer's two ordered queues (sends, receives) during a run.
  struct PeerCursor {
    const PeerSteps* steps = nullptr;
    Connection* conn = nullptr;
    size_t sendIssued = 0, sendDone = 0, recvIssued = 0, recvDone = 0;
    bool busy() const { return sendDone < steps->sends.size() || recvDone < steps->recvs.size(); }
  };
  std::vector<PeerCursor> cursors;  // one per entry of peers
};

// Identifies the call in errors; formatted only when something goes wrong.
struct CallInfo {
  const char* collective = "";  // "chorusAllReduce"
  uint64_t seq = 0;             // the collective's ordinal on its communicator
  bool pointToPoint = false;    // a send/recv (or a group of them): seq is the next collective's
  size_t count = 0;
  chorusDataType_t dtype = chorusFloat32;
  chorusRedOp_t op = chorusSum;
  bool hasOp = true;  // false for collectives without a reduction
  int rank = 0;
  int nranks = 1;
  const char* algorithm = "";
};
// "chorusAllReduce #12 (ring, 1000 x float sum, rank 3/8)"; "chorusSend before collective #13 (...)"
std::string describeCall(const CallInfo& call);

// What a BufferId of the schedule refers to in this run.
struct ExecBuffer {
  void* base = nullptr;
  size_t elemSize = 1;
  chorusDataType_t dtype = chorusInt8;  // for Divide
  ReduceFn reduce = nullptr;            // for RecvReduce into this buffer
};

// Buffers whose bytes arrive and leave while the schedule runs (device memory staged through host
// memory, device/staging.h). With a gate, a step touches a region only once ready() says its
// bytes are there, and every finished write is reported, so that finished parts can leave early.
// Addresses are the host addresses the steps use.
class ExecGate {
 public:
  virtual ~ExecGate() = default;
  // Before the first step: every region some step will write, then start().
  virtual void expectWrite(const void* p, size_t n) = 0;
  virtual void start() = 0;
  virtual bool ready(const void* p, size_t n) = 0;
  virtual void written(const void* p, size_t n) = 0;
};

struct ExecArgs {
  ExecPlan* plan = nullptr;
  // buffers[b] for every BufferId b the schedule uses (kBuffersPerCall per merged call).
  const ExecBuffer* buffers = nullptr;
  size_t numBuffers = 0;
  // connections[peer] for every peer the schedule uses (others may be null).
  const std::vector<Connection*>* connections = nullptr;
  double timeoutSec = 300;
  const std::atomic<bool>* abortFlag = nullptr;  // set by chorusCommAbort
  // stamps[k]: the stamp of merged call k (buffers 3k..3k+2), carried by its messages and
  // checked on receipt (exec/call_stamp.h). Null: every message goes unstamped.
  const CallStamp* stamps = nullptr;
  size_t numStamps = 0;
  // Published every ~10 ms while waiting: a peer that still owes data (the hang report's "on rank X").
  std::atomic<int>* waitingOn = nullptr;
  // Asked about a peer that still owes this rank work once the run has made no progress for
  // probeAfterSec, and again every probeAfterSec (at most two peers per round, in turn): it
  // throws when waiting for that peer is pointless (core/peer_probe.h). Null: not asked.
  const std::function<void(int peer)>* probe = nullptr;
  double probeAfterSec = 1.0;
  ExecGate* gate = nullptr;  // null: every buffer is host memory, there all along
  CallInfo call;
};

// Runs the schedule to completion or throws chorus::Error.
void execute(const ExecArgs& args);

}  // namespace chorus

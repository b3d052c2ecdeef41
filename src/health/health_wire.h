// Wire formats of the health service (health_service.h): one request per TCP connection, one
// reply, then the connection closes. Every request carries the communicator's secret; a
// request that does not is dropped unanswered.
#pragma once

#include <cstdint>

#include "exec/call_stamp.h"

namespace chorus {

constexpr uint64_t kHealthMagic = 0x544c4845524f4843ull;  // "CHOREHLT"

enum class HealthOp : uint32_t {
  Ping = 1,        // liveness: empty reply
  Status = 2,      // this rank's RankStatus
  Cause = 3,       // why this rank's communicator broke: CauseWire + text (empty reply while healthy)
  Gather = 4,      // the RankStatus of every rank of the subtree under this rank (arg: the tree's root)
  Report = 5,      // gather the whole communicator from here and reply the one-line summary
  ShrinkJoin = 6,  // to the coordinator: this rank takes part in shrink round `epoch` (payload: excluded ranks)
  ShrinkPoll = 7,  // to the coordinator: the round's outcome (ShrinkWire + ranks), or "not yet"
};

struct HealthRequest {
  uint64_t magic = kHealthMagic;
  uint64_t secret[2] = {0, 0};
  uint64_t commId = 0;
  int32_t from = -1;
  uint32_t op = 0;
  uint32_t epoch = 0;
  int32_t arg = 0;
  uint32_t millisLeft = 0;     // the requester's deadline, for requests that fan out
  uint32_t payloadBytes = 0;
};
static_assert(sizeof(HealthRequest) == 56, "HealthRequest is a wire format");

enum class HealthStatusCode : uint32_t { Ok = 0, Busy = 1, NotYet = 2, Refused = 3 };

struct HealthReply {
  uint32_t code = 0;  // HealthStatusCode
  uint32_t bytes = 0;
};

// What a rank is doing, as the hang report sees it.
enum class RankState : uint8_t {
  Idle = 0,         // between calls
  InCall = 1,       // inside a collective or point-to-point call
  Broken = 2,       // its communicator failed (cause: CauseWire)
  Unreachable = 3,  // filled in by the gatherer: no answer (dead, stopped, or cut off)
  Closed = 4,       // its communicator is being destroyed (a normal end): it takes part in nothing more
};

struct RankStatus {
  int32_t rank = -1;
  RankState state = RankState::Unreachable;
  uint8_t pointToPoint = 0;  // the current or last call was a send/recv (group)
  uint8_t coll = 0;          // collectives/collective.h: Coll of the current or last collective
  uint8_t reserved = 0;
  uint32_t startedSeq = 0;   // ordinal of the last collective entered (0: none yet)
  uint32_t finishedSeq = 0;  // ordinal of the last collective finished
  int32_t waitingOn = -1;    // in a call: a peer it still waits for, -1 unknown
  int32_t causeOrigin = -1;  // broken: the rank its failure started at
  uint32_t reserved2 = 0;
  uint32_t reserved3 = 0;
  // The stamp of collective #startedSeq (kind Unchecked before the first): a peer waiting in
  // the same collective compares it with its own, so ranks that disagree about a call whose
  // messages never meet (another root, or a size that picks another algorithm) are told so.
  CallStamp call;
};
static_assert(sizeof(RankStatus) == 56, "RankStatus is a wire format");

struct CauseWire {
  int32_t origin = -1;  // the rank whose failure started it (-1: unknown)
  int32_t code = 0;     // chorusResult_t
  int32_t settled = 0;  // 0 while the rank is still finding out (asking its own failed peer)
  int32_t reserved = 0;
};

// A decided shrink round: the new communicator's unique id (idBytes bytes) follows, then
// `survivors` int32 ranks of the old communicator, ascending.
struct ShrinkWire {
  uint32_t idBytes = 0;
  uint32_t survivors = 0;
};

}  // namespace chorus

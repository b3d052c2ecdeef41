// Which call a message belongs to. Every message a schedule sends carries the stamp of its call
// in the transport's message header, and every receive checks it against its own call's stamp
// before touching the data: ranks that make different calls at the same point of a
// communicator (another count, type, op, root or algorithm, or one rank a call ahead) fail with
// both calls named, instead of exchanging bytes that mean different things, running into a
// size mismatch later, or waiting for the deadline.
//
// Cost: the stamp rides in headers the transports send anyway (24 bytes more per message);
// comparing it is a few integer compares per message.
#pragma once

#include <chorus/chorus.h>

#include <cstdint>
#include <string>

#include "base/error.h"

namespace chorus {

enum class StampKind : uint8_t {
  Unchecked = 0,   // a connection used outside a schedule (transport tests)
  Collective = 1,  // every field is compared
  PointToPoint = 2,  // only the kind is compared; the transports still compare sizes
};

struct CallStamp {
  uint64_t count = 0;  // the call's count (V forms: the total over all ranks)
  uint32_t seq = 0;    // the collective's ordinal on its communicator (low 32 bits); 0 for send/recv
  int32_t root = -1;   // rooted collectives; -1 otherwise
  StampKind kind = StampKind::Unchecked;
  uint8_t coll = 0;    // the collective (collectives/collective.h: Coll), or 0 for send/recv
  uint8_t dtype = 0;   // chorusDataType_t
  uint8_t op = 0;      // chorusRedOp_t for reductions (kStampPreMulSum for any PreMulSum op), else 0
  uint8_t algo = 0;    // the algorithm family + 1 (collectives/collective.h: Algo), 0 unknown
  uint8_t flags = 0;   // StampFlag bits: hints for the transports, derived from the fields above
  uint8_t reserved[2] = {};
};
static_assert(sizeof(CallStamp) == 24, "CallStamp is a wire format");

constexpr uint8_t kStampPreMulSum = 0xff;

enum StampFlag : uint8_t {
  // No receive of this call reduces (broadcast, all-gather, alltoall, gather, scatter, send and
  // receive): every message lands with a plain copy, so a transport may move it by single copy
  // where a reduction would rather stream (transports/shm: CHORUS_SHM_CMA_COPY_THRESHOLD).
  kStampCopyOnly = 1,
};

// Whether a message stamped `sent` may be received by a call stamped `posted`.
inline bool stampsMatch(const CallStamp& sent, const CallStamp& posted) {
  if (sent.kind != posted.kind) return false;
  if (sent.kind != StampKind::Collective) return true;
  return sent.seq == posted.seq && sent.count == posted.count && sent.coll == posted.coll && sent.dtype == posted.dtype &&
         sent.op == posted.op && sent.algo == posted.algo && sent.root == posted.root;
}

// Thrown by a transport whose receive got a message of another call: chorusInvalidUsage. The
// communicator, which knows the names of collectives and algorithms, rewrites the message to
// name both calls; the raw text here names the fields that differ.
class CallMismatch : public Error {
 public:
  CallMismatch(int peer, const CallStamp& sent, const CallStamp& posted, const std::string& text)
      : Error(chorusInvalidUsage, text), sent_(sent), posted_(posted) {
    setPeer(peer);
  }
  const CallStamp& sent() const { return sent_; }      // the peer's call
  const CallStamp& posted() const { return posted_; }  // this rank's call

 private:
  CallStamp sent_, posted_;
};

// "rank 3 sent a message of another call (seq 57 vs 56, dtype 7 vs 4)": the raw form.
std::string rawMismatchText(int peer, const CallStamp& sent, const CallStamp& posted);

// For transports: throws CallMismatch unless the stamps match.
inline void checkStamp(int peer, const CallStamp& sent, const CallStamp& posted) {
  if (!stampsMatch(sent, posted)) throw CallMismatch(peer, sent, posted, rawMismatchText(peer, sent, posted));
}

}  // namespace chorus

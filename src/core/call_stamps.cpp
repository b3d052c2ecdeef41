#include "core/call_stamps.h"

#include <cstddef>
#include <cstring>
#include <numeric>

#include "exec/reduce.h"

namespace chorus {
const char* collApiName(uint8_t coll) {
  static const char* const kNames[] = {"chorusAllReduce",  "chorusBroadcast",      "chorusReduce",   "chorusAllGather",
                                       "chorusReduceScatter", "chorusAlltoAll",    "chorusGather",   "chorusScatter",
                                       "chorusAllGatherV", "chorusReduceScatterV", "chorusAlltoAllV"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<size_t>(Coll::kCount));
  return coll < static_cast<uint8_t>(Coll::kCount) ? kNames[coll] : "an unknown collective";
}

uint64_t stampCountOfV(const CollCall& call) {
  if (call.coll == Coll::AlltoAllV) return 0;  // each rank's counts are its own (sizes are checked instead)
  // The V forms' counts arrays are the same on every rank.
  return std::accumulate(call.v->counts.begin(), call.v->counts.end(), uint64_t{0});
}

void stampCall(CallStamp* out, const CollCall& call, uint64_t seq, Algo algo) {
  if (call.kind != CallKind::Collective) {
    *out = CallStamp{};
    out->kind = StampKind::PointToPoint;
    out->flags = kStampCopyOnly;
    return;
  }
  // Out of line, every field worked out in a register, and the stamp written once, whole, where
  // it is kept: built byte by byte inside run() and then copied, the copy's wide reads waited
  // for the narrow stores to reach the cache (store-forwarding stalls, ~10% of an 8-byte
  // all-reduce at np 1).
  const uint8_t anyOp = static_cast<int>(call.op) < chorusNumOps ? static_cast<uint8_t>(call.op) : kStampPreMulSum;
  uint64_t count = call.count;
  int32_t root = -1;
  uint8_t op = 0;
  switch (call.coll) {
    case Coll::AllReduce:
    case Coll::ReduceScatter:
      op = anyOp;
      break;
    case Coll::Reduce:
      op = anyOp;
      root = call.root;
      break;
    case Coll::Broadcast:
    case Coll::Gather:
    case Coll::Scatter:
      root = call.root;
      break;
    case Coll::ReduceScatterV:
      op = anyOp;
      count = stampCountOfV(call);
      break;
    case Coll::AllGatherV:
    case Coll::AlltoAllV:
      count = stampCountOfV(call);
      break;
    default:
      break;
  }
  // The three words of the layout in exec/call_stamp.h (little-endian hosts).
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the stamp's words are packed little-endian");
  const uint64_t flags = isReduction(call.coll) ? 0 : kStampCopyOnly;
  const uint64_t word0 = count;
  const uint64_t word1 = static_cast<uint32_t>(seq) | static_cast<uint64_t>(static_cast<uint32_t>(root)) << 32;
  const uint64_t word2 = static_cast<uint64_t>(StampKind::Collective) | static_cast<uint64_t>(call.coll) << 8 |
                         static_cast<uint64_t>(static_cast<uint8_t>(call.dtype)) << 16 | static_cast<uint64_t>(op) << 24 |
                         static_cast<uint64_t>(static_cast<int>(algo) + 1) << 32 | flags << 40;
  static_assert(sizeof(CallStamp) == 24 && offsetof(CallStamp, seq) == 8 && offsetof(CallStamp, root) == 12 &&
                offsetof(CallStamp, kind) == 16 && offsetof(CallStamp, flags) == 21);
  // Three stores from registers (one memcpy of an array went through the stack and stalled).
  char* bytes = reinterpret_cast<char*>(out);
  memcpy(bytes, &word0, 8);
  memcpy(bytes + 8, &word1, 8);
  memcpy(bytes + 16, &word2, 8);
}

std::string describeStamp(const CallStamp& s) {
  if (s.kind == StampKind::PointToPoint) return "a chorusSend/chorusRecv";
  if (s.kind != StampKind::Collective) return "an unstamped message";
  Coll coll = static_cast<Coll>(s.coll);
  std::string text = format("%s #%llu (%s, %llu x %s", collApiName(s.coll), static_cast<unsigned long long>(s.seq),
                            s.algo ? algoName(static_cast<Algo>(s.algo - 1)) : "?", static_cast<unsigned long long>(s.count),
                            dataTypeName(static_cast<chorusDataType_t>(s.dtype)));
  if (s.coll < static_cast<uint8_t>(Coll::kCount) && isReduction(coll))
    text += s.op == kStampPreMulSum ? " premulsum" : format(" %s", redOpName(static_cast<chorusRedOp_t>(s.op)));
  if (s.root >= 0) text += format(", root %d", s.root);
  return text + ")";
}

std::string mismatchText(const CallMismatch& m, int rank) {
  const CallStamp& theirs = m.sent();
  const CallStamp& ours = m.posted();
  const char* hint = theirs.kind == StampKind::Collective && ours.kind == StampKind::Collective && theirs.seq != ours.seq
                         ? "the message belongs to another call: the ranks disagreed on a call before this one (one skipped or repeated "
                           "it, or gave another root)"
                         : "every rank must make the same collective calls, with the same arguments, in the same order";
  return format("collective mismatch: rank %d called %s, rank %d called %s (%s)", m.peer(), describeStamp(theirs).c_str(), rank,
                describeStamp(ours).c_str(), hint);
}

}  // namespace chorus

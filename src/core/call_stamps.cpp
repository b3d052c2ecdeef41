#include "core/call_stamps.h"

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

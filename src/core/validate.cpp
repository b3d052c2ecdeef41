// Argument checks of every collective and point-to-point call, done once by the C API before a
// call runs or is queued: a bad call fails with chorusInvalidArgument on the rank that made
// it, without communicating (the peers then see it as a missing participant, bounded by
// CHORUS_TIMEOUT, as with any rank that stops calling).
#include "core/validate.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "exec/reduce.h"

namespace chorus {
namespace {

// a * b, or throws naming what overflowed.
size_t mulChecked(size_t a, size_t b, const CollCall& c) {
  if (b != 0 && a > SIZE_MAX / b)
    CHORUS_THROW(chorusInvalidArgument, "%s: count %zu x %zu overflows size_t", c.apiName, a, b);
  return a * b;
}

void checkVector(const std::vector<size_t>& counts, const std::vector<size_t>& displs, size_t elemSize, const CollCall& c,
                 const char* what) {
  std::vector<std::pair<size_t, size_t>> blocks;
  for (size_t i = 0; i < counts.size(); ++i) {
    CHORUS_CHECK_ARG(counts[i] <= SIZE_MAX / elemSize && displs[i] <= SIZE_MAX / elemSize - counts[i],
                     "%s: %s block %zu (displacement %zu + count %zu) overflows size_t", c.apiName, what, i, displs[i], counts[i]);
    if (counts[i]) blocks.emplace_back(displs[i], displs[i] + counts[i]);
  }
  std::sort(blocks.begin(), blocks.end());
  for (size_t i = 1; i < blocks.size(); ++i)
    CHORUS_CHECK_ARG(blocks[i].first >= blocks[i - 1].second, "%s: %s blocks overlap (elements [%zu, %zu) and [%zu, %zu))", c.apiName,
                     what, blocks[i - 1].first, blocks[i - 1].second, blocks[i].first, blocks[i].second);
}

bool rooted(Coll c) { return c == Coll::Broadcast || c == Coll::Reduce || c == Coll::Gather || c == Coll::Scatter; }

}  // namespace

std::vector<size_t> copyCounts(const size_t* array, int n, const char* what) {
  CHORUS_CHECK_ARG(array != nullptr, "%s is NULL", what);
  return std::vector<size_t>(array, array + n);
}

CollArgs collArgsFor(const CollCall& c, int rank, int nranks) {
  CollArgs a;
  a.coll = c.coll;
  a.rank = rank;
  a.nranks = nranks;
  a.root = c.root;
  a.count = c.count;
  a.elemSize = dataTypeSize(c.dtype);
  a.inPlace = c.inPlace;
  a.average = c.op == chorusAvg && isReduction(c.coll);
  if (c.v) {
    a.counts = c.v->counts;
    a.displs = c.v->displs;
    a.sendCounts = c.v->sendCounts;
    a.sendDispls = c.v->sendDispls;
    a.recvCounts = c.v->recvCounts;
    a.recvDispls = c.v->recvDispls;
  }
  return a;
}

void validateCall(CollCall& c, int rank, int nranks, const PreMulSumOps& ops) {
  size_t es = dataTypeSize(c.dtype);
  CHORUS_CHECK_ARG(es != 0, "%s: unknown datatype %d", c.apiName, static_cast<int>(c.dtype));
  c.inPlace = false;
  if (c.kind != CallKind::Collective) {
    CHORUS_CHECK_ARG(c.peer >= 0 && c.peer < nranks, "%s: peer %d is out of range [0, %d)", c.apiName, c.peer, nranks);
    mulChecked(c.count, es, c);
    const void* buf = c.kind == CallKind::Send ? c.sendbuf : c.recvbuf;
    CHORUS_CHECK_ARG(c.count == 0 || buf, "%s: NULL buffer with count %zu > 0", c.apiName, c.count);
    return;
  }
  if (isReduction(c.coll)) {
    PreMulSum pm;
    if (static_cast<int>(c.op) >= chorusNumOps && ops.lookup(c.op, &pm)) {
      CHORUS_CHECK_ARG(pm.dtype == c.dtype, "%s: the PreMulSum operator was created for %s, not %s", c.apiName, dataTypeName(pm.dtype),
                       dataTypeName(c.dtype));
    } else {
      CHORUS_CHECK_ARG(static_cast<int>(c.op) >= 0 && static_cast<int>(c.op) < chorusNumOps,
                       "%s: unknown reduction operator %d (not built in, nor a live PreMulSum operator of this communicator)",
                       c.apiName, static_cast<int>(c.op));
      reduceFunction(c.dtype, c.op);  // throws for an unsupported (type, op)
    }
  }
  if (rooted(c.coll)) CHORUS_CHECK_ARG(c.root >= 0 && c.root < nranks, "%s: root %d is out of range [0, %d)", c.apiName, c.root, nranks);
  const size_t p = static_cast<size_t>(nranks);
  bool vector = c.coll == Coll::AllGatherV || c.coll == Coll::ReduceScatterV || c.coll == Coll::AlltoAllV;
  CHORUS_ASSERT(!vector || c.v);
  switch (c.coll) {
    case Coll::AllGatherV:
      CHORUS_CHECK_ARG(c.count == c.v->counts[rank], "%s: sendcount %zu differs from recvcounts[%d] = %zu", c.apiName, c.count, rank,
                       c.v->counts[rank]);
      checkVector(c.v->counts, c.v->displs, es, c, "recvbuf");
      break;
    case Coll::ReduceScatterV: checkVector(c.v->counts, c.v->displs, es, c, "sendbuf"); break;
    case Coll::AlltoAllV:
      checkVector(c.v->sendCounts, c.v->sendDispls, es, c, "sendbuf");
      checkVector(c.v->recvCounts, c.v->recvDispls, es, c, "recvbuf");
      CHORUS_CHECK_ARG(c.v->sendCounts[rank] == c.v->recvCounts[rank],
                       "%s: sendcounts[%d] = %zu but recvcounts[%d] = %zu (to itself)", c.apiName, rank, c.v->sendCounts[rank], rank,
                       c.v->recvCounts[rank]);
      break;
    default: mulChecked(mulChecked(c.count, p, c), es, c); break;
  }
  CollArgs a = collArgsFor(c, rank, nranks);
  size_t inBytes = inputElems(a, rank) * es, outBytes = outputElems(a, rank) * es;
  CHORUS_CHECK_ARG(inBytes == 0 || c.sendbuf, "%s: sendbuf is NULL with %zu bytes to send", c.apiName, inBytes);
  CHORUS_CHECK_ARG(outBytes == 0 || c.recvbuf, "%s: recvbuf is NULL with %zu bytes to receive", c.apiName, outBytes);
  if (inBytes == 0 || outBytes == 0) return;
  // In place when the buffers alias exactly as the collective defines (collective.h).
  a.inPlace = true;
  bool outputInsideInput = false;
  size_t offset = 0;
  const char* s = static_cast<const char*>(c.sendbuf);
  const char* r = static_cast<const char*>(c.recvbuf);
  if (inPlaceAlias(a, rank, &outputInsideInput, &offset)) {
    c.inPlace = outputInsideInput ? r == s + offset * es : s == r + offset * es;
    if (c.inPlace) return;
  }
  CHORUS_CHECK_ARG(s + inBytes <= r || r + outBytes <= s,
                   "%s: sendbuf and recvbuf overlap without being the in-place layout (see chorus.h for where an in-place "
                   "call's send data lives)",
                   c.apiName);
}

}  // namespace chorus

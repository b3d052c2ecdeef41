// Argument checks of every collective and point-to-point call, done once by the C API before a
// call runs or is queued: a bad call fails with chorusInvalidArgument on the rank that made
// it, without communicating (the peers then see it as a missing participant, bounded by
// CHORUS_TIMEOUT, as with any rank that stops calling).
//
// Sizes: every buffer a call describes (count x ranks x element size for the fixed-size
// collectives, displacement + count for each block of a V form) must fit the address space.
// The checks use only the arguments every rank passes alike (count, nranks, the V arrays), so
// that every rank refuses the same oversized call instead of one rank waiting for the others.
#include "core/validate.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "base/error.h"
#include "exec/reduce.h"

namespace chorus {
namespace {

// The most bytes one buffer can span. User space ends at or below 2^56 on every 64-bit Linux
// (x86-64: 2^47, 2^56 with 5-level paging; AArch64: 2^48 or 2^52; RISC-V Sv57: 2^56), so a
// larger size is a wrong count, never a big buffer. Refusing it here also keeps the schedule
// builders from planning steps for memory that cannot exist.
constexpr uint64_t kAddressSpaceBytes = uint64_t{1} << 56;
constexpr size_t kMaxBufferBytes = static_cast<size_t>(std::min<uint64_t>(kAddressSpaceBytes, SIZE_MAX));

const char* plural(size_t n) { return n == 1 ? "" : "s"; }

// The name of the count argument in the call's C signature.
const char* countName(const CollCall& c) {
  if (c.kind != CallKind::Collective) return "count";
  if (c.coll == Coll::AllGather) return "sendcount";
  if (c.coll == Coll::ReduceScatter) return "recvcount";
  return "count";
}

// count x ranks x elemSize bytes, or throws naming the product, e.g. "chorusAllGather:
// sendcount 9223372036854775807 x 2 ranks x 1 byte (int8) overflows the address space".
size_t spanBytes(const CollCall& c, size_t count, size_t ranks, size_t es) {
  if (count <= kMaxBufferBytes / ranks / es) return count * ranks * es;
  std::string byRanks = ranks > 1 ? format(" x %zu ranks", ranks) : "";
  CHORUS_THROW(chorusInvalidArgument, "%s: %s %zu%s x %zu byte%s (%s) overflows the address space (2^56 bytes)", c.apiName,
               countName(c), count, byRanks.c_str(), es, plural(es), dataTypeName(c.dtype));
}

// The blocks of one buffer of a V form: each (displacement + count) x elemSize must fit the
// address space, and blocks must not overlap.
struct Blocks {
  const char* buffer;  // "sendbuf" or "recvbuf"
  const char* countsName;
  const char* displsName;
  const std::vector<size_t>& counts;
  const std::vector<size_t>& displs;
};

void checkBlocks(const Blocks& b, size_t es, const CollCall& c) {
  const size_t maxElems = kMaxBufferBytes / es;
  std::vector<std::pair<size_t, size_t>> used;
  for (size_t i = 0; i < b.counts.size(); ++i) {
    size_t n = b.counts[i], d = b.displs[i];
    CHORUS_CHECK_ARG(n <= maxElems && d <= maxElems - n,
                     "%s: %s block %zu (%s[%zu] %zu + %s[%zu] %zu elements) x %zu byte%s (%s) overflows the address space (2^56 "
                     "bytes)",
                     c.apiName, b.buffer, i, b.displsName, i, d, b.countsName, i, n, es, plural(es), dataTypeName(c.dtype));
    if (n) used.emplace_back(d, d + n);
  }
  std::sort(used.begin(), used.end());
  for (size_t i = 1; i < used.size(); ++i)
    CHORUS_CHECK_ARG(used[i].first >= used[i - 1].second, "%s: %s blocks overlap (elements [%zu, %zu) and [%zu, %zu))", c.apiName,
                     b.buffer, used[i - 1].first, used[i - 1].second, used[i].first, used[i].second);
}

// A buffer of `bytes` at `p` must not wrap past the top of the address space.
void checkEnd(const CollCall& c, const char* name, const void* p, size_t bytes) {
  uintptr_t start = reinterpret_cast<uintptr_t>(p);
  CHORUS_CHECK_ARG(bytes <= UINTPTR_MAX - start, "%s: %s %p + %zu bytes wraps around the end of the address space", c.apiName,
                   name, p, bytes);
}

bool rooted(Coll c) { return c == Coll::Broadcast || c == Coll::Reduce || c == Coll::Gather || c == Coll::Scatter; }

// How many ranks' blocks the larger buffer of a fixed-size collective holds.
size_t blocksPerBuffer(Coll c, size_t nranks) {
  switch (c) {
    case Coll::AllGather:
    case Coll::ReduceScatter:
    case Coll::AlltoAll:
    case Coll::Gather:
    case Coll::Scatter: return nranks;
    default: return 1;
  }
}

void checkPointToPoint(const CollCall& c, int nranks, size_t es) {
  CHORUS_CHECK_ARG(c.peer >= 0 && c.peer < nranks, "%s: peer %d is out of range [0, %d)", c.apiName, c.peer, nranks);
  size_t bytes = spanBytes(c, c.count, 1, es);
  const void* buf = c.kind == CallKind::Send ? c.sendbuf : c.recvbuf;
  CHORUS_CHECK_ARG(c.count == 0 || buf, "%s: NULL buffer with count %zu > 0", c.apiName, c.count);
  checkEnd(c, c.kind == CallKind::Send ? "sendbuf" : "recvbuf", buf, bytes);
}

void checkOp(const CollCall& c, const PreMulSumOps& ops) {
  PreMulSum pm;
  if (static_cast<int>(c.op) >= chorusNumOps && ops.lookup(c.op, &pm)) {
    CHORUS_CHECK_ARG(pm.dtype == c.dtype, "%s: the PreMulSum operator was created for %s, not %s", c.apiName,
                     dataTypeName(pm.dtype), dataTypeName(c.dtype));
    return;
  }
  CHORUS_CHECK_ARG(static_cast<int>(c.op) >= 0 && static_cast<int>(c.op) < chorusNumOps,
                   "%s: unknown reduction operator %d (not built in, nor a live PreMulSum operator of this communicator)",
                   c.apiName, static_cast<int>(c.op));
  reduceFunction(c.dtype, c.op);  // throws for an unsupported (type, op)
}

// Counts and V arrays: sizes that fit the address space, V blocks that do not overlap.
void checkCounts(const CollCall& c, int rank, int nranks, size_t es) {
  const bool vector = c.coll == Coll::AllGatherV || c.coll == Coll::ReduceScatterV || c.coll == Coll::AlltoAllV;
  CHORUS_ASSERT(!vector || c.v);
  switch (c.coll) {
    case Coll::AllGatherV:
      CHORUS_CHECK_ARG(c.count == c.v->counts[rank], "%s: sendcount %zu differs from recvcounts[%d] = %zu", c.apiName, c.count,
                       rank, c.v->counts[rank]);
      checkBlocks({"recvbuf", "recvcounts", "displs", c.v->counts, c.v->displs}, es, c);
      break;
    case Coll::ReduceScatterV:
      checkBlocks({"sendbuf", "recvcounts", "displs", c.v->counts, c.v->displs}, es, c);
      break;
    case Coll::AlltoAllV:
      checkBlocks({"sendbuf", "sendcounts", "sdispls", c.v->sendCounts, c.v->sendDispls}, es, c);
      checkBlocks({"recvbuf", "recvcounts", "rdispls", c.v->recvCounts, c.v->recvDispls}, es, c);
      CHORUS_CHECK_ARG(c.v->sendCounts[rank] == c.v->recvCounts[rank],
                       "%s: sendcounts[%d] = %zu but recvcounts[%d] = %zu (to itself)", c.apiName, rank, c.v->sendCounts[rank],
                       rank, c.v->recvCounts[rank]);
      break;
    default:
      spanBytes(c, c.count, blocksPerBuffer(c.coll, static_cast<size_t>(nranks)), es);
      break;
  }
}

// NULL buffers with data, buffers that wrap, and overlaps other than the in-place layout.
// Sets c.inPlace. All address arithmetic is on integers: sizes were bounded by checkCounts.
void checkBuffers(CollCall& c, int rank, int nranks, size_t es) {
  CollArgs a = collArgsFor(c, rank, nranks);
  size_t inBytes = inputElems(a, rank) * es, outBytes = outputElems(a, rank) * es;
  CHORUS_CHECK_ARG(inBytes == 0 || c.sendbuf, "%s: sendbuf is NULL with %zu bytes to send", c.apiName, inBytes);
  CHORUS_CHECK_ARG(outBytes == 0 || c.recvbuf, "%s: recvbuf is NULL with %zu bytes to receive", c.apiName, outBytes);
  if (inBytes) checkEnd(c, "sendbuf", c.sendbuf, inBytes);
  if (outBytes) checkEnd(c, "recvbuf", c.recvbuf, outBytes);
  if (inBytes == 0 || outBytes == 0) return;
  // In place when the buffers alias exactly as the collective defines (collective.h).
  a.inPlace = true;
  bool outputInsideInput = false;
  size_t offset = 0;
  const uintptr_t s = reinterpret_cast<uintptr_t>(c.sendbuf), r = reinterpret_cast<uintptr_t>(c.recvbuf);
  if (inPlaceAlias(a, rank, &outputInsideInput, &offset)) {
    c.inPlace = outputInsideInput ? r == s + offset * es : s == r + offset * es;
    if (c.inPlace) return;
  }
  CHORUS_CHECK_ARG(s + inBytes <= r || r + outBytes <= s,
                   "%s: sendbuf [%p, +%zu bytes) and recvbuf [%p, +%zu bytes) overlap without being the in-place layout (see "
                   "chorus.h for where an in-place call's send data lives)",
                   c.apiName, c.sendbuf, inBytes, static_cast<const void*>(c.recvbuf), outBytes);
}

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

namespace {

// The last call this thread validated. The checks depend only on these fields (and, for a
// PreMulSum operator, on the communicator's live operators, so those calls are never
// remembered, nor are the V forms, whose arrays are not compared): a loop that repeats one call
// - a training step's buckets, a perf sweep - skips them, which is about a tenth of a small
// call's time.
struct ValidatedCall {
  bool valid = false;
  CallKind kind;
  Coll coll;
  const void* sendbuf;
  void* recvbuf;
  size_t count;
  chorusDataType_t dtype;
  chorusRedOp_t op;
  int root, peer, rank, nranks;
  bool inPlace;

  bool matches(const CollCall& c, int r, int n) const {
    return valid && c.kind == kind && c.coll == coll && c.sendbuf == sendbuf && c.recvbuf == recvbuf && c.count == count &&
           c.dtype == dtype && c.op == op && c.root == root && c.peer == peer && r == rank && n == nranks && !c.v;
  }
  static bool rememberable(const CollCall& c) {
    return !c.v && !(c.kind == CallKind::Collective && isReduction(c.coll) && static_cast<int>(c.op) >= chorusNumOps);
  }
};

thread_local ValidatedCall tValidated;

void checkCall(CollCall& c, int rank, int nranks, const PreMulSumOps& ops) {
  size_t es = dataTypeSize(c.dtype);
  CHORUS_CHECK_ARG(es != 0, "%s: unknown datatype %d", c.apiName, static_cast<int>(c.dtype));
  c.inPlace = false;
  if (c.kind != CallKind::Collective) return checkPointToPoint(c, nranks, es);
  if (isReduction(c.coll)) checkOp(c, ops);
  if (rooted(c.coll))
    CHORUS_CHECK_ARG(c.root >= 0 && c.root < nranks, "%s: root %d is out of range [0, %d)", c.apiName, c.root, nranks);
  checkCounts(c, rank, nranks, es);
  checkBuffers(c, rank, nranks, es);
}

}  // namespace

void validateCall(CollCall& c, int rank, int nranks, const PreMulSumOps& ops) {
  ValidatedCall& last = tValidated;
  if (last.matches(c, rank, nranks)) {
    c.inPlace = last.inPlace;
    return;
  }
  checkCall(c, rank, nranks, ops);  // throws for a bad call: nothing is remembered
  if (!ValidatedCall::rememberable(c)) return;
  last = {true, c.kind, c.coll, c.sendbuf, c.recvbuf, c.count, c.dtype, c.op, c.root, c.peer, rank, nranks, c.inPlace};
}

}  // namespace chorus

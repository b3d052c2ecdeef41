// Collective mismatch detection: ranks that make different calls at the same point of a
// communicator (another dtype of the same bytes, another op, root or count, or one rank a call
// ahead) fail with chorusInvalidUsage naming both calls, over every transport, instead of
// returning wrong data, a size-mismatch error or a timeout. No rank may return success.
#include <chorus/chorus.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <chrono>
#include <cstring>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

enum class Skew { Dtype, Op, Root, Count, Skipped };

struct Case {
  Skew skew;
  const char* transport;
  int p;
};

const char* skewName(Skew s) {
  switch (s) {
    case Skew::Dtype: return "dtype";
    case Skew::Op: return "op";
    case Skew::Root: return "root";
    case Skew::Count: return "count";
    default: return "skipped";
  }
}

void PrintTo(const Case& c, std::ostream* os) { *os << skewName(c.skew) << "_" << c.transport << "_np" << c.p; }

constexpr int kCulprit = 1;
constexpr int kMismatchNamed = 40;  // failed with chorusInvalidUsage naming both calls
constexpr int kOtherError = 41;     // failed otherwise (a neighbour of a rank that saw it)

// One rank's part: a first agreeing all-reduce, then the skewed call (#2), then a probe that
// must not succeed either. Returns how the rank ended.
int skewedRank(const Case& c, chorusComm_t comm, int rank) {
  const size_t n = 1031;  // prime: uneven blocks
  std::vector<float> f(n, static_cast<float>(rank + 1)), g(n, 0.0f);
  if (chorusAllReduce(f.data(), g.data(), n, chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) return 3;
  const bool culprit = rank == kCulprit;
  chorusResult_t r = chorusSuccess;
  switch (c.skew) {
    case Skew::Dtype:  // same bytes, another type
      r = chorusAllReduce(f.data(), g.data(), n, culprit ? chorusInt32 : chorusFloat32, chorusSum, comm, nullptr);
      break;
    case Skew::Op:
      r = chorusAllReduce(f.data(), g.data(), n, chorusFloat32, culprit ? chorusMax : chorusSum, comm, nullptr);
      break;
    case Skew::Root:
      r = chorusBroadcast(f.data(), g.data(), n, chorusFloat32, culprit ? 1 : 0, comm, nullptr);
      break;
    case Skew::Count:
      r = chorusAllReduce(f.data(), g.data(), culprit ? n - 7 : n, chorusFloat32, chorusSum, comm, nullptr);
      break;
    case Skew::Skipped:
      // The culprit skips an all-reduce and makes the broadcast that follows it. (Had the next
      // call the skipped one's shape, the two would be indistinguishable: the skip shows at the
      // first call whose shape differs, or as a rank missing at the end.)
      if (!culprit) r = chorusAllReduce(f.data(), g.data(), n, chorusFloat32, chorusSum, comm, nullptr);
      if (r == chorusSuccess) r = chorusBroadcast(f.data(), g.data(), n, chorusFloat32, 0, comm, nullptr);
      break;
  }
  if (r == chorusSuccess) {
    // Only a broadcast may finish on some ranks: each rank that believes itself the root only
    // sends, and a rank that hears from the root it believes in gets that root's data, which
    // is right in its view. The stale message waits and fails the next call.
    const float viewRoot = culprit ? 1.0f : 0.0f;
    bool right = true;
    for (float x : g) right &= x == viewRoot + 1.0f;
    if (c.skew != Skew::Root || !right) {
      fprintf(stderr, "rank %d: the skewed call succeeded\n", rank);
      return 4;
    }
  }
  // The next call must fail too: the communicator stays broken.
  chorusResult_t probe = chorusAllReduce(f.data(), g.data(), n, chorusFloat32, chorusSum, comm, nullptr);
  if (probe == chorusSuccess) return 5;
  if (r == chorusSuccess) r = probe;
  std::string text = chorusGetLastError(comm);
  fprintf(stderr, "rank %d: %s: %s\n", rank, chorusGetErrorString(r), text.c_str());
  if (r != chorusInvalidUsage || text.find("collective mismatch") == std::string::npos) return kOtherError;
  // Both calls named: the culprit's and a conforming rank's, each with its collective and ordinal.
  const char* api = c.skew == Skew::Root || c.skew == Skew::Skipped ? "chorusBroadcast #2" : "chorusAllReduce #2";
  // (A root mismatch shows at the next call, as a stale message of the culprit's broadcast.)
  bool namesCulprit = culprit || text.find("rank " + std::to_string(kCulprit) + " called " + api) != std::string::npos ||
                      (c.skew == Skew::Root && text.find("root 1)") != std::string::npos);
  size_t first = text.find(" called ");
  bool namesTwo = first != std::string::npos && text.find(" called ", first + 1) != std::string::npos;
  if (!(namesCulprit && namesTwo)) fprintf(stderr, "rank %d: the message does not name both calls\n", rank);
  return namesCulprit && namesTwo ? kMismatchNamed : 6;
}

class Mismatch : public ::testing::TestWithParam<Case> {};

TEST_P(Mismatch, EveryRankFailsAndTheCulpritsNeighboursNameBothCalls) {
  const Case c = GetParam();
  ScopedEnv transport("CHORUS_TRANSPORT", c.transport);
  ScopedEnv timeout("CHORUS_TIMEOUT", "20");  // a mismatch must be found long before this
  SharedArrivals ended;
  auto exits = runRanksWithId(
      c.p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, c.p, id, rank) != chorusSuccess) return 2;
        int code = skewedRank(c, comm, rank);
        // Stay up, as a job does, until every rank has its error: slower ranks may still ask
        // this one where the failure started (a rank that has exited cannot be asked).
        ended.arriveAndWait(c.p, 10);
        chorusCommAbort(comm);
        return code;
      },
      60);
  int named = 0;
  for (int r = 0; r < c.p; ++r) {
    ASSERT_TRUE(exits[r].exited) << "rank " << r << ": " << exits[r].describe();
    EXPECT_TRUE(exits[r].code == kMismatchNamed || exits[r].code == kOtherError) << "rank " << r << ": " << exits[r].describe();
    EXPECT_LT(exits[r].seconds, 15) << "rank " << r << " waited instead of detecting the mismatch";
    named += exits[r].code == kMismatchNamed;
  }
  // Every rank that hears of it - first hand, or from the neighbour it asks - fails with
  // chorusInvalidUsage naming both calls.
  EXPECT_EQ(named, c.p) << "some rank did not name both calls";
}

std::vector<Case> cases() {
  std::vector<Case> out;
  std::vector<const char*> transports = {"shm", "tcp"};
#ifdef CHORUS_HAVE_UCX
  transports.push_back("ucx");
#endif
#ifdef CHORUS_HAVE_OFI
  transports.push_back("ofi");
#endif
  for (Skew s : {Skew::Dtype, Skew::Op, Skew::Root, Skew::Count, Skew::Skipped}) out.push_back({s, "shm", 3});
  for (const char* t : transports) out.push_back({Skew::Dtype, t, 2});
  out.push_back({Skew::Skipped, "tcp", 5});
  return out;
}

INSTANTIATE_TEST_SUITE_P(SameSequenceNumber, Mismatch, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return std::string(skewName(i.param.skew)) + "_" + i.param.transport + "_np" + std::to_string(i.param.p);
                         });

// Mismatches whose messages never meet: each rank waits for a peer that is not sending to it,
// or for a connection the peer never makes. Message stamps cannot see these; the ranks ask
// their stalled peers what they are doing (core/peer_probe.h), and must find the mismatch long
// before CHORUS_TIMEOUT.
struct UnmetCase {
  const char* name;
  const char* transport;
  int p;
};

void PrintTo(const UnmetCase& c, std::ostream* os) { *os << c.name << "_" << c.transport; }

class UnmetMismatch : public ::testing::TestWithParam<UnmetCase> {};

TEST_P(UnmetMismatch, IsFoundLongBeforeTheDeadline) {
  const UnmetCase c = GetParam();
  const bool swapped = std::string(c.name) == "swapped_roots";
  ScopedEnv transport("CHORUS_TRANSPORT", c.transport);
  ScopedEnv algo("CHORUS_ALGO", "broadcast:direct");
  ScopedEnv timeout("CHORUS_TIMEOUT", "20");
  SharedArrivals ended;
  auto exits = runRanksWithId(
      c.p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, c.p, id, rank) != chorusSuccess) return 2;
        std::vector<float> buf(257, 1.0f);
        // #1 agrees: root 0 (it connects rank 0 to every rank, and nobody else).
        if (chorusBroadcast(buf.data(), buf.data(), buf.size(), chorusFloat32, 0, comm, nullptr) != chorusSuccess) return 3;
        // #2: swapped_roots (np 2): each rank names the other as root, so both wait to receive.
        // other_root (np 3): rank 2 names rank 1, which it never connected to and which does
        // not send in the others' view.
        int root = swapped ? 1 - rank : (rank == 2 ? 1 : 0);
        chorusResult_t r = chorusBroadcast(buf.data(), buf.data(), buf.size(), chorusFloat32, root, comm, nullptr);
        if (r == chorusSuccess) r = chorusAllReduce(buf.data(), buf.data(), buf.size(), chorusFloat32, chorusSum, comm, nullptr);
        std::string text = chorusGetLastError(comm);
        fprintf(stderr, "rank %d: %s: %s\n", rank, chorusGetErrorString(r), text.c_str());
        ended.arriveAndWait(c.p, 10);  // until every rank has its error (see above)
        chorusCommAbort(comm);
        if (r == chorusSuccess) return 4;
        return r == chorusInvalidUsage && text.find("collective mismatch") != std::string::npos &&
                       text.find("chorusBroadcast #2") != std::string::npos
                   ? kMismatchNamed
                   : kOtherError;
      },
      60);
  for (int r = 0; r < c.p; ++r) {
    EXPECT_TRUE(exits[r].exited && exits[r].code == kMismatchNamed) << "rank " << r << ": " << exits[r].describe();
    EXPECT_LT(exits[r].seconds, 8) << "rank " << r << " waited instead of detecting the mismatch";
  }
}

INSTANTIATE_TEST_SUITE_P(MessagesNeverMeet, UnmetMismatch,
                         ::testing::Values(UnmetCase{"swapped_roots", "tcp", 2}, UnmetCase{"swapped_roots", "shm", 2},
                                           UnmetCase{"other_root", "shm", 3}, UnmetCase{"other_root", "tcp", 3}),
                         [](const ::testing::TestParamInfo<UnmetCase>& i) {
                           return std::string(i.param.name) + "_" + i.param.transport;
                         });

}  // namespace
}  // namespace chorus::test

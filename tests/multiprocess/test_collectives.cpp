// Every collective end to end, per algorithm: forked ranks, real bootstrap and transports, one
// communicator per (rank count, algorithm) with CHORUS_ALGO forcing that algorithm for every
// collective it serves, and on it every type (x every op for reductions), awkward counts (0, 1,
// primes), roots other than 0, in place and out of place, irregular V layouts, PreMulSum and
// Barrier. Every byte of every rank's buffers is checked against tests/fixtures/coll_check's
// reference (results, untouched send buffers, V gaps, unused non-root buffers, guards).
#include <chorus/chorus.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <new>
#include <string>
#include <tuple>
#include <vector>

#include "collectives/collective.h"
#include "fixtures/coll_check.h"
#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

// One rank's sweep over everything `algo` serves, on one communicator. Returns the number of
// failed cases; stops at the first call that fails (the communicator is then broken).
class Sweep {
 public:
  Sweep(chorusComm_t comm, int rank, int p, Algo algo) : comm_(comm), rank_(rank), p_(p), algo_(algo) {
    for (int root : {p - 1, p / 2, 0})
      if (std::find(roots_.begin(), roots_.end(), root) == roots_.end()) roots_.push_back(root);
  }

  int run() {
    for (int i = 0; i < static_cast<int>(Coll::kCount) && !broken_; ++i) {
      Coll coll = static_cast<Coll>(i);
      if (!algoServes(algo_, coll)) continue;
      everyTypeAndOp(coll);
      layouts(coll);
      if (isReduction(coll)) preMulSum(coll);
    }
    for (int k = 0; k < 3 && !broken_; ++k) {
      if (chorusBarrier(comm_, nullptr) == chorusSuccess) continue;
      fprintf(stderr, "rank %d: %s: chorusBarrier failed: %s\n", rank_, algoName(algo_), chorusGetLastError(comm_));
      ++failures_;
      broken_ = true;
    }
    if (rank_ == 0) fprintf(stderr, "%s np%d: %llu calls checked\n", algoName(algo_), p_, static_cast<unsigned long long>(salt_));
    return failures_;
  }

 private:
  void runOne(CollCase c, const char* what) {
    if (broken_) return;
    c.salt = ++salt_;
    if (isVForm(c.coll)) makeVLayout(c, p_, c.salt, vMax_);
    int r = runCase(comm_, rank_, p_, c, std::string(algoName(algo_)) + " np" + std::to_string(p_) + " " + what);
    failures_ += r != 0;
    broken_ = r == 2;
  }

  // Every type (and every op of a reduction) once, the count, root, in-place flag and NULL
  // unused buffers rotating among the calls so that each value of each meets many types.
  void everyTypeAndOp(Coll coll) {
    static const size_t kCounts[] = {1, 13, 1031};
    vMax_ = 40;
    int k = 0;
    for (chorusDataType_t type : kEveryType) {
      for (chorusRedOp_t op : kBuiltinOps) {
        CollCase c;
        c.coll = coll;
        c.dtype = type;
        c.op = op;
        c.count = kCounts[k % 3];
        c.inPlace = (k / 3) % 2 == 1;
        c.root = roots_[(k / 2) % roots_.size()];
        c.nullUnused = k % 4 == 3;
        c.packedDispls = k % 5 == 2;
        runOne(c, "every type/op");
        ++k;
        if (!isReduction(coll)) break;  // movement does not depend on the op
      }
    }
  }

  // One type through every count, root and in-place variant (V forms: several irregular
  // layouts, an all-empty one, packed displacements).
  void layouts(Coll coll) {
    const chorusDataType_t type = isReduction(coll) ? chorusInt32 : chorusFloat16;
    CollCase c;
    c.coll = coll;
    c.dtype = type;
    c.op = chorusSum;
    if (isVForm(coll)) {
      for (size_t maxCount : {size_t{0}, size_t{1}, size_t{7}, size_t{600}, size_t{2500}})
        for (bool inPlace : {false, true}) {
          vMax_ = maxCount;
          c.inPlace = inPlace;
          c.packedDispls = coll == Coll::ReduceScatterV && maxCount == 7;
          c.nullUnused = maxCount == 0;
          runOne(c, "layout");
        }
      return;
    }
    // Roots rotate with the counts: every (root, in place) pair occurs, and every count.
    int k = 0;
    for (size_t count : {size_t{0}, size_t{1}, size_t{13}, size_t{1031}, size_t{20011}})
      for (bool inPlace : {false, true}) {
        c.count = count;
        c.inPlace = inPlace;
        c.root = roots_[k % roots_.size()];
        c.nullUnused = ++k % 4 >= 2;
        runOne(c, "layout");
      }
  }

  // sum(scalar * input) with an integer scalar for integer types and 0.5 or 2 for floats.
  void preMulSum(Coll coll) {
    const chorusDataType_t types[] = {chorusInt32,   chorusUint8,   chorusInt64,      chorusFloat16,   chorusBfloat16,
                                      chorusFloat32, chorusFloat64, chorusFloat8e4m3, chorusFloat8e5m2};
    vMax_ = 40;
    int k = 0;
    for (chorusDataType_t type : types) {
      const double scalar = type <= chorusUint64 ? 2 : (k % 2 ? 2 : 0.5);
      CollCase c;
      c.coll = coll;
      c.dtype = type;
      c.preMulScalar = scalar;
      c.count = k % 2 ? 13 : 1031;
      c.inPlace = k % 3 == 1;
      c.root = roots_[k % roots_.size()];
      ++k;
      chorusRedOp_t op;
      if (createPreMulSum(comm_, type, scalar, &op) != chorusSuccess) {
        fprintf(stderr, "rank %d: chorusRedOpCreatePreMulSum(%s, %g) failed: %s\n", rank_, typeLabel(type), scalar,
                chorusGetLastError(comm_));
        ++failures_;
        continue;
      }
      c.op = op;
      runOne(c, "premulsum");
      if (chorusRedOpDestroy(op, comm_) != chorusSuccess) {
        fprintf(stderr, "rank %d: chorusRedOpDestroy failed: %s\n", rank_, chorusGetLastError(comm_));
        ++failures_;
      }
    }
  }

  chorusComm_t comm_;
  int rank_, p_;
  Algo algo_;
  std::vector<int> roots_;
  uint64_t salt_ = 0;
  size_t vMax_ = 40;
  int failures_ = 0;
  bool broken_ = false;
};

using Param = std::tuple<const char*, int, int>;  // transport, ranks, algorithm (as int: gtest prints it)

class EveryCollective : public ::testing::TestWithParam<Param> {};

TEST_P(EveryCollective, ExactResultsForEveryTypeOpCountRootAndLayout) {
  auto [transport, p, algoIndex] = GetParam();
  const Algo algo = static_cast<Algo>(algoIndex);
  const std::string tune = tuneStringFor(algo);
  ScopedEnv algoEnv("CHORUS_ALGO", tune.c_str());
  ScopedEnv transportEnv("CHORUS_TRANSPORT", transport);
  ScopedEnv timeout("CHORUS_TIMEOUT", "30");
  // Small slices: 1031 and 20011 elements then run through several pipelined pieces.
  ScopedEnv slice("CHORUS_SLICE_BYTES", "4096");
  auto exits =
      runRanksWithComm(p, [p = p, algo](chorusComm_t comm, int rank) { return Sweep(comm, rank, p, algo).run() ? 1 : 0; });
  EXPECT_TRUE(allRanksSucceeded(exits)) << "CHORUS_ALGO=" << tune << " (each failing case is described on stderr above)";
}

std::vector<Param> everyGroup() {
  std::vector<Param> params;
  for (int a = 0; a < static_cast<int>(Algo::kCount); ++a)
    for (int p : {1, 2, 3, 4, 5, 7, 8}) params.emplace_back("shm", p, a);
  // TCP moves the same schedules over sockets: a sample of rank counts.
  for (int a = 0; a < static_cast<int>(Algo::kCount); ++a) params.emplace_back("tcp", a % 2 ? 3 : 4, a);
  return params;
}

INSTANTIATE_TEST_SUITE_P(Groups, EveryCollective, ::testing::ValuesIn(everyGroup()), [](const auto& info) {
  return std::string(algoName(static_cast<Algo>(std::get<2>(info.param)))) + "_" + std::get<0>(info.param) + "_np" +
         std::to_string(std::get<1>(info.param));
});

TEST(Barrier, NoRankLeavesBeforeEveryRankHasEntered) {
  // A counter in memory shared by the forked ranks: each rank adds one before barrier k (the
  // later ranks after a delay), and after it must see every rank's addition.
  const int p = 5, rounds = 4;
  void* shared = mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(shared, MAP_FAILED);
  auto* counter = new (shared) std::atomic<int>(0);
  ScopedEnv timeout("CHORUS_TIMEOUT", "30");
  auto exits = runRanksWithComm(p, [&](chorusComm_t comm, int rank) {
    for (int k = 0; k < rounds; ++k) {
      usleep(static_cast<useconds_t>(rank * 20000));
      counter->fetch_add(1);
      if (chorusBarrier(comm, nullptr) != chorusSuccess) {
        fprintf(stderr, "rank %d: barrier failed: %s\n", rank, chorusGetLastError(comm));
        return 5;
      }
      int seen = counter->load();
      if (seen < (k + 1) * p) {
        fprintf(stderr, "rank %d: left barrier %d having seen %d of %d arrivals\n", rank, k, seen, (k + 1) * p);
        return 6;
      }
    }
    return 0;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
  munmap(shared, sizeof(std::atomic<int>));
}

}  // namespace
}  // namespace chorus::test

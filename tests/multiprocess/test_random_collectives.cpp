// A thousand randomly chosen collectives in a row on one communicator, each checked in full:
// random collective, type, op (PreMulSum included), count (0 included), root, in place or not,
// V layout. The tuner chooses the algorithms (no CHORUS_ALGO), so its size-dependent choices
// and the schedule cache get exercised by a realistic mix. The seed is shared by every rank
// (each rank draws the same sequence) and printed on failure; CHORUS_TEST_SEED replays one.
#include <chorus/chorus.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "collectives/collective.h"
#include "fixtures/coll_check.h"
#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

constexpr int kCalls = 1000;
constexpr int kMaxReported = 10;  // failures reported before a rank gives up

uint64_t chooseSeed() {
  if (const char* s = getenv("CHORUS_TEST_SEED")) return strtoull(s, nullptr, 0);
  return (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

// The k-th call of the sequence; preMulOps[t] is this communicator's PreMulSum op for type t.
CollCase randomCase(Rng& rng, int p, uint64_t salt, const std::vector<chorusRedOp_t>& preMulOps) {
  CollCase c;
  c.salt = salt;
  c.coll = static_cast<Coll>(rng.below(static_cast<size_t>(Coll::kCount)));
  const size_t typeIndex = rng.below(12);
  c.dtype = kEveryType[typeIndex];
  c.op = kBuiltinOps[rng.below(5)];
  if (isReduction(c.coll) && rng.below(10) == 0) {
    c.preMulScalar = c.dtype <= chorusUint64 ? 2 : 0.5;
    c.op = preMulOps[typeIndex];
  }
  // Mostly small and medium counts (latency-bound choices), some large (bandwidth-bound).
  switch (rng.below(10)) {
    case 0:
      c.count = 0;
      break;
    case 1:
      c.count = 1 + rng.below(70000);
      break;
    case 2:
    case 3:
    case 4:
      c.count = 1 + rng.below(3000);
      break;
    default:
      c.count = 1 + rng.below(16);
      break;
  }
  c.root = static_cast<int>(rng.below(static_cast<size_t>(p)));
  c.inPlace = rng.below(2) == 1;
  c.nullUnused = rng.below(3) == 0;
  c.packedDispls = rng.below(3) == 0;
  static const size_t kVMax[] = {0, 5, 300, 3000};
  if (c.coll == Coll::AllGatherV || c.coll == Coll::ReduceScatterV || c.coll == Coll::AlltoAllV)
    makeVLayout(c, p, rng.next(), kVMax[rng.below(4)]);
  return c;
}

int runSequence(chorusComm_t comm, int rank, int p, uint64_t seed) {
  std::vector<chorusRedOp_t> preMulOps;
  for (chorusDataType_t type : kEveryType) {
    chorusRedOp_t op;
    if (createPreMulSum(comm, type, type <= chorusUint64 ? 2 : 0.5, &op) != chorusSuccess) {
      fprintf(stderr, "rank %d: chorusRedOpCreatePreMulSum(%s) failed: %s\n", rank, typeLabel(type), chorusGetLastError(comm));
      return 3;
    }
    preMulOps.push_back(op);
  }
  Rng rng(seed);
  int failures = 0;
  for (int k = 0; k < kCalls; ++k) {
    CollCase c = randomCase(rng, p, seed + static_cast<uint64_t>(k), preMulOps);
    char label[96];
    snprintf(label, sizeof label, "seed %llu call %d/%d", static_cast<unsigned long long>(seed), k, kCalls);
    int r = runCase(comm, rank, p, c, label);
    if (r == 0) continue;
    if (r == 2 || ++failures >= kMaxReported) return 1;  // a failed call broke the communicator
  }
  for (chorusRedOp_t op : preMulOps) chorusRedOpDestroy(op, comm);
  return failures ? 1 : 0;
}

using Param = std::tuple<int, const char*>;  // ranks, CHORUS_SLICE_BYTES (nullptr: default)

class RandomCollectives : public ::testing::TestWithParam<Param> {};

TEST_P(RandomCollectives, ThousandCallsInARowAllChecked) {
  auto [p, slice] = GetParam();
  const uint64_t seed = chooseSeed();
  ScopedEnv algo("CHORUS_ALGO", nullptr);  // the tuner decides
  ScopedEnv sliceEnv("CHORUS_SLICE_BYTES", slice);
  ScopedEnv timeout("CHORUS_TIMEOUT", "30");
  auto exits = runRanksWithComm(p, [p = p, seed](chorusComm_t comm, int rank) { return runSequence(comm, rank, p, seed); });
  EXPECT_TRUE(allRanksSucceeded(exits)) << "seed " << seed << " (replay with CHORUS_TEST_SEED=" << seed << ")";
}

INSTANTIATE_TEST_SUITE_P(Sequences, RandomCollectives,
                         ::testing::Values(Param{3, nullptr}, Param{4, nullptr}, Param{5, nullptr}, Param{4, "4096"}),
                         [](const auto& info) {
                           const char* slice = std::get<1>(info.param);
                           return "np" + std::to_string(std::get<0>(info.param)) + (slice ? std::string("_slice") + slice : "");
                         });

}  // namespace
}  // namespace chorus::test

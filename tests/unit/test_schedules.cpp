// Every (algorithm, collective) pair the registry serves, checked symbolically
// (collectives/verifier.h) for every rank count 1..64 and selected larger ones: counts 0, 1, 2,
// a prime and one that spans several slices (a small sliceBytes, so pipelined rounds overlap),
// in place and out of place, several roots, average on and off, element sizes 1 to 8, and for
// the V forms irregular counts with zeros and displacements that are neither packed nor in
// rank order.
//
// A pair's test runs all its cases and reports how many failed, at which rank counts, and the
// first few verifier messages, so one broken builder reads as one failure with its evidence.
// CHORUS_TEST_SWEEP=short (the sanitizer stage) checks fewer rank counts: fixtures/sweep.h.
#include <gtest/gtest.h>

#include <chorus/chorus.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "collectives/collective.h"
#include "collectives/verifier.h"
#include "base/error.h"
#include "fixtures/sweep.h"

namespace chorus {
namespace {

struct Pair {
  Algo algo;
  Coll coll;
};

std::vector<Pair> servedPairs() {
  std::vector<Pair> out;
  for (int a = 0; a < static_cast<int>(Algo::kCount); ++a)
    for (int c = 0; c < static_cast<int>(Coll::kCount); ++c)
      if (algoServes(static_cast<Algo>(a), static_cast<Coll>(c))) out.push_back({static_cast<Algo>(a), static_cast<Coll>(c)});
  return out;
}

std::string pairName(const testing::TestParamInfo<Pair>& info) {
  return std::string(algoName(info.param.algo)) + "_" + collName(info.param.coll);
}

bool rooted(Coll c) { return c == Coll::Broadcast || c == Coll::Reduce || c == Coll::Gather || c == Coll::Scatter; }
bool hasInPlace(Coll c) { return c != Coll::AlltoAll && c != Coll::AlltoAllV; }
// Collectives whose `count` is the whole buffer (the others' count is one rank's block).
bool wholeBuffer(Coll c) { return c == Coll::AllReduce || c == Coll::Broadcast || c == Coll::Reduce; }

// Places blocks of the given sizes in a buffer in reverse block order, with a gap of 0-2
// elements after each: displacements that are neither packed nor sorted by block.
std::vector<size_t> scatteredDispls(const std::vector<size_t>& counts, size_t seed) {
  std::vector<size_t> displs(counts.size());
  size_t at = seed % 2;
  for (size_t k = counts.size(); k-- > 0;) {
    displs[k] = at;
    at += counts[k] + (k + seed) % 3;
  }
  return displs;
}

// Irregular block sizes around `base` (some zero): the V forms' counts.
size_t irregular(size_t i, size_t j, size_t base, size_t seed) {
  size_t h = (i * 7 + j * 13 + seed * 5) % 6;
  if (base == 0) return 0;
  return h == 0 ? 0 : (base * h + i + j) % (2 * base + 1);
}

// The per-rank arguments of one case (V forms get their vectors from `count` and `seed`).
std::vector<CollArgs> caseArgs(Coll coll, int p, size_t count, size_t elemSize, size_t sliceBytes, bool inPlace, bool average,
                               int root, size_t seed) {
  CollArgs a{.coll = coll,
             .nranks = p,
             .root = root,
             .count = count,
             .elemSize = elemSize,
             .sliceBytes = sliceBytes,
             .inPlace = inPlace,
             .average = average};
  if (coll == Coll::AllGatherV || coll == Coll::ReduceScatterV) {
    a.counts.resize(p);
    for (int j = 0; j < p; ++j) a.counts[j] = irregular(j, 0, count, seed);
    a.displs = scatteredDispls(a.counts, seed);
  }
  std::vector<CollArgs> perRank(p, a);
  for (int r = 0; r < p; ++r) {
    CollArgs& x = perRank[r];
    x.rank = r;
    if (coll != Coll::AlltoAllV) continue;
    x.sendCounts.resize(p);
    x.recvCounts.resize(p);
    for (int j = 0; j < p; ++j) {
      x.sendCounts[j] = irregular(r, j, count, seed);  // r -> j
      x.recvCounts[j] = irregular(j, r, count, seed);  // j -> r
    }
    x.sendDispls = scatteredDispls(x.sendCounts, seed + r);
    x.recvDispls = scatteredDispls(x.recvCounts, seed + 2 * r);
  }
  return perRank;
}

std::string caseText(Algo algo, const std::vector<CollArgs>& perRank) {
  const CollArgs& a = perRank[0];
  std::string t = format("%s %s p=%d count=%zu elemSize=%zu sliceBytes=%zu%s", algoName(algo), collName(a.coll), a.nranks,
                         a.count, a.elemSize, a.sliceBytes, a.inPlace ? " in-place" : "");
  if (rooted(a.coll)) t += format(" root=%d", a.root);
  if (isReduction(a.coll)) t += a.average ? " avg" : " sum";
  auto list = [](const char* name, const std::vector<size_t>& v) {
    std::string l = format(" %s", name);
    for (size_t i = 0; i < v.size() && i < 8; ++i) l += format("%c%zu", i ? ',' : '=', v[i]);
    return l + (v.size() > 8 ? ",..." : "");
  };
  if (!a.counts.empty()) t += list("counts", a.counts) + list("displs", a.displs);
  if (a.coll == Coll::AlltoAllV) t += list("rank0.sendCounts", a.sendCounts) + list("rank0.recvCounts", a.recvCounts);
  return t;
}

// Collects the failures of one pair's cases: how many, at which p, and the first messages.
class Failures {
 public:
  void check(Algo algo, const std::vector<CollArgs>& perRank) {
    ++cases_;
    VerifyResult v = verifyAlgorithm(algo, perRank);
    if (v.ok) return;
    ++failed_;
    ranks_.insert(perRank[0].nranks);
    if (first_.size() < 3) first_.push_back(caseText(algo, perRank) + ": " + v.error);
  }
  size_t failed() const { return failed_; }
  std::string summary() const {
    std::string t = format("%zu of %zu cases failed, at p =", failed_, cases_);
    for (int p : ranks_) t += format(" %d", p);
    for (const std::string& f : first_) t += "\n  " + f;
    return t;
  }

 private:
  size_t cases_ = 0, failed_ = 0;
  std::set<int> ranks_;
  std::vector<std::string> first_;
};

constexpr size_t kElemSizes[] = {1, 2, 4, 8};
constexpr size_t kSliceBytes = 64;  // the smallest slice: a few dozen elements already pipeline

constexpr size_t kSeveralSlices = ~size_t{0};

// The several-slices count for this element size: whole-buffer collectives give every rank's
// chunk a slice and a bit, so a chunk is two slices.
size_t severalSlices(Coll coll, int p, size_t elemSize) {
  size_t sliceElems = kSliceBytes / elemSize;
  return wholeBuffer(coll) ? static_cast<size_t>(p) * sliceElems + 5 : 2 * sliceElems + 5;
}

// Runs the matrix of one pair at p ranks: every small count meets every combination of in
// place, root and average; the several-slices count (the costly one) meets both in place and
// out of place, with the root and the average rotating over p.
void runMatrix(Failures& f, Pair pr, int p, const std::vector<size_t>& countSet) {
  std::vector<int> roots = {0};
  if (rooted(pr.coll)) roots = {0, p / 2, p - 1};
  roots.erase(std::unique(roots.begin(), roots.end()), roots.end());
  size_t variant = 0;
  for (size_t ci = 0; ci < countSet.size(); ++ci) {
    const bool big = countSet[ci] == kSeveralSlices;
    for (bool inPlace : {false, true}) {
      if (inPlace && !hasInPlace(pr.coll)) continue;
      for (size_t ri = 0; ri < roots.size(); ++ri) {
        if (big && ri != static_cast<size_t>(p) % roots.size()) continue;
        for (bool avg : {false, true}) {
          if (avg && !isReduction(pr.coll)) continue;
          if (big && avg != (p % 2 == 1)) continue;
          // Element sizes rotate through the cases: each size meets every count and p.
          size_t elemSize = kElemSizes[(p + ci + variant++) % 4];
          size_t count = big ? severalSlices(pr.coll, p, elemSize) : countSet[ci];
          f.check(pr.algo, caseArgs(pr.coll, p, count, elemSize, kSliceBytes, inPlace, avg, roots[ri], p + ci));
        }
      }
    }
  }
}

class EveryPair : public testing::TestWithParam<Pair> {};

TEST_P(EveryPair, VerifiesForEveryRankCountUpTo64) {
  Pair pr = GetParam();
  Failures f;
  for (int p : test::rankCountsUpTo(64)) runMatrix(f, pr, p, {0, 1, 2, 13, kSeveralSlices});
  EXPECT_EQ(f.failed(), 0u) << algoName(pr.algo) << " " << collName(pr.coll) << ": " << f.summary();
}

// Large rank counts: the log-step families at 127, 128, 256, 1000 and 1024 ranks, the linear
// ones (ring, direct, pairwise: p - 1 steps per rank, p^2 messages in all) at 256. All-to-all
// moves p^2 blocks (Bruck: a step per block per round, 3 million steps at p = 1024, half a GB
// of schedules and verifier state): up to 512 ranks.
TEST_P(EveryPair, VerifiesAtLargeRankCounts) {
  Pair pr = GetParam();
  bool linear = pr.algo == Algo::Ring || pr.algo == Algo::Direct || pr.algo == Algo::Pairwise || pr.algo == Algo::Hierarchical ||
                pr.algo == Algo::Weighted;
  std::vector<int> ps = {127, 128, 256, 1000, 1024};
  if (linear) ps = {256};
  if (pr.coll == Coll::AlltoAll && !linear) ps = {127, 128, 256, 512};
  Failures f;
  for (int p : test::largeRankCounts(ps)) {
    // A prime count per block (all-to-all: one element); whole-buffer collectives get p + 3
    // elements: with 8-byte elements (chunks aligned to 64 bytes) one rank in eight owns a
    // chunk and the last one is short, and the buffers of 1024 ranks stay a few MB. Slices of
    // 512 bytes: the pipelined families still run a few slices.
    size_t count = wholeBuffer(pr.coll) ? static_cast<size_t>(p) + 3 : pr.coll == Coll::AlltoAll ? 1 : 3;
    for (bool inPlace : {false, true}) {
      if (inPlace && !hasInPlace(pr.coll)) continue;
      f.check(pr.algo,
              caseArgs(pr.coll, p, count, 8, 512, inPlace, isReduction(pr.coll) && inPlace, rooted(pr.coll) ? p / 3 : 0, p));
    }
  }
  EXPECT_EQ(f.failed(), 0u) << algoName(pr.algo) << " " << collName(pr.coll) << ": " << f.summary();
}

INSTANTIATE_TEST_SUITE_P(Schedules, EveryPair, testing::ValuesIn(servedPairs()), pairName);

TEST(Schedules, UnservedPairThrowsNamingTheAlgorithmsThatServe) {
  int unserved = 0;
  for (int a = 0; a < static_cast<int>(Algo::kCount); ++a) {
    for (int c = 0; c < static_cast<int>(Coll::kCount); ++c) {
      Algo algo = static_cast<Algo>(a);
      Coll coll = static_cast<Coll>(c);
      if (algoServes(algo, coll)) continue;
      ++unserved;
      CollArgs args = caseArgs(coll, 4, 8, 4, kSliceBytes, false, false, 0, 0)[1];
      try {
        buildSchedule(algo, args);
        ADD_FAILURE() << algoName(algo) << " built a " << collName(coll) << " schedule it does not serve";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), chorusInvalidArgument) << e.what();
        std::string serving = algosServing(coll);
        EXPECT_FALSE(serving.empty());
        EXPECT_NE(std::string(e.what()).find(serving), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(algoName(algo)), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_GT(unserved, 0);
}

// The direct family serves every collective (gather, scatter and the V forms have no other
// builder), so the registry must say so.
TEST(Schedules, EveryCollectiveHasABuilder) {
  for (int c = 0; c < static_cast<int>(Coll::kCount); ++c) {
    EXPECT_TRUE(algoServes(Algo::Direct, static_cast<Coll>(c))) << collName(static_cast<Coll>(c));
  }
}

}  // namespace
}  // namespace chorus

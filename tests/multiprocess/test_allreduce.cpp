// All-reduce end to end through the real stack: forked processes, real bootstrap, real shm and
// TCP transports, every result element checked exactly.
#include <gtest/gtest.h>

#include <chorus/chorus.h>

#include <cstdint>
#include <cstdio>
#include <thread>
#include <string>
#include <vector>

#include "fixtures/ranks.h"
#include "fixtures/typed_data.h"

namespace chorus::test {
namespace {

#define RANK_CHECK(call)                                                                                 \
  do {                                                                                                   \
    chorusResult_t r_ = (call);                                                                          \
    if (r_ != chorusSuccess) {                                                                           \
      fprintf(stderr, "%s failed: %s: %s\n", #call, chorusGetErrorString(r_), chorusGetLastError(nullptr)); \
      return 10 + static_cast<int>(r_);                                                                  \
    }                                                                                                    \
  } while (0)

// Runs body(comm, rank) on p forked ranks sharing one communicator.
std::vector<RankExit> withComm(int p, const std::function<int(chorusComm_t, int)>& body) {
  return runRanksWithId(p, [&](int rank, const chorusUniqueId& id) {
    chorusComm_t comm = nullptr;
    RANK_CHECK(chorusCommInitRank(&comm, p, id, rank));
    int code = body(comm, rank);
    RANK_CHECK(chorusCommDestroy(comm));
    return code;
  });
}

// One all-reduce of (type, op, count), in place or not; returns the number of wrong elements
// (or a large number when the call failed).
size_t allReduceWrong(chorusComm_t comm, int rank, int p, chorusDataType_t type, chorusRedOp_t op, size_t count, bool inPlace) {
  std::vector<char> in = makeBuffer(type, count), out = makeBuffer(type, count);
  fillInput(in.data(), type, op, count, rank);
  void* send = in.data();
  void* recv = inPlace ? in.data() : out.data();
  chorusResult_t r = chorusAllReduce(send, recv, count, type, op, comm, nullptr);
  if (r != chorusSuccess) {
    fprintf(stderr, "rank %d: allreduce failed: %s\n", rank, chorusGetLastError(comm));
    return SIZE_MAX;
  }
  size_t wrong = countWrong(recv, type, op, count, p);
  if (wrong) fprintf(stderr, "rank %d: %zu of %zu wrong (type %d op %d inPlace %d)\n", rank, wrong, count, type, op, inPlace);
  return wrong;
}

class AllReduceOverTransport : public ::testing::TestWithParam<std::tuple<const char*, int>> {};

TEST_P(AllReduceOverTransport, FloatSumAwkwardCountsInAndOutOfPlace) {
  auto [transport, p] = GetParam();
  ScopedEnv env("CHORUS_TRANSPORT", transport);
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  auto exits = withComm(p, [p = p](chorusComm_t comm, int rank) {
    int bad = 0;
    for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1000003}})
      for (bool inPlace : {false, true})
        bad += allReduceWrong(comm, rank, p, chorusFloat32, chorusSum, count, inPlace) != 0;
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

INSTANTIATE_TEST_SUITE_P(Ranks, AllReduceOverTransport,
                         ::testing::Combine(::testing::Values("shm", "tcp"), ::testing::Values(1, 2, 3, 5, 8)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_np" + std::to_string(std::get<1>(info.param));
                         });

class AllReduceEveryTypeAndOp : public ::testing::TestWithParam<std::tuple<const char*, int>> {};

TEST_P(AllReduceEveryTypeAndOp, ExactResults) {
  auto [transport, p] = GetParam();
  ScopedEnv env("CHORUS_TRANSPORT", transport);
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  // Small slices so that even these counts run through many pipelined rounds.
  ScopedEnv slice("CHORUS_SLICE_BYTES", "4096");
  auto exits = withComm(p, [p = p](chorusComm_t comm, int rank) {
    int bad = 0;
    for (chorusDataType_t type : kAllTypes)
      for (chorusRedOp_t op : kAllOps)
        for (size_t count : {size_t{0}, size_t{1}, size_t{13}, size_t{4099}, size_t{100003}})
          bad += allReduceWrong(comm, rank, p, type, op, count, count == 13) != 0;
    return bad;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

INSTANTIATE_TEST_SUITE_P(Ranks, AllReduceEveryTypeAndOp,
                         ::testing::Values(std::make_tuple("shm", 1), std::make_tuple("shm", 2), std::make_tuple("shm", 3),
                                           std::make_tuple("shm", 5), std::make_tuple("shm", 8), std::make_tuple("tcp", 2),
                                           std::make_tuple("tcp", 3), std::make_tuple("tcp", 5)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_np" + std::to_string(std::get<1>(info.param));
                         });

TEST(AllReduceSingleCopy, CrossMemoryAttachCarriesLargeSlices) {
  // Slices above the CMA threshold: every ring message takes the single-copy path.
  ScopedEnv transport("CHORUS_TRANSPORT", "shm");
  ScopedEnv cma("CHORUS_SHM_CMA", "1");
  ScopedEnv threshold("CHORUS_SHM_CMA_THRESHOLD", "64K");
  ScopedEnv slice("CHORUS_SLICE_BYTES", "1M");
  for (int p : {2, 3}) {
    auto exits = withComm(p, [p](chorusComm_t comm, int rank) {
      int bad = 0;
      for (chorusDataType_t type : {chorusFloat32, chorusBfloat16, chorusInt64})
        for (bool inPlace : {false, true}) bad += allReduceWrong(comm, rank, p, type, chorusSum, 1000003, inPlace) != 0;
      return bad;
    });
    EXPECT_TRUE(allRanksSucceeded(exits)) << "p=" << p;
  }
}

TEST(AllReduceStreams, EnqueuedCallsRunInOrderAndSynchronize) {
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  const int p = 3;
  auto exits = withComm(p, [](chorusComm_t comm, int rank) {
    chorusStream_t stream;
    RANK_CHECK(chorusStreamCreate(&stream));
    // Three dependent calls on one buffer: each doubles-and-sums; order matters.
    const size_t n = 100003;
    std::vector<int64_t> buf(n, rank + 1);
    for (int k = 0; k < 3; ++k) RANK_CHECK(chorusAllReduce(buf.data(), buf.data(), n, chorusInt64, chorusSum, comm, stream));
    RANK_CHECK(chorusStreamSynchronize(stream));
    RANK_CHECK(chorusStreamQuery(stream));
    // After one call every element is 1+2+3 = 6, then 18, then 54.
    for (size_t i = 0; i < n; ++i)
      if (buf[i] != 54) return 2;
    RANK_CHECK(chorusStreamDestroy(stream));
    return 0;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

TEST(AllReduceThreads, CommInitAllRunsRanksAsThreads) {
  const int p = 3;
  chorusComm_t comms[p];
  ASSERT_EQ(chorusCommInitAll(comms, p, nullptr), chorusSuccess) << chorusGetLastError(nullptr);
  std::vector<std::vector<float>> bufs(p, std::vector<float>(5003));
  std::vector<chorusResult_t> results(p);
  std::vector<std::thread> threads;
  for (int r = 0; r < p; ++r) {
    int rank = -1, count = -1;
    ASSERT_EQ(chorusCommUserRank(comms[r], &rank), chorusSuccess);
    ASSERT_EQ(chorusCommCount(comms[r], &count), chorusSuccess);
    EXPECT_EQ(rank, r);
    EXPECT_EQ(count, p);
    for (auto& x : bufs[r]) x = static_cast<float>(r + 1);
    threads.emplace_back([&, r] { results[r] = chorusAllReduce(bufs[r].data(), bufs[r].data(), bufs[r].size(), chorusFloat32, chorusSum, comms[r], nullptr); });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(results[r], chorusSuccess) << chorusGetLastError(comms[r]);
    for (float x : bufs[r]) ASSERT_EQ(x, 6.0f);
    EXPECT_EQ(chorusCommDestroy(comms[r]), chorusSuccess);
  }
}

}  // namespace
}  // namespace chorus::test

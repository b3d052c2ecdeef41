// Bad input through the C API: a clear result code and a message, never a crash.
#include <gtest/gtest.h>

#include <chorus/chorus.h>
#include <sys/resource.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "fixtures/ranks.h"

namespace {

class ApiErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    chorusUniqueId id;
    ASSERT_EQ(chorusGetUniqueId(&id), chorusSuccess) << chorusGetLastError(nullptr);
    ASSERT_EQ(chorusCommInitRank(&comm_, 1, id, 0), chorusSuccess) << chorusGetLastError(nullptr);
  }
  void TearDown() override {
    if (comm_) EXPECT_EQ(chorusCommDestroy(comm_), chorusSuccess);
  }
  void expectError(chorusResult_t got, chorusResult_t want, const char* mentions) {
    EXPECT_EQ(got, want) << chorusGetErrorString(got);
    std::string text = chorusGetLastError(comm_);
    EXPECT_NE(text.find(mentions), std::string::npos) << "message: " << text;
  }
  chorusComm_t comm_ = nullptr;
  std::vector<float> buf_ = std::vector<float>(16, 1.0f);
};

TEST_F(ApiErrors, NullBuffersWithPositiveCount) {
  expectError(chorusAllReduce(nullptr, buf_.data(), 4, chorusFloat32, chorusSum, comm_, nullptr), chorusInvalidArgument, "sendbuf is NULL");
  expectError(chorusAllReduce(buf_.data(), nullptr, 4, chorusFloat32, chorusSum, comm_, nullptr), chorusInvalidArgument, "recvbuf is NULL");
  // count 0 with NULL buffers is a valid no-op
  EXPECT_EQ(chorusAllReduce(nullptr, nullptr, 0, chorusFloat32, chorusSum, comm_, nullptr), chorusSuccess);
}

TEST_F(ApiErrors, UnknownTypeAndOp) {
  expectError(chorusAllReduce(buf_.data(), buf_.data(), 4, static_cast<chorusDataType_t>(77), chorusSum, comm_, nullptr),
              chorusInvalidArgument, "datatype");
  expectError(chorusAllReduce(buf_.data(), buf_.data(), 4, chorusFloat32, static_cast<chorusRedOp_t>(-1), comm_, nullptr),
              chorusInvalidArgument, "op");
}

TEST_F(ApiErrors, CountTimesSizeOverflow) {
  expectError(chorusAllReduce(buf_.data(), buf_.data(), SIZE_MAX / 2, chorusFloat32, chorusSum, comm_, nullptr), chorusInvalidArgument,
              "overflows");
}

TEST_F(ApiErrors, SendRecvCountOverflow) {
  expectError(chorusSend(buf_.data(), size_t{1} << 62, chorusFloat64, 0, comm_, nullptr), chorusInvalidArgument,
              "chorusSend: count 4611686018427387904 x 8 bytes (double) overflows the address space");
  expectError(chorusRecv(buf_.data(), size_t{1} << 62, chorusInt8, 0, comm_, nullptr), chorusInvalidArgument,
              "chorusRecv: count 4611686018427387904 x 1 byte (int8) overflows the address space");
}

TEST_F(ApiErrors, PartialOverlap) {
  expectError(chorusAllReduce(buf_.data(), buf_.data() + 1, 8, chorusFloat32, chorusSum, comm_, nullptr), chorusInvalidArgument, "overlap");
}

TEST_F(ApiErrors, DestroyedCommunicatorIsInvalidUsage) {
  chorusComm_t dead = comm_;
  ASSERT_EQ(chorusCommDestroy(comm_), chorusSuccess);
  comm_ = nullptr;
  chorusResult_t r = chorusAllReduce(buf_.data(), buf_.data(), 4, chorusFloat32, chorusSum, dead, nullptr);
  EXPECT_EQ(r, chorusInvalidUsage);
  EXPECT_NE(std::string(chorusGetLastError(nullptr)).find("not valid"), std::string::npos) << chorusGetLastError(nullptr);
  EXPECT_EQ(chorusCommDestroy(dead), chorusInvalidUsage);
  int n = 0;
  EXPECT_EQ(chorusCommCount(dead, &n), chorusInvalidUsage);
}

TEST_F(ApiErrors, NullCommAndNullOutputs) {
  EXPECT_EQ(chorusAllReduce(buf_.data(), buf_.data(), 4, chorusFloat32, chorusSum, nullptr, nullptr), chorusInvalidArgument);
  EXPECT_EQ(chorusCommCount(comm_, nullptr), chorusInvalidArgument);
  EXPECT_EQ(chorusCommUserRank(comm_, nullptr), chorusInvalidArgument);
  EXPECT_EQ(chorusGetUniqueId(nullptr), chorusInvalidArgument);
  EXPECT_EQ(chorusStreamCreate(nullptr), chorusInvalidArgument);
  EXPECT_EQ(chorusStreamSynchronize(nullptr), chorusInvalidArgument);
}

TEST_F(ApiErrors, SingleRankAllReduceCopiesAndAverages) {
  std::vector<int32_t> in = {1, 2, 3, 4, 5}, out(5, 0);
  ASSERT_EQ(chorusAllReduce(in.data(), out.data(), 5, chorusInt32, chorusAvg, comm_, nullptr), chorusSuccess);
  EXPECT_EQ(out, in);
}

TEST_F(ApiErrors, StreamQueryAndErrorsAreReported) {
  chorusStream_t s;
  ASSERT_EQ(chorusStreamCreate(&s), chorusSuccess);
  EXPECT_EQ(chorusStreamQuery(s), chorusSuccess);
  // Argument errors are reported by the call itself, not later by the stream.
  EXPECT_EQ(chorusAllReduce(nullptr, buf_.data(), 4, chorusFloat32, chorusSum, comm_, s), chorusInvalidArgument);
  ASSERT_EQ(chorusAllReduce(buf_.data(), buf_.data(), 16, chorusFloat32, chorusMax, comm_, s), chorusSuccess);
  EXPECT_EQ(chorusStreamSynchronize(s), chorusSuccess);
  EXPECT_EQ(chorusStreamDestroy(s), chorusSuccess);
}

// Counts whose buffers cannot exist, on 2 ranks (the totals multiply by nranks): every call
// must be refused by validation with a message that says what overflows, without communicating
// and without allocating. They run in a forked child with a short CHORUS_TIMEOUT and (outside
// sanitizer builds) a capped address space, so that a regression fails (out of memory, timeout
// or the fixture's watchdog) instead of eating the machine.

void capAddressSpace() {
  if (chorus::test::kSanitized) return;  // they reserve terabytes of shadow memory up front
  long pages = 0;
  FILE* f = fopen("/proc/self/statm", "r");
  ASSERT_TRUE(f != nullptr);
  int got = fscanf(f, "%ld", &pages);
  fclose(f);
  ASSERT_EQ(got, 1);
  rlim_t cap = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + (rlim_t{2} << 30);
  rlimit limit{cap, cap};
  ASSERT_EQ(setrlimit(RLIMIT_AS, &limit), 0);
}

void inBoundedChild(const std::function<void(chorusComm_t comm)>& body) {
  auto exits = chorus::test::runRanks(
      1,
      [&](int) {
        chorus::test::ScopedEnv timeout("CHORUS_TIMEOUT", "5");
        chorusComm_t comms[2];
        if (chorusCommInitAll(comms, 2, nullptr) != chorusSuccess) return 2;
        capAddressSpace();
        body(comms[0]);  // rank 0 of 2; rank 1 never calls
        chorusCommDestroy(comms[0]);
        chorusCommDestroy(comms[1]);
        return 0;
      },
      120);
  EXPECT_TRUE(chorus::test::allRanksSucceeded(exits));
}

void expectOverflow(chorusResult_t got, chorusComm_t comm, const char* mentions) {
  EXPECT_EQ(got, chorusInvalidArgument) << chorusGetErrorString(got);
  std::string text = chorusGetLastError(comm);
  EXPECT_NE(text.find(mentions), std::string::npos) << "message: " << text;
}

constexpr size_t kHalf = SIZE_MAX / 2;  // 9223372036854775807
constexpr size_t k62 = size_t{1} << 62;

TEST(ApiOverflow, FixedSizeCollectives) {
  inBoundedChild([](chorusComm_t comm) {
    std::vector<char> a(64), b(64);
    void* x = a.data();
    void* y = b.data();
    expectOverflow(chorusAllGather(x, x, kHalf, chorusInt8, comm, nullptr), comm,
                   "chorusAllGather: sendcount 9223372036854775807 x 2 ranks x 1 byte (int8) overflows the address space");
    expectOverflow(chorusAllGather(x, y, k62, chorusInt8, comm, nullptr), comm,
                   "chorusAllGather: sendcount 4611686018427387904 x 2 ranks x 1 byte (int8) overflows");
    expectOverflow(chorusAllReduce(x, x, k62, chorusInt8, chorusSum, comm, nullptr), comm,
                   "chorusAllReduce: count 4611686018427387904 x 1 byte (int8) overflows");
    expectOverflow(chorusAllReduce(x, y, kHalf, chorusFloat32, chorusSum, comm, nullptr), comm,
                   "count 9223372036854775807 x 4 bytes (float) overflows");
    expectOverflow(chorusBroadcast(x, x, k62, chorusFloat32, 1, comm, nullptr), comm,
                   "chorusBroadcast: count 4611686018427387904 x 4 bytes (float) overflows");
    expectOverflow(chorusReduce(x, y, k62, chorusInt32, chorusMax, 0, comm, nullptr), comm,
                   "chorusReduce: count 4611686018427387904 x 4");
    expectOverflow(chorusReduceScatter(x, x, k62, chorusInt8, chorusSum, comm, nullptr), comm,
                   "chorusReduceScatter: recvcount 4611686018427387904 x 2 ranks x 1 byte");
    expectOverflow(chorusAlltoAll(x, y, k62, chorusInt8, comm, nullptr), comm,
                   "chorusAlltoAll: count 4611686018427387904 x 2 ranks");
    // Rooted: refused on every rank alike, not only where the big buffer lives.
    expectOverflow(chorusGather(x, y, k62, chorusInt8, 1, comm, nullptr), comm,
                   "chorusGather: count 4611686018427387904 x 2 ranks");
    expectOverflow(chorusScatter(x, y, k62, chorusInt8, 0, comm, nullptr), comm,
                   "chorusScatter: count 4611686018427387904 x 2 ranks");
    expectOverflow(chorusSend(x, kHalf, chorusInt8, 1, comm, nullptr), comm, "chorusSend: count 9223372036854775807 x 1 byte");
    expectOverflow(chorusRecv(x, kHalf, chorusInt8, 1, comm, nullptr), comm, "chorusRecv: count 9223372036854775807 x 1 byte");
    // Inside a group the call is refused when recorded, and the group cancelled.
    ASSERT_EQ(chorusGroupStart(), chorusSuccess);
    expectOverflow(chorusAllGather(x, x, kHalf, chorusInt8, comm, nullptr), comm, "overflows the address space");
    EXPECT_EQ(chorusGroupEnd(), chorusInvalidArgument);
  });
}

TEST(ApiOverflow, VectorForms) {
  inBoundedChild([](chorusComm_t comm) {
    std::vector<char> a(64), b(64);
    char* x = a.data();
    char* y = b.data();
    size_t ones[2] = {1, 1}, far[2] = {0, size_t{1} << 60};
    expectOverflow(
        chorusAllGatherV(x, 1, y, ones, far, chorusFloat32, comm, nullptr), comm,
        "chorusAllGatherV: recvbuf block 1 (displs[1] 1152921504606846976 + recvcounts[1] 1 elements) x 4 bytes (float) "
        "overflows the address space");
    // 2^40 elements fit the address space: what is wrong here is that sendbuf lies inside
    // recvbuf as the displacements describe it, and the message gives the sizes that say so.
    size_t tera[2] = {0, size_t{1} << 40};
    expectOverflow(chorusAllGatherV(x + 8, 1, x, ones, tera, chorusInt8, comm, nullptr), comm, "+1099511627777 bytes) overlap");
    size_t hugeCounts[2] = {k62, 1};
    expectOverflow(chorusReduceScatterV(x, y, hugeCounts, nullptr, chorusInt8, chorusSum, comm, nullptr), comm,
                   "chorusReduceScatterV: sendbuf block 0 (displs[0] 0 + recvcounts[0] 4611686018427387904 elements) x 1 byte");
    size_t wrap[2] = {0, SIZE_MAX};
    expectOverflow(chorusReduceScatterV(x, y, ones, wrap, chorusInt8, chorusSum, comm, nullptr), comm,
                   "displs[1] 18446744073709551615 + recvcounts[1] 1 elements");
    size_t zeroOne[2] = {0, 1}, big[2] = {1, k62};
    expectOverflow(chorusAlltoAllV(x, ones, wrap, y, ones, zeroOne, chorusInt8, comm, nullptr), comm,
                   "chorusAlltoAllV: sendbuf block 1 (sdispls[1] 18446744073709551615 + sendcounts[1] 1 elements)");
    expectOverflow(chorusAlltoAllV(x, ones, zeroOne, y, big, zeroOne, chorusInt8, comm, nullptr), comm,
                   "chorusAlltoAllV: recvbuf block 1 (rdispls[1] 1 + recvcounts[1] 4611686018427387904 elements)");
  });
}

TEST(ApiOverflow, BufferThatWrapsAroundTheAddressSpace) {
  inBoundedChild([](chorusComm_t comm) {
    void* top = reinterpret_cast<void*>(UINTPTR_MAX - 511);  // never dereferenced: refused first
    std::vector<char> a(4096);
    expectOverflow(chorusAllReduce(top, a.data(), 1024, chorusInt8, chorusSum, comm, nullptr), comm,
                   "+ 1024 bytes wraps around the end of the address space");
    expectOverflow(chorusAllGather(a.data(), top, 1024, chorusInt8, comm, nullptr), comm, "recvbuf");
    expectOverflow(chorusSend(top, 1024, chorusInt8, 1, comm, nullptr), comm, "chorusSend: sendbuf");
  });
}

TEST(ApiInit, BadRankAndCountsAreRejected) {
  chorusUniqueId id;
  ASSERT_EQ(chorusGetUniqueId(&id), chorusSuccess);
  chorusComm_t comm;
  EXPECT_EQ(chorusCommInitRank(&comm, 0, id, 0), chorusInvalidArgument);
  EXPECT_NE(std::string(chorusGetLastError(nullptr)).find("nranks"), std::string::npos);
  EXPECT_EQ(chorusCommInitRank(&comm, 4, id, 4), chorusInvalidArgument);
  EXPECT_EQ(chorusCommInitRank(&comm, 4, id, -1), chorusInvalidArgument);
  EXPECT_EQ(chorusCommInitRank(nullptr, 1, id, 0), chorusInvalidArgument);
  EXPECT_EQ(chorusCommInitAll(&comm, 0, nullptr), chorusInvalidArgument);
  chorusUniqueId garbage = {};
  EXPECT_EQ(chorusCommInitRank(&comm, 1, garbage, 0), chorusInvalidArgument);
}

TEST(ApiInit, ErrorStringsAndVersion) {
  for (int r = 0; r < chorusNumResults; ++r)
    EXPECT_STRNE(chorusGetErrorString(static_cast<chorusResult_t>(r)), "unknown result code");
  int v = 0;
  EXPECT_EQ(chorusGetVersion(&v), chorusSuccess);
  EXPECT_EQ(v, CHORUS_VERSION_CODE);
}

TEST(ApiInit, BadEnvironmentValueIsAClearError) {
  setenv("CHORUS_TRANSPORT", "carrier-pigeon", 1);
  chorusUniqueId id;
  chorusResult_t r = chorusGetUniqueId(&id);
  unsetenv("CHORUS_TRANSPORT");
  EXPECT_EQ(r, chorusInvalidArgument);
  EXPECT_NE(std::string(chorusGetLastError(nullptr)).find("CHORUS_TRANSPORT"), std::string::npos);
}

}  // namespace

// Bad input through the C API: a clear result code and a message, never a crash.
#include <gtest/gtest.h>

#include <chorus/chorus.h>

#include <climits>
#include <cstdint>
#include <string>
#include <vector>

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
  for (int r = 0; r < chorusNumResults; ++r) EXPECT_STRNE(chorusGetErrorString(static_cast<chorusResult_t>(r)), "unknown result code");
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

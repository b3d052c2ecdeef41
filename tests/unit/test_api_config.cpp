// chorusConfig_t / chorusCommInitRankConfig: per-communicator settings override the
// environment, reach the waits they govern, and a malformed struct is a clear error.
#include <gtest/gtest.h>

#include <chorus/chorus.h>

#include <chrono>
#include <string>

#include "fixtures/ranks.h"

namespace {

chorusUniqueId freshId() {
  chorusUniqueId id;
  EXPECT_EQ(chorusGetUniqueId(&id), chorusSuccess) << chorusGetLastError(nullptr);
  return id;
}

TEST(ApiConfig, InitializerAndNullConfigJoinLikeInitRank) {
  chorusComm_t comm = nullptr;
  chorusConfig_t config = CHORUS_CONFIG_INITIALIZER;
  ASSERT_EQ(chorusCommInitRankConfig(&comm, 1, freshId(), 0, &config), chorusSuccess) << chorusGetLastError(nullptr);
  EXPECT_EQ(chorusCommDestroy(comm), chorusSuccess);
  ASSERT_EQ(chorusCommInitRankConfig(&comm, 1, freshId(), 0, nullptr), chorusSuccess) << chorusGetLastError(nullptr);
  EXPECT_EQ(chorusCommDestroy(comm), chorusSuccess);
}

TEST(ApiConfig, StructNotFromTheInitializerIsRefused) {
  chorusComm_t comm = reinterpret_cast<chorusComm_t>(0x1);
  chorusConfig_t config{};  // zeroed: no magic
  EXPECT_EQ(chorusCommInitRankConfig(&comm, 1, freshId(), 0, &config), chorusInvalidArgument);
  EXPECT_EQ(comm, nullptr);
  EXPECT_NE(std::string(chorusGetLastError(nullptr)).find("CHORUS_CONFIG_INITIALIZER"), std::string::npos)
      << chorusGetLastError(nullptr);
  config = CHORUS_CONFIG_INITIALIZER;
  config.size = 4;
  EXPECT_EQ(chorusCommInitRankConfig(&comm, 1, freshId(), 0, &config), chorusInvalidArgument);
  EXPECT_NE(std::string(chorusGetLastError(nullptr)).find("size"), std::string::npos) << chorusGetLastError(nullptr);
}

TEST(ApiConfig, TimeoutOutOfRangeNamesTheField) {
  for (double bad : {0.0, -5.0, 2e6}) {
    chorusComm_t comm = nullptr;
    chorusConfig_t config = CHORUS_CONFIG_INITIALIZER;
    config.timeoutSec = bad;
    EXPECT_EQ(chorusCommInitRankConfig(&comm, 1, freshId(), 0, &config), chorusInvalidArgument) << bad;
    EXPECT_NE(std::string(chorusGetLastError(nullptr)).find("timeoutSec"), std::string::npos) << chorusGetLastError(nullptr);
  }
}

// The config's timeout, not CHORUS_TIMEOUT, bounds the wait: rank 0 of a 2-rank communicator
// whose rank 1 never comes gives up after ~1 s although the environment says 300 s.
TEST(ApiConfig, TimeoutGovernsTheCommunicatorsWaits) {
  chorus::test::ScopedEnv env("CHORUS_TIMEOUT", "300");
  chorusConfig_t config = CHORUS_CONFIG_INITIALIZER;
  config.timeoutSec = 1.0;
  chorusComm_t comm = nullptr;
  const auto start = std::chrono::steady_clock::now();
  chorusResult_t r = chorusCommInitRankConfig(&comm, 2, freshId(), 0, &config);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r, chorusTimeout) << chorusGetLastError(nullptr);
  EXPECT_EQ(comm, nullptr);
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 10.0);
}

}  // namespace

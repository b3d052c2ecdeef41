// chorusCommAbort always returns promptly, even while a call on another thread waits for a peer
// that will never answer, including during the first call's connection setup.
#include <gtest/gtest.h>

#include <chorus/chorus.h>

#include <chrono>
#include <thread>
#include <vector>

#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Rank 0 starts an all-reduce that rank 1 never joins; abort must end it long before the
// 60 s deadline. `warm`: run one all-reduce together first, so the stuck call is past
// connection setup and waits in the executor instead.
void abortStuckCall(const char* transport, bool warm) {
  ScopedEnv env("CHORUS_TRANSPORT", transport);
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  chorusComm_t comms[2];
  ASSERT_EQ(chorusCommInitAll(comms, 2, nullptr), chorusSuccess) << chorusGetLastError(nullptr);
  std::vector<float> a(1 << 16, 1.0f), b(1 << 16, 1.0f);
  if (warm) {
    std::thread peer([&] { chorusAllReduce(b.data(), b.data(), b.size(), chorusFloat32, chorusSum, comms[1], nullptr); });
    ASSERT_EQ(chorusAllReduce(a.data(), a.data(), a.size(), chorusFloat32, chorusSum, comms[0], nullptr), chorusSuccess);
    peer.join();
  }
  chorusStream_t stream;
  ASSERT_EQ(chorusStreamCreate(&stream), chorusSuccess);
  ASSERT_EQ(chorusAllReduce(a.data(), a.data(), a.size(), chorusFloat32, chorusSum, comms[0], stream), chorusSuccess);
  // Let the call get going (setup or executor wait); then abort from this thread.
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until && chorusStreamQuery(stream) == chorusInProgress) std::this_thread::yield();
  EXPECT_EQ(chorusStreamQuery(stream), chorusInProgress) << "the call should still be waiting for rank 1";
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(chorusCommAbort(comms[0]), chorusSuccess);
  EXPECT_LT(secondsSince(t0), 5.0) << "abort took too long";
  chorusResult_t r = chorusStreamSynchronize(stream);
  EXPECT_NE(r, chorusSuccess);
  EXPECT_EQ(chorusStreamDestroy(stream), r);
  EXPECT_EQ(chorusCommAbort(comms[1]), chorusSuccess);
}

TEST(Abort, StuckInExecutorOverShm) { abortStuckCall("shm", true); }
TEST(Abort, StuckInConnectionSetupOverShm) { abortStuckCall("shm", false); }
TEST(Abort, StuckInExecutorOverTcp) { abortStuckCall("tcp", true); }
TEST(Abort, StuckInConnectionSetupOverTcp) { abortStuckCall("tcp", false); }

TEST(Abort, DestroyedHandlesAreRejectedNotReused) {
  chorusComm_t comms[1];
  ASSERT_EQ(chorusCommInitAll(comms, 1, nullptr), chorusSuccess);
  ASSERT_EQ(chorusCommDestroy(comms[0]), chorusSuccess);
  EXPECT_EQ(chorusCommDestroy(comms[0]), chorusInvalidUsage);
  EXPECT_EQ(chorusCommAbort(comms[0]), chorusInvalidUsage);
  chorusStream_t s;
  ASSERT_EQ(chorusStreamCreate(&s), chorusSuccess);
  ASSERT_EQ(chorusStreamDestroy(s), chorusSuccess);
  EXPECT_EQ(chorusStreamDestroy(s), chorusInvalidUsage);
  EXPECT_EQ(chorusStreamQuery(s), chorusInvalidUsage);
}

}  // namespace
}  // namespace chorus::test

// Groups and handle lifetimes through the C API: destroy, abort and stream destroy inside an
// open group (they used to wait forever for a pin their own group held), the same from another
// thread, and where chorusGroupEnd's errors are reported. Each test runs in a forked child with a
// watchdog (the fixture kills it at its deadline), so a regression fails instead of hanging.
#include <gtest/gtest.h>

#include <chorus/chorus.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

constexpr double kWatchdogSec = 60;

// Runs body in a forked child (one process: the communicators are 1-rank ones made there).
void inChild(const std::function<void()>& body) {
  auto exits = runRanks(
      1,
      [&](int) {
        body();
        return 0;
      },
      kWatchdogSec);
  EXPECT_TRUE(allRanksSucceeded(exits));
}

chorusComm_t singleRankComm() {
  chorusComm_t comm = nullptr;
  EXPECT_EQ(chorusCommInitAll(&comm, 1, nullptr), chorusSuccess) << chorusGetLastError(nullptr);
  return comm;
}

bool mentions(const char* text, const char* what) { return std::string(text).find(what) != std::string::npos; }

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

TEST(GroupHandles, DestroyInsideOwnGroupIsInvalidUsage) {
  inChild([] {
    chorusComm_t comm = singleRankComm();
    std::vector<float> in(8, 2.0f), out(8, 0.0f);
    ASSERT_EQ(chorusGroupStart(), chorusSuccess);
    ASSERT_EQ(chorusAllReduce(in.data(), out.data(), 8, chorusFloat32, chorusSum, comm, nullptr), chorusSuccess);
    EXPECT_EQ(chorusCommDestroy(comm), chorusInvalidUsage);
    const char* text = chorusGetLastError(nullptr);
    EXPECT_TRUE(mentions(text, "chorusCommDestroy")) << text;
    EXPECT_TRUE(mentions(text, "inside chorusGroupStart")) << text;
    EXPECT_TRUE(mentions(text, "chorusAllReduce (8 x float sum)")) << text;
    // The communicator and the recorded call are untouched: the group still runs.
    EXPECT_EQ(chorusGroupEnd(), chorusSuccess) << chorusGetLastError(nullptr);
    EXPECT_EQ(out, in);
    EXPECT_EQ(chorusCommDestroy(comm), chorusSuccess);
  });
}

TEST(GroupHandles, AbortInsideOwnGroupDropsItsCallsAndReturns) {
  inChild([] {
    chorusComm_t aborted = singleRankComm(), other = singleRankComm();
    std::vector<float> in(8, 3.0f), out(8, 0.0f), out2(8, 0.0f);
    ASSERT_EQ(chorusGroupStart(), chorusSuccess);
    ASSERT_EQ(chorusAllReduce(in.data(), out.data(), 8, chorusFloat32, chorusSum, aborted, nullptr), chorusSuccess);
    ASSERT_EQ(chorusAllReduce(in.data(), out2.data(), 8, chorusFloat32, chorusSum, other, nullptr), chorusSuccess);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(chorusCommAbort(aborted), chorusSuccess) << chorusGetLastError(nullptr);
    EXPECT_LT(secondsSince(t0), 5.0);
    // The aborted communicator's call is gone; the other communicator's call still runs.
    EXPECT_EQ(chorusGroupEnd(), chorusSuccess) << chorusGetLastError(nullptr);
    EXPECT_EQ(out, std::vector<float>(8, 0.0f));
    EXPECT_EQ(out2, in);
    EXPECT_EQ(chorusCommDestroy(aborted), chorusInvalidUsage);
    EXPECT_EQ(chorusCommDestroy(other), chorusSuccess);
  });
}

TEST(GroupHandles, StreamDestroyInsideOwnGroupIsInvalidUsage) {
  inChild([] {
    chorusComm_t comm = singleRankComm();
    chorusStream_t stream;
    ASSERT_EQ(chorusStreamCreate(&stream), chorusSuccess);
    std::vector<int32_t> in(4, 7), out(4, 0);
    ASSERT_EQ(chorusGroupStart(), chorusSuccess);
    ASSERT_EQ(chorusAllReduce(in.data(), out.data(), 4, chorusInt32, chorusMax, comm, stream), chorusSuccess);
    EXPECT_EQ(chorusStreamDestroy(stream), chorusInvalidUsage);
    const char* text = chorusGetLastError(nullptr);
    EXPECT_TRUE(mentions(text, "chorusStreamDestroy")) << text;
    EXPECT_TRUE(mentions(text, "chorusAllReduce (4 x int32 max)")) << text;
    EXPECT_EQ(chorusGroupEnd(), chorusSuccess) << chorusGetLastError(nullptr);
    EXPECT_EQ(chorusStreamSynchronize(stream), chorusSuccess);
    EXPECT_EQ(out, in);
    EXPECT_EQ(chorusStreamDestroy(stream), chorusSuccess);
    EXPECT_EQ(chorusCommDestroy(comm), chorusSuccess);
  });
}

// Another thread holds a call on the handle in its open group, and keeps the group open until
// told: retire(handle) must not wait for that group, and the group's chorusGroupEnd must then
// fail naming the handle and the dropped call.
void retireWhileAnotherThreadsGroupIsOpen(const std::function<chorusResult_t(chorusComm_t, chorusStream_t)>& retire,
                                          bool onStream) {
  chorusComm_t comm = singleRankComm();
  chorusStream_t stream = nullptr;
  if (onStream) ASSERT_EQ(chorusStreamCreate(&stream), chorusSuccess);
  std::mutex mu;
  std::condition_variable cv;
  int stage = 0;  // 1: the call is recorded; 2: the handle was retired
  chorusResult_t end = chorusSuccess;
  std::string endText;
  std::vector<float> in(4, 1.0f), out(4, 0.0f);
  std::thread holder([&] {
    chorusGroupStart();
    chorusAllReduce(in.data(), out.data(), 4, chorusFloat32, chorusSum, comm, stream);
    std::unique_lock<std::mutex> g(mu);
    stage = 1;
    cv.notify_all();
    cv.wait(g, [&] { return stage == 2; });
    end = chorusGroupEnd();
    endText = chorusGetLastError(nullptr);
  });
  {
    std::unique_lock<std::mutex> g(mu);
    cv.wait(g, [&] { return stage == 1; });
  }
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(retire(comm, stream), chorusSuccess) << chorusGetLastError(nullptr);
  EXPECT_LT(secondsSince(t0), 5.0);
  {
    std::lock_guard<std::mutex> g(mu);
    stage = 2;
    cv.notify_all();
  }
  holder.join();
  EXPECT_EQ(end, chorusInvalidUsage);
  EXPECT_TRUE(mentions(endText.c_str(), "destroyed or aborted while the group was open")) << endText;
  EXPECT_TRUE(mentions(endText.c_str(), "chorusAllReduce (4 x float sum)")) << endText;
  EXPECT_EQ(out, std::vector<float>(4, 0.0f));
  if (onStream) {
    chorusStreamDestroy(stream);  // InvalidUsage where the test retired it
    EXPECT_EQ(chorusCommDestroy(comm), chorusSuccess);
  }
}

TEST(GroupHandles, AbortDoesNotWaitForAnotherThreadsGroup) {
  inChild([] { retireWhileAnotherThreadsGroupIsOpen([](chorusComm_t c, chorusStream_t) { return chorusCommAbort(c); }, false); });
}

TEST(GroupHandles, DestroyDoesNotWaitForAnotherThreadsGroup) {
  inChild(
      [] { retireWhileAnotherThreadsGroupIsOpen([](chorusComm_t c, chorusStream_t) { return chorusCommDestroy(c); }, false); });
}

TEST(GroupHandles, StreamDestroyDoesNotWaitForAnotherThreadsGroup) {
  inChild(
      [] { retireWhileAnotherThreadsGroupIsOpen([](chorusComm_t, chorusStream_t s) { return chorusStreamDestroy(s); }, true); });
}

TEST(GroupErrors, CancelledGroupIsEachCommunicatorsLastError) {
  inChild([] {
    chorusComm_t a = singleRankComm(), b = singleRankComm();
    std::vector<float> buf(4, 1.0f);
    ASSERT_EQ(chorusGroupStart(), chorusSuccess);
    ASSERT_EQ(chorusAllReduce(buf.data(), buf.data(), 4, chorusFloat32, chorusSum, a, nullptr), chorusSuccess);
    ASSERT_EQ(chorusAllReduce(buf.data(), buf.data(), 4, chorusFloat32, chorusSum, b, nullptr), chorusSuccess);
    EXPECT_EQ(chorusSend(buf.data(), 4, chorusFloat32, 7, b, nullptr), chorusInvalidArgument);
    EXPECT_EQ(chorusGroupEnd(), chorusInvalidArgument);
    for (chorusComm_t c : {a, b}) {
      const char* text = chorusGetLastError(c);
      EXPECT_TRUE(mentions(text, "group cancelled")) << text;
      EXPECT_TRUE(mentions(text, "peer 7")) << text;
    }
    EXPECT_EQ(chorusCommDestroy(a), chorusSuccess);
    EXPECT_EQ(chorusCommDestroy(b), chorusSuccess);
  });
}

TEST(GroupErrors, RunFailureIsThatCommunicatorsLastErrorAndOthersStillRun) {
  inChild([] {
    chorusComm_t bad = singleRankComm(), good = singleRankComm();
    std::vector<int32_t> in(4, 5), out(4, 0);
    ASSERT_EQ(chorusGroupStart(), chorusSuccess);
    // A send to oneself with no matching receive in the group fails when the group runs.
    ASSERT_EQ(chorusSend(in.data(), 4, chorusInt32, 0, bad, nullptr), chorusSuccess);
    ASSERT_EQ(chorusAllReduce(in.data(), out.data(), 4, chorusInt32, chorusSum, good, nullptr), chorusSuccess);
    EXPECT_EQ(chorusGroupEnd(), chorusInvalidUsage);
    std::string threadText = chorusGetLastError(nullptr), badText = chorusGetLastError(bad), goodText = chorusGetLastError(good);
    EXPECT_TRUE(mentions(badText.c_str(), "chorusSend to itself")) << badText;
    EXPECT_EQ(threadText, badText);
    EXPECT_EQ(goodText, "");
    EXPECT_EQ(out, in) << "the group's call on the other communicator must still run";
    EXPECT_EQ(chorusCommDestroy(bad), chorusSuccess);
    EXPECT_EQ(chorusCommDestroy(good), chorusSuccess);
  });
}

TEST(GroupErrors, MixedStreamsCancelTheWholeGroup) {
  inChild([] {
    chorusComm_t comm = singleRankComm();
    chorusStream_t s1, s2;
    ASSERT_EQ(chorusStreamCreate(&s1), chorusSuccess);
    ASSERT_EQ(chorusStreamCreate(&s2), chorusSuccess);
    std::vector<float> in(4, 1.0f), out(4, 0.0f);
    ASSERT_EQ(chorusGroupStart(), chorusSuccess);
    ASSERT_EQ(chorusAllReduce(in.data(), out.data(), 4, chorusFloat32, chorusSum, comm, s1), chorusSuccess);
    ASSERT_EQ(chorusAllReduce(in.data(), out.data(), 4, chorusFloat32, chorusSum, comm, s2), chorusSuccess);
    EXPECT_EQ(chorusGroupEnd(), chorusInvalidUsage);
    const char* text = chorusGetLastError(comm);
    EXPECT_TRUE(mentions(text, "one stream")) << text;
    EXPECT_EQ(chorusStreamSynchronize(s1), chorusSuccess);
    EXPECT_EQ(out, std::vector<float>(4, 0.0f));
    EXPECT_EQ(chorusStreamDestroy(s1), chorusSuccess);
    EXPECT_EQ(chorusStreamDestroy(s2), chorusSuccess);
    EXPECT_EQ(chorusCommDestroy(comm), chorusSuccess);
  });
}

}  // namespace
}  // namespace chorus::test

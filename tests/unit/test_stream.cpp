// The stream's queue (src/core/stream.h): in order, bounded, and a caller of a full stream
// waits until it has drained to half.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/stream.h"

namespace chorus {
namespace {

TEST(Stream, AFullQueueMakesTheCallerWaitUntilHalfHasStarted) {
  Stream s;
  std::atomic<bool> release{false};
  std::atomic<int> ran{0};
  std::atomic<bool> inOrder{true};
  auto task = [&](int i) {
    return [&, i]() -> chorusResult_t {
      while (i == 0 && !release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (ran.fetch_add(1) != i) inOrder = false;
      return chorusSuccess;
    };
  };
  s.enqueue(task(0));  // runs, and holds the worker
  while (s.queued() != 0) std::this_thread::yield();
  for (int i = 1; i <= static_cast<int>(Stream::kMaxQueued); ++i) s.enqueue(task(i));
  EXPECT_EQ(s.queued(), Stream::kMaxQueued);
  std::atomic<bool> returned{false};
  std::thread caller([&] {
    s.enqueue(task(static_cast<int>(Stream::kMaxQueued) + 1));
    returned = true;
  });
  // Until the caller is inside enqueue, blocked on the full queue (or returned: a failure).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (s.blockedCallers() == 0 && !returned && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(s.blockedCallers(), 1);
  EXPECT_FALSE(returned) << "enqueue on a full stream returned at once";
  EXPECT_EQ(s.queued(), Stream::kMaxQueued);
  release = true;
  caller.join();
  EXPECT_EQ(s.synchronize(), chorusSuccess);
  EXPECT_EQ(ran.load(), static_cast<int>(Stream::kMaxQueued) + 2);
  EXPECT_TRUE(inOrder);
}

TEST(Stream, ALongLoopOfCallsStaysWithinTheBound) {
  Stream s;
  std::atomic<int> ran{0};
  size_t most = 0;
  for (int i = 0; i < 20000; ++i) {
    s.enqueue([&]() -> chorusResult_t {
      ran.fetch_add(1, std::memory_order_relaxed);
      return chorusSuccess;
    });
    if (i % 97 == 0) most = std::max(most, s.queued());
  }
  EXPECT_EQ(s.synchronize(), chorusSuccess);
  EXPECT_EQ(ran.load(), 20000);
  EXPECT_LE(most, Stream::kMaxQueued);
}

}  // namespace
}  // namespace chorus

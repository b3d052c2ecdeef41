// The stream's queue (src/core/stream.h): in order, bounded, and a caller of a full stream
// waits until it has drained to half.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "base/inline_task.h"
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

// Tasks enqueued from several threads run once each, each thread's in its order, and a
// synchronize from yet another thread, racing with them, returns only when nothing is left.
TEST(Stream, CallersOnSeveralThreadsKeepTheirOrderAndSynchronizeWaitsForAll) {
  Stream s;
  constexpr int kThreads = 3, kEach = 5000;
  std::vector<std::atomic<int>> next(kThreads);
  std::atomic<int> outOfOrder{0}, ran{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t)
    callers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i)
        s.enqueue([&, t, i]() -> chorusResult_t {
          if (next[t].fetch_add(1) != i) outOfOrder.fetch_add(1);
          ran.fetch_add(1);
          return chorusSuccess;
        });
    });
  std::thread syncer([&] {
    for (int k = 0; k < 200; ++k) EXPECT_EQ(s.synchronize(), chorusSuccess);
  });
  for (auto& c : callers) c.join();
  EXPECT_EQ(s.synchronize(), chorusSuccess);
  EXPECT_EQ(ran.load(), kThreads * kEach);
  EXPECT_EQ(s.queued(), 0u);
  EXPECT_EQ(s.query(), chorusSuccess);
  syncer.join();
  EXPECT_EQ(outOfOrder.load(), 0);
}

// The first failure is kept (later ones do not replace it) and the stream goes on running.
TEST(Stream, TheFirstErrorIsKeptAndLaterTasksStillRun) {
  Stream s;
  std::atomic<int> ran{0};
  auto failing = [&](chorusResult_t r) {
    return [&ran, r]() -> chorusResult_t {
      ++ran;
      return r;
    };
  };
  s.enqueue(failing(chorusTimeout));
  s.enqueue(failing(chorusRemoteError));
  s.enqueue(failing(chorusSuccess));
  EXPECT_EQ(s.synchronize(), chorusTimeout);
  EXPECT_EQ(s.query(), chorusTimeout);
  EXPECT_EQ(ran.load(), 3);
}

// query() says in progress while a task runs, and the worker, asleep on an empty queue, wakes
// for the next task.
TEST(Stream, QuerySeesARunningTaskAndAnAsleepWorkerWakes) {
  constexpr auto kWait = std::chrono::seconds(10);
  Stream s;
  std::promise<void> started, release;
  std::shared_future<void> released = release.get_future().share();
  s.enqueue([&]() -> chorusResult_t {
    started.set_value();
    return released.wait_for(kWait) == std::future_status::ready ? chorusSuccess : chorusTimeout;
  });
  ASSERT_EQ(started.get_future().wait_for(kWait), std::future_status::ready) << "the worker never ran the task";
  EXPECT_EQ(s.queued(), 0u);
  EXPECT_EQ(s.query(), chorusInProgress);
  release.set_value();
  EXPECT_EQ(s.synchronize(), chorusSuccess);
  // Past its poll the worker sleeps on an empty queue.
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (!s.workerAsleep() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_TRUE(s.workerAsleep()) << "the worker kept polling an empty queue";
  std::promise<void> ran;
  s.enqueue([&]() -> chorusResult_t {
    ran.set_value();
    return chorusSuccess;
  });
  EXPECT_EQ(ran.get_future().wait_for(kWait), std::future_status::ready)
      << "the worker did not wake for a task (no synchronize was called)";
  EXPECT_EQ(s.synchronize(), chorusSuccess);
}

// A callable's captures live inline when they fit, on the heap when not; either way a move-only
// capture works, moves carry it, and it is destroyed exactly once.
TEST(InlineTask, HoldsMoveOnlyCapturesInlineOrOnTheHeapAndDestroysThemOnce) {
  using Task = InlineTask<int, 32>;
  auto counted = std::make_shared<int>(7);
  std::weak_ptr<int> watch = counted;
  auto small = [p = std::unique_ptr<int>(new int(5)), counted]() { return *p + *counted; };
  static_assert(Task::kInline<decltype(small)>);
  struct Big {
    std::unique_ptr<int> p;
    char pad[64];
    int operator()() { return *p * 2; }
  };
  static_assert(!Task::kInline<Big>);
  counted.reset();
  Task a(std::move(small));
  Task b(Big{std::make_unique<int>(21), {}});
  EXPECT_EQ(a(), 12);
  EXPECT_EQ(b(), 42);
  Task c(std::move(a));
  EXPECT_FALSE(a);
  EXPECT_EQ(c(), 12);
  Task d;
  d = std::move(b);
  EXPECT_FALSE(b);
  EXPECT_EQ(d(), 42);
  EXPECT_FALSE(watch.expired());
  c.reset();
  EXPECT_TRUE(watch.expired());
  EXPECT_FALSE(c);
}

}  // namespace
}  // namespace chorus

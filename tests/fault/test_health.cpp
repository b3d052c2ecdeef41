// Failures at scale, diagnosed and survived (src/health): a dead rank is named by every
// survivor as the first failure; a hang's report names the rank that never entered the call or
// does not answer; chorusCommDiagnose works from another thread while a call is stuck; and
// chorusCommShrink gives the survivors a working communicator after SIGKILL (one of 5, two of 8
// at once, and one more during the shrink).
#include <chorus/chorus.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"
#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

constexpr int kOk = 0;

// The sum of (rank + 1) over the ranks in `ranks` (old ranks of the survivors).
float expectedSum(const std::vector<int>& ranks) {
  float s = 0;
  for (int r : ranks) s += static_cast<float>(r + 1);
  return s;
}

// Runs all-reduces until one fails; the victim signals the parent after `signalAfter` calls.
// Returns the failing call's result and its error text.
chorusResult_t loopUntilFailure(chorusComm_t comm, int rank, bool victim, int pipeFd, std::string* text) {
  const size_t n = 4099;
  std::vector<float> buf(n);
  for (int call = 0; call < 1000000; ++call) {
    if (victim && call == 5) {
      char c = 'x';
      if (write(pipeFd, &c, 1) != 1) return chorusSystemError;
    }
    for (float& x : buf) x = static_cast<float>(rank + 1);
    chorusResult_t r = chorusAllReduce(buf.data(), buf.data(), n, chorusFloat32, chorusSum, comm, nullptr);
    if (r != chorusSuccess) {
      *text = chorusGetLastError(comm);
      return r;
    }
  }
  return chorusSuccess;
}

// The parent's part: SIGSTOP the victim once it writes to the pipe fds.
std::function<void(RankHandles&)> stopWhenSignalled(const int fds[2], int victim) {
  const int readFd = fds[0];
  return [readFd, victim](RankHandles& h) {
    pollfd pfd{readFd, POLLIN, 0};
    ASSERT_EQ(poll(&pfd, 1, 60000), 1);
    kill(h.pids[victim], SIGSTOP);
    h.expendable[victim] = true;
  };
}

// After a failure: shrink, then run all-reduces on the survivors' communicator and check them;
// a failure there (a rank that died after the shrink decided) is answered by shrinking again,
// as a training loop would.
int shrinkAndContinue(chorusComm_t comm, int rank, const std::vector<int>& expectGone, int nranks) {
  std::vector<int> survivors;
  for (int q = 0; q < nranks; ++q)
    if (std::find(expectGone.begin(), expectGone.end(), q) == expectGone.end()) survivors.push_back(q);
  for (int round = 0; round < 3; ++round) {
    chorusComm_t next = nullptr;
    if (chorusCommShrink(comm, nullptr, 0, &next) != chorusSuccess) {
      fprintf(stderr, "rank %d: shrink failed: %s\n", rank, chorusGetLastError(comm));
      return 20;
    }
    chorusCommAbort(comm);
    comm = next;
    bool ok = true;
    for (size_t n : {size_t{1}, size_t{1031}, size_t{1} << 18}) {
      std::vector<float> buf(n, static_cast<float>(rank + 1));
      if (chorusAllReduce(buf.data(), buf.data(), n, chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) {
        fprintf(stderr, "rank %d: all-reduce after shrink round %d failed: %s\n", rank, round, chorusGetLastError(comm));
        ok = false;
        break;
      }
      int size = 0;
      chorusCommCount(comm, &size);
      std::vector<int> members;  // the survivors this communicator has: ranks 0..size-1 of it
      float want = 0;
      for (float x : buf) {
        // Every survivor contributed rank + 1 of its old rank: with the expected survivors, that
        // sum; a communicator that still holds a dead rank fails above instead.
        want = expectedSum(survivors);
        if (x != want || size != static_cast<int>(survivors.size())) {
          fprintf(stderr, "rank %d: after shrink: %g where %g was due (%d ranks)\n", rank, x, want, size);
          return 23;
        }
      }
    }
    if (ok) {
      int newRank = -1;
      chorusCommUserRank(comm, &newRank);
      chorusCommDestroy(comm);
      return survivors[newRank] == rank ? kOk : 21;
    }
  }
  return 22;
}

struct Kill {
  const char* transport;
  int p;
  std::vector<int> victims;
  bool shrink;
};

class SurvivorsOfKill : public ::testing::TestWithParam<Kill> {};

TEST_P(SurvivorsOfKill, NameTheDeadRankAndShrink) {
  const Kill k = GetParam();
  ScopedEnv transport("CHORUS_TRANSPORT", k.transport);
  ScopedEnv timeout("CHORUS_TIMEOUT", "20");
  ScopedEnv shrinkTimeout("CHORUS_SHRINK_TIMEOUT", "4");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto exits = runRanksWithId(
      k.p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, k.p, id, rank) != chorusSuccess) return 2;
        std::string text;
        chorusResult_t r = loopUntilFailure(comm, rank, rank == k.victims[0], fds[1], &text);
        fprintf(stderr, "rank %d: %s\n", rank, text.c_str());
        if (r == chorusSuccess) return 3;
        bool named = false;
        for (int v : k.victims) named |= text.find("rank " + std::to_string(v)) != std::string::npos;
        int code = k.shrink ? shrinkAndContinue(comm, rank, k.victims, k.p) : kOk;
        // Stay up a moment, as a job does, so that slower survivors can still ask this one.
        if (!k.shrink) std::this_thread::sleep_for(std::chrono::seconds(1));
        return named ? code : 4;
      },
      90,
      [&](RankHandles& h) {
        pollfd pfd{fds[0], POLLIN, 0};
        ASSERT_EQ(poll(&pfd, 1, 60000), 1) << "the victim never reported";
        for (int v : k.victims) kill(h.pids[v], SIGKILL);
      });
  close(fds[0]);
  close(fds[1]);
  for (int r = 0; r < k.p; ++r) {
    if (std::find(k.victims.begin(), k.victims.end(), r) != k.victims.end()) continue;
    EXPECT_TRUE(exits[r].exited && exits[r].code == kOk) << "survivor " << r << ": " << exits[r].describe();
    EXPECT_LT(exits[r].seconds, 40) << "survivor " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Health, SurvivorsOfKill,
                         ::testing::Values(Kill{"shm", 5, {2}, true}, Kill{"tcp", 5, {4}, true}, Kill{"tcp", 8, {3, 6}, true},
                                           Kill{"shm", 8, {0}, false}),
                         [](const ::testing::TestParamInfo<Kill>& i) {
                           std::string v;
                           for (int x : i.param.victims) v += "_" + std::to_string(x);
                           return std::string(i.param.transport) + "_np" + std::to_string(i.param.p) + "_kill" + v +
                                  (i.param.shrink ? "_shrink" : "");
                         });

// A rank dies while the others shrink: the survivors still agree and go on.
TEST(Health, ShrinkSurvivesARankDyingDuringTheShrink) {
  ScopedEnv transport("CHORUS_TRANSPORT", "shm");
  ScopedEnv timeout("CHORUS_TIMEOUT", "20");
  ScopedEnv shrinkTimeout("CHORUS_SHRINK_TIMEOUT", "3");
  const int p = 5;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto exits = runRanksWithId(
      p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, p, id, rank) != chorusSuccess) return 2;
        std::string text;
        if (loopUntilFailure(comm, rank, rank == 1, fds[1], &text) == chorusSuccess) return 3;
        if (rank == 4) {
          // The second victim dies as the others shrink (the parent kills it).
          char c = 'y';
          if (write(fds[1], &c, 1) != 1) return 5;
          std::this_thread::sleep_for(std::chrono::milliseconds(rank * 100));
        }
        return shrinkAndContinue(comm, rank, {1, 4}, p);
      },
      90,
      [&](RankHandles& h) {
        pollfd pfd{fds[0], POLLIN, 0};
        char c;
        ASSERT_EQ(poll(&pfd, 1, 60000), 1);
        ASSERT_EQ(read(fds[0], &c, 1), 1);
        kill(h.pids[1], SIGKILL);
        ASSERT_EQ(poll(&pfd, 1, 60000), 1);
        ASSERT_EQ(read(fds[0], &c, 1), 1);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        kill(h.pids[4], SIGKILL);
      });
  close(fds[0]);
  close(fds[1]);
  for (int r : {0, 2, 3}) EXPECT_TRUE(exits[r].exited && exits[r].code == kOk) << "survivor " << r << ": " << exits[r].describe();
}

// A rank that is late to a collective (in its own code) is named by the hang report in every
// other rank's timeout, and by chorusCommDiagnose called from another thread meanwhile.
TEST(Health, HangReportNamesTheRankThatNeverEntered) {
  ScopedEnv transport("CHORUS_TRANSPORT", "tcp");
  ScopedEnv timeout("CHORUS_TIMEOUT", "2");
  const int p = 4, late = 2;
  auto exits = runRanksWithId(
      p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, p, id, rank) != chorusSuccess) return 2;
        std::vector<float> buf(1024, 1.0f);
        for (int i = 0; i < 2; ++i)
          if (chorusAllReduce(buf.data(), buf.data(), buf.size(), chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) return 3;
        if (rank == late) {
          std::this_thread::sleep_for(std::chrono::seconds(6));  // "computing": never enters #3 in time
          chorusCommAbort(comm);
          return kOk;
        }
        std::string diag;
        std::thread doctor([&] {
          std::this_thread::sleep_for(std::chrono::milliseconds(800));
          char line[1024] = {};
          if (chorusCommDiagnose(comm, line, sizeof line) == chorusSuccess) diag = line;
        });
        chorusResult_t r = chorusAllReduce(buf.data(), buf.data(), buf.size(), chorusFloat32, chorusSum, comm, nullptr);
        doctor.join();
        std::string text = chorusGetLastError(comm);
        fprintf(stderr, "rank %d: %s\n  diagnose: %s\n", rank, text.c_str(), diag.c_str());
        std::this_thread::sleep_for(std::chrono::seconds(1));  // stay up, as a job does, for slower survivors' questions
        chorusCommAbort(comm);
        const std::string culprit = "rank 2 (host ";
        if (diag.find(culprit) == std::string::npos || diag.find("has not entered #3") == std::string::npos) return 5;
        if (r == chorusTimeout)  // the ranks that time out carry the report; their neighbours its cause
          return text.find(culprit) != std::string::npos && text.find("has not entered #3") != std::string::npos ? kOk : 6;
        return r != chorusSuccess && text.find("rank 2") != std::string::npos ? kOk : 7;
      },
      60);
  EXPECT_TRUE(allRanksSucceeded(exits));
}

// A stopped rank cannot answer: the report says so, naming it.
TEST(Health, StoppedRankIsReportedUnreachable) {
  ScopedEnv transport("CHORUS_TRANSPORT", "shm");
  ScopedEnv timeout("CHORUS_TIMEOUT", "4");  // the report gets 2 s: room for a loaded machine
  const int p = 4, victim = 1;
  SharedArrivals ended;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto exits = runRanksWithId(
      p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, p, id, rank) != chorusSuccess) return 2;
        std::string text;
        chorusResult_t r = loopUntilFailure(comm, rank, rank == victim, fds[1], &text);
        fprintf(stderr, "rank %d: %s\n", rank, text.c_str());
        // Stay up until every survivor has its error, as a job's ranks do while they log: the
        // first rank to time out is asked by the others where the failure started, and its
        // abort would otherwise break their connections first (CI: ranks 2 and 3 then blamed
        // rank 0's abort, the stopped rank unnamed).
        ended.arriveAndWait(p - 1, 15);
        chorusCommAbort(comm);
        if (r == chorusSuccess) return 3;
        return text.find("rank 1 (host ") != std::string::npos && text.find("did not answer") != std::string::npos ? kOk : 4;
      },
      60,
      stopWhenSignalled(fds, victim));
  close(fds[0]);
  close(fds[1]);
  for (int r = 0; r < p; ++r)
    if (r != victim) {
      EXPECT_TRUE(exits[r].exited && exits[r].code == kOk) << "survivor " << r << ": " << exits[r].describe();
      EXPECT_LT(exits[r].seconds, 2 * 4 + 3) << "survivor " << r;  // the deadline, the report, start-up
    }
}

// A broadcast root only sends: each call completes once the transport holds its bytes, so with
// a receiver stopped it would run call after call into kernel buffers instead of waiting on
// it. The root must still fail within the deadline of the first call the stopped rank never
// entered, naming it, and so must the rank that only hears from the root.
TEST(Health, SendOnlyRootDoesNotRunAheadOfAStoppedRank) {
  ScopedEnv transport("CHORUS_TRANSPORT", "tcp");
  ScopedEnv algo("CHORUS_ALGO", "broadcast:direct");  // the root sends to every rank, nobody else sends
  ScopedEnv timeout("CHORUS_TIMEOUT", "3");
  const int p = 3, victim = 2;
  SharedArrivals ended;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto exits = runRanksWithId(
      p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, p, id, rank) != chorusSuccess) return 2;
        double value = 0;
        chorusResult_t r = chorusSuccess;
        long call = 0;
        for (; call < 100000000L && r == chorusSuccess; ++call) {
          if (rank == victim && call == 5) {
            char c = 'x';
            if (write(fds[1], &c, 1) != 1) return 5;
          }
          value = rank == 0 ? static_cast<double>(call) : -1.0;
          r = chorusBroadcast(&value, &value, 1, chorusFloat64, 0, comm, nullptr);
          if (r == chorusSuccess && value != static_cast<double>(call)) return 6;
        }
        std::string text = chorusGetLastError(comm);
        fprintf(stderr, "rank %d after %ld calls: %s\n", rank, call, text.c_str());
        ended.arriveAndWait(p - 1, 10);  // the other survivor may still ask this rank
        chorusCommAbort(comm);
        return r != chorusSuccess && text.find("rank 2") != std::string::npos ? kOk : 3;
      },
      60,
      stopWhenSignalled(fds, victim));
  close(fds[0]);
  close(fds[1]);
  for (int r = 0; r < p; ++r)
    if (r != victim) {
      EXPECT_TRUE(exits[r].exited && exits[r].code == kOk) << "survivor " << r << ": " << exits[r].describe();
      // The deadline, a probe period, the report (1.5 s), start-up.
      EXPECT_LT(exits[r].seconds, 3 + 0.5 + 1.5 + 1.5 + 3) << "survivor " << r;
    }
}

// A peer that dies before the first collective (connections are made lazily, on first use)
// fails the survivors' connection setup at once, not at the deadline.
TEST(Health, DeadPeerDuringLazyTcpSetupFailsFast) {
  ScopedEnv transport("CHORUS_TRANSPORT", "tcp");
  ScopedEnv timeout("CHORUS_TIMEOUT", "30");
  const int p = 3, victim = 1;
  auto exits = runRanksWithId(
      p,
      [&](int rank, const chorusUniqueId& id) {
        chorusComm_t comm = nullptr;
        if (chorusCommInitRank(&comm, p, id, rank) != chorusSuccess) return 2;
        if (rank == victim) _exit(0);  // gone before any connection exists
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        std::vector<float> buf(1 << 16, 1.0f);
        chorusResult_t r = chorusAllReduce(buf.data(), buf.data(), buf.size(), chorusFloat32, chorusSum, comm, nullptr);
        std::string text = chorusGetLastError(comm);
        fprintf(stderr, "rank %d: %s\n", rank, text.c_str());
        std::this_thread::sleep_for(std::chrono::seconds(1));
        chorusCommAbort(comm);
        return r == chorusRemoteError && text.find("rank 1") != std::string::npos ? kOk : 3;
      },
      60);
  for (int r = 0; r < p; ++r) {
    EXPECT_TRUE(exits[r].exited && exits[r].code == kOk) << "rank " << r << ": " << exits[r].describe();
    if (r != victim) EXPECT_LT(exits[r].seconds, 8) << "rank " << r << " waited for the deadline";
  }
}

// CHORUS_DIAG_SIGNAL: a signal to any rank prints its communicator's hang report.
TEST(Health, DiagSignalPrintsTheReport) {
  ScopedEnv signal("CHORUS_DIAG_SIGNAL", "USR1");
  std::string logPattern = ::testing::TempDir() + "chorus_diag_%p.log";
  ScopedEnv logFile("CHORUS_DEBUG_FILE", logPattern.c_str());
  ScopedEnv transport("CHORUS_TRANSPORT", "shm");
  auto exits = runRanksWithId(2, [&](int rank, const chorusUniqueId& id) {
    logReloadConfig();
    chorusComm_t comm = nullptr;
    if (chorusCommInitRank(&comm, 2, id, rank) != chorusSuccess) return 2;
    float x = 1;
    if (chorusAllReduce(&x, &x, 1, chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) return 3;
    if (rank == 0) raise(SIGUSR1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the report is gathered meanwhile
    chorusCommDestroy(comm);
    if (rank != 0) return 0;
    std::string path = ::testing::TempDir() + "chorus_diag_" + std::to_string(getpid()) + ".log";
    FILE* f = fopen(path.c_str(), "r");
    if (!f) return 4;
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    fclose(f);
    remove(path.c_str());
    fprintf(stderr, "%s", text.c_str());
    // Both ranks are past #1 (rank 1 may still be leaving it when the report is gathered).
    bool named = text.find("hang report (CHORUS_DIAG_SIGNAL): ") != std::string::npos && text.find("#1") != std::string::npos;
    return named ? 0 : 5;
  }, 60);
  EXPECT_TRUE(allRanksSucceeded(exits));
}

}  // namespace
}  // namespace chorus::test

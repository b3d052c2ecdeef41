// Never hang: a rank killed (SIGKILL) or stopped (SIGSTOP) in the middle of all-reduces must
// turn into an error on every surviving rank within the deadline.
#include <gtest/gtest.h>

#include <chorus/chorus.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

constexpr int kSurvivorSawError = 42;

// Every rank loops over large all-reduces; `victim` reports on `pipeFd` once it has finished
// `warmCalls` of them, so that the parent can strike while the others are mid-call.
int loopUntilError(int p, const chorusUniqueId& id, int rank, int victim, int pipeFd) {
  chorusComm_t comm = nullptr;
  if (chorusCommInitRank(&comm, p, id, rank) != chorusSuccess) {
    fprintf(stderr, "rank %d: init failed: %s\n", rank, chorusGetLastError(nullptr));
    return 3;
  }
  std::vector<float> buf(4 << 20, 1.0f);  // 16 MiB
  const int warmCalls = 3;
  for (int call = 0; call < 100000; ++call) {
    if (rank == victim && call == warmCalls) {
      char c = 'x';
      if (write(pipeFd, &c, 1) != 1) return 4;
    }
    chorusResult_t r = chorusAllReduce(buf.data(), buf.data(), buf.size(), chorusFloat32, chorusSum, comm, nullptr);
    if (r != chorusSuccess) {
      const char* text = chorusGetLastError(comm);
      fprintf(stderr, "rank %d: call %d failed as expected: %s: %s\n", rank, call, chorusGetErrorString(r), text);
      bool named = std::string(text).find("chorusAllReduce #") != std::string::npos;
      chorusResult_t async = chorusSuccess;
      chorusCommGetAsyncError(comm, &async);
      chorusCommAbort(comm);
      bool kind = r == chorusRemoteError || r == chorusTimeout;
      return (kind && named && async != chorusSuccess) ? kSurvivorSawError : 5;
    }
    for (size_t i = 0; i < buf.size(); i += 4099) buf[i] = 1.0f;  // keep values bounded
  }
  return 6;  // never saw the failure
}

void strikeMidCall(int p, int victim, int signal, const char* transport, double timeoutSec, double allowedSec) {
  ScopedEnv env("CHORUS_TRANSPORT", transport);
  ScopedEnv timeout("CHORUS_TIMEOUT", std::to_string(timeoutSec).c_str());
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto exits = runRanksWithId(
      p, [&](int rank, const chorusUniqueId& id) { return loopUntilError(p, id, rank, victim, fds[1]); }, 120,
      [&](RankHandles& h) {
        pollfd pfd{fds[0], POLLIN, 0};
        ASSERT_EQ(poll(&pfd, 1, 60000), 1) << "the victim never reported";
        kill(h.pids[victim], signal);
        h.expendable[victim] = true;  // a stopped victim is killed once the survivors are done
      });
  close(fds[0]);
  close(fds[1]);
  for (int r = 0; r < p; ++r) {
    if (r == victim) {
      EXPECT_EQ(exits[r].signal, SIGKILL) << exits[r].describe();  // by us, or by the fixture after SIGSTOP
      continue;
    }
    EXPECT_TRUE(exits[r].exited && exits[r].code == kSurvivorSawError) << "survivor " << r << ": " << exits[r].describe();
    EXPECT_LT(exits[r].seconds, allowedSec) << "survivor " << r;
  }
}

TEST(DeadPeer, SigkillMidAllReduceOverShmFailsEverySurvivor) { strikeMidCall(4, 2, SIGKILL, "shm", 30, 15); }

TEST(DeadPeer, SigkillMidAllReduceOverTcpFailsEverySurvivor) { strikeMidCall(3, 1, SIGKILL, "tcp", 30, 15); }

TEST(DeadPeer, StoppedPeerBecomesTimeoutOnSurvivors) { strikeMidCall(3, 0, SIGSTOP, "shm", 3, 20); }

}  // namespace
}  // namespace chorus::test

// The bootstrap at 1,024 ranks on one machine: 8 forked processes of 128 threads each, every
// thread a rank joining one root over loopback, then one barrier. Each rank's messages, bytes
// and connections (Bootstrap::traffic) are checked against the pattern of bootstrap.cpp - L =
// ceil(log2 p) rounds, so 2L + 2 messages for the join and 2L for the barrier, within the 4L
// of issue 15 - and the spread over the ranks is printed (docs/PERFORMANCE.md, "Init scaling").
// Threads of one process would need ~22 descriptors per rank, more than the 20,000 a process
// may hold here; a few processes keep each under 4,000. Sanitizer builds run 256 ranks (8 x 32):
// the same checks, at a quarter of the memory their shadow would multiply.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/socket.h"
#include "bootstrap/unique_id.h"
#include "bootstrap/wire.h"
#include "base/error.h"
#include "fixtures/ranks.h"

namespace chorus {
namespace {


// What one rank reports to the parent (in memory shared across the forks).
struct RankRecord {
  BootstrapTraffic joined;   // after Bootstrap::join
  BootstrapTraffic barrier;  // what the barrier added
  double joinMs = 0;
  double barrierMs = 0;
  int ok = 0;
};

// Shared, zeroed records for n ranks; unmapped when the test ends.
struct SharedRecords {
  explicit SharedRecords(int n) : bytes(sizeof(RankRecord) * static_cast<size_t>(n)) {
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) abort();
    records = static_cast<RankRecord*>(m);
  }
  ~SharedRecords() { munmap(records, bytes); }
  size_t bytes;
  RankRecord* records;
};

double msBetween(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

// Rank r's join and barrier, recorded in *rec; throws on failure.
void joinAndBarrier(const UniqueIdData& id, int r, int p, const Config& cfg, RankRecord* rec) {
  PeerCard card;
  card.pid = getpid();
  snprintf(card.hostname, sizeof(card.hostname), "scale-%d", r);
  auto t0 = Clock::now();
  auto bs = Bootstrap::join(id, r, p, card, cfg, Deadline::after(cfg.timeoutSec));
  auto t1 = Clock::now();
  rec->joined = bs->traffic();
  bs->barrier(Deadline::after(cfg.timeoutSec));
  rec->barrierMs = msBetween(t1, Clock::now());
  rec->barrier = bs->traffic() - rec->joined;
  rec->joinMs = msBetween(t0, t1);
  rec->ok = 1;
  // A second barrier: no rank closes its sockets while a peer may still read the first one's
  // last message from them.
  bs->barrier(Deadline::after(cfg.timeoutSec));
}

// min / median / max of one field over the ranks.
template <typename F>
void printSpread(const char* what, const std::vector<RankRecord>& recs, F field) {
  std::vector<double> v;
  for (const RankRecord& r : recs) v.push_back(static_cast<double>(field(r)));
  std::sort(v.begin(), v.end());
  printf("  %-34s %12.1f %12.1f %12.1f\n", what, v.front(), v[v.size() / 2], v.back());
}

TEST(BootstrapScale, ThousandRanksCostLogRoundsEach) {
  constexpr int kProcs = 8;
  constexpr int kPerProc = test::kSanitized ? 32 : 128;
  constexpr int p = kProcs * kPerProc;
  const uint64_t L = static_cast<uint64_t>(wire::log2Ceil(p));
  Config cfg;
  cfg.socketIfname = "lo";
  cfg.timeoutSec = 120;
  SharedRecords shared(p);
  auto wall0 = Clock::now();
  auto exits = test::runRanksWithId(
      kProcs,
      [&](int proc, const chorusUniqueId& publicId) {
        UniqueIdData id = decodeUniqueId(publicId);
        std::vector<std::thread> threads;
        int failed = 0;
        std::mutex mu;
        for (int i = 0; i < kPerProc; ++i) {
          const int r = proc * kPerProc + i;
          threads.emplace_back([&, r] {
            try {
              joinAndBarrier(id, r, p, cfg, &shared.records[r]);
            } catch (const Error& e) {
              std::lock_guard<std::mutex> g(mu);
              if (failed++ < 3) fprintf(stderr, "rank %d: %s\n", r, e.what());
            }
          });
        }
        for (auto& t : threads) t.join();
        return failed ? 1 : 0;
      },
      240);
  const double wallMs = msBetween(wall0, Clock::now());
  ASSERT_TRUE(test::allRanksSucceeded(exits));
  std::vector<RankRecord> recs(shared.records, shared.records + p);

  const uint64_t cards = static_cast<uint64_t>(p - 1) * sizeof(PeerCard);
  const uint64_t opened = L * (sizeof(wire::Auth) + sizeof(wire::FrameHeader));
  for (int r = 0; r < p; ++r) {
    const RankRecord& rec = recs[static_cast<size_t>(r)];
    ASSERT_EQ(rec.ok, 1) << "rank " << r;
    EXPECT_EQ(rec.joined.msgsSent, 1 + L) << "rank " << r;
    EXPECT_EQ(rec.joined.msgsRecv, 1 + L) << "rank " << r;
    EXPECT_EQ(rec.joined.bytesSent, sizeof(wire::Hello) + opened + cards) << "rank " << r;
    EXPECT_EQ(rec.joined.bytesRecv, sizeof(wire::Reply) + L * sizeof(wire::PeerAddr) + opened + cards) << "rank " << r;
    EXPECT_EQ(rec.joined.connsOpened, 1 + L) << "rank " << r;
    EXPECT_EQ(rec.joined.connsAccepted, L) << "rank " << r;
    // The dissemination barrier runs over the card all-gather's connections.
    EXPECT_EQ(rec.barrier.msgsSent, L) << "rank " << r;
    EXPECT_EQ(rec.barrier.msgsRecv, L) << "rank " << r;
    EXPECT_EQ(rec.barrier.connsOpened, 0u) << "rank " << r;
    EXPECT_EQ(rec.barrier.connsAccepted, 0u) << "rank " << r;
    EXPECT_LE(rec.joined.msgsSent + rec.joined.msgsRecv + rec.barrier.msgsSent + rec.barrier.msgsRecv, 4 * L + 2)
        << "rank " << r;
  }

  printf("bootstrap of %d ranks (%d processes x %d threads, loopback, one root), L = %llu, 4L = %llu; wall %.0f ms\n", p,
         kProcs, kPerProc, static_cast<unsigned long long>(L), static_cast<unsigned long long>(4 * L), wallMs);
  printf("  %-34s %12s %12s %12s\n", "per rank", "min", "median", "max");
  printSpread("join: messages sent", recs, [](const RankRecord& r) { return r.joined.msgsSent; });
  printSpread("join: messages received", recs, [](const RankRecord& r) { return r.joined.msgsRecv; });
  printSpread("join: bytes sent", recs, [](const RankRecord& r) { return r.joined.bytesSent; });
  printSpread("join: bytes received", recs, [](const RankRecord& r) { return r.joined.bytesRecv; });
  printSpread("join: connections opened", recs, [](const RankRecord& r) { return r.joined.connsOpened; });
  printSpread("join: connections accepted", recs, [](const RankRecord& r) { return r.joined.connsAccepted; });
  printSpread("join: ms", recs, [](const RankRecord& r) { return r.joinMs; });
  printSpread("barrier: messages sent", recs, [](const RankRecord& r) { return r.barrier.msgsSent; });
  printSpread("barrier: messages received", recs, [](const RankRecord& r) { return r.barrier.msgsRecv; });
  printSpread("barrier: bytes sent", recs, [](const RankRecord& r) { return r.barrier.bytesSent; });
  printSpread("barrier: connections opened", recs, [](const RankRecord& r) { return r.barrier.connsOpened; });
  printSpread("barrier: ms", recs, [](const RankRecord& r) { return r.barrierMs; });
  rusage children{};
  getrusage(RUSAGE_CHILDREN, &children);
  printf("  sizeof(PeerCard) = %zu bytes; peak resident memory of the largest process: %.0f MiB\n", sizeof(PeerCard),
         static_cast<double>(children.ru_maxrss) / 1024.0);
}

}  // namespace
}  // namespace chorus

// Transport conformance: the Connection/Transport contract of transports/transport.h checked the
// same way on every transport (conformance_harness.cpp has the table): ordering, many messages in
// flight, sizes from 0 to 64 MiB, reducing receives, unaligned buffers, a peer that closes, aborts,
// exits or is killed, connect deadlines, concurrent connects, size mismatches, that a completed
// send needs no further progress from its sender, and that a rank leaves no shared memory behind.
//
// Every rank is a process (fixtures/ranks.h). Every wait has a deadline (kRankWaitSec in the
// ranks, kTestDeadlineSec in the parent): a hang is a failure. Tests that expect an error check
// its code and how long it took to come.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "exec/reduce.h"
#include "fixtures/ranks.h"
#include "transport/conformance_harness.h"

namespace chorus::test {
namespace {

// An error a test expects (the peer closed, died...) must come within this long.
constexpr double kDetectSec = 5;

// A seed naming one message: sender, receiver, sequence number and a per-test salt.
uint64_t seedOf(int from, int to, uint64_t seq, uint64_t salt = 0) {
  return (static_cast<uint64_t>(from + 1) << 56) | (static_cast<uint64_t>(to + 1) << 48) | (salt << 32) | seq;
}

// Peers of rank in a full mesh of n, listed from rank + 1 on (so every rank lists them in a
// different order).
std::vector<int> othersRotated(int rank, int n) {
  std::vector<int> v;
  for (int k = 1; k < n; ++k) v.push_back((rank + k) % n);
  return v;
}

class Conformance : public ::testing::TestWithParam<TransportParam> {
 protected:
  void SetUp() override {
    if (!GetParam().built) GTEST_SKIP() << "transport " << GetParam().label << " is not built: " << GetParam().whyNotBuilt;
  }

  void TearDown() override {
    // In the fresh process of a needsLibraryPath row: tell the parent how this test ended.
    const char* path = getenv("CHORUS_CONFORMANCE_RESULT_FILE");
    if (path == nullptr) return;
    std::ofstream out(path);
    out << (IsSkipped() ? "skipped" : HasFailure() ? "failed" : "passed") << "\n";
  }

  const TransportParam& P() const { return GetParam(); }

  // Runs body on n rank processes and expects every one to exit with 0.
  void runAll(int n, const std::function<void(int rank, const chorusUniqueId& id)>& body) {
    auto exits = runRanksTidy(n, [&](int rank, const chorusUniqueId& id) {
      body(rank, id);
      return 0;
    });
    EXPECT_TRUE(allRanksSucceeded(exits));
  }

  // For a row that names its plugin by name (needsLibraryPath): unless this process already has
  // the plugin directory on LD_LIBRARY_PATH, runs this very test in a fresh process of this binary
  // that has, checks that it passed there, and returns true (the caller then returns).
  bool ranInFreshProcess();
};

bool libraryPathHas(const std::string& dir) {
  const char* v = getenv("LD_LIBRARY_PATH");
  if (v == nullptr) return false;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ':'))
    if (item == dir) return true;
  return false;
}

bool Conformance::ranInFreshProcess() {
  if (!P().needsLibraryPath) return false;
  const std::string dir = CHORUS_NET_PLUGIN_DIR;
  if (libraryPathHas(dir)) return false;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string filter = std::string("--gtest_filter=") + info->test_suite_name() + "." + info->name();
  char resultPath[] = "/tmp/chorus-conformance-XXXXXX";
  int fd = mkstemp(resultPath);
  EXPECT_GE(fd, 0) << "mkstemp: " << strerror(errno);
  if (fd < 0) return true;
  close(fd);
  std::string libPath = dir;
  if (const char* old = getenv("LD_LIBRARY_PATH"); old && *old) libPath += std::string(":") + old;
  std::string how = filter + " with LD_LIBRARY_PATH=" + libPath;
  // Within ctest's 300 s per test; the child's own ranks have their own deadlines.
  constexpr double kChildDeadlineSec = 240;
  auto exits = runRanks(
      1,
      [&](int) -> int {
        setenv("LD_LIBRARY_PATH", libPath.c_str(), 1);
        setenv("CHORUS_CONFORMANCE_RESULT_FILE", resultPath, 1);
        char exe[] = "/proc/self/exe";
        char* argv[] = {exe, filter.data(), nullptr};
        execv(exe, argv);
        perror("execv");
        return 127;
      },
      kChildDeadlineSec);
  const RankExit& e = exits[0];
  std::string result;
  std::ifstream(resultPath) >> result;
  unlink(resultPath);
  EXPECT_FALSE(e.timedOut) << "the fresh process running " << how << " did not end within " << kChildDeadlineSec << " s";
  EXPECT_TRUE(e.exited && e.code == 0) << "the fresh process running " << how << " failed (its output is above): " << e.describe();
  EXPECT_EQ(result, "passed") << "the fresh process running " << how << " reported '" << result << "'";
  return true;
}

#define CONFORMANCE_PROLOGUE() \
  if (ranInFreshProcess()) return

// ---- properties ------------------------------------------------------------------------------

TEST_P(Conformance, Properties) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  runAll(2, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, 2, id);
    Transport& t = rt.transport();
    int peer = 1 - rank;
    EXPECT_STREQ(t.name(), p.expectedName);
    EXPECT_GT(t.latencyUs(), 0);
    EXPECT_GT(t.bandwidthGBps(), 0);
    EXPECT_TRUE(t.canReach(peer));
    auto conns = rt.connect({peer});
    ASSERT_EQ(conns.size(), 1u);
    Connection& c = *conns[0];
    EXPECT_EQ(c.peer(), peer);
    EXPECT_STREQ(c.kind(), p.expectedName);
    EXPECT_EQ(c.sendsCompleted(), 0u);
    EXPECT_EQ(c.recvsCompleted(), 0u);
    EXPECT_NO_THROW(c.checkAlive());
    // Tickets count 0, 1, 2... per direction from the first post on.
    std::vector<Buffer> out, in;
    for (uint64_t k = 0; k < 3; ++k) {
      out.emplace_back(100 + k);
      in.emplace_back(100 + k);
      fillPattern(out.back().data(), 100 + k, seedOf(rank, peer, k));
      EXPECT_EQ(c.postSend(out.back().data(), 100 + k), k);
      RecvSink sink;
      sink.dst = in.back().data();
      sink.bytes = 100 + k;
      EXPECT_EQ(c.postRecv(sink), k);
    }
    drive({&c}, [&] { return c.sendsCompleted() == 3 && c.recvsCompleted() == 3; });
    for (uint64_t k = 0; k < 3; ++k)
      EXPECT_EQ(patternMismatch(in[k].data(), 100 + k, seedOf(peer, rank, k)), -1) << "message " << k;
    EXPECT_NO_THROW(c.checkAlive());
    rt.barrier();
  });
}

// ---- data ------------------------------------------------------------------------------------

// 1000 messages each way, all posted before any completes: zero-byte ones, small ones of varied
// sizes, and some over 256 KiB and over 1 MiB (past the network transports' fragment size).
size_t orderingSize(uint64_t seq) {
  if (seq % 97 == 13) return 0;
  if (seq % 250 == 249) return (1u << 20) + 512 * 1024 + seq;
  if (seq % 50 == 7) return 256 * 1024 + seq;
  return 8 + (seq * 7919) % 3000;
}

TEST_P(Conformance, OrderingPerPeer) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  runAll(2, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, 2, id);
    int peer = 1 - rank;
    auto conns = rt.connect({peer});
    Connection& c = *conns[0];
    constexpr uint64_t kMessages = 1000;
    Traffic tr;
    for (uint64_t seq = 0; seq < kMessages; ++seq) {
      tr.send(c, orderingSize(seq), seedOf(rank, peer, seq));
      tr.recv(c, orderingSize(seq), seedOf(peer, rank, seq));
    }
    EXPECT_LE(c.sendsCompleted(), kMessages);
    tr.run();
    tr.check();
    EXPECT_EQ(c.sendsCompleted(), kMessages);
    EXPECT_EQ(c.recvsCompleted(), kMessages);
    rt.barrier();
  });
}

// Three ranks all to all: 200 sends of 64 KiB to each peer and 200 receives from each, all posted
// before any completes (far more than any transport's in-flight limit).
TEST_P(Conformance, ManyInFlightAllToAll) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  constexpr int kRanks = 3;
  constexpr uint64_t kPerPeer = 200;
  constexpr size_t kBytes = 64 * 1024;
  runAll(kRanks, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, kRanks, id);
    auto peers = othersRotated(rank, kRanks);
    auto conns = rt.connect(peers);
    ASSERT_EQ(conns.size(), peers.size());
    Traffic tr;
    for (uint64_t seq = 0; seq < kPerPeer; ++seq)
      for (size_t i = 0; i < peers.size(); ++i) {
        tr.send(*conns[i], kBytes, seedOf(rank, peers[i], seq));
        tr.recv(*conns[i], kBytes, seedOf(peers[i], rank, seq));
      }
    tr.run();
    tr.check();
    for (auto& c : conns) {
      EXPECT_EQ(c->sendsCompleted(), kPerPeer);
      EXPECT_EQ(c->recvsCompleted(), kPerPeer);
    }
    rt.barrier();
  });
}

TEST_P(Conformance, Sizes) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  const std::vector<size_t> sizes = {0, 1, 63, 64, 65, 4095, 4096, 65537, (1u << 20) + 1, (7u << 20) - 3};
  runAll(2, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, 2, id);
    int peer = 1 - rank;
    auto conns = rt.connect({peer});
    Traffic tr;
    for (size_t i = 0; i < sizes.size(); ++i) {
      tr.send(*conns[0], sizes[i], seedOf(rank, peer, i));
      tr.recv(*conns[0], sizes[i], seedOf(peer, rank, i));
    }
    tr.run();
    tr.check();
    rt.barrier();
  });
}

TEST_P(Conformance, Message64MiB) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  runAll(2, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, 2, id);
    int peer = 1 - rank;
    auto conns = rt.connect({peer});
    Traffic tr;
    tr.send(*conns[0], 64u << 20, seedOf(rank, peer, 1));
    tr.recv(*conns[0], 64u << 20, seedOf(peer, rank, 1));
    tr.run();
    tr.check();
    rt.barrier();
  });
}

// dst[i] = local[i] + incoming[i] for floats, into a separate buffer and in place (local == dst),
// for sizes from one element to past several fragments. The values are small integers and
// halves, so the sums are exact.
TEST_P(Conformance, ReducingReceives) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  const std::vector<size_t> counts = {1, 16, 17, 1000, 16384, 262145, 2097155};
  runAll(2, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, 2, id);
    int peer = 1 - rank;
    auto conns = rt.connect({peer});
    Connection& c = *conns[0];
    ReduceFn sum = reduceFunction(chorusFloat32, chorusSum);
    auto incoming = [](int from, size_t i) { return static_cast<float>(i % 1000) + 1000.0f * static_cast<float>(from + 1); };
    auto local = [](size_t i) { return 0.5f * static_cast<float>(i % 7); };
    struct Case {
      std::vector<float> send, local, dst;
      bool inPlace;
    };
    std::vector<Case> cases;
    cases.reserve(2 * counts.size());
    for (bool inPlace : {false, true})
      for (size_t n : counts) {
        Case k;
        k.inPlace = inPlace;
        k.send.resize(n);
        k.local.resize(n);
        for (size_t i = 0; i < n; ++i) {
          k.send[i] = incoming(rank, i);
          k.local[i] = local(i);
        }
        if (!inPlace) k.dst.assign(n, -1.0f);
        cases.push_back(std::move(k));
      }
    std::vector<uint64_t> recvTickets;
    for (Case& k : cases) {
      size_t bytes = k.send.size() * sizeof(float);
      c.postSend(k.send.data(), bytes);
      RecvSink sink;
      sink.dst = k.inPlace ? k.local.data() : k.dst.data();
      sink.local = k.local.data();
      sink.bytes = bytes;
      sink.reduce = sum;
      sink.elemSize = sizeof(float);
      recvTickets.push_back(c.postRecv(sink));
    }
    uint64_t total = cases.size();
    drive({&c}, [&] { return c.sendsCompleted() == total && c.recvsCompleted() == total; });
    int bad = 0;
    for (Case& k : cases) {
      const std::vector<float>& out = k.inPlace ? k.local : k.dst;
      for (size_t i = 0; i < out.size(); ++i) {
        float want = local(i) + incoming(peer, i);
        if (out[i] == want) continue;
        if (++bad <= 5)
          ADD_FAILURE() << "reducing receive of " << out.size() << " floats" << (k.inPlace ? " (in place)" : "") << ": element " << i
                        << " is " << out[i] << ", expected " << want;
        break;
      }
      if (!k.inPlace)
        for (size_t i = 0; i < k.local.size(); ++i)
          if (k.local[i] != local(i)) {
            ADD_FAILURE() << "reducing receive of " << k.local.size() << " floats changed its local input at " << i;
            break;
          }
    }
    rt.barrier();
  });
}

// Send and receive buffers 1, 3 and 7 bytes past an aligned address, in every combination, for
// sizes below and above a fragment; guard bytes around each buffer must stay untouched.
TEST_P(Conformance, UnalignedBuffers) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  const std::vector<size_t> offsets = {1, 3, 7};
  const std::vector<size_t> sizes = {1, 100, 65537, (3u << 20) + 5};
  runAll(2, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, 2, id);
    int peer = 1 - rank;
    auto conns = rt.connect({peer});
    Traffic tr;
    uint64_t seq = 0;
    for (size_t so : offsets)
      for (size_t ro : offsets)
        for (size_t n : sizes) {
          // Rank r sends with offset so, receives with ro; the peer mirrors: the message from
          // rank 0 travels so -> ro, the one from rank 1 travels ro -> so.
          size_t mySend = rank == 0 ? so : ro, myRecv = rank == 0 ? ro : so;
          tr.send(*conns[0], n, seedOf(rank, peer, seq), mySend);
          tr.recv(*conns[0], n, seedOf(peer, rank, seq), myRecv);
          ++seq;
        }
    tr.run();
    tr.check();
    rt.barrier();
  });
}

// ---- connection setup ------------------------------------------------------------------------

// Exchanges three messages each way on every connection and checks them.
void exchangeOnAll(int rank, const std::vector<int>& peers, const std::vector<std::unique_ptr<Connection>>& conns, uint64_t salt) {
  ASSERT_EQ(conns.size(), peers.size());
  const std::vector<size_t> sizes = {7, 70000, (1u << 20) + (1u << 19)};
  Traffic tr;
  for (size_t i = 0; i < peers.size(); ++i) {
    EXPECT_EQ(conns[i]->peer(), peers[i]) << "connect() must return the connections in the order the peers were listed";
    for (size_t k = 0; k < sizes.size(); ++k) {
      tr.send(*conns[i], sizes[k], seedOf(rank, peers[i], k, salt));
      tr.recv(*conns[i], sizes[k], seedOf(peers[i], rank, k, salt));
    }
  }
  tr.run();
  tr.check();
}

// Five ranks, each connecting to all others in one connect() call, listing them in its own order.
TEST_P(Conformance, ConnectFullMeshInOneCall) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  constexpr int kRanks = 5;
  runAll(kRanks, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, kRanks, id);
    auto peers = othersRotated(rank, kRanks);
    auto conns = rt.connect(peers);
    exchangeOnAll(rank, peers, conns, 1);
    rt.barrier();
  });
}

// Rank 0 connects to ranks 1..4 in its first call while they, having connected to rank 0 (their
// first call, staggered so that rank 0 is still waiting), connect among themselves in a second
// call; rank 0's second call lists nobody. Then every pair exchanges messages.
TEST_P(Conformance, ConnectInTwoCalls) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  constexpr int kRanks = 5;
  runAll(kRanks, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, kRanks, id);
    std::vector<int> first, second;
    if (rank == 0) {
      first = {4, 1, 3, 2};
    } else {
      first = {0};
      for (int q : othersRotated(rank, kRanks))
        if (q != 0) second.push_back(q);
      std::this_thread::sleep_for(std::chrono::milliseconds(60 * rank));
    }
    auto conns1 = rt.connect(first);
    auto conns2 = rt.connect(second);
    EXPECT_EQ(conns2.size(), second.size());
    exchangeOnAll(rank, first, conns1, 2);
    exchangeOnAll(rank, second, conns2, 3);
    rt.barrier();
  });
}

// connect() to a peer that never calls connect (it waits, then exits) throws chorusTimeout at
// the deadline: not before it, and not much after. Both ways round, since transports often
// treat the lower and the higher rank of a pair differently (one dials, the other accepts).
void connectToSilentPeer(const TransportParam& p, int connecting) {
  constexpr double kDeadline = 1.0;
  auto exits = runRanksTidy(
      2,
      [&](int rank, const chorusUniqueId& id) {
        RankTransport rt(p, rank, 2, id);
        int peer = 1 - rank;
        if (rank != connecting) {
          rt.awaitNote(peer);  // never connects; leaves when the other rank is done
          return 0;
        }
        auto t0 = Clock::now();
        std::string what;
        std::vector<std::unique_ptr<Connection>> conns;
        chorusResult_t code = codeOf([&] { conns = rt.connect({peer}, kDeadline); }, &what);
        if (code == chorusSuccess && p.id == TransportId::Tcp && rank < peer) {
          // tcp's dialing (lower) rank returns once its sockets sit in the peer's accept backlog;
          // it does not wait for the peer to accept them (transports/tcp). Then nothing may
          // complete, and the first wait ends at its deadline instead of hanging.
          RecvSink sink;
          char byte = 0;
          sink.dst = &byte;
          sink.bytes = 1;
          code = codeOf(
              [&] {
                conns[0]->postRecv(sink);
                drive({conns[0].get()}, [&] { return conns[0]->recvsCompleted() == 1; }, kDeadline - secondsSince(t0));
              },
              &what);
        }
        double took = secondsSince(t0);
        EXPECT_EQ(code, chorusTimeout) << "rank " << rank << " connecting to a rank that never connects: "
                                       << (code == chorusSuccess ? "connect() returned connections" : what);
        if (code != chorusSuccess) {
          EXPECT_GE(took, kDeadline) << "connect gave up before its deadline: " << what;
          EXPECT_LE(took, kDeadline + 1.0) << "connect overran its deadline: " << what;
        }
        fprintf(stderr, "rank %d: connect to a silent peer: %.3f s: %s\n", rank, took, code == chorusSuccess ? "returned" : what.c_str());
        rt.notify(peer, 1);
        return 0;
      });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

TEST_P(Conformance, ConnectDeadlineToHigherRank) {
  CONFORMANCE_PROLOGUE();
  connectToSilentPeer(P(), 0);
}

TEST_P(Conformance, ConnectDeadlineToLowerRank) {
  CONFORMANCE_PROLOGUE();
  connectToSilentPeer(P(), 1);
}

// ---- completion semantics ----------------------------------------------------------------------

// A completed send needs nothing more from its sender: once rank 0's sends are complete it stops
// driving (it waits out of band), and rank 1, which posts its receives late, must still get them.
// (An executor stops driving a connection when its collective is done.)
TEST_P(Conformance, CompletedSendsNeedNoSenderProgress) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  const std::vector<size_t> sizes = {8, 4096, 65536, (4u << 20) + 3};
  runAll(2, [&](int rank, const chorusUniqueId& id) {
    RankTransport rt(p, rank, 2, id);
    int peer = 1 - rank;
    auto conns = rt.connect({peer});
    Traffic tr;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (rank == 0) tr.send(*conns[0], sizes[i], seedOf(0, 1, i));
    }
    if (rank == 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      for (size_t i = 0; i < sizes.size(); ++i) tr.recv(*conns[0], sizes[i], seedOf(0, 1, i));
    }
    tr.run();
    if (rank == 0) {
      rt.notify(1, 6);                 // my sends are complete
      EXPECT_EQ(rt.awaitNote(1), 7u);  // no progress on the connection from here on
    } else {
      tr.check();
      // Leave only once rank 0 has seen its sends complete: a rank that ends right after its
      // last receive may make the sender's completions fail (a peer death), which is not what
      // this test is about.
      EXPECT_EQ(rt.awaitNote(0), 6u);
      rt.notify(0, 7);
    }
  });
}

// ---- resources ----------------------------------------------------------------------------------

// A rank that destroys its connections and transport and exits normally (exit(), so that atexit
// handlers run) leaves nothing of itself in /dev/shm. (A killed rank cannot clean up; the other
// tests remove what their ranks leave, see runRanksTidy, so that no run leaves garbage behind.)
TEST_P(Conformance, ExitLeavesNoSharedMemory) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  std::vector<std::string> left;
  auto exits = runRanksTidy(
      2,
      [&](int rank, const chorusUniqueId& id) -> int {
        {
          RankTransport rt(p, rank, 2, id);
          int peer = 1 - rank;
          auto conns = rt.connect({peer});
          Traffic tr;
          tr.send(*conns[0], 1u << 20, seedOf(rank, peer, 0));
          tr.recv(*conns[0], 1u << 20, seedOf(peer, rank, 0));
          tr.run();
          tr.check();
          rt.barrier();
        }
        fflush(stdout);
        fflush(stderr);
        exit(::testing::Test::HasFailure() ? 1 : 0);
      },
      &left);
  EXPECT_TRUE(allRanksSucceeded(exits));
  std::string names;
  for (const std::string& n : left) names += "\n  " + n;
  EXPECT_TRUE(left.empty()) << "ranks left shared memory behind after destroying their transport and exiting:" << names;
}

// ---- failures --------------------------------------------------------------------------------

struct FailureBoard {
  std::atomic<int64_t> eventNs{0};  // when the peer closed / aborted / was killed
  std::atomic<int64_t> errorNs{0};  // when the survivor saw its error
  std::atomic<int> code{-1};        // the survivor's error code
};

// The survivor runs `first` (its own posts, if any), posts a receive the peer never matches and
// drives until its error.
void surviveUntilError(Connection& c, FailureBoard& board, int rank, const std::function<void()>& first = nullptr) {
  Buffer in(4096);
  std::string what;
  // Waiting past kDetectSec is a failure anyway; a little longer tells "late" from "never". The
  // posts are inside: a post on a connection whose peer is known dead may throw at once.
  chorusResult_t code = codeOf(
      [&] {
        if (first) first();
        RecvSink sink;
        sink.dst = in.data();
        sink.bytes = in.size();
        c.postRecv(sink);
        drive({&c}, [] { return false; }, kDetectSec + 3);
      },
      &what);
  board.errorNs = monotonicNs();
  board.code = code;
  double after = (board.errorNs - board.eventNs) / 1e9;
  EXPECT_EQ(code, chorusRemoteError) << what;
  EXPECT_NE(board.eventNs.load(), 0) << "the error came before the peer did anything: " << what;
  EXPECT_LE(after, kDetectSec) << "the error took too long to come: " << what;
  fprintf(stderr, "rank %d: error %.3f s after the peer's end: %s\n", rank, after, what.c_str());
}

enum class PeerEnd { CloseConnection, AbortConnection, ExitProcess };

void peerEnds(const TransportParam& p, PeerEnd how) {
  SharedBoard<FailureBoard> board;
  auto exits = runRanksTidy(
      2,
      [&](int rank, const chorusUniqueId& id) {
        RankTransport rt(p, rank, 2, id);
        auto conns = rt.connect({1 - rank});
        rt.barrier();
        if (rank == 1) {
          surviveUntilError(*conns[0], *board, rank);
          if (how != PeerEnd::ExitProcess) rt.notify(0, 1);
          return ::testing::Test::HasFailure() ? 1 : 0;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // rank 1 is waiting by now
        board->eventNs = monotonicNs();
        switch (how) {
          case PeerEnd::CloseConnection:
            conns.clear();
            rt.awaitNote(1);  // the process and its transport live until rank 1 has its error
            break;
          case PeerEnd::AbortConnection:
            conns[0]->abort();
            rt.awaitNote(1);  // no progress, no destruction: abort() alone must tell the peer
            break;
          case PeerEnd::ExitProcess:
            conns.clear();
            rt.destroyTransport();
            break;
        }
        return 0;
      });
  EXPECT_TRUE(allRanksSucceeded(exits));
  EXPECT_EQ(board->code.load(), chorusRemoteError);
}

TEST_P(Conformance, PeerClosesConnection) {
  CONFORMANCE_PROLOGUE();
  peerEnds(P(), PeerEnd::CloseConnection);
}

TEST_P(Conformance, PeerAbortsConnection) {
  CONFORMANCE_PROLOGUE();
  peerEnds(P(), PeerEnd::AbortConnection);
}

TEST_P(Conformance, PeerExits) {
  CONFORMANCE_PROLOGUE();
  peerEnds(P(), PeerEnd::ExitProcess);
}

// Rank 1 SIGKILLs itself in the middle of a 64 MiB exchange: rank 0 must get chorusRemoteError
// within a few seconds.
TEST_P(Conformance, PeerKilledMidTransfer) {
  CONFORMANCE_PROLOGUE();
  const TransportParam& p = P();
  constexpr size_t kBytes = 64u << 20;
  SharedBoard<FailureBoard> board;
  auto exits = runRanksTidy(
      2,
      [&](int rank, const chorusUniqueId& id) {
        RankTransport rt(p, rank, 2, id);
        int peer = 1 - rank;
        auto conns = rt.connect({peer});
        Connection& c = *conns[0];
        rt.barrier();
        Buffer out(kBytes), in(kBytes);
        fillPattern(out.data(), kBytes, seedOf(rank, peer, 0));
        auto post = [&] {
          c.postSend(out.data(), kBytes);
          RecvSink sink;
          sink.dst = in.data();
          sink.bytes = kBytes;
          c.postRecv(sink);
        };
        if (rank == 0) {
          surviveUntilError(c, *board, rank, post);  // then a receive that never completes
          return ::testing::Test::HasFailure() ? 1 : 0;
        }
        post();
        // Strike once rank 0's message has started to land here (its first word is not the
        // buffer's 0x5A fill), while 64 MiB are still on their way both ways.
        auto t0 = Clock::now();
        while (in.data()[0] == 0x5A && secondsSince(t0) < 2) c.progress();
        fprintf(stderr, "rank 1: killing itself %.3f s into the exchange (incoming data %s, sends done %llu, receives done %llu)\n",
                secondsSince(t0), in.data()[0] == 0x5A ? "not arrived yet" : "arriving",
                static_cast<unsigned long long>(c.sendsCompleted()), static_cast<unsigned long long>(c.recvsCompleted()));
        fflush(stderr);
        board->eventNs = monotonicNs();
        raise(SIGKILL);
        return 1;  // not reached
      });
  ASSERT_EQ(exits.size(), 2u);
  EXPECT_TRUE(exits[0].exited && exits[0].code == 0) << "survivor: " << exits[0].describe();
  EXPECT_TRUE(!exits[1].exited && exits[1].signal == SIGKILL && !exits[1].timedOut) << "victim: " << exits[1].describe();
  EXPECT_EQ(board->code.load(), chorusRemoteError);
}

// Messages whose sizes do not match on the two sides: at least one side reports
// chorusInternalError or chorusRemoteError, and neither hangs (a side that is still waiting when
// the other fails must learn it: the failed side closes its connection at once).
struct MismatchBoard {
  std::atomic<int> outcome[2];   // 0: its operations completed; > 0: the error code; -1: test deadline
};

struct MismatchResult {
  std::vector<RankExit> exits;
  int sender = -2, receiver = -2;
};

// No gtest assertion in here: a rank forked after a failure of this test would inherit it.
MismatchResult runMismatch(const TransportParam& p, const std::vector<size_t>& sends, const std::vector<size_t>& recvs) {
  SharedBoard<MismatchBoard> board;
  board->outcome[0] = board->outcome[1] = -2;
  MismatchResult res;
  res.exits = runRanksTidy(
      2,
      [&](int rank, const chorusUniqueId& id) {
        RankTransport rt(p, rank, 2, id);
        auto conns = rt.connect({1 - rank});
        Connection& c = *conns[0];
        const std::vector<size_t>& sizes = rank == 0 ? sends : recvs;
        std::vector<Buffer> bufs;
        for (size_t n : sizes) bufs.emplace_back(n);
        std::string what;
        // Posting may already find the mismatch (a post may make progress): it is inside too.
        chorusResult_t code = codeOf(
            [&] {
              for (size_t i = 0; i < sizes.size(); ++i) {
                if (rank == 0) {
                  fillPattern(bufs[i].data(), sizes[i], seedOf(0, 1, i));
                  c.postSend(bufs[i].data(), sizes[i]);
                } else {
                  RecvSink sink;
                  sink.dst = bufs[i].data();
                  sink.bytes = sizes[i];
                  c.postRecv(sink);
                }
              }
              drive({&c}, [&] { return (rank == 0 ? c.sendsCompleted() : c.recvsCompleted()) == sizes.size(); }, 10);
            },
            &what);
        bool deadline = code == chorusTimeout && what.rfind("test deadline", 0) == 0;
        board->outcome[rank] = deadline ? -1 : static_cast<int>(code);
        if (code != chorusSuccess) {
          fprintf(stderr, "rank %d (%s): %s\n", rank, rank == 0 ? "sender" : "receiver", what.c_str());
          conns.clear();  // a failed connection is closed at once, so that the peer learns
        }
        rt.barrier();  // both outcomes known before anyone tears down
        return 0;
      });
  res.sender = board->outcome[0];
  res.receiver = board->outcome[1];
  return res;
}

void expectMismatchReported(const MismatchResult& res) {
  EXPECT_TRUE(allRanksSucceeded(res.exits));
  int s = res.sender, r = res.receiver;
  // A size mismatch is misuse (chorusInvalidUsage); a diverged stream found later, or the peer's
  // abort, may show as chorusInternalError or chorusRemoteError.
  auto isError = [](int o) { return o == chorusInvalidUsage || o == chorusInternalError || o == chorusRemoteError; };
  EXPECT_NE(s, -1) << "the sender hung (no completion, no error)";
  EXPECT_NE(r, -1) << "the receiver hung (no completion, no error)";
  EXPECT_TRUE(isError(s) || isError(r)) << "no side reported the mismatch: sender outcome " << s << ", receiver outcome " << r
                                        << " (0: completed, -1: still waiting at the test deadline)";
  EXPECT_TRUE((s == 0 || s == -1 || isError(s)) && (r == 0 || r == -1 || isError(r)))
      << "unexpected error codes: sender " << s << ", receiver " << r;
}

// Send n bytes, receive n + 64 or n - 64, for a small message and one of exactly three fragments
// of the network transports (3 MiB: a receive 64 bytes longer expects a fourth fragment).
TEST_P(Conformance, SizeMismatchIsAnError) {
  CONFORMANCE_PROLOGUE();
  std::vector<std::pair<std::string, MismatchResult>> results;
  for (size_t n : {size_t{1000}, size_t{3u << 20}})
    for (long delta : {64L, -64L}) {
      // UCX 1.13 over tcp sometimes aborts the process (tcp_ep.c:939, assertion
      // `ep->flags & UCT_TCP_EP_FLAG_PUT_TX_WAITING_ACK') when a receiver fails and closes while a
      // multi-fragment rendezvous is in flight: a UCX bug, seen in 2 of 9 loaded runs. The
      // one-fragment cases still check UCX's mismatch reporting.
      if (n > (1u << 20) && std::string(P().label).find("ucx") != std::string::npos) continue;
      size_t m = static_cast<size_t>(static_cast<long>(n) + delta);
      results.emplace_back(format("send %zu bytes, receive %zu", n, m), runMismatch(P(), {n}, {m}));
    }
  for (const auto& [what, res] : results) {
    SCOPED_TRACE(what);
    expectMismatchReported(res);
  }
}

// A zero-byte message is a message: sends of 0 then 64 bytes met by receives of 64 then 0 bytes
// are a mismatch like any other (not two clean completions).
TEST_P(Conformance, SizeMismatchWithZeroByteMessage) {
  CONFORMANCE_PROLOGUE();
  expectMismatchReported(runMismatch(P(), {0, 64}, {64, 0}));
}

std::string paramName(const ::testing::TestParamInfo<TransportParam>& info) { return info.param.label; }

INSTANTIATE_TEST_SUITE_P(Transports, Conformance, ::testing::ValuesIn(transportParams()), paramName);

}  // namespace
}  // namespace chorus::test

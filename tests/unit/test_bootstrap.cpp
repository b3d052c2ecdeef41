// Bootstrap: root rendezvous, card all-gather, Oob messages, allgather, barrier, and the ways
// they fail (wrong secret, missing rank, inconsistent nranks, dead peer, abort). Ranks run as
// threads of this process, and in one test as forked processes. Loopback only.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/socket.h"
#include "bootstrap/unique_id.h"
#include "bootstrap/wire.h"
#include "core/error.h"
#include "fixtures/ranks.h"

namespace chorus {
namespace {

Config testConfig(double timeoutSec = 10) {
  Config c;
  c.socketIfname = "lo";
  c.timeoutSec = timeoutSec;
  return c;
}

PeerCard makeCard(int rank) {
  PeerCard c;
  c.pid = 1000 + rank;
  c.hostHash = 0xabcdef00ull + static_cast<uint64_t>(rank % 3);
  snprintf(c.hostname, sizeof(c.hostname), "host-%d", rank);
  c.tcpAddr = parseAddress("127.0.0.1", 20000 + rank);
  return c;
}

// What one rank's thread ended with.
struct Outcome {
  bool ok = false;
  chorusResult_t code = chorusSuccess;
  std::string message;
};

// Runs body(rank) on n threads; records each rank's exception, if any.
std::vector<Outcome> runThreads(int n, const std::function<void(int)>& body) {
  std::vector<Outcome> out(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      Outcome& o = out[static_cast<size_t>(r)];
      try {
        body(r);
        o.ok = true;
      } catch (const Error& e) {
        o.code = e.code();
        o.message = e.what();
      } catch (const std::exception& e) {
        o.code = chorusInternalError;
        o.message = std::string("std::exception: ") + e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

::testing::AssertionResult allOk(const std::vector<Outcome>& outs) {
  for (size_t r = 0; r < outs.size(); ++r)
    if (!outs[r].ok) return ::testing::AssertionFailure() << "rank " << r << " failed: " << outs[r].message;
  return ::testing::AssertionSuccess();
}

// Joins p ranks on threads; returns their bootstraps (all joined) for further steps.
std::vector<std::unique_ptr<Bootstrap>> joinAll(int p, const Config& cfg) {
  UniqueIdData id = createUniqueIdAndRoot(cfg);
  std::vector<std::unique_ptr<Bootstrap>> bs(static_cast<size_t>(p));
  auto outs = runThreads(p, [&](int r) {
    bs[static_cast<size_t>(r)] = Bootstrap::join(id, r, p, makeCard(r), cfg, Deadline::after(cfg.timeoutSec));
  });
  EXPECT_TRUE(allOk(outs));
  return bs;
}

bool sameAddr(const WireAddr& a, const WireAddr& b) {
  return a.family == b.family && a.port == b.port && memcmp(a.addr, b.addr, sizeof(a.addr)) == 0;
}

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

TEST(UniqueId, RoundTripsAndRejectsGarbage) {
  UniqueIdData d;
  d.root = parseAddress("127.0.0.1", 4242);
  fillRandom(d.secret, sizeof(d.secret));
  d.commId = 77;
  UniqueIdData back = decodeUniqueId(encodeUniqueId(d));
  EXPECT_TRUE(sameAddr(back.root, d.root));
  EXPECT_EQ(back.secret[0], d.secret[0]);
  EXPECT_EQ(back.secret[1], d.secret[1]);
  EXPECT_EQ(back.commId, 77u);
  chorusUniqueId junk;
  memset(&junk, 0x5a, sizeof(junk));
  try {
    decodeUniqueId(junk);
    FAIL() << "garbage id accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidArgument);
  }
}

TEST(Socket, AddressHelpers) {
  WireAddr lo = chooseLocalAddress("lo");
  EXPECT_EQ(addrToString(lo), "127.0.0.1:0");
  EXPECT_EQ(addrToString(parseAddress("::1", 80)), "[::1]:80");
  EXPECT_EQ(addrToString(parseAddress("[::1]", 81)), "[::1]:81");
  EXPECT_THROW(chooseLocalAddress("no-such-interface-xyz"), Error);
  EXPECT_THROW(parseAddress("127.0.0.1", 70000), Error);
}

TEST(Socket, ConnectRefusedFailsFastWhenAsked) {
  WireAddr bound;
  { Fd l = listenOn(chooseLocalAddress("lo"), &bound); }  // closed: the port now refuses
  auto t0 = Clock::now();
  try {
    connectTo(bound, Deadline::after(5), /*retryRefused=*/false);
    FAIL() << "connected to a closed port";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusRemoteError) << e.what();
  }
  try {
    connectTo(bound, Deadline::after(0.2));
    FAIL() << "connected to a closed port";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusTimeout) << e.what();
  }
  EXPECT_LT(secondsSince(t0), 2.0);
}

TEST(Socket, ConnectRetriesEndWhenTheAbortFlagIsSet) {
  WireAddr bound;
  { Fd l = listenOn(chooseLocalAddress("lo"), &bound); }  // refuses: retried until aborted
  std::atomic<bool> abortFlag{false};
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    abortFlag.store(true);
  });
  auto t0 = Clock::now();
  try {
    connectTo(bound, Deadline::after(30), /*retryRefused=*/true, &abortFlag);
    ADD_FAILURE() << "connected to a closed port";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidUsage) << e.what();
  }
  aborter.join();
  EXPECT_LT(secondsSince(t0), 1.5);
}

TEST(Socket, PeerAddressOfNamesTheRemoteEnd) {
  WireAddr bound;
  Fd l = listenOn(chooseLocalAddress("lo"), &bound);
  Fd c = connectTo(bound, Deadline::after(5));
  Fd a = acceptOne(l.get(), Deadline::after(5));
  EXPECT_EQ(peerAddressOf(c.get()), addrToString(bound));
  EXPECT_EQ(peerAddressOf(a.get()).rfind("127.0.0.1:", 0), 0u) << peerAddressOf(a.get());
  EXPECT_EQ(peerAddressOf(l.get()), "?");  // a listener has no remote end
}

TEST(Deadline, MillisLeftRoundsUpAndCaps) {
  EXPECT_EQ(Deadline().millisLeft(), 1000);
  EXPECT_EQ(Deadline().millisLeft(100), 100);
  EXPECT_EQ(Deadline(Clock::now() - std::chrono::seconds(1)).millisLeft(), 0);
  // Less than a millisecond left still sleeps (rounded up), never a busy poll(0).
  EXPECT_EQ(Deadline(Clock::now() + std::chrono::microseconds(300)).millisLeft(), 1);
  EXPECT_EQ(Deadline::after(60).millisLeft(250), 250);
}

class BootstrapJoin : public ::testing::TestWithParam<int> {};

TEST_P(BootstrapJoin, EveryRankKnowsEveryCard) {
  const int p = GetParam();
  auto bs = joinAll(p, testConfig());
  ASSERT_EQ(bs.size(), static_cast<size_t>(p));
  for (int r = 0; r < p; ++r) {
    ASSERT_TRUE(bs[static_cast<size_t>(r)]);
    const auto& cards = bs[static_cast<size_t>(r)]->cards();
    ASSERT_EQ(cards.size(), static_cast<size_t>(p));
    for (int i = 0; i < p; ++i) {
      const PeerCard& c = cards[static_cast<size_t>(i)];
      PeerCard want = makeCard(i);
      EXPECT_EQ(c.rank, i);
      EXPECT_EQ(c.pid, want.pid);
      EXPECT_EQ(c.hostHash, want.hostHash);
      EXPECT_STREQ(c.hostname, want.hostname);
      EXPECT_TRUE(sameAddr(c.tcpAddr, want.tcpAddr));
      EXPECT_EQ(c.bootstrapAddr.family, AF_INET);
      EXPECT_NE(c.bootstrapAddr.port, 0);
      // Every rank sees the same listener address for rank i.
      EXPECT_TRUE(sameAddr(c.bootstrapAddr, bs[0]->cards()[static_cast<size_t>(i)].bootstrapAddr));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, BootstrapJoin, ::testing::Values(1, 2, 3, 5, 8, 13));

uint8_t pattern(int rank, size_t i, size_t bytes) { return static_cast<uint8_t>(rank * 131 + i * 7 + bytes); }

class BootstrapAllgather : public ::testing::TestWithParam<int> {};

TEST_P(BootstrapAllgather, RecordsOfManySizes) {
  const int p = GetParam();
  auto bs = joinAll(p, testConfig());
  // 300000 bytes x p is larger than a loopback socket buffer: exercises send/recv progress.
  const std::vector<size_t> sizes = {1, 13, 4096, 300000};
  auto outs = runThreads(p, [&](int r) {
    for (size_t bytes : sizes) {
      std::vector<uint8_t> buf(bytes * static_cast<size_t>(p), 0xee);
      for (size_t i = 0; i < bytes; ++i) buf[static_cast<size_t>(r) * bytes + i] = pattern(r, i, bytes);
      bs[static_cast<size_t>(r)]->allgather(buf.data(), bytes, Deadline::after(10));
      for (int q = 0; q < p; ++q)
        for (size_t i = 0; i < bytes; ++i)
          if (buf[static_cast<size_t>(q) * bytes + i] != pattern(q, i, bytes))
            CHORUS_THROW(chorusInternalError, "rank %d: record of rank %d byte %zu wrong (size %zu)", r, q, i, bytes);
    }
  });
  EXPECT_TRUE(allOk(outs));
}

INSTANTIATE_TEST_SUITE_P(Sizes, BootstrapAllgather, ::testing::Values(1, 2, 3, 4, 7, 9));

TEST(Bootstrap, BarrierHoldsEveryoneBack) {
  const int p = 6;
  const int rounds = 20;
  auto bs = joinAll(p, testConfig());
  std::atomic<int> arrived{0};
  auto outs = runThreads(p, [&](int r) {
    for (int i = 0; i < rounds; ++i) {
      arrived.fetch_add(1);
      bs[static_cast<size_t>(r)]->barrier(Deadline::after(10));
      // Nobody leaves barrier i before all p ranks have entered it.
      int seen = arrived.load();
      if (seen < (i + 1) * p)
        CHORUS_THROW(chorusInternalError, "rank %d left barrier %d having seen only %d arrivals", r, i, seen);
    }
  });
  EXPECT_TRUE(allOk(outs));
}

TEST(Bootstrap, OobInterleavedAndOutOfOrderTags) {
  const int p = 3;
  auto bs = joinAll(p, testConfig());
  constexpr uint32_t A = kTagUser, B = kTagUser + 1, C = kTagUser + 2;
  auto outs = runThreads(p, [&](int r) {
    Bootstrap& me = *bs[static_cast<size_t>(r)];
    Deadline dl = Deadline::after(10);
    if (r == 0) {
      // To rank 1: A0 B0 A1 C0 B1 A2 (values encode tag and sequence).
      const std::vector<std::pair<uint32_t, int>> order = {{A, 0}, {B, 0}, {A, 1}, {C, 0}, {B, 1}, {A, 2}};
      for (auto [tag, seq] : order) {
        int v = static_cast<int>(tag) * 100 + seq;
        me.send(1, tag, &v, sizeof(v), dl);
      }
    } else if (r == 1) {
      // Take C first, then the B's, then the A's: each tag keeps its own order.
      const std::vector<std::pair<uint32_t, int>> order = {{C, 0}, {B, 0}, {B, 1}, {A, 0}, {A, 1}, {A, 2}};
      for (auto [tag, seq] : order) {
        int v = -1;
        me.recv(0, tag, &v, sizeof(v), dl);
        if (v != static_cast<int>(tag) * 100 + seq)
          CHORUS_THROW(chorusInternalError, "tag %u seq %d: got %d", tag, seq, v);
      }
    }
    // Everyone to everyone (self included), then receive in reverse order: small sends do
    // not wait for the receiver, so this cannot deadlock.
    for (int q = 0; q < p; ++q) {
      int v = r * 10 + q;
      me.send(q, kTagUser + 7, &v, sizeof(v), dl);
    }
    for (int q = p - 1; q >= 0; --q) {
      int v = -1;
      me.recv(q, kTagUser + 7, &v, sizeof(v), dl);
      if (v != q * 10 + r) CHORUS_THROW(chorusInternalError, "from %d got %d", q, v);
    }
    // A size mismatch is reported, not silently truncated.
    if (r == 2) {
      int64_t big = 5;
      me.send(0, kTagUser + 9, &big, sizeof(big), dl);
    } else if (r == 0) {
      int small = 0;
      try {
        me.recv(2, kTagUser + 9, &small, sizeof(small), dl);
        CHORUS_THROW(chorusInternalError, "size mismatch not detected");
      } catch (const Error& e) {
        if (e.code() != chorusInternalError || !strstr(e.what(), "expected 4")) throw;
      }
    }
  });
  EXPECT_TRUE(allOk(outs));
}

TEST(Bootstrap, LargeMessagesBothWaysDoNotDeadlock) {
  auto bs = joinAll(2, testConfig());
  const size_t bytes = 8 << 20;
  auto outs = runThreads(2, [&](int r) {
    std::vector<char> out(bytes, static_cast<char>('a' + r)), in(bytes, 0);
    Deadline dl = Deadline::after(10);
    bs[static_cast<size_t>(r)]->send(1 - r, kTagUser, out.data(), bytes, dl);  // both send first
    bs[static_cast<size_t>(r)]->recv(1 - r, kTagUser, in.data(), bytes, dl);
    if (in[0] != 'a' + (1 - r) || in[bytes - 1] != 'a' + (1 - r)) CHORUS_THROW(chorusInternalError, "bad payload");
  });
  EXPECT_TRUE(allOk(outs));
}

TEST(Bootstrap, RecvTimeoutNamesPeerAndTag) {
  auto bs = joinAll(2, testConfig());
  auto t0 = Clock::now();
  int v;
  try {
    bs[0]->recv(1, kTagUser + 5, &v, sizeof(v), Deadline::after(0.3));
    FAIL() << "recv returned without a message";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusTimeout);
    EXPECT_NE(std::string(e.what()).find("from rank 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("1029"), std::string::npos) << e.what();
  }
  EXPECT_LT(secondsSince(t0), 2.0);
}

TEST(Bootstrap, AbortWakesABlockedRecv) {
  auto bs = joinAll(2, testConfig());
  Outcome o;
  auto t0 = Clock::now();
  std::thread waiter([&] {
    int v;
    try {
      bs[0]->recv(1, kTagUser, &v, sizeof(v), Deadline::after(30));
    } catch (const Error& e) {
      o.code = e.code();
      o.message = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  bs[0]->abort();
  waiter.join();
  EXPECT_LT(secondsSince(t0), 2.0);
  EXPECT_NE(o.code, chorusSuccess);
  EXPECT_NE(o.message.find("aborted"), std::string::npos) << o.message;
  // The peer of an aborted rank sees it go away.
  int v;
  try {
    bs[1]->recv(0, kTagUser, &v, sizeof(v), Deadline::after(5));
    FAIL() << "recv from an aborted rank succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusRemoteError) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 0"), std::string::npos) << e.what();
  }
}

TEST(Bootstrap, WrongSecretIsRejectedWhileRealRanksSucceed) {
  const int p = 3;
  Config cfg = testConfig();
  UniqueIdData id = createUniqueIdAndRoot(cfg);
  UniqueIdData bad = id;
  bad.secret[0] ^= 1;
  std::vector<std::unique_ptr<Bootstrap>> bs(p);
  // p real ranks plus an impostor that knows the root address but not the secret, and a raw
  // connection that sends garbage.
  auto outs = runThreads(p + 2, [&](int t) {
    if (t == p) {
      Bootstrap::join(bad, 0, p, makeCard(0), cfg, Deadline::after(5));
      return;
    }
    if (t == p + 1) {
      Fd raw = connectTo(id.root, Deadline::after(5));
      char junk[64];
      memset(junk, 0x11, sizeof(junk));
      sendAll(raw.get(), junk, sizeof(junk), Deadline::after(5));
      char c;
      recvAll(raw.get(), &c, 1, Deadline::after(5));  // expect the root to close: RemoteError
      return;
    }
    // Let the impostors reach the root first: it stops listening once the real ranks are in.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    bs[static_cast<size_t>(t)] = Bootstrap::join(id, t, p, makeCard(t), cfg, Deadline::after(10));
  });
  for (int r = 0; r < p; ++r) EXPECT_TRUE(outs[static_cast<size_t>(r)].ok) << outs[static_cast<size_t>(r)].message;
  EXPECT_EQ(outs[p].code, chorusRemoteError) << outs[p].message;
  EXPECT_EQ(outs[p + 1].code, chorusRemoteError) << outs[p + 1].message;

  // Same at a rank's own listener: a connection with a wrong secret is closed, the real
  // traffic still flows.
  auto outs2 = runThreads(p, [&](int r) {
    Bootstrap& me = *bs[static_cast<size_t>(r)];
    Deadline dl = Deadline::after(10);
    if (r == 0) {
      Fd raw = connectTo(me.cards()[1].bootstrapAddr, dl);
      wire::Auth auth;
      auth.secret[0] = bad.secret[0];
      auth.secret[1] = bad.secret[1];
      auth.commId = id.commId;
      auth.fromRank = 0;
      auth.toRank = 1;
      sendAll(raw.get(), &auth, sizeof(auth), dl);
      int v = 42;
      me.send(1, kTagUser, &v, sizeof(v), dl);
      char c;
      try {
        recvAll(raw.get(), &c, 1, Deadline::after(5));
        CHORUS_THROW(chorusInternalError, "impostor connection got data");
      } catch (const Error& e) {
        if (e.code() != chorusRemoteError) throw;  // closed by rank 1: what we want
      }
    } else if (r == 1) {
      int v = 0;
      me.recv(0, kTagUser, &v, sizeof(v), dl);
      if (v != 42) CHORUS_THROW(chorusInternalError, "got %d", v);
    }
    me.barrier(dl);
  });
  EXPECT_TRUE(allOk(outs2));
}

TEST(Bootstrap, MissingRankIsNamedAtTheDeadline) {
  const int p = 4;
  const int missing = 2;
  Config cfg = testConfig(1.5);
  UniqueIdData id = createUniqueIdAndRoot(cfg);
  auto t0 = Clock::now();
  auto outs = runThreads(p, [&](int r) {
    if (r == missing) return;
    Bootstrap::join(id, r, p, makeCard(r), cfg, Deadline::after(cfg.timeoutSec + 3));
  });
  double took = secondsSince(t0);
  EXPECT_LT(took, 3.5);
  for (int r = 0; r < p; ++r) {
    if (r == missing) continue;
    const Outcome& o = outs[static_cast<size_t>(r)];
    EXPECT_FALSE(o.ok);
    EXPECT_EQ(o.code, chorusTimeout) << o.message;
    EXPECT_NE(o.message.find("rank(s) 2 never checked in"), std::string::npos) << o.message;
  }
}

TEST(Bootstrap, MismatchedNranksIsAnErrorOnEveryRank) {
  Config cfg = testConfig(3);
  UniqueIdData id = createUniqueIdAndRoot(cfg);
  auto t0 = Clock::now();
  auto outs = runThreads(3, [&](int r) {
    int nranks = r == 2 ? 4 : 3;
    Bootstrap::join(id, r, nranks, makeCard(r), cfg, Deadline::after(10));
  });
  EXPECT_LT(secondsSince(t0), 2.0);  // reported at once, not at the deadline
  for (const Outcome& o : outs) {
    EXPECT_FALSE(o.ok);
    EXPECT_EQ(o.code, chorusInvalidUsage) << o.message;
    EXPECT_NE(o.message.find("nranks"), std::string::npos) << o.message;
  }
}

TEST(Bootstrap, DuplicateAndOutOfRangeRanksAreErrors) {
  Config cfg = testConfig(3);
  {
    UniqueIdData id = createUniqueIdAndRoot(cfg);
    auto outs = runThreads(2, [&](int) { Bootstrap::join(id, 0, 2, makeCard(0), cfg, Deadline::after(10)); });
    for (const Outcome& o : outs) {
      EXPECT_EQ(o.code, chorusInvalidUsage) << o.message;
      EXPECT_NE(o.message.find("twice"), std::string::npos) << o.message;
    }
  }
  {
    // A hand-made check-in claiming rank 5 of 2 (join itself refuses such arguments).
    UniqueIdData id = createUniqueIdAndRoot(cfg);
    auto outs = runThreads(2, [&](int t) {
      if (t == 0) {
        Bootstrap::join(id, 0, 2, makeCard(0), cfg, Deadline::after(10));
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      Fd raw = connectTo(id.root, Deadline::after(5));
      wire::Hello h;
      h.secret[0] = id.secret[0];
      h.secret[1] = id.secret[1];
      h.commId = id.commId;
      h.rank = 5;
      h.nranks = 2;
      h.listenAddr = parseAddress("127.0.0.1", 1);
      sendAll(raw.get(), &h, sizeof(h), Deadline::after(5));
      wire::Reply reply;
      recvAll(raw.get(), &reply, sizeof(reply), Deadline::after(5));
      if (reply.code != chorusInvalidUsage) CHORUS_THROW(chorusInternalError, "reply code %d", reply.code);
    });
    EXPECT_EQ(outs[0].code, chorusInvalidUsage) << outs[0].message;
    EXPECT_NE(outs[0].message.find("outside [0, 2)"), std::string::npos) << outs[0].message;
    EXPECT_TRUE(outs[1].ok) << outs[1].message;
  }
}

TEST(BootstrapProcesses, ForkedRanksJoinGatherAndBarrier) {
  const int p = 5;
  Config cfg = testConfig(20);
  // The rendezvous starts in rank 0's process, after the forks (never fork a process whose
  // root thread is running: the children would inherit its locks).
  auto exits = test::runRanksWithId(
      p,
      [&](int r, const chorusUniqueId& publicId) {
        UniqueIdData id = decodeUniqueId(publicId);
        PeerCard card = makeCard(r);
        card.pid = static_cast<int32_t>(getpid());
        auto bs = Bootstrap::join(id, r, p, card, cfg, Deadline::after(15));
        const auto& cards = bs->cards();
        for (int q = 0; q < p; ++q)
          if (cards[static_cast<size_t>(q)].rank != q || strcmp(cards[static_cast<size_t>(q)].hostname, makeCard(q).hostname))
            return 2;
        if (cards[static_cast<size_t>(r)].pid != getpid()) return 3;
        std::vector<int64_t> pids(p, 0);
        pids[static_cast<size_t>(r)] = getpid();
        bs->allgather(pids.data(), sizeof(int64_t), Deadline::after(15));
        for (int q = 0; q < p; ++q)
          if (pids[static_cast<size_t>(q)] != cards[static_cast<size_t>(q)].pid) return 4;
        bs->barrier(Deadline::after(15));
        return 0;
      },
      30);
  EXPECT_TRUE(test::allRanksSucceeded(exits));
}

TEST(BootstrapProcesses, DeadPeerBecomesAnErrorNamingIt) {
  const int p = 4;
  const int dead = 2;
  Config cfg = testConfig(20);
  auto exits = test::runRanksWithId(
      p,
      [&](int r, const chorusUniqueId& publicId) {
        UniqueIdData id = decodeUniqueId(publicId);
        auto bs = Bootstrap::join(id, r, p, makeCard(r), cfg, Deadline::after(15));
        if (r == dead) return 0;  // leaves: its process exits and its sockets close
        std::vector<int32_t> buf(p, r);
        try {
          bs->allgather(buf.data(), sizeof(int32_t), Deadline::after(5));
        } catch (const Error& e) {
          if (e.code() != chorusRemoteError && e.code() != chorusTimeout) return 5;
          // Ranks 0 and 1 talk to rank 2 directly in the first two rounds; rank 3 learns of
          // the failure second-hand (rank 1 going away).
          if (r != 3 && !strstr(e.what(), "rank 2")) {
            fprintf(stderr, "rank %d: error does not name rank 2: %s\n", r, e.what());
            return 6;
          }
          return 0;
        }
        return 7;  // the all-gather cannot succeed without rank 2
      },
      30);
  EXPECT_TRUE(test::allRanksSucceeded(exits));
  for (int r = 0; r < p; ++r) EXPECT_LT(exits[static_cast<size_t>(r)].seconds, 8.0) << "rank " << r;
}

}  // namespace
}  // namespace chorus

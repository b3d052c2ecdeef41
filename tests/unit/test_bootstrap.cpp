// Bootstrap: root rendezvous, card all-gather, Oob messages, allgather, barrier, and the ways
// they fail (wrong secret, missing rank, inconsistent nranks, dead peer, abort). Ranks run as
// threads of this process, and in one test as forked processes. Loopback only.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/auth_gate.h"
#include "bootstrap/bootstrap.h"
#include "bootstrap/launcher_env.h"
#include "bootstrap/socket.h"
#include "bootstrap/unique_id.h"
#include "bootstrap/wire.h"
#include "base/error.h"
#include "fixtures/ranks.h"
#include "topology/topo_card.h"

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

// The counters against the message pattern of bootstrap.cpp, exactly: the check-in (1 message
// each way) and L = ceil(log2 p) Bruck rounds, whose p - 1 cards each way are the only part
// that grows with p; then an allgather of 8 bytes and a barrier add L messages each, over the
// same connections.
class BootstrapCounts : public ::testing::TestWithParam<int> {};

TEST_P(BootstrapCounts, JoinAllgatherAndBarrierCostLogRounds) {
  const int p = GetParam();
  const uint64_t L = static_cast<uint64_t>(wire::log2Ceil(p));
  const uint64_t opened = L * (sizeof(wire::Auth) + sizeof(wire::FrameHeader));  // first frame of a connection
  const uint64_t cards = static_cast<uint64_t>(p - 1) * sizeof(PeerCard);
  auto bs = joinAll(p, testConfig(30));
  for (int r = 0; r < p; ++r) {
    BootstrapTraffic t = bs[static_cast<size_t>(r)]->traffic();
    EXPECT_EQ(t.msgsSent, 1 + L) << "rank " << r;
    EXPECT_EQ(t.msgsRecv, 1 + L) << "rank " << r;
    EXPECT_LE(t.msgsSent + t.msgsRecv, std::max<uint64_t>(4 * L, 2)) << "rank " << r;
    EXPECT_EQ(t.bytesSent, sizeof(wire::Hello) + opened + cards) << "rank " << r;
    EXPECT_EQ(t.bytesRecv, sizeof(wire::Reply) + L * sizeof(wire::PeerAddr) + opened + cards) << "rank " << r;
    EXPECT_EQ(t.connsOpened, 1 + L) << "rank " << r;
    EXPECT_EQ(t.connsAccepted, L) << "rank " << r;
  }
  std::vector<BootstrapTraffic> before(static_cast<size_t>(p));
  for (int r = 0; r < p; ++r) before[static_cast<size_t>(r)] = bs[static_cast<size_t>(r)]->traffic();
  // Then a barrier (L messages of 8 bytes each way), also over the join's connections.
  auto outs = runThreads(p, [&](int r) {
    std::vector<uint64_t> v(static_cast<size_t>(p));
    bs[static_cast<size_t>(r)]->allgather(v.data(), sizeof(uint64_t), Deadline::after(20));
    bs[static_cast<size_t>(r)]->barrier(Deadline::after(20));
  });
  ASSERT_TRUE(allOk(outs));
  for (int r = 0; r < p; ++r) {
    BootstrapTraffic d = bs[static_cast<size_t>(r)]->traffic() - before[static_cast<size_t>(r)];
    EXPECT_EQ(d.msgsSent, 2 * L) << "rank " << r;
    EXPECT_EQ(d.msgsRecv, 2 * L) << "rank " << r;
    EXPECT_EQ(d.bytesSent, 2 * L * sizeof(wire::FrameHeader) + static_cast<uint64_t>(p - 1) * sizeof(uint64_t) + L * 8)
        << "rank " << r;
    EXPECT_EQ(d.connsOpened + d.connsAccepted, 0u) << "rank " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, BootstrapCounts, ::testing::Values(1, 2, 3, 7, 64));

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

// Waits until the other end closes fd (true) or `seconds` pass (false).
bool closedWithin(int fd, double seconds) {
  auto t0 = Clock::now();
  while (secondsSince(t0) < seconds) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 20) == 1) {
      char buf[256];
      ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
    }
  }
  return false;
}

TEST(AuthGate, LimitsComeFromTheEnvironmentAndAreChecked) {
  {
    AuthLimits l = AuthLimits::fromEnv(300);
    EXPECT_EQ(l.timeoutSec, 2.0);
    EXPECT_EQ(l.maxPending, 32);
    EXPECT_EQ(AuthLimits::fromEnv(0.5).timeoutSec, 0.5);  // never longer than CHORUS_TIMEOUT
  }
  test::ScopedEnv t("CHORUS_AUTH_TIMEOUT", "0.25");
  test::ScopedEnv m("CHORUS_AUTH_MAX_PENDING", "3");
  AuthLimits l = AuthLimits::fromEnv(300);
  EXPECT_EQ(l.timeoutSec, 0.25);
  EXPECT_EQ(l.maxPending, 3);
  for (const char* bad : {"0", "-1", "x"}) {
    test::ScopedEnv b("CHORUS_AUTH_MAX_PENDING", bad);
    EXPECT_THROW(AuthLimits::fromEnv(300), Error) << bad;
  }
  test::ScopedEnv b("CHORUS_AUTH_TIMEOUT", "0");
  EXPECT_THROW(AuthLimits::fromEnv(300), Error);
}

TEST(AuthGate, RootClosesIdleStrangersAtTheirDeadlineAndHoldsFewAtOnce) {
  test::ScopedEnv t("CHORUS_AUTH_TIMEOUT", "0.5");
  test::ScopedEnv m("CHORUS_AUTH_MAX_PENDING", "8");
  Config cfg = testConfig(20);
  UniqueIdData id = createUniqueIdAndRoot(cfg);
  // One idle stranger: closed about CHORUS_AUTH_TIMEOUT after it connected.
  auto t0 = Clock::now();
  Fd lone = connectTo(id.root, Deadline::after(5));
  EXPECT_TRUE(closedWithin(lone.get(), 3.0));
  EXPECT_GT(secondsSince(t0), 0.4);
  EXPECT_LT(secondsSince(t0), 2.0);
  // A burst of 40: at most 8 are held, the others are closed at once.
  std::vector<Fd> burst;
  for (int i = 0; i < 40; ++i) burst.push_back(connectTo(id.root, Deadline::after(5)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int open = 0;
  for (Fd& fd : burst) open += closedWithin(fd.get(), 0.01) ? 0 : 1;
  EXPECT_LE(open, 8);
  EXPECT_GE(open, 1);
  // A check-in that comes in pieces still gets through while strangers wait.
  auto outs = runThreads(2, [&](int r) {
    Bootstrap::join(id, r, 2, makeCard(r), cfg, Deadline::after(10));
  });
  EXPECT_TRUE(allOk(outs));
}

TEST(AuthGate, OobListenerClosesStrangersWhileARankWaits) {
  test::ScopedEnv t("CHORUS_AUTH_TIMEOUT", "0.5");
  Config cfg = testConfig(20);
  auto bs = joinAll(2, cfg);
  ASSERT_EQ(bs.size(), 2u);
  const WireAddr listener = bs[1]->cards()[1].bootstrapAddr;
  auto t0 = Clock::now();
  auto outs = runThreads(3, [&](int t) {
    Deadline dl = Deadline::after(10);
    if (t == 0) {
      // Sends only after the strangers have had their time.
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      int v = 7;
      bs[0]->send(1, kTagUser, &v, sizeof(v), dl);
    } else if (t == 1) {
      int v = 0;
      bs[1]->recv(0, kTagUser, &v, sizeof(v), dl);
      if (v != 7) CHORUS_THROW(chorusInternalError, "got %d", v);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      Fd idle = connectTo(listener, dl);
      Fd truncated = connectTo(listener, dl);
      wire::Auth a;
      sendAll(truncated.get(), &a, 20, dl);
      wire::FrameHeader huge;  // a huge length where the Auth belongs
      huge.bytes = ~0ull;
      Fd garbage = connectTo(listener, dl);
      sendAll(garbage.get(), &huge, sizeof(huge), dl);
      sendAll(garbage.get(), &huge, sizeof(huge), dl);
      sendAll(garbage.get(), &huge, sizeof(huge), dl);
      if (!closedWithin(idle.get(), 3.0) || !closedWithin(truncated.get(), 1.0) || !closedWithin(garbage.get(), 1.0))
        CHORUS_THROW(chorusInternalError, "a stranger was not closed");
      if (secondsSince(t0) > 1.5) CHORUS_THROW(chorusInternalError, "strangers closed late: %.2f s", secondsSince(t0));
    }
  });
  EXPECT_TRUE(allOk(outs));
}

TEST(Bootstrap, ARootAnswerIsCheckedBeforeItIsUsed) {
  // Well formed: rank 3 of 5 gets the addresses of ranks 2, 1 and 4 (3 - 2^k mod 5).
  wire::Reply reply;
  reply.count = 3;
  std::vector<wire::PeerAddr> addrs(3);
  for (int k = 0; k < 3; ++k) {
    addrs[static_cast<size_t>(k)].rank = wire::bruckSendPeer(3, 5, 1 << k);
    addrs[static_cast<size_t>(k)].addr = parseAddress("127.0.0.1", 100 + k);
  }
  const char* body = reinterpret_cast<const char*>(addrs.data());
  EXPECT_EQ(rootAnswerBodyBytes(reply, 5), 3 * sizeof(wire::PeerAddr));
  EXPECT_EQ(parseRootAnswer(reply, body, 3 * sizeof(wire::PeerAddr), 3, 5).size(), 3u);
  // A wrong peer, an unknown family, a short body, a count that does not fit nranks.
  auto code = [&](const wire::Reply& r, const std::vector<wire::PeerAddr>& a, size_t bytes) {
    try {
      parseRootAnswer(r, reinterpret_cast<const char*>(a.data()), bytes, 3, 5);
      return chorusSuccess;
    } catch (const Error& e) {
      return e.code();
    }
  };
  auto wrongPeer = addrs;
  wrongPeer[1].rank = 0;
  EXPECT_EQ(code(reply, wrongPeer, 3 * sizeof(wire::PeerAddr)), chorusInternalError);
  auto wrongFamily = addrs;
  wrongFamily[2].addr.family = 1;
  EXPECT_EQ(code(reply, wrongFamily, 3 * sizeof(wire::PeerAddr)), chorusInternalError);
  EXPECT_EQ(code(reply, addrs, 10), chorusInternalError);
  wire::Reply many = reply;
  many.count = 0xffffffff;
  EXPECT_THROW(rootAnswerBodyBytes(many, 5), Error);
  // An error answer: its code and text, unprintable bytes replaced; a huge length is cut.
  wire::Reply failed;
  failed.code = chorusInvalidUsage;
  failed.textLen = 0xffffffff;
  EXPECT_EQ(rootAnswerBodyBytes(failed, 5), 65536u);
  failed.textLen = 4;
  try {
    parseRootAnswer(failed, "ab\x01" "c", 4, 3, 5);
    FAIL() << "an error answer was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidUsage);
    EXPECT_NE(std::string(e.what()).find("ab?c"), std::string::npos) << e.what();
  }
}

TEST(Bootstrap, CardsAreCheckedAndMadeSafeToRead) {
  std::vector<PeerCard> cards{makeCard(0), makeCard(1)};
  for (int r = 0; r < 2; ++r) {
    cards[static_cast<size_t>(r)].rank = r;
    cards[static_cast<size_t>(r)].bootstrapAddr = parseAddress("127.0.0.1", 300 + r);
  }
  memset(cards[1].hostname, 'h', sizeof(cards[1].hostname));  // no NUL
  cards[1].tcpAddr.family = 99;
  cards[1].topo.nicCount = -4;
  cards[1].topo.nics[0].speedGbps = -1;
  checkPeerCards(cards, 0);
  EXPECT_EQ(strlen(cards[1].hostname), sizeof(cards[1].hostname) - 1);
  EXPECT_EQ(cards[1].tcpAddr.family, 0);
  EXPECT_EQ(cards[1].topo.nicCount, 0);
  EXPECT_EQ(cards[1].topo.nics[0].speedGbps, 0.0f);
  cards[0].rank = 1;
  EXPECT_THROW(checkPeerCards(cards, 0), Error);
}

TEST(UniqueId, BytesFormAndRootAddressText) {
  UniqueIdData d;
  d.root = parseAddress("127.0.0.1", 4242);
  chorusUniqueId id = encodeUniqueId(d);
  EXPECT_EQ(decodeUniqueIdBytes(id.internal, sizeof(UniqueIdData)).root.port, 4242);
  EXPECT_THROW(decodeUniqueIdBytes(id.internal, sizeof(UniqueIdData) - 1), Error);
  EXPECT_THROW(decodeUniqueIdBytes(nullptr, 0), Error);
  HostPort hp = splitHostPort("[::1]:29500", "X");
  EXPECT_EQ(hp.host, "::1");
  EXPECT_EQ(hp.port, 29500);
  for (const char* bad : {"host", ":80", "h:0", "h:65536", "h:+80", "h: 80", "h:0x50", "h:"})
    EXPECT_THROW(splitHostPort(bad, "X"), Error) << bad;
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

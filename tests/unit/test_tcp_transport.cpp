// The TCP transport over loopback: connection setup (batched, lazy, repeated, rogue hellos),
// message ordering and striping over 1 and 4 sockets, reducing receives, protocol errors, and a
// peer that dies (aborted in-process, closed, or SIGKILLed as a separate process).
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "bootstrap/socket.h"
#include "base/error.h"
#include "exec/reduce.h"
#include "fixtures/local_oob.h"
#include "fixtures/ranks.h"
#include "transports/tcp/tcp_wire.h"
#include "transports/transport.h"

namespace chorus::test {
namespace {

constexpr double kWaitSec = 30;  // any single wait in these tests; a hang becomes a failure
constexpr uint64_t kCommId = 0x1234abcd5678ef01ull;
constexpr uint64_t kSecret0 = 0x0123456789abcdefull;
constexpr uint64_t kSecret1 = 0xfedcba9876543210ull;

Config loopbackConfig(int nsocks, size_t chunk) {
  Config cfg;
  cfg.socketIfname = "lo";
  cfg.tcpNumSockets = nsocks;
  cfg.tcpChunkBytes = chunk;
  cfg.timeoutSec = kWaitSec;
  return cfg;
}

// n ranks in one process: each has its own transport; the cards are filled by hand with each
// transport's listen address, as the communicator does after its all-gather.
struct Mesh {
  Mesh(int n, const Config& c, const std::atomic<bool>* abortFlag = nullptr)
      : cfg(c), cards(n), box(std::make_shared<LocalMailbox>()) {
    for (int r = 0; r < n; ++r) oobs.push_back(std::make_unique<LocalOob>(box, r));
    for (int r = 0; r < n; ++r) {
      TransportContext ctx;
      ctx.rank = r;
      ctx.nranks = n;
      ctx.commId = kCommId;
      ctx.secret[0] = kSecret0;
      ctx.secret[1] = kSecret1;
      ctx.cards = &cards;
      ctx.oob = oobs[r].get();
      ctx.config = &cfg;
      ctx.abortFlag = abortFlag;
      transports.push_back(makeTcpTransport(ctx));
    }
    for (int r = 0; r < n; ++r) {
      cards[r].rank = r;
      cards[r].tcpAddr = transports[r]->listenAddress();
    }
  }
  int size() const { return static_cast<int>(transports.size()); }

  Config cfg;
  std::vector<PeerCard> cards;
  std::shared_ptr<LocalMailbox> box;
  std::vector<std::unique_ptr<LocalOob>> oobs;
  std::vector<std::unique_ptr<TcpTransportBase>> transports;
};

// Runs body(rank) on one thread per rank; rethrows the first exception a rank threw.
void runThreads(int n, const std::function<void(int)>& body) {
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// Drives the connections until done() holds; chorusTimeout after `seconds`. Liveness is checked
// every few hundred idle passes, as an executor would.
void driveUntil(const std::vector<Connection*>& conns, const std::function<bool()>& done, double seconds = kWaitSec) {
  Deadline deadline = Deadline::after(seconds);
  Backoff backoff;
  while (!done()) {
    bool moved = false;
    for (Connection* c : conns) moved |= c->progress();
    if (moved) {
      backoff.reset();
      continue;
    }
    if (deadline.expired()) CHORUS_THROW(chorusTimeout, "test: connections made no progress in %.0f s", seconds);
    if (backoff.idlePasses() % 256 == 255)
      for (Connection* c : conns) c->checkAlive();
    backoff.pause();
  }
}

// Connects rank 0 and rank 1 of a 2-rank mesh from one thread: the dialing side (rank 0) never
// waits for the other, so the accepting side can connect right after it.
std::pair<std::unique_ptr<Connection>, std::unique_ptr<Connection>> connectPair(Mesh& m) {
  auto a = m.transports[0]->connect({1}, Deadline::after(kWaitSec));
  auto b = m.transports[1]->connect({0}, Deadline::after(kWaitSec));
  return {std::move(a[0]), std::move(b[0])};
}

uint8_t patternByte(uint64_t seed, size_t i) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + i * 0x632be59bd9b4e019ull;
  return static_cast<uint8_t>((x >> 29) ^ (x >> 47) ^ i);
}
void fillPattern(void* buf, size_t n, uint64_t seed) {
  auto* p = static_cast<uint8_t*>(buf);
  for (size_t i = 0; i < n; ++i) p[i] = patternByte(seed, i);
}
// Index of the first byte that differs from the pattern, or -1.
long firstMismatch(const void* buf, size_t n, uint64_t seed) {
  auto* p = static_cast<const uint8_t*>(buf);
  for (size_t i = 0; i < n; ++i)
    if (p[i] != patternByte(seed, i)) return static_cast<long>(i);
  return -1;
}

// A byte buffer whose usable part starts `misalign` bytes past a 64-byte boundary, with guard
// bytes after it that must stay untouched.
struct Buffer {
  static constexpr size_t kGuard = 64;
  Buffer(size_t n, size_t misalign) : bytes(n), storage(n + misalign + kGuard + 64) {
    auto base = reinterpret_cast<uintptr_t>(storage.data());
    size_t pad = (64 - base % 64) % 64;
    data = storage.data() + pad + misalign;
    memset(data + n, 0xA5, kGuard);
  }
  bool guardIntact() const {
    for (size_t i = 0; i < kGuard; ++i)
      if (static_cast<uint8_t>(data[bytes + i]) != 0xA5) return false;
    return true;
  }
  size_t bytes;
  std::vector<char> storage;
  char* data;
};

// --- setup --------------------------------------------------------------------------------------

TEST(TcpTransport, ListenAddressIsLoopbackWithPort) {
  Mesh m(2, loopbackConfig(2, 64 * 1024));
  WireAddr a = m.transports[0]->listenAddress();
  ASSERT_EQ(a.family, AF_INET);
  EXPECT_NE(a.port, 0);
  EXPECT_EQ(addrToString(a).rfind("127.0.0.1:", 0), 0u) << addrToString(a);
  EXPECT_STREQ(m.transports[0]->name(), "tcp");
  EXPECT_TRUE(m.transports[0]->canReach(1));
  EXPECT_FALSE(m.transports[0]->canReach(0));  // itself
  EXPECT_FALSE(m.transports[0]->canReach(2));  // no such rank
  m.cards[1].tcpAddr = WireAddr();
  EXPECT_FALSE(m.transports[0]->canReach(1));
}

TEST(TcpTransport, RingOfConnectsAcrossThreads) {
  // Every rank connects to both ring neighbours in one call; the batching must not deadlock.
  for (int n : {2, 3, 4}) {
    Mesh m(n, loopbackConfig(2, 64 * 1024));
    runThreads(n, [&](int r) {
      std::vector<int> peers = {(r + 1) % n};
      if (n > 2) peers.push_back((r + n - 1) % n);
      auto conns = m.transports[r]->connect(peers, Deadline::after(kWaitSec));
      ASSERT_EQ(conns.size(), peers.size());
      for (size_t i = 0; i < peers.size(); ++i) {
        EXPECT_EQ(conns[i]->peer(), peers[i]);
        EXPECT_STREQ(conns[i]->kind(), "tcp");
      }
      // One message each way around the ring.
      Connection* next = conns[0].get();
      Connection* prev = n > 2 ? conns[1].get() : conns[0].get();
      uint64_t out = 1000 + r, in = 0;
      next->postSend(&out, sizeof(out));
      prev->postRecv(RecvSink{&in, nullptr, sizeof(in)});
      driveUntil({next, prev}, [&] { return next->sendsCompleted() == 1 && prev->recvsCompleted() == 1; });
      EXPECT_EQ(in, static_cast<uint64_t>(1000 + (r + n - 1) % n));
    });
  }
}

TEST(TcpTransport, LazyAndRepeatedConnects) {
  // Sockets for a peer not asked for yet are kept for the later connect() that asks; a second
  // connect() of the same pair gives a new, independent connection.
  Mesh m(3, loopbackConfig(4, 4096));
  auto d = [] { return Deadline::after(kWaitSec); };
  auto c0 = m.transports[0]->connect({1, 2}, d());  // dials both at once
  auto c1a = m.transports[1]->connect({2}, d());
  auto c2a = m.transports[2]->connect({1}, d());    // rank 0's sockets to 2 arrive unasked here
  auto c1b = m.transports[1]->connect({0}, d());
  auto c2b = m.transports[2]->connect({0}, d());    // served from the sockets kept earlier
  // Ordinal 1 of pair (0,1).
  auto c0again = m.transports[0]->connect({1}, d());
  auto c1again = m.transports[1]->connect({0}, d());

  struct Link {
    Connection* from;
    Connection* to;
    uint64_t seed;
  };
  std::vector<Link> links = {{c0[0].get(), c1b[0].get(), 1},      {c0[1].get(), c2b[0].get(), 2},
                             {c1a[0].get(), c2a[0].get(), 3},     {c2a[0].get(), c1a[0].get(), 4},
                             {c0again[0].get(), c1again[0].get(), 5}, {c1again[0].get(), c0again[0].get(), 6}};
  const size_t n = 3 * 4096 + 17;
  std::vector<std::vector<char>> src(links.size(), std::vector<char>(n)), dst(links.size(), std::vector<char>(n));
  std::vector<Connection*> all = {c0[0].get(), c0[1].get(), c1a[0].get(), c1b[0].get(),
                                  c2a[0].get(), c2b[0].get(), c0again[0].get(), c1again[0].get()};
  for (size_t i = 0; i < links.size(); ++i) {
    fillPattern(src[i].data(), n, links[i].seed);
    links[i].from->postSend(src[i].data(), n);
    links[i].to->postRecv(RecvSink{dst[i].data(), nullptr, n});
  }
  driveUntil(all, [&] {
    for (auto& l : links)
      if (l.to->recvsCompleted() < 1 || l.from->sendsCompleted() < 1) return false;
    return true;
  });
  for (size_t i = 0; i < links.size(); ++i) EXPECT_EQ(firstMismatch(dst[i].data(), n, links[i].seed), -1) << i;
}

TEST(TcpTransport, ConnectTimesOutNamingMissingPeer) {
  Mesh m(2, loopbackConfig(2, 4096));
  auto start = Clock::now();
  try {
    m.transports[1]->connect({0}, Deadline::after(0.3));  // rank 0 never dials
    FAIL() << "connect returned without its peer";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusTimeout) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank(s) 0"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 5.0);
}

TEST(TcpTransport, DialToADestroyedPeerFailsFastWithRemoteError) {
  // Rank 1's transport (and so its data listener) is gone: its address now refuses. That is a
  // dead peer, reported at once, not a listener that is not up yet and worth retrying.
  Mesh m(2, loopbackConfig(2, 4096));
  m.transports[1].reset();
  auto start = Clock::now();
  try {
    m.transports[0]->connect({1}, Deadline::after(kWaitSec));
    FAIL() << "connected to a destroyed transport";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusRemoteError) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
}

TEST(TcpTransport, AbortFlagEndsAConnectWaitingForItsPeer) {
  // Rank 1 waits for rank 0's sockets; rank 0 never calls connect. Setting the flag (as
  // chorusCommAbort does) ends the wait well before the deadline.
  std::atomic<bool> abortFlag{false};
  Mesh m(2, loopbackConfig(2, 4096), &abortFlag);
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    abortFlag.store(true);
  });
  auto start = Clock::now();
  try {
    m.transports[1]->connect({0}, Deadline::after(kWaitSec));
    ADD_FAILURE() << "connect returned without its peer";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidUsage) << e.what();
    EXPECT_NE(std::string(e.what()).find("aborted by chorusCommAbort while connecting to rank 0"), std::string::npos)
        << e.what();
  }
  aborter.join();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 1.2);
  // The dialing side sees a flag that is already set before it dials.
  try {
    m.transports[0]->connect({1}, Deadline::after(kWaitSec));
    ADD_FAILURE() << "connect ignored the abort flag";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidUsage) << e.what();
  }
}

// Connects to addr and sends a hello; returns the socket.
Fd rogueHello(const WireAddr& addr, const tcp::Hello& h) {
  Fd fd = connectTo(addr, Deadline::after(kWaitSec));
  sendAll(fd.get(), &h, sizeof(h), Deadline::after(kWaitSec));
  return fd;
}

// Whether the other side closed fd (EOF or reset) within `seconds`.
bool closedByPeer(int fd, double seconds) {
  Deadline deadline = Deadline::after(seconds);
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, deadline.millisLeft(100));
    if (r > 0) {
      char c;
      ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
    if (deadline.expired()) return false;
  }
}

TEST(TcpTransport, RogueHellosAreRejectedAndRealConnectionWorks) {
  Mesh m(2, loopbackConfig(2, 4096));
  WireAddr target = m.transports[1]->listenAddress();
  tcp::Hello good;
  good.secret[0] = kSecret0;
  good.secret[1] = kSecret1;
  good.commId = kCommId;
  good.fromRank = 0;
  good.toRank = 1;
  good.socketIndex = 0;
  good.numSockets = 2;
  tcp::Hello badSecret = good;
  badSecret.secret[1] ^= 1;
  tcp::Hello badComm = good;
  badComm.commId ^= 0x100;
  tcp::Hello badMagic = good;
  badMagic.magic = 0x4745542f20485454ull;  // an HTTP client, say
  // These arrive before the real ones, and sit first in the accept queue.
  std::vector<Fd> rogues;
  rogues.push_back(rogueHello(target, badSecret));
  rogues.push_back(rogueHello(target, badComm));
  rogues.push_back(rogueHello(target, badMagic));
  rogues.push_back(connectTo(target, Deadline::after(kWaitSec)));  // says nothing, then leaves
  rogues.back().reset();

  auto [c0, c1] = connectPair(m);
  uint32_t out = 0xC0FFEE, in = 0;
  c0->postSend(&out, sizeof(out));
  c1->postRecv(RecvSink{&in, nullptr, sizeof(in)});
  driveUntil({c0.get(), c1.get()}, [&] { return c1->recvsCompleted() == 1; });
  EXPECT_EQ(in, 0xC0FFEEu);
  for (size_t i = 0; i + 1 < rogues.size(); ++i) EXPECT_TRUE(closedByPeer(rogues[i].get(), 5)) << "rogue " << i;
}

// --- data path ------------------------------------------------------------------------------

class TcpSockets : public ::testing::TestWithParam<int> {};

TEST_P(TcpSockets, AllSizesBothDirectionsUnaligned) {
  const size_t chunk = 64 * 1024;
  Mesh m(2, loopbackConfig(GetParam(), chunk));
  const std::vector<size_t> sizes = {0, 1, 63, 64, chunk - 1, chunk, chunk + 1, (8u << 20) + 3, 0, 5};
  runThreads(2, [&](int r) {
    auto conns = m.transports[r]->connect({1 - r}, Deadline::after(kWaitSec));
    Connection* c = conns[0].get();
    std::vector<std::unique_ptr<Buffer>> out, in;
    // Everything is posted before anything moves: many messages in flight each way.
    for (size_t i = 0; i < sizes.size(); ++i) {
      out.push_back(std::make_unique<Buffer>(sizes[i], (i + r) % 7));
      in.push_back(std::make_unique<Buffer>(sizes[i], (i + 3) % 5));
      fillPattern(out[i]->data, sizes[i], 100 * r + i);
      EXPECT_EQ(c->postSend(out[i]->data, sizes[i]), i);
      EXPECT_EQ(c->postRecv(RecvSink{in[i]->data, nullptr, sizes[i]}), i);
    }
    driveUntil({c}, [&] { return c->sendsCompleted() == sizes.size() && c->recvsCompleted() == sizes.size(); });
    for (size_t i = 0; i < sizes.size(); ++i) {
      EXPECT_EQ(firstMismatch(in[i]->data, sizes[i], 100 * (1 - r) + i), -1) << "size " << sizes[i];
      EXPECT_TRUE(in[i]->guardIntact()) << "size " << sizes[i];
    }
  });
}

TEST_P(TcpSockets, ManyMessagesInFlightAllToAll) {
  // 4 ranks, every pair busy both ways with a few hundred messages of mixed sizes, posted in
  // waves while the earlier ones move: ordering and striping must hold throughout.
  const size_t chunk = 4096;
  const int n = 4;
  const int kMsgs = 300;
  Mesh m(n, loopbackConfig(GetParam(), chunk));
  auto sizeOf = [&](int from, int to, int i) {
    std::mt19937 rng(from * 1000003 + to * 1009 + i);
    int kind = rng() % 4;
    if (kind == 0) return static_cast<size_t>(rng() % 65);
    return static_cast<size_t>(rng() % (3 * chunk + 100));
  };
  auto seedOf = [](int from, int to, int i) { return static_cast<uint64_t>(from * 100000 + to * 10000 + i); };
  runThreads(n, [&](int r) {
    std::vector<int> peers;
    for (int p = 0; p < n; ++p)
      if (p != r) peers.push_back(p);
    auto conns = m.transports[r]->connect(peers, Deadline::after(kWaitSec));
    std::vector<Connection*> cs;
    for (auto& c : conns) cs.push_back(c.get());
    std::vector<std::vector<std::vector<char>>> out(peers.size()), in(peers.size());
    for (size_t k = 0; k < peers.size(); ++k) {
      for (int i = 0; i < kMsgs; ++i) {
        out[k].emplace_back(sizeOf(r, peers[k], i));
        fillPattern(out[k].back().data(), out[k].back().size(), seedOf(r, peers[k], i));
        in[k].emplace_back(sizeOf(peers[k], r, i));
      }
    }
    for (int wave = 0; wave < 3; ++wave) {
      for (size_t k = 0; k < peers.size(); ++k) {
        for (int i = wave * kMsgs / 3; i < (wave + 1) * kMsgs / 3; ++i) {
          cs[k]->postSend(out[k][i].data(), out[k][i].size());
          cs[k]->postRecv(RecvSink{in[k][i].data(), nullptr, in[k][i].size()});
        }
      }
      for (int pass = 0; pass < 50; ++pass)
        for (Connection* c : cs) c->progress();
    }
    driveUntil(cs, [&] {
      for (Connection* c : cs)
        if (c->sendsCompleted() != kMsgs || c->recvsCompleted() != kMsgs) return false;
      return true;
    });
    for (size_t k = 0; k < peers.size(); ++k)
      for (int i = 0; i < kMsgs; ++i)
        ASSERT_EQ(firstMismatch(in[k][i].data(), in[k][i].size(), seedOf(peers[k], r, i)), -1)
            << "rank " << r << " from " << peers[k] << " message " << i;
  });
}

template <typename T>
void checkReduceRecv(int nsocks, chorusDataType_t type) {
  const size_t chunk = 4096;
  Mesh m(2, loopbackConfig(nsocks, chunk));
  auto [c0, c1] = connectPair(m);
  ReduceFn sum = reduceFunction(type, chorusSum);
  const std::vector<size_t> counts = {1, 15, 16, chunk / sizeof(T) - 1, chunk / sizeof(T), chunk / sizeof(T) + 1,
                                      9 * chunk / sizeof(T) + 5};
  for (bool inPlace : {false, true}) {
    std::vector<std::vector<T>> incoming, local, dst;
    for (size_t k = 0; k < counts.size(); ++k) {
      size_t cnt = counts[k];
      incoming.emplace_back(cnt);
      local.emplace_back(cnt);
      dst.emplace_back(cnt, T(-7));
      for (size_t i = 0; i < cnt; ++i) {
        incoming[k][i] = static_cast<T>((i * 7 + k) % 1000);
        local[k][i] = static_cast<T>((i * 3 + 2 * k) % 501) - T(250);
      }
      c0->postSend(incoming[k].data(), cnt * sizeof(T));
      RecvSink sink;
      sink.dst = inPlace ? local[k].data() : dst[k].data();
      sink.local = local[k].data();
      sink.bytes = cnt * sizeof(T);
      sink.reduce = sum;
      sink.elemSize = sizeof(T);
      c1->postRecv(sink);
    }
    const uint64_t want = (inPlace ? 2 : 1) * counts.size();
    driveUntil({c0.get(), c1.get()}, [&] { return c0->sendsCompleted() == want && c1->recvsCompleted() == want; });
    for (size_t k = 0; k < counts.size(); ++k) {
      const std::vector<T>& got = inPlace ? local[k] : dst[k];
      for (size_t i = 0; i < counts[k]; ++i) {
        T want = static_cast<T>((i * 7 + k) % 1000) + (static_cast<T>((i * 3 + 2 * k) % 501) - T(250));
        ASSERT_EQ(got[i], want) << "count " << counts[k] << " element " << i << (inPlace ? " in place" : "");
      }
    }
  }
}

TEST_P(TcpSockets, ReduceRecvFloatSum) { checkReduceRecv<float>(GetParam(), chorusFloat32); }
TEST_P(TcpSockets, ReduceRecvInt32Sum) { checkReduceRecv<int32_t>(GetParam(), chorusInt32); }

INSTANTIATE_TEST_SUITE_P(Nsocks, TcpSockets, ::testing::Values(1, 4),
                         [](const ::testing::TestParamInfo<int>& p) { return "nsocks" + std::to_string(p.param); });

TEST(TcpTransport, ZeroByteMessagesCompleteWithoutTraffic) {
  Mesh m(2, loopbackConfig(2, 4096));
  auto [c0, c1] = connectPair(m);
  EXPECT_EQ(c0->postSend(nullptr, 0), 0u);
  EXPECT_EQ(c0->sendsCompleted(), 1u);  // without any progress() call
  EXPECT_EQ(c1->postRecv(RecvSink{nullptr, nullptr, 0}), 0u);
  EXPECT_EQ(c1->recvsCompleted(), 1u);
  // Behind a real message, a zero-byte one completes with it, in ticket order.
  char a[100], b[100];
  fillPattern(a, sizeof(a), 9);
  c0->postSend(a, sizeof(a));
  c0->postSend(nullptr, 0);
  EXPECT_EQ(c0->sendsCompleted(), 1u);
  c1->postRecv(RecvSink{b, nullptr, sizeof(b)});
  c1->postRecv(RecvSink{nullptr, nullptr, 0});
  driveUntil({c0.get(), c1.get()}, [&] { return c0->sendsCompleted() == 3 && c1->recvsCompleted() == 3; });
  EXPECT_EQ(firstMismatch(b, sizeof(b), 9), -1);
}

// --- errors ---------------------------------------------------------------------------------

TEST(TcpTransport, SizeMismatchIsInvalidUsage) {
  for (int nsocks : {1, 4}) {
    for (auto [sent, posted] : {std::pair<size_t, size_t>{1000, 2000}, {3 * 4096 + 1, 4096}, {64, 0}}) {
      Mesh m(2, loopbackConfig(nsocks, 4096));
      auto [c0, c1] = connectPair(m);
      std::vector<char> out(sent), in(posted + 1);
      // A matching message first, so the mismatch is not at the start of the stream.
      char x = 1, y = 0;
      c0->postSend(&x, 1);
      c1->postRecv(RecvSink{&y, nullptr, 1});
      c0->postSend(out.data(), sent);
      c1->postRecv(RecvSink{in.data(), nullptr, posted});
      // A zero-byte recv takes nothing off the wire, so there is nothing to compare at once:
      // the next message's header shows the streams diverged.
      uint64_t z = 5, w = 0;
      if (posted == 0) {
        c0->postSend(&z, sizeof(z));
        c1->postRecv(RecvSink{&w, nullptr, sizeof(w)});
      }
      try {
        driveUntil({c0.get(), c1.get()}, [&] { return c1->recvsCompleted() == (posted ? 2u : 3u); }, 5);
        ADD_FAILURE() << "mismatch went unnoticed: sent " << sent << " posted " << posted;
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), posted ? chorusInvalidUsage : chorusInternalError) << e.what();
        EXPECT_NE(std::string(e.what()).find(posted ? "size mismatch" : "header"), std::string::npos) << e.what();
        // The connection stays failed.
        try {
          c1->progress();
          ADD_FAILURE() << "progress after a failure did not throw";
        } catch (const Error& again) {
          EXPECT_EQ(again.code(), e.code());
        }
      }
    }
  }
}

TEST(TcpTransport, AbortMakesPeerFailPromptly) {
  Mesh m(2, loopbackConfig(2, 4096));
  auto [c0, c1] = connectPair(m);
  std::vector<char> in(1 << 20);
  c1->postRecv(RecvSink{in.data(), nullptr, in.size()});
  c1->progress();
  c0->abort();
  c0->abort();  // idempotent, never throws
  EXPECT_THROW(c0->progress(), Error);
  auto start = Clock::now();
  try {
    driveUntil({c1.get()}, [] { return false; }, 5);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusRemoteError) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 0"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
}

TEST(TcpTransport, CheckAliveSeesClosedPeerWithoutConsumingData) {
  Mesh m(2, loopbackConfig(2, 4096));
  auto [c0, c1] = connectPair(m);
  // Rank 0 sends a message and leaves; rank 1 has not read it yet and also waits for a second.
  uint64_t out = 77, in = 0, in2 = 0;
  c0->postSend(&out, sizeof(out));
  driveUntil({c0.get()}, [&] { return c0->sendsCompleted() == 1; });
  c0.reset();
  c1->postRecv(RecvSink{&in, nullptr, sizeof(in)});
  c1->postRecv(RecvSink{&in2, nullptr, sizeof(in2)});
  // Unread bytes are still owed to us: checkAlive leaves them to progress().
  EXPECT_NO_THROW(c1->checkAlive());
  try {
    driveUntil({c1.get()}, [] { return false; }, 5);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusRemoteError) << e.what();
  }
  EXPECT_EQ(c1->recvsCompleted(), 1u);
  EXPECT_EQ(in, 77u);

  // Now only checkAlive, no progress: a closed peer with a recv pending.
  auto [d0, d1] = connectPair(m);
  d1->postRecv(RecvSink{&in, nullptr, sizeof(in)});
  EXPECT_NO_THROW(d1->checkAlive());
  d0.reset();
  Deadline deadline = Deadline::after(5);
  bool thrown = false;
  while (!thrown && !deadline.expired()) {
    try {
      d1->checkAlive();
      std::this_thread::yield();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), chorusRemoteError) << e.what();
      thrown = true;
    }
  }
  EXPECT_TRUE(thrown);
}

// The peer is a separate process, SIGKILLed in the middle of a large message: the survivor's
// progress()/checkAlive() must turn that into chorusRemoteError within about 2 s.
TEST(TcpTransport, PeerKilledMidTransferIsRemoteError) {
  int addrs[2], ready[2], report[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, addrs), 0);
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(report), 0);
  const size_t bytes = 256u << 20;
  const int victim = 1;
  Clock::time_point killedAt;

  auto body = [&](int r) -> int {
    Config cfg = loopbackConfig(4, 512 * 1024);
    std::vector<PeerCard> cards(2);
    TransportContext ctx;
    ctx.rank = r;
    ctx.nranks = 2;
    ctx.commId = kCommId;
    ctx.secret[0] = kSecret0;
    ctx.secret[1] = kSecret1;
    ctx.cards = &cards;
    ctx.config = &cfg;
    auto t = makeTcpTransport(ctx);
    // Swap listen addresses over the socketpair (each rank uses its own end).
    cards[r].tcpAddr = t->listenAddress();
    sendAll(addrs[r], &cards[r].tcpAddr, sizeof(WireAddr), Deadline::after(kWaitSec));
    recvAll(addrs[r], &cards[1 - r].tcpAddr, sizeof(WireAddr), Deadline::after(kWaitSec));
    auto conns = t->connect({1 - r}, Deadline::after(kWaitSec));
    Connection* c = conns[0].get();
    std::vector<char> buf(bytes, 'x');
    if (r == victim) {
      c->postSend(buf.data(), bytes);
      // Move part of the message, then stop moving and tell the parent to kill us.
      Deadline d = Deadline::after(kWaitSec);
      while (!c->progress() && !d.expired()) std::this_thread::yield();
      c->progress();
      if (c->sendsCompleted() != 0) return 3;  // the message was meant to be cut short
      char go = 'R';
      if (write(ready[1], &go, 1) != 1) return 4;
      for (;;) pause();
    }
    c->postRecv(RecvSink{buf.data(), nullptr, bytes});
    try {
      driveUntil({c}, [] { return false; }, kWaitSec);
    } catch (const Error& e) {
      int64_t at = Clock::now().time_since_epoch().count();
      if (write(report[1], &at, sizeof(at)) != sizeof(at)) return 5;
      fprintf(stderr, "survivor: %s\n", e.what());
      return e.code() == chorusRemoteError ? 0 : 6;
    }
    return 7;
  };
  auto onStarted = [&](const RankHandles& h) {
    pollfd p{ready[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(kWaitSec * 1000)) != 1) return;  // the exits tell what went wrong
    char go;
    if (read(ready[0], &go, 1) != 1) return;
    killedAt = Clock::now();
    kill(h.pids[victim], SIGKILL);
  };
  auto exits = runRanks(2, body, 60, onStarted);
  EXPECT_FALSE(exits[victim].exited) << exits[victim].describe();
  EXPECT_EQ(exits[victim].signal, SIGKILL) << exits[victim].describe();
  ASSERT_TRUE(exits[0].exited && exits[0].code == 0) << exits[0].describe();
  int64_t at = 0;
  ASSERT_EQ(read(report[0], &at, sizeof(at)), static_cast<ssize_t>(sizeof(at)));
  double seconds = std::chrono::duration<double>(Clock::time_point(Clock::duration(at)) - killedAt).count();
  printf("survivor noticed the SIGKILL after %.3f s\n", seconds);
  EXPECT_LT(seconds, 2.0);
  for (int fd : {addrs[0], addrs[1], ready[0], ready[1], report[0], report[1]}) close(fd);
}

// --- bandwidth (printed, not asserted) ------------------------------------------------------

TEST(TcpTransport, LoopbackBandwidth64MiB) {
  const size_t bytes = 64u << 20;
  const int iters = 8;
  {
    // Side-by-side reference in the same run: one plain socket, sendAll/recvAll (which sleep in
    // poll() while waiting), no striping.
    WireAddr bound;
    Fd listener = listenOn(parseAddress("127.0.0.1", 0), &bound);
    std::vector<char> src(bytes, 1), dst(bytes);
    double seconds = 0;
    std::thread sender([&] {
      Fd fd = connectTo(bound, Deadline::after(kWaitSec));
      for (int i = 0; i <= iters; ++i) sendAll(fd.get(), src.data(), bytes, Deadline::after(kWaitSec));
    });
    Fd fd = acceptOne(listener.get(), Deadline::after(kWaitSec));
    recvAll(fd.get(), dst.data(), bytes, Deadline::after(kWaitSec));  // warm-up
    auto start = Clock::now();
    for (int i = 0; i < iters; ++i) recvAll(fd.get(), dst.data(), bytes, Deadline::after(kWaitSec));
    seconds = std::chrono::duration<double>(Clock::now() - start).count();
    sender.join();
    printf("reference: one blocking loopback socket, 64 MiB messages: %.2f GB/s\n", iters * bytes / seconds / 1e9);
  }
  for (int nsocks : {1, 4}) {
    Mesh m(2, loopbackConfig(nsocks, 512 * 1024));
    std::vector<char> src(bytes, 1), dst(bytes);
    double seconds = 0;
    runThreads(2, [&](int r) {
      auto conns = m.transports[r]->connect({1 - r}, Deadline::after(kWaitSec));
      Connection* c = conns[0].get();
      // One warm-up message, then the timed ones.
      for (int i = 0; i <= iters; ++i) {
        auto start = Clock::now();
        if (r == 0) {
          c->postSend(src.data(), bytes);
          driveUntil({c}, [&] { return c->sendsCompleted() == static_cast<uint64_t>(i + 1); });
        } else {
          c->postRecv(RecvSink{dst.data(), nullptr, bytes});
          driveUntil({c}, [&] { return c->recvsCompleted() == static_cast<uint64_t>(i + 1); });
          if (i > 0) seconds += std::chrono::duration<double>(Clock::now() - start).count();
        }
      }
    });
    printf("tcp loopback, %d socket(s), 64 MiB messages: %.2f GB/s\n", nsocks, iters * bytes / seconds / 1e9);
  }
}

}  // namespace
}  // namespace chorus::test

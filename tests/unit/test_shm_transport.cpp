// Tests of the shared-memory transport: ranks are threads of this process (in-process Oob,
// hand-made cards) except for the crash test, which forks real processes and SIGKILLs one.
#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "base/error.h"
#include "exec/reduce.h"
#include "fixtures/local_oob.h"
#include "fixtures/ranks.h"
#include "transports/shm/shm_connection.h"
#include "transports/shm/shm_segment.h"
#include "transports/transport.h"

namespace chorus {
namespace {

using test::LocalMailbox;
using test::LocalOob;

constexpr double kWaitSec = 30;  // generous per-wait deadline; a pass takes milliseconds

// The library's sum kernel for T.
template <typename T>
ReduceFn sumOf() {
  return reduceFunction(std::is_same_v<T, float> ? chorusFloat32 : chorusInt32, chorusSum);
}

uint64_t testCommId() {
  static std::atomic<uint64_t> next{0};
  return (static_cast<uint64_t>(getpid()) << 32) ^ 0xc0ffee0000ull ^ next.fetch_add(1);
}

Config smallConfig(bool cma) {
  Config c;
  c.shmSlotBytes = 16 * 1024;
  c.shmNumSlots = 4;
  c.shmFifoBytes = 40 * 1024;  // not a multiple of the fragment: fragments wrap early and leave gaps
  c.shmUseCma = cma;
  c.shmCmaCopies = cma;
  c.shmCmaThreshold = 256 * 1024;
  return c;
}

// n ranks as threads: cards, configs and an in-process Oob shared by all.
struct World {
  int n;
  uint64_t commId = testCommId();
  std::vector<PeerCard> cards;
  std::shared_ptr<LocalMailbox> box = std::make_shared<LocalMailbox>();
  Config config;
  std::function<void(int, TransportContext&)> tweak;  // optional per-rank change of the context

  World(int nranks, const Config& cfg) : n(nranks), cards(nranks), config(cfg) {
    for (int r = 0; r < n; ++r) {
      cards[r].rank = r;
      cards[r].pid = getpid();
      cards[r].hostHash = 0x5eedull;
      snprintf(cards[r].hostname, sizeof(cards[r].hostname), "localhost");
    }
  }

  // Runs body(rank, transport) on n threads; an exception in any becomes a test failure.
  void run(const std::function<void(int, Transport&)>& body) {
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r) {
      threads.emplace_back([this, r, &body] {
        try {
          LocalOob oob(box, r);
          TransportContext ctx;
          ctx.rank = r;
          ctx.nranks = n;
          ctx.commId = commId;
          ctx.secret[0] = 0x1234;
          ctx.secret[1] = 0x5678;
          ctx.cards = &cards;
          ctx.oob = &oob;
          ctx.config = &config;
          if (tweak) tweak(r, ctx);
          auto transport = makeShmTransport(ctx);
          body(r, *transport);
        } catch (const std::exception& e) {
          ADD_FAILURE() << "rank " << r << ": " << e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
  }
};

double secondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Drives progress on conns until done() holds. Checks liveness while idle; fails at the deadline.
void waitUntil(const std::vector<Connection*>& conns, const std::function<bool()>& done, double seconds = kWaitSec) {
  Deadline deadline = Deadline::after(seconds);
  Backoff backoff;
  while (!done()) {
    bool moved = false;
    for (Connection* c : conns) moved = c->progress() || moved;
    if (moved) {
      backoff.reset();
      continue;
    }
    if (backoff.idlePasses() % 256 == 255)
      for (Connection* c : conns) c->checkAlive();
    if (deadline.expired()) CHORUS_THROW(chorusTimeout, "test wait expired");
    backoff.pause();
  }
}

void waitAll(Connection& c, uint64_t sends, uint64_t recvs, double seconds = kWaitSec) {
  waitUntil({&c}, [&] { return c.sendsCompleted() >= sends && c.recvsCompleted() >= recvs; }, seconds);
}

// Expects fn to throw chorus::Error with the given code; returns its message.
std::string expectError(chorusResult_t code, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an error with code " << code;
  return "";
}

// Byte pattern that differs per (sender, message, position).
uint8_t pattern(int from, size_t msg, size_t i) { return static_cast<uint8_t>(from * 37 + msg * 11 + i * 7 + (i >> 9)); }

// Posts `sizes` as sends and as recvs to one peer at once (unaligned buffers), waits for all,
// and checks every received byte and that nothing was written outside the receive buffers.
void exchange(int rank, Connection& c, const std::vector<size_t>& sizes) {
  const size_t kGuard = 64;
  std::vector<std::vector<uint8_t>> sendBufs, recvBufs;
  for (size_t m = 0; m < sizes.size(); ++m) {
    size_t skew = (m * 3 + 1) % 8;  // start at every alignment
    sendBufs.emplace_back(sizes[m] + skew);
    for (size_t i = 0; i < sizes[m]; ++i) sendBufs[m][skew + i] = pattern(rank, m, i);
    recvBufs.emplace_back(sizes[m] + skew + kGuard, 0xAB);
  }
  uint64_t s0 = c.sendsCompleted(), r0 = c.recvsCompleted();
  for (size_t m = 0; m < sizes.size(); ++m) {
    size_t skew = (m * 3 + 1) % 8;
    EXPECT_EQ(c.postSend(sendBufs[m].data() + skew, sizes[m]), s0 + m);
    RecvSink sink;
    sink.dst = recvBufs[m].data() + skew;
    sink.bytes = sizes[m];
    EXPECT_EQ(c.postRecv(sink), r0 + m);
  }
  waitAll(c, s0 + sizes.size(), r0 + sizes.size());
  for (size_t m = 0; m < sizes.size(); ++m) {
    size_t skew = (m * 3 + 1) % 8;
    const auto& b = recvBufs[m];
    size_t bad = 0;
    for (size_t i = 0; i < skew; ++i) bad += b[i] != 0xAB;
    for (size_t i = 0; i < sizes[m]; ++i) bad += b[skew + i] != pattern(c.peer(), m, i);
    for (size_t i = 0; i < kGuard; ++i) bad += b[skew + sizes[m] + i] != 0xAB;
    EXPECT_EQ(bad, 0u) << "rank " << rank << " message " << m << " of " << sizes[m] << " bytes";
  }
}

std::vector<size_t> edgeSizes(const Config& cfg) {
  size_t slot = cfg.shmSlotBytes, cma = cfg.shmCmaThreshold;
  const size_t in = shm::kInlineBytes;  // the largest message carried in its slot's line
  return {0, 1, in - 1, in, in + 1, 63, 64, 65, slot - 1, slot, slot + 1, 0, 2 * slot + 64, cma - 1, cma, cma + 1, (3u << 20) + 5, 7, 0};
}

// --- tests ------------------------------------------------------------------------------------

TEST(ShmTransport, EdgeSizesBothDirectionsWithAndWithoutSingleCopy) {
  for (bool cma : {false, true}) {
    for (Config cfg : {smallConfig(cma), Config{}}) {
      cfg.shmUseCma = cma;
      cfg.shmCmaCopies = cma;
      SCOPED_TRACE(testing::Message() << "cma=" << cma << " slot=" << cfg.shmSlotBytes);
      World w(2, cfg);
      w.run([&](int rank, Transport& t) {
        auto conns = t.connect({1 - rank}, Deadline::after(kWaitSec));
        ASSERT_EQ(conns.size(), 1u);
        EXPECT_STREQ(conns[0]->kind(), "shm");
        auto* shm = dynamic_cast<shm::ShmConnection*>(conns[0].get());
        ASSERT_NE(shm, nullptr);
        EXPECT_EQ(shm->singleCopySend(), cma);  // threads of one process can always read each other
        exchange(rank, *conns[0], edgeSizes(cfg));
        exchange(rank, *conns[0], {5 << 20});  // a second round on the same connection
      });
    }
  }
}

TEST(ShmTransport, ManyMessagesInFlightAllPairs) {
  for (bool cma : {false, true}) {
    Config cfg = smallConfig(cma);
    cfg.shmCmaThreshold = 40000;
    World w(4, cfg);
    w.run([&](int rank, Transport& t) {
      // Each rank lists its peers in a different order (r+1, r+2, ...): connect must not deadlock.
      std::vector<int> peers;
      for (int k = 1; k < 4; ++k) peers.push_back((rank + k) % 4);
      auto conns = t.connect(peers, Deadline::after(kWaitSec));
      ASSERT_EQ(conns.size(), 3u);
      for (size_t i = 0; i < peers.size(); ++i) EXPECT_EQ(conns[i]->peer(), peers[i]);
      // Same random sizes on both sides of a pair: seeded by the (unordered) pair.
      std::vector<std::vector<size_t>> sizes(3);
      for (size_t i = 0; i < 3; ++i) {
        int lo = std::min(rank, peers[i]), hi = std::max(rank, peers[i]);
        std::mt19937 rng(lo * 16 + hi);
        for (int m = 0; m < 150; ++m) {
          size_t kind = rng() % 4;
          sizes[i].push_back(kind == 0 ? rng() % 100 : kind == 1 ? rng() % 20000 : kind == 2 ? rng() % 70000 : 0);
        }
      }
      // Post everything to everybody, then drive all connections together.
      std::vector<std::vector<std::vector<uint8_t>>> out(3), in(3);
      for (size_t i = 0; i < 3; ++i) {
        for (size_t m = 0; m < sizes[i].size(); ++m) {
          out[i].emplace_back(sizes[i][m]);
          for (size_t b = 0; b < sizes[i][m]; ++b) out[i][m][b] = pattern(rank, m, b);
          in[i].emplace_back(sizes[i][m]);
          conns[i]->postSend(out[i][m].data(), sizes[i][m]);
          RecvSink sink;
          sink.dst = in[i][m].data();
          sink.bytes = sizes[i][m];
          conns[i]->postRecv(sink);
        }
      }
      std::vector<Connection*> raw;
      for (auto& c : conns) raw.push_back(c.get());
      waitUntil(raw, [&] {
        for (size_t i = 0; i < 3; ++i)
          if (conns[i]->sendsCompleted() < sizes[i].size() || conns[i]->recvsCompleted() < sizes[i].size()) return false;
        return true;
      });
      for (size_t i = 0; i < 3; ++i)
        for (size_t m = 0; m < sizes[i].size(); ++m) {
          size_t bad = 0;
          for (size_t b = 0; b < sizes[i][m]; ++b) bad += in[i][m][b] != pattern(peers[i], m, b);
          EXPECT_EQ(bad, 0u) << "rank " << rank << " from " << peers[i] << " message " << m;
        }
    });
  }
}

template <typename T>
void reduceRound(bool cma, bool inPlace) {
  Config cfg = smallConfig(cma);
  World w(2, cfg);
  w.run([&](int rank, Transport& t) {
    auto conns = t.connect({1 - rank}, Deadline::after(kWaitSec));
    Connection& c = *conns[0];
    const std::vector<size_t> counts = {1, 4, 5, 15, 16, 4096, 4097, 65536 + 3, (1u << 20) + 7};  // 4 and 5: inline and not
    std::vector<std::vector<T>> mine, local, dst;
    for (size_t m = 0; m < counts.size(); ++m) {
      mine.emplace_back(counts[m]);
      local.emplace_back(counts[m]);
      for (size_t i = 0; i < counts[m]; ++i) {
        mine[m][i] = static_cast<T>(static_cast<int>((i * 13 + m + rank * 1000) % 4099) - 2000);
        local[m][i] = static_cast<T>(static_cast<int>((i * 7 + m * 5 + rank) % 997));
      }
      dst.emplace_back(inPlace ? local[m] : std::vector<T>(counts[m], T(-1)));
    }
    for (size_t m = 0; m < counts.size(); ++m) {
      c.postSend(mine[m].data(), counts[m] * sizeof(T));
      RecvSink sink;
      sink.dst = dst[m].data();
      sink.local = inPlace ? dst[m].data() : local[m].data();
      sink.bytes = counts[m] * sizeof(T);
      sink.reduce = sumOf<T>();
      sink.elemSize = sizeof(T);
      c.postRecv(sink);
    }
    waitAll(c, counts.size(), counts.size());
    int peer = 1 - rank;
    for (size_t m = 0; m < counts.size(); ++m) {
      size_t bad = 0;
      for (size_t i = 0; i < counts[m]; ++i) {
        T theirs = static_cast<T>(static_cast<int>((i * 13 + m + peer * 1000) % 4099) - 2000);
        bad += dst[m][i] != static_cast<T>(local[m][i] + theirs);
      }
      EXPECT_EQ(bad, 0u) << "message " << m << " of " << counts[m] << " elements";
    }
  });
}

TEST(ShmTransport, RecvReduceFloatAndInt32) {
  for (bool cma : {false, true})
    for (bool inPlace : {false, true}) {
      SCOPED_TRACE(testing::Message() << "cma=" << cma << " inPlace=" << inPlace);
      reduceRound<float>(cma, inPlace);
      reduceRound<int32_t>(cma, inPlace);
    }
}

TEST(ShmTransport, SizeMismatchIsInternalErrorAndPeerNotices) {
  for (size_t bytes : {size_t(8), size_t(100), size_t(1) << 20}) {  // inline, eager, and single copy
    World w(2, smallConfig(true));
    w.run([&](int rank, Transport& t) {
      auto conns = t.connect({1 - rank}, Deadline::after(kWaitSec));
      Connection& c = *conns[0];
      std::vector<char> buf(bytes + 64);
      if (rank == 0) {
        c.postSend(buf.data(), bytes);
        // The receiver rejects the message and aborts; the sender must hear about it.
        std::string msg = expectError(chorusRemoteError, [&] { waitUntil({&c}, [] { return false; }); });
        EXPECT_NE(msg.find("rank 1"), std::string::npos) << msg;
      } else {
        RecvSink sink;
        sink.dst = buf.data();
        sink.bytes = bytes + 64;
        c.postRecv(sink);
        std::string msg = expectError(chorusInvalidUsage, [&] { waitAll(c, 0, 1); });
        EXPECT_NE(msg.find("size mismatch"), std::string::npos) << msg;
        // The connection stays failed.
        expectError(chorusInvalidUsage, [&] { c.progress(); });
      }
    });
  }
}

TEST(ShmTransport, PeerAbortIsRemoteError) {
  World w(2, smallConfig(true));
  std::atomic<bool> aborted{false};
  w.run([&](int rank, Transport& t) {
    auto conns = t.connect({1 - rank}, Deadline::after(kWaitSec));
    Connection& c = *conns[0];
    if (rank == 1) {
      c.abort();
      aborted = true;
      expectError(chorusInvalidUsage, [&] { c.postSend(nullptr, 0); });
      return;
    }
    char buf[16];
    RecvSink sink;
    sink.dst = buf;
    sink.bytes = sizeof(buf);
    c.postRecv(sink);
    auto start = std::chrono::steady_clock::now();
    std::string msg = expectError(chorusRemoteError, [&] { waitAll(c, 0, 1, 10); });
    EXPECT_TRUE(aborted.load());
    EXPECT_NE(msg.find("rank 1"), std::string::npos) << msg;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
    expectError(chorusRemoteError, [&] { c.checkAlive(); });
  });
}

TEST(ShmTransport, PeerCloseDeliversQueuedDataThenFails) {
  World w(2, smallConfig(false));
  w.run([&](int rank, Transport& t) {
    auto conns = t.connect({1 - rank}, Deadline::after(kWaitSec));
    if (rank == 1) {
      std::vector<char> data(3000, 'x');
      conns[0]->postSend(data.data(), data.size());
      waitAll(*conns[0], 1, 0);
      conns.clear();  // close with the message still in the FIFO
      return;
    }
    Connection& c = *conns[0];
    std::vector<char> got(3000);
    RecvSink sink;
    sink.dst = got.data();
    sink.bytes = got.size();
    c.postRecv(sink);
    waitAll(c, 0, 1);
    EXPECT_EQ(got, std::vector<char>(3000, 'x'));
    c.postRecv(sink);  // nothing more will come
    std::string msg = expectError(chorusRemoteError, [&] { waitAll(c, 0, 2, 10); });
    EXPECT_NE(msg.find("closed"), std::string::npos) << msg;
  });
}

// The FIFO hands out payload bytes by the fragment (shm_segment.h): with the default geometry a
// sender runs 64 small messages ahead of a receiver that takes none (fixed 256 KiB slots allowed
// 8), and the next one waits for a free slot; all arrive whole and in order.
TEST(ShmTransport, SmallMessagesRunAheadBySlotsNotBySlotBytes) {
  Config cfg;
  cfg.shmUseCma = false;
  ASSERT_EQ(cfg.shmNumSlots, 64);
  const int kAhead = cfg.shmNumSlots;
  std::promise<void> sent;
  std::shared_future<void> sentSeen = sent.get_future().share();
  World w(2, cfg);
  w.run([&](int rank, Transport& t) {
    auto conns = t.connect({1 - rank}, Deadline::after(kWaitSec));
    Connection& c = *conns[0];
    std::vector<uint64_t> values(kAhead + 1);
    if (rank == 1) {
      for (int i = 0; i <= kAhead; ++i) {
        values[i] = 0x1000 + i;
        c.postSend(&values[i], sizeof(uint64_t));
      }
      waitAll(c, kAhead, 0);
      for (int i = 0; i < 100; ++i) c.progress();
      EXPECT_EQ(c.sendsCompleted(), static_cast<uint64_t>(kAhead)) << "the send past the free slots completed";
      sent.set_value();
      waitAll(c, kAhead + 1, 0);
      return;
    }
    ASSERT_EQ(sentSeen.wait_for(std::chrono::duration<double>(kWaitSec)), std::future_status::ready) << "the sender never got ahead";
    for (int i = 0; i <= kAhead; ++i) {
      RecvSink sink;
      sink.dst = &values[i];
      sink.bytes = sizeof(uint64_t);
      c.postRecv(sink);
    }
    waitAll(c, 0, kAhead + 1);
    for (int i = 0; i <= kAhead; ++i) EXPECT_EQ(values[i], 0x1000u + i) << "message " << i;
  });
}

std::vector<std::string> shmFilesOf(uint64_t commId) {
  char prefix[64];
  snprintf(prefix, sizeof(prefix), "chorus-%016llx-", static_cast<unsigned long long>(commId));
  std::vector<std::string> found;
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d))
      if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) found.push_back(e->d_name);
    closedir(d);
  }
  return found;
}

TEST(ShmTransport, NoSegmentNamesLeftAfterConnect) {
  World w(3, smallConfig(true));
  w.run([&](int rank, Transport& t) {
    std::vector<int> peers;
    for (int p = 0; p < 3; ++p)
      if (p != rank) peers.push_back(p);
    auto conns = t.connect(peers, Deadline::after(kWaitSec));
    auto second = t.connect(peers, Deadline::after(kWaitSec));  // a second generation coexists
    EXPECT_EQ(second.size(), 2u);
  });
  EXPECT_TRUE(shmFilesOf(w.commId).empty());
}

TEST(ShmTransport, SegmentIdentityIsChecked) {
  shm::SegmentIdentity id;
  id.commId = testCommId();
  id.secret[0] = 1;
  id.secret[1] = 2;
  id.nonce = 3;
  id.from = 0;
  id.to = 1;
  std::string name = "/chorus-test-identity-" + std::to_string(getpid());
  auto seg = shm::Segment::create(name, id, 4096, 2, 8192);
  shm::SegmentIdentity wrong = id;
  wrong.secret[1] = 99;
  expectError(chorusInternalError, [&] { shm::Segment::open(name, wrong); });
  wrong = id;
  wrong.from = 2;
  expectError(chorusInternalError, [&] { shm::Segment::open(name, wrong); });
  auto ok = shm::Segment::open(name, id);
  EXPECT_EQ(ok->maxFragment(), 4096u);
  EXPECT_EQ(ok->ringBytes(), 8192u);
  EXPECT_EQ(ok->numSlots(), 2u);
  // The creator's name must not be creatable twice (O_EXCL).
  expectError(chorusSystemError, [&] { shm::Segment::create(name, id, 4096, 2, 8192); });
  seg.reset();  // unlinks
  expectError(chorusRemoteError, [&] { shm::Segment::open(name, id); });
}

TEST(ShmTransport, ForeignSecretFailsConnectOnBothSides) {
  World w(2, smallConfig(true));
  w.tweak = [](int rank, TransportContext& ctx) {
    if (rank == 1) ctx.secret[1] ^= 1;
  };
  w.run([&](int rank, Transport& t) {
    try {
      t.connect({1 - rank}, Deadline::after(kWaitSec));
      ADD_FAILURE() << "rank " << rank << " connected to a rank with another secret";
    } catch (const Error& e) {
      // Each side rejects the other's segment (identity check); whichever reply arrives first.
      EXPECT_TRUE(e.code() == chorusInternalError || e.code() == chorusRemoteError) << e.what();
    }
  });
  EXPECT_TRUE(shmFilesOf(w.commId).empty());
}

TEST(ShmTransport, SegmentCreationFailureReachesPeerPromptly) {
  // Squat the name rank 0 will create for rank 1's sends (O_EXCL makes the create fail).
  World w(2, smallConfig(false));
  char name[96];
  snprintf(name, sizeof(name), "/chorus-%016llx-1-0-0", static_cast<unsigned long long>(w.commId));
  shm::SegmentIdentity other;
  auto squatter = shm::Segment::create(name, other, 4096, 2, 8192);
  w.run([&](int rank, Transport& t) {
    auto start = std::chrono::steady_clock::now();
    std::string msg = expectError(rank == 0 ? chorusSystemError : chorusRemoteError,
                                  [&] { t.connect({1 - rank}, Deadline::after(kWaitSec)); });
    EXPECT_LT(secondsSince(start), 5.0) << msg;
    if (rank == 1) {
      EXPECT_NE(msg.find("rank 0"), std::string::npos) << msg;
    }
  });
  squatter.reset();
  EXPECT_TRUE(shmFilesOf(w.commId).empty());
}

TEST(ShmTransport, FailedSingleCopyProbeFallsBackToFifo) {
  // A card pid that is not the peer's makes the probe fail: expect a warning and the FIFO.
  World w(2, smallConfig(true));
  w.cards[1].pid = getppid();
  w.run([&](int rank, Transport& t) {
    auto conns = t.connect({1 - rank}, Deadline::after(kWaitSec));
    auto* shm = dynamic_cast<shm::ShmConnection*>(conns[0].get());
    ASSERT_NE(shm, nullptr);
    EXPECT_EQ(shm->singleCopySend(), rank == 0);  // rank 0 could not read "rank 1" at the wrong pid
    exchange(rank, *conns[0], {1u << 20, 300000, 5});
  });
}

// --- a real crash -------------------------------------------------------------------------------

// An Oob between two processes over a socketpair: frames of {tag, size, bytes}; frames with
// other tags than the one asked for wait in a stash.
class PairOob : public Oob {
 public:
  explicit PairOob(int fd) : fd_(fd) {}
  void send(int, uint32_t tag, const void* data, size_t bytes, Deadline) override {
    uint64_t hdr[2] = {tag, bytes};
    writeAll(hdr, sizeof(hdr));
    writeAll(data, bytes);
  }
  void recv(int, uint32_t tag, void* data, size_t bytes, Deadline) override {
    while (stash_[tag].empty()) {
      uint64_t hdr[2];
      readAll(hdr, sizeof(hdr));
      std::vector<char> body(hdr[1]);
      readAll(body.data(), body.size());
      stash_[static_cast<uint32_t>(hdr[0])].push_back(std::move(body));
    }
    std::vector<char> msg = std::move(stash_[tag].front());
    stash_[tag].erase(stash_[tag].begin());
    if (msg.size() != bytes) CHORUS_THROW(chorusInternalError, "pair oob: size mismatch");
    memcpy(data, msg.data(), bytes);
  }

 private:
  void writeAll(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = write(fd_, c, n);
      if (w <= 0) CHORUS_THROW_ERRNO("pair oob write");
      c += w;
      n -= static_cast<size_t>(w);
    }
  }
  void readAll(void* p, size_t n) {
    char* c = static_cast<char*>(p);
    while (n > 0) {
      ssize_t r = read(fd_, c, n);
      if (r <= 0) CHORUS_THROW(chorusRemoteError, "pair oob: peer closed");
      c += r;
      n -= static_cast<size_t>(r);
    }
  }
  int fd_;
  std::map<uint32_t, std::vector<std::vector<char>>> stash_;
};

// One end of a shm connection between two forked processes, set up over a socketpair.
struct ForkedEnd {
  explicit ForkedEnd(int fd) : oob(fd) {}
  PairOob oob;
  std::vector<PeerCard> cards = std::vector<PeerCard>(2);
  Config cfg;
  TransportContext ctx;
  std::unique_ptr<Transport> transport;
  std::unique_ptr<Connection> conn;
  int32_t peerPid = 0;
};

std::unique_ptr<ForkedEnd> connectForked(int rank, int fd, uint64_t commId, bool singleCopy) {
  auto e = std::make_unique<ForkedEnd>(fd);
  // Learn the peer's pid over the oob, then build the cards.
  int32_t me = getpid();
  e->oob.send(1 - rank, kTagUser, &me, sizeof(me), Deadline());
  e->oob.recv(1 - rank, kTagUser, &e->peerPid, sizeof(e->peerPid), Deadline());
  for (int r = 0; r < 2; ++r) {
    e->cards[r].rank = r;
    e->cards[r].hostHash = 7;
    e->cards[r].pid = r == rank ? me : e->peerPid;
  }
  e->cfg = smallConfig(singleCopy);
  e->ctx.rank = rank;
  e->ctx.nranks = 2;
  e->ctx.commId = commId;
  e->ctx.cards = &e->cards;
  e->ctx.oob = &e->oob;
  e->ctx.config = &e->cfg;
  e->transport = makeShmTransport(e->ctx);
  e->conn = std::move(e->transport->connect({1 - rank}, Deadline::after(kWaitSec))[0]);
  return e;
}

TEST(ShmTransport, DataSentBeforeThePeerExitedIsStillDelivered) {
  // The sender's send completes once its bytes are in the FIFO; it may then exit at once (its
  // part of a collective is over). The receiver must still get those bytes, not "peer died".
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  uint64_t commId = testCommId();
  auto exits = test::runRanks(2, [&](int rank) -> int {
    auto end = connectForked(rank, sv[rank], commId, false);
    Connection& c = *end->conn;
    std::vector<uint8_t> buf(3000);
    if (rank == 1) {
      for (size_t i = 0; i < buf.size(); ++i) buf[i] = pattern(1, 0, i);
      c.postSend(buf.data(), buf.size());
      waitAll(c, 1, 0);
      _exit(0);  // no destructor, no close flag: as abrupt as a crash right after the send
    }
    // Post the receive, wait until the sender is gone (reaped by the fixture) without driving
    // progress, then probe liveness first, as an idle executor does.
    RecvSink sink;
    sink.dst = buf.data();
    sink.bytes = buf.size();
    c.postRecv(sink);
    Deadline gone = Deadline::after(kWaitSec);
    while (kill(end->peerPid, 0) == 0) {
      if (gone.expired()) return 2;
      sched_yield();
    }
    try {
      c.checkAlive();
      waitAll(c, 0, 1);
    } catch (const Error& e) {
      fprintf(stderr, "receiver: %s\n", e.what());
      return 3;
    }
    for (size_t i = 0; i < buf.size(); ++i)
      if (buf[i] != pattern(1, 0, i)) return 4;
    // And now that the FIFO is empty, the death is an error.
    c.postRecv(sink);
    try {
      waitAll(c, 0, 2, 10);
    } catch (const Error& e) {
      return e.code() == chorusRemoteError ? 0 : 5;
    }
    return 6;
  });
  close(sv[0]);
  close(sv[1]);
  EXPECT_TRUE(test::allRanksSucceeded(exits));
}

TEST(ShmTransport, KilledPeerProcessIsRemoteErrorWithinSeconds) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  uint64_t commId = testCommId();
  auto exits = test::runRanks(
      2,
      [&](int rank) -> int {
        auto end = connectForked(rank, sv[rank], commId, true);
        Connection& c = *end->conn;
        // First a single-copy message across processes, to show the channel works.
        std::vector<uint8_t> buf(1 << 20);
        if (rank == 1) {
          for (size_t i = 0; i < buf.size(); ++i) buf[i] = pattern(1, 0, i);
          c.postSend(buf.data(), buf.size());
          waitAll(c, 1, 0);
          char one = 1;
          if (write(ready[1], &one, 1) != 1) return 3;
          pause();  // wait to be killed
          return 4;
        }
        RecvSink sink;
        sink.dst = buf.data();
        sink.bytes = buf.size();
        c.postRecv(sink);
        waitAll(c, 0, 1);
        for (size_t i = 0; i < buf.size(); ++i)
          if (buf[i] != pattern(1, 0, i)) return 5;
        c.postRecv(sink);  // never satisfied: the peer dies
        auto start = std::chrono::steady_clock::now();
        try {
          waitAll(c, 0, 2, 20);
        } catch (const Error& e) {
          double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          fprintf(stderr, "survivor: %s after %.3f s\n", e.what(), s);
          if (e.code() != chorusRemoteError || std::string(e.what()).find("rank 1") == std::string::npos) return 6;
          return s < 2.0 ? 0 : 7;
        }
        return 8;
      },
      60,
      [&](const test::RankHandles& h) {
        char one = 0;
        if (read(ready[0], &one, 1) == 1) kill(h.pids[1], SIGKILL);
      });
  close(sv[0]);
  close(sv[1]);
  close(ready[0]);
  close(ready[1]);
  EXPECT_TRUE(exits[0].exited && exits[0].code == 0) << "survivor: " << exits[0].describe();
  EXPECT_EQ(exits[1].signal, SIGKILL) << "victim: " << exits[1].describe();
  EXPECT_TRUE(shmFilesOf(commId).empty());
}

// --- bandwidth (printed, not asserted) ------------------------------------------------------------

// Connects ranks 0 and 1 (threads) and hands both ends back: {0 -> 1, 1 -> 0}.
std::vector<std::unique_ptr<Connection>> connectedPair(World& w) {
  std::vector<std::unique_ptr<Connection>> ends(2);
  w.run([&](int rank, Transport& t) {
    auto conns = t.connect({1 - rank}, Deadline::after(kWaitSec));
    ends[rank] = std::move(conns[0]);
  });
  return ends;
}

// Messages of calls whose receives never reduce (stamped kStampCopyOnly) move by single copy from
// CHORUS_SHM_CMA_COPY_THRESHOLD even where other messages stream through the FIFO: such a send
// completes only once the receiver has read it, an eager one as soon as it is in the FIFO.
TEST(ShmTransport, CopyOnlyMessagesGoBySingleCopyFromTheirThreshold) {
  Config cfg;
  cfg.shmUseCma = false;  // no single copy for other messages
  cfg.shmCmaCopies = true;
  cfg.shmCmaCopyThreshold = 128 * 1024;
  World w(2, cfg);
  auto ends = connectedPair(w);
  auto* shm = dynamic_cast<shm::ShmConnection*>(ends[0].get());
  ASSERT_NE(shm, nullptr);
  ASSERT_TRUE(shm->singleCopySend());  // threads of one process can read each other
  std::vector<char> out(128 * 1024, 'c'), in(out.size());
  for (bool copy : {false, true}) {
    CallStamp stamp;
    if (copy) stamp.flags = kStampCopyOnly;
    const uint64_t before = ends[0]->sendsCompleted();
    ends[0]->postSend(out.data(), out.size(), stamp);
    for (int i = 0; i < 100; ++i) ends[0]->progress();
    // Eager: done without the receiver. Single copy: done once the receiver has read it.
    EXPECT_EQ(ends[0]->sendsCompleted(), before + (copy ? 0 : 1)) << (copy ? "copy-only message" : "plain message");
    RecvSink sink;
    sink.dst = in.data();
    sink.bytes = in.size();
    sink.stamp = stamp;
    ends[1]->postRecv(sink);
    waitUntil({ends[0].get(), ends[1].get()},
              [&] { return ends[0]->sendsCompleted() == before + 1 && ends[1]->recvsCompleted() == before + 1; });
    EXPECT_EQ(in, out);
    std::fill(in.begin(), in.end(), 0);
  }
}

// Three figures for messages of `bytes` from rank 0 to rank 1, in GB/s of message bytes:
//  * cost: one thread drives both ends (every copy on one core, no waiting): the CPU price of a
//    byte, steady even on a loaded machine;
//  * stream: two threads, `iters` messages posted at once;
//  * ping-pong: two threads, one message each way in turn (2 * bytes per round trip).
void measure(bool cma, size_t bytes, int iters, bool reduce) {
  Config cfg = Config::fromEnv();  // defaults: 64 slots in a 2 MiB ring, single copy from 1 MiB
  cfg.shmUseCma = cma;
  cfg.shmCmaCopies = cma;
  World w(2, cfg);
  auto ends = connectedPair(w);
  std::vector<std::vector<float>> a(2, std::vector<float>(bytes / 4, 1.0f)), b(2, std::vector<float>(bytes / 4, 2.0f));
  auto sinkOf = [&](int rank) {
    RecvSink sink;
    sink.dst = b[rank].data();
    sink.local = b[rank].data();
    sink.bytes = bytes;
    if (reduce) {
      sink.reduce = sumOf<float>();
      sink.elemSize = 4;
    }
    return sink;
  };
  // Cost: best of a few passes of `iters` messages, posted in batches of 64.
  double costSec = 1e30;
  for (int pass = 0; pass < 4; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    for (int done = 0; done < iters;) {
      int batch = std::min(64, iters - done);
      for (int i = 0; i < batch; ++i) {
        ends[0]->postSend(a[0].data(), bytes);
        ends[1]->postRecv(sinkOf(1));
      }
      done += batch;
      waitUntil({ends[0].get(), ends[1].get()},
                [&] {
                  uint64_t want = static_cast<uint64_t>(pass) * iters + done;
                  return ends[0]->sendsCompleted() >= want && ends[1]->recvsCompleted() >= want;
                });
    }
    costSec = std::min(costSec, secondsSince(t0));
  }
  // Stream and ping-pong: two threads.
  const uint64_t base = 4ull * iters;
  std::barrier sync(2);
  double streamSec = 0, pingSec = 0;
  const int pings = std::max(2, iters / 2);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        Connection& c = *ends[rank];
        RecvSink sink = sinkOf(rank);
        sync.arrive_and_wait();
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iters; ++i) {
          if (rank == 0) c.postSend(a[0].data(), bytes);
          else c.postRecv(sink);
        }
        waitAll(c, rank == 0 ? base + iters : 0, rank == 1 ? base + iters : 0);
        sync.arrive_and_wait();
        auto t1 = std::chrono::steady_clock::now();
        for (int i = 0; i < pings; ++i) {
          uint64_t s = c.sendsCompleted(), r = c.recvsCompleted();
          if (rank == 0) c.postSend(a[0].data(), bytes);
          c.postRecv(sink);
          waitAll(c, s, r + 1);
          if (rank == 1) c.postSend(a[1].data(), bytes);
          waitAll(c, s + 1, r + 1);
        }
        if (rank == 0) {
          streamSec = std::chrono::duration<double>(t1 - t0).count();
          pingSec = secondsSince(t1);
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << "rank " << rank << ": " << e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  auto gbs = [&](double msgs, double sec) { return double(bytes) * msgs / sec / 1e9; };
  printf("[ shm bw   ] %-4s %-6s %9zu B: cost %6.2f  stream %6.2f  ping-pong %6.2f GB/s (%.1f us one-way)\n",
         cma ? "cma" : "fifo", reduce ? "reduce" : "copy", bytes, gbs(iters, costSec), gbs(iters, streamSec),
         gbs(2.0 * pings, pingSec), pingSec / pings / 2 * 1e6);
  fflush(stdout);
}

// CHORUS_SHM_BENCH=1 adds larger sizes and more bytes per point.
TEST(ShmTransport, Bandwidth) {
  bool big = getenv("CHORUS_SHM_BENCH") != nullptr;
  std::vector<size_t> sizes = {size_t(8), size_t(64) << 10, size_t(256) << 10, size_t(1) << 20, size_t(4) << 20};
  if (big) sizes.insert(sizes.end(), {size_t(16) << 20, size_t(64) << 20, size_t(256) << 20});
  size_t perPoint = big ? (size_t(2) << 30) : (size_t(64) << 20);
  for (size_t bytes : sizes)
    for (bool reduce : {false, true})
      for (bool cma : {false, true}) {
        if (bytes < 64) {
          if (cma || reduce) continue;
        } else if (cma && bytes < Config{}.shmCmaThreshold) {
          continue;  // below the threshold both modes are the FIFO
        }
        int iters = static_cast<int>(std::clamp<size_t>(perPoint / bytes, 4, 20000));
        measure(cma, bytes, iters, reduce);
      }
}

}  // namespace
}  // namespace chorus

// The UCX network plugin (transports/ucx) through its chorusNet_v1 function table only: init and
// properties, non-blocking connection setup in one process, tag matching and ordering, message
// sizes (0 B .. 64 MiB, unaligned, shorter than the buffer, truncated), registered memory, the
// in-flight limit, closes seen by the peer, and a killed peer process.
//
// Every case runs twice: UCX_TLS=tcp, and UCX_TLS=sm,tcp (with UCX 1.13 and peer error handling:
// shared memory (sysv) carries eager messages and the wireup, TCP loopback the rendezvous bulk data
// (cma is not used with error handling), and the TCP connection manager sets connections up; sm
// alone cannot, its connection manager needs a network transport on the listen interface). The plugin's init is once per process, so
// each case runs in a forked child that sets UCX_TLS before init; the parent waits for the
// child's exit status with a deadline. Inside the child, EXPECT_NET prints file:line and exits
// non-zero. UCX_NET_DEVICES=lo keeps UCX's own lanes on loopback.
#include <dlfcn.h>
#include <libgen.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "chorus/net_plugin.h"
#include "fixtures/ranks.h"

// Weak, so that the unit tests link without UCX (CHORUS_WITH_UCX=OFF). When libchorus's copy is
// not linked in, the module libchorus-net-ucx.so of the build tree is loaded instead.
namespace chorus {
__attribute__((weak)) const chorusNet_v1_t& ucxNetPlugin();
}

namespace chorus::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kChildDeadlineSec = 15;  // one forked case (passes take well under a second)
constexpr double kWaitSec = 8;            // one wait inside a case

const chorusNet_v1_t* ucxTable() {
  static const chorusNet_v1_t* table = []() -> const chorusNet_v1_t* {
    if (&chorus::ucxNetPlugin != nullptr) return &chorus::ucxNetPlugin();
    char exe[4096];
    const ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0) return nullptr;
    exe[len] = '\0';
    const std::string dir = dirname(exe);
    for (const char* rel : {"/../libchorus-net-ucx.so", "/libchorus-net-ucx.so"}) {
      if (void* so = dlopen((dir + rel).c_str(), RTLD_NOW | RTLD_LOCAL))
        return static_cast<const chorusNet_v1_t*>(dlsym(so, "chorusNetPlugin_v1"));
    }
    return nullptr;
  }();
  return table;
}

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// In the child: a failed expectation ends it with status 1.
#define EXPECT_NET(cond)                                                                        \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "%s:%d: expectation failed: %s\n", __FILE__, __LINE__, #cond);            \
      fflush(stderr);                                                                           \
      _exit(1);                                                                                 \
    }                                                                                           \
  } while (0)
#define EXPECT_NET_OK(expr) EXPECT_NET((expr) == chorusNetSuccess)

void childLogger(int level, const char* file, int line, const char* fmt, ...) {
  if (level > 1 && getenv("CHORUS_UCX_TEST_VERBOSE") == nullptr) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[ucx plugin, level %d] ", level);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

// Forks a child with UCX_TLS=tls that runs body(plugin) and exits 0; fails the test when the child
// fails, dies or outlives kChildDeadlineSec.
void inChild(const char* tls, const std::function<void(const chorusNet_v1_t&)>& body) {
  const chorusNet_v1_t* net = ucxTable();
  if (net == nullptr) GTEST_SKIP() << "the UCX plugin is not built (CHORUS_WITH_UCX=OFF)";
  auto exits = runRanks(
      1,
      [&](int) {
        setenv("UCX_TLS", tls, 1);
        setenv("UCX_NET_DEVICES", "lo", 1);
        setenv("CHORUS_SOCKET_IFNAME", "lo", 1);
        body(*net);
        return 0;
      },
      kChildDeadlineSec);
  EXPECT_TRUE(allRanksSucceeded(exits)) << "UCX_TLS=" << tls << " (the child printed which expectation failed)";
}

void initPlugin(const chorusNet_v1_t& net) {
  EXPECT_NET_OK(net.init(childLogger));
  int ndev = 0;
  EXPECT_NET_OK(net.devices(&ndev));
  EXPECT_NET(ndev == 1);
}

// One listener and one connection from it, in this process.
struct Link {
  void* listen = nullptr;
  void* send = nullptr;
  void* recv = nullptr;
};

void connectAccept(const chorusNet_v1_t& net, const void* handle, void* listen, void** send, void** recv) {
  *send = nullptr;
  *recv = nullptr;
  const auto t0 = Clock::now();
  while (*send == nullptr || *recv == nullptr) {
    EXPECT_NET(since(t0) < kWaitSec);
    if (*send == nullptr) EXPECT_NET_OK(net.connect(0, handle, send));
    if (*recv == nullptr) EXPECT_NET_OK(net.accept(listen, recv));
  }
}

Link openLink(const chorusNet_v1_t& net) {
  Link l;
  char handle[CHORUS_NET_HANDLE_MAXSIZE];
  EXPECT_NET_OK(net.listen(0, handle, &l.listen));
  EXPECT_NET(l.listen != nullptr);
  connectAccept(net, handle, l.listen, &l.send, &l.recv);
  return l;
}

void closeLink(const chorusNet_v1_t& net, Link& l) {
  EXPECT_NET_OK(net.closeSend(l.send));
  EXPECT_NET_OK(net.closeRecv(l.recv));
  EXPECT_NET_OK(net.closeListen(l.listen));
}

void* postSend(const chorusNet_v1_t& net, void* comm, const void* data, size_t size, int tag, void* mh = nullptr) {
  void* req = nullptr;
  EXPECT_NET_OK(net.isend(comm, data, size, tag, mh, &req));
  EXPECT_NET(req != nullptr);
  return req;
}

void* postRecv(const chorusNet_v1_t& net, void* comm, void* data, size_t size, int tag, void* mh = nullptr) {
  void* req = nullptr;
  EXPECT_NET_OK(net.irecv(comm, data, size, tag, mh, &req));
  EXPECT_NET(req != nullptr);
  return req;
}

struct Result {
  chorusNetResult_t rc = chorusNetSuccess;
  size_t size = 0;
};

// Tests the requests in turn until each has finished (done or failed), within sec.
std::vector<Result> waitAll(const chorusNet_v1_t& net, const std::vector<void*>& reqs, double sec = kWaitSec) {
  std::vector<Result> out(reqs.size());
  std::vector<char> finished(reqs.size(), 0);
  size_t left = reqs.size();
  const auto t0 = Clock::now();
  while (left > 0) {
    EXPECT_NET(since(t0) < sec);
    for (size_t i = 0; i < reqs.size(); ++i) {
      if (finished[i]) continue;
      int done = 0;
      size_t size = ~size_t{0};
      const chorusNetResult_t rc = net.test(reqs[i], &done, &size);
      if (rc == chorusNetSuccess && !done) continue;
      out[i] = {rc, size};
      finished[i] = 1;
      --left;
    }
  }
  return out;
}

void expectAllOk(const std::vector<Result>& rs) {
  for (const Result& r : rs) EXPECT_NET(r.rc == chorusNetSuccess);
}

void pattern(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>((i * 0x9e3779b1u + seed) >> 11);
}
bool hasPattern(const uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != static_cast<uint8_t>((i * 0x9e3779b1u + seed) >> 11)) return false;
  return true;
}

class UcxNet : public ::testing::TestWithParam<const char*> {};

TEST_P(UcxNet, InitDevicesProperties) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    EXPECT_NET(strcmp(net.name, "ucx") == 0);
    EXPECT_NET(net.abiVersion == CHORUS_NET_PLUGIN_ABI_VERSION);
    int ndev = 0;
    EXPECT_NET(net.devices(&ndev) == chorusNetInvalidUsage);  // before init
    initPlugin(net);
    EXPECT_NET_OK(net.init(childLogger));  // a second init does nothing
    chorusNetProperties_v1_t p;
    EXPECT_NET_OK(net.getProperties(0, &p));
    EXPECT_NET(strcmp(p.name, "ucx:lo") == 0);  // UCX_NET_DEVICES
    EXPECT_NET(p.maxInflight >= 1);
    EXPECT_NET(p.maxMessageBytes >= (size_t{64} << 20));
    EXPECT_NET(p.ptrSupport == CHORUS_NET_PTR_HOST);
    EXPECT_NET(p.regRequired == 0);
    EXPECT_NET(p.numaNode >= -1);
    EXPECT_NET(net.getProperties(1, &p) == chorusNetInvalidArgument);
    void* comm = nullptr;
    char garbage[CHORUS_NET_HANDLE_MAXSIZE] = {1, 2, 3};
    EXPECT_NET(net.connect(0, garbage, &comm) == chorusNetInvalidArgument);
    EXPECT_NET(comm == nullptr);
  });
}

TEST_P(UcxNet, ConnectAcceptAndFirstMessage) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    char handle[CHORUS_NET_HANDLE_MAXSIZE];
    void* listen = nullptr;
    EXPECT_NET_OK(net.listen(0, handle, &listen));
    // Nothing to accept yet, and a connect is not usable at its first call's return necessarily.
    void* recv = nullptr;
    EXPECT_NET_OK(net.accept(listen, &recv));
    EXPECT_NET(recv == nullptr);
    void* send = nullptr;
    connectAccept(net, handle, listen, &send, &recv);
    const char msg[] = "hello over ucx";
    char buf[64] = {};
    void* r = postRecv(net, recv, buf, sizeof(buf), 0);
    void* s = postSend(net, send, msg, sizeof(msg), 0);
    const auto rs = waitAll(net, {s, r});
    expectAllOk(rs);
    EXPECT_NET(rs[0].size == sizeof(msg));
    EXPECT_NET(rs[1].size == sizeof(msg));
    EXPECT_NET(memcmp(buf, msg, sizeof(msg)) == 0);
    EXPECT_NET_OK(net.closeSend(send));
    EXPECT_NET_OK(net.closeRecv(recv));
    EXPECT_NET_OK(net.closeListen(listen));
  });
}

TEST_P(UcxNet, ListenAddressChoice) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    void* listen = nullptr;
    char handle[CHORUS_NET_HANDLE_MAXSIZE];
    // An interface prefix that matches nothing is a configuration error, not a silent fallback.
    setenv("CHORUS_SOCKET_IFNAME", "no-such-interface", 1);
    EXPECT_NET(net.listen(0, handle, &listen) == chorusNetInvalidUsage);
    EXPECT_NET(listen == nullptr);
    // Without CHORUS_SOCKET_IFNAME the listener follows UCX_NET_DEVICES (lo here): reachable.
    unsetenv("CHORUS_SOCKET_IFNAME");
    EXPECT_NET_OK(net.listen(0, handle, &listen));
    Link l;
    l.listen = listen;
    connectAccept(net, handle, listen, &l.send, &l.recv);
    uint16_t a = 7, b = 0;
    expectAllOk(waitAll(net, {postRecv(net, l.recv, &b, 2, 0), postSend(net, l.send, &a, 2, 0)}));
    EXPECT_NET(b == 7);
    closeLink(net, l);
  });
}

TEST_P(UcxNet, SameTagMessagesMatchInPostingOrder) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    Link l = openLink(net);
    // Sends first (they arrive unexpected), then receives; 40 of each stays under maxInflight.
    constexpr int kCount = 40;
    std::vector<uint32_t> out(kCount), in(kCount, ~0u);
    std::vector<void*> reqs;
    for (int i = 0; i < kCount; ++i) {
      out[i] = 1000 + i;
      reqs.push_back(postSend(net, l.send, &out[i], sizeof(uint32_t), 7));
    }
    // Let them arrive (progress comes with test() calls: a receive nobody sends to is tested for
    // a while), so that the receives find their message already there.
    expectAllOk(waitAll(net, reqs));
    uint32_t unused = 0;
    void* idle = postRecv(net, l.recv, &unused, sizeof(unused), 8);
    for (const auto t0 = Clock::now(); since(t0) < 0.05;) {
      int done = 0;
      EXPECT_NET_OK(net.test(idle, &done, nullptr));
      EXPECT_NET(!done);
    }
    reqs.clear();
    for (int i = 0; i < kCount; ++i) reqs.push_back(postRecv(net, l.recv, &in[i], sizeof(uint32_t), 7));
    const auto rs = waitAll(net, reqs);
    expectAllOk(rs);
    for (const Result& r : rs) EXPECT_NET(r.size == sizeof(uint32_t));
    for (int i = 0; i < kCount; ++i) EXPECT_NET(in[i] == out[i]);
    // And receives first: rendezvous-sized messages, still in order.
    constexpr size_t kBig = 256 << 10;
    std::vector<uint8_t> src(kBig * 4), dst(kBig * 4, 0);
    reqs.clear();
    for (int i = 0; i < 4; ++i) reqs.push_back(postRecv(net, l.recv, dst.data() + i * kBig, kBig, 9));
    for (int i = 0; i < 4; ++i) {
      pattern(src.data() + i * kBig, kBig, 50 + i);
      reqs.push_back(postSend(net, l.send, src.data() + i * kBig, kBig, 9));
    }
    expectAllOk(waitAll(net, reqs));
    for (int i = 0; i < 4; ++i) EXPECT_NET(hasPattern(dst.data() + i * kBig, kBig, 50 + i));
    closeLink(net, l);
  });
}

TEST_P(UcxNet, DistinctTagsMatchTheirOwnMessages) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    Link l = openLink(net);
    const int tags[] = {0, 1, 12345, CHORUS_NET_MAX_TAG};
    uint64_t in[4] = {};
    uint64_t out[4];
    std::vector<void*> reqs;
    for (int i = 3; i >= 0; --i) reqs.push_back(postRecv(net, l.recv, &in[i], sizeof(uint64_t), tags[i]));
    for (int i = 0; i < 4; ++i) {
      out[i] = 0xabc0000000ull + static_cast<uint64_t>(tags[i]);
      reqs.push_back(postSend(net, l.send, &out[i], sizeof(uint64_t), tags[i]));
    }
    expectAllOk(waitAll(net, reqs));
    for (int i = 0; i < 4; ++i) EXPECT_NET(in[i] == out[i]);
    void* req = nullptr;
    EXPECT_NET(net.isend(l.send, out, 8, -1, nullptr, &req) == chorusNetInvalidArgument);
    EXPECT_NET(net.irecv(l.recv, in, 8, -5, nullptr, &req) == chorusNetInvalidArgument);
    closeLink(net, l);
  });
}

TEST_P(UcxNet, ZeroByteAnd64MiBMessages) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    Link l = openLink(net);
    auto rs = waitAll(net, {postRecv(net, l.recv, nullptr, 0, 1), postSend(net, l.send, nullptr, 0, 1)});
    expectAllOk(rs);
    EXPECT_NET(rs[0].size == 0 && rs[1].size == 0);
    // A zero-byte message into a non-empty buffer.
    char buf[16];
    rs = waitAll(net, {postRecv(net, l.recv, buf, sizeof(buf), 2), postSend(net, l.send, buf, 0, 2)});
    expectAllOk(rs);
    EXPECT_NET(rs[0].size == 0);

    constexpr size_t kBig = size_t{64} << 20;
    std::vector<uint8_t> src(kBig), dst(kBig, 0);
    pattern(src.data(), kBig, 77);
    rs = waitAll(net, {postRecv(net, l.recv, dst.data(), kBig, 3), postSend(net, l.send, src.data(), kBig, 3)});
    expectAllOk(rs);
    EXPECT_NET(rs[0].size == kBig && rs[1].size == kBig);
    EXPECT_NET(hasPattern(dst.data(), kBig, 77));
    closeLink(net, l);
  });
}

TEST_P(UcxNet, UnalignedBuffersAndOddSizes) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    Link l = openLink(net);
    std::vector<uint8_t> src((1 << 20) + 64), dst((1 << 20) + 64);
    const size_t sizes[] = {1, 7, 63, 4097, 65535, 1000003};
    int tag = 0;
    for (size_t size : sizes) {
      for (size_t off : {size_t{1}, size_t{3}, size_t{7}}) {
        pattern(src.data() + off, size, static_cast<uint32_t>(size + off));
        memset(dst.data(), 0, dst.size());
        const auto rs = waitAll(net, {postRecv(net, l.recv, dst.data() + off + 2, size, tag),
                                      postSend(net, l.send, src.data() + off, size, tag)});
        expectAllOk(rs);
        EXPECT_NET(rs[0].size == size);
        EXPECT_NET(hasPattern(dst.data() + off + 2, size, static_cast<uint32_t>(size + off)));
        EXPECT_NET(dst[off + 1] == 0 && dst[off + 2 + size] == 0);  // nothing written around it
        ++tag;
      }
    }
    closeLink(net, l);
  });
}

TEST_P(UcxNet, LargerBufferReportsSizeAndTruncationIsAnError) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    Link l = openLink(net);
    std::vector<uint8_t> src(300000), dst(600000);
    pattern(src.data(), src.size(), 5);
    for (size_t size : {size_t{10}, size_t{300000}}) {  // eager and rendezvous
      const auto rs = waitAll(net, {postRecv(net, l.recv, dst.data(), dst.size(), 4), postSend(net, l.send, src.data(), size, 4)});
      expectAllOk(rs);
      EXPECT_NET(rs[0].size == size);
      EXPECT_NET(hasPattern(dst.data(), size, 5));
    }
    // 100 bytes into a 10-byte buffer: the receive fails with an internal error.
    const auto rs = waitAll(net, {postRecv(net, l.recv, dst.data(), 10, 5), postSend(net, l.send, src.data(), 100, 5)});
    EXPECT_NET(rs[0].rc == chorusNetInternalError);
    // The same when the message is already there as the receive is posted (UCX may then fail
    // the post itself, or its request).
    void* s = postSend(net, l.send, src.data(), 100, 8);
    expectAllOk(waitAll(net, {s}));
    const auto t0 = Clock::now();
    chorusNetResult_t truncated = chorusNetSuccess;
    while (truncated == chorusNetSuccess) {  // until the message has arrived and been matched
      EXPECT_NET(since(t0) < kWaitSec);
      void* r = nullptr;
      truncated = net.irecv(l.recv, dst.data(), 10, 8, nullptr, &r);
      if (truncated == chorusNetSuccess) {
        EXPECT_NET(r != nullptr);
        truncated = waitAll(net, {r})[0].rc;
      }
    }
    EXPECT_NET(truncated == chorusNetInternalError);
    // The link still works afterwards.
    uint32_t a = 42, b = 0;
    expectAllOk(waitAll(net, {postRecv(net, l.recv, &b, 4, 6), postSend(net, l.send, &a, 4, 6)}));
    EXPECT_NET(b == 42);
    closeLink(net, l);
  });
}

TEST_P(UcxNet, RegisteredBuffers) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    Link l = openLink(net);
    constexpr size_t kSize = 8 << 20;
    std::vector<uint8_t> src(kSize), dst(kSize, 0);
    void* smr = nullptr;
    void* rmr = nullptr;
    EXPECT_NET_OK(net.regMr(l.send, src.data(), kSize, CHORUS_NET_PTR_HOST, &smr));
    EXPECT_NET_OK(net.regMr(l.recv, dst.data(), kSize, CHORUS_NET_PTR_HOST, &rmr));
    EXPECT_NET(smr != nullptr && rmr != nullptr);
    void* bad = nullptr;
    EXPECT_NET(net.regMr(l.send, src.data(), kSize, 0x8, &bad) == chorusNetInvalidArgument);
    pattern(src.data(), kSize, 11);
    // The whole region, then fragments of it (sub-ranges of one registration) as Chorus sends them.
    expectAllOk(waitAll(net, {postRecv(net, l.recv, dst.data(), kSize, 0, rmr), postSend(net, l.send, src.data(), kSize, 0, smr)}));
    EXPECT_NET(hasPattern(dst.data(), kSize, 11));
    memset(dst.data(), 0, kSize);
    constexpr size_t kFrag = 1 << 20;
    std::vector<void*> reqs;
    for (size_t i = 0; i < kSize / kFrag; ++i) {
      reqs.push_back(postRecv(net, l.recv, dst.data() + i * kFrag, kFrag, static_cast<int>(i), rmr));
      reqs.push_back(postSend(net, l.send, src.data() + i * kFrag, kFrag, static_cast<int>(i), smr));
    }
    expectAllOk(waitAll(net, reqs));
    EXPECT_NET(hasPattern(dst.data(), kSize, 11));
    EXPECT_NET_OK(net.deregMr(l.send, smr));
    EXPECT_NET_OK(net.deregMr(l.recv, rmr));
    closeLink(net, l);
  });
}

TEST_P(UcxNet, InflightLimitSaysPostAgainLater) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    chorusNetProperties_v1_t p;
    EXPECT_NET_OK(net.getProperties(0, &p));
    Link l = openLink(net);
    std::vector<uint32_t> bufs(p.maxInflight + 1);
    std::vector<void*> reqs;
    for (int i = 0; i < p.maxInflight; ++i) reqs.push_back(postRecv(net, l.recv, &bufs[i], 4, i));
    void* extra = reinterpret_cast<void*>(1);
    EXPECT_NET_OK(net.irecv(l.recv, &bufs[p.maxInflight], 4, 0, nullptr, &extra));
    EXPECT_NET(extra == nullptr);
    // Completing one frees a slot.
    uint32_t v = 5;
    expectAllOk(waitAll(net, {postSend(net, l.send, &v, 4, 0), reqs[0]}));
    EXPECT_NET(bufs[0] == 5);
    void* again = postRecv(net, l.recv, &bufs[p.maxInflight], 4, 0);
    (void)again;
    // Closing abandons the pending receives (they are never tested again).
    closeLink(net, l);
  });
}

TEST_P(UcxNet, ClosingASendCommFailsThePeersReceives) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    Link l = openLink(net);
    uint32_t a = 1, b = 0;
    expectAllOk(waitAll(net, {postRecv(net, l.recv, &b, 4, 0), postSend(net, l.send, &a, 4, 0)}));
    void* pending = postRecv(net, l.recv, &b, 4, 1);
    const auto t0 = Clock::now();
    EXPECT_NET_OK(net.closeSend(l.send));
    EXPECT_NET(waitAll(net, {pending}, 5)[0].rc == chorusNetRemoteError);
    // A receive posted after the failure fails too.
    void* later = nullptr;
    const chorusNetResult_t rc = net.irecv(l.recv, &b, 4, 2, nullptr, &later);
    EXPECT_NET(rc == chorusNetRemoteError || (rc == chorusNetSuccess && later != nullptr));
    if (later) EXPECT_NET(waitAll(net, {later}, 5)[0].rc == chorusNetRemoteError);
    EXPECT_NET(since(t0) < 5);
    EXPECT_NET_OK(net.closeRecv(l.recv));

    // The other way round: closing the recv comm fails the sender's later sends.
    Link m;
    char handle[CHORUS_NET_HANDLE_MAXSIZE];
    EXPECT_NET_OK(net.listen(0, handle, &m.listen));
    connectAccept(net, handle, m.listen, &m.send, &m.recv);
    EXPECT_NET_OK(net.closeRecv(m.recv));
    chorusNetResult_t last = chorusNetSuccess;
    const auto t1 = Clock::now();
    while (last == chorusNetSuccess) {
      EXPECT_NET(since(t1) < 5);
      void* s = nullptr;
      last = net.isend(m.send, &a, 4, 0, nullptr, &s);
      if (last == chorusNetSuccess && s != nullptr) last = waitAll(net, {s}, 5)[0].rc;
    }
    EXPECT_NET(last == chorusNetRemoteError);
    EXPECT_NET_OK(net.closeSend(m.send));
    EXPECT_NET_OK(net.closeListen(m.listen));
    EXPECT_NET_OK(net.closeListen(l.listen));
  });
}

TEST_P(UcxNet, ClosingWithPendingRequestsIsQuick) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    Link l = openLink(net);
    // A rendezvous-sized send nobody receives and a receive nobody sends to: both are abandoned.
    std::vector<uint8_t> big(4 << 20, 3), sink(64);
    postSend(net, l.send, big.data(), big.size(), 1);
    void* pending = postRecv(net, l.recv, sink.data(), sink.size(), 2);
    (void)pending;
    const auto t0 = Clock::now();
    closeLink(net, l);
    EXPECT_NET(since(t0) < 0.9);  // well under the close timeout (1 s) of each comm
  });
}

TEST_P(UcxNet, TwoConnectionsToOneListenerStayApart) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    initPlugin(net);
    char handle[CHORUS_NET_HANDLE_MAXSIZE];
    void* listen = nullptr;
    EXPECT_NET_OK(net.listen(0, handle, &listen));
    void* send[2] = {};
    void* recv[2] = {};
    connectAccept(net, handle, listen, &send[0], &recv[0]);
    connectAccept(net, handle, listen, &send[1], &recv[1]);
    EXPECT_NET(send[0] != send[1] && recv[0] != recv[1]);
    // Same tag on both: each recv comm gets exactly one of the two messages.
    uint32_t out[2] = {0xaaaa0000, 0xbbbb0000}, in[2] = {};
    expectAllOk(waitAll(net, {postRecv(net, recv[0], &in[0], 4, 3), postRecv(net, recv[1], &in[1], 4, 3),
                              postSend(net, send[0], &out[0], 4, 3), postSend(net, send[1], &out[1], 4, 3)}));
    EXPECT_NET((in[0] == out[0] && in[1] == out[1]) || (in[0] == out[1] && in[1] == out[0]));
    const int peerOf0 = in[0] == out[0] ? 0 : 1;  // which sendComm feeds recv[0]
    // More traffic stays on its own connection: one sender's message goes out first, and the
    // receive of the other connection is posted first (with mixed tags it would take the message
    // that arrived first).
    for (int round = 1; round <= 20; ++round) {
      const int first = round % 2;  // the sendComm that sends first
      uint32_t o[2] = {out[0] + round, out[1] + round}, i[2] = {};
      expectAllOk(waitAll(net, {postSend(net, send[first], &o[first], 4, 3)}));
      expectAllOk(waitAll(net, {postSend(net, send[1 - first], &o[1 - first], 4, 3)}));
      const int lateRecv = (1 - first) == peerOf0 ? 0 : 1;  // the recvComm fed by the later sender
      void* r1 = postRecv(net, recv[lateRecv], &i[lateRecv], 4, 3);
      void* r2 = postRecv(net, recv[1 - lateRecv], &i[1 - lateRecv], 4, 3);
      expectAllOk(waitAll(net, {r1, r2}));
      EXPECT_NET(i[0] == o[peerOf0] && i[1] == o[1 - peerOf0]);
    }
    for (int k = 0; k < 2; ++k) {
      EXPECT_NET_OK(net.closeSend(send[k]));
      EXPECT_NET_OK(net.closeRecv(recv[k]));
    }
    EXPECT_NET_OK(net.closeListen(listen));
  });
}

TEST_P(UcxNet, CommsUsedFromSeveralThreadsAtOnce) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    // Ranks run as threads of one process in Chorus's tests: each thread sets up and uses its
    // own link while the others do the same.
    initPlugin(net);
    constexpr int kThreads = 4;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&net, t] {
        Link l = openLink(net);
        std::vector<uint8_t> src(300000), dst(300000);
        for (int i = 0; i < 30; ++i) {
          const size_t size = (i % 3 == 0) ? 300000 : static_cast<size_t>(1 + i * 37);
          const uint32_t seed = static_cast<uint32_t>(t * 1000 + i);
          pattern(src.data(), size, seed);
          const auto rs = waitAll(net, {postRecv(net, l.recv, dst.data(), dst.size(), i), postSend(net, l.send, src.data(), size, i)});
          expectAllOk(rs);
          EXPECT_NET(rs[0].size == size && hasPattern(dst.data(), size, seed));
        }
        closeLink(net, l);
      });
    }
    for (std::thread& th : threads) th.join();
  });
}

// A peer process (forked before init) connected both ways to this process. The peer runs
// `afterSetup` once its comms are up, then stops calling the plugin; this process gets its own
// comms to the peer.
struct PeerProcess {
  pid_t pid = -1;
  void* listen = nullptr;
  void* send = nullptr;
  void* recv = nullptr;
};

PeerProcess startPeer(const chorusNet_v1_t& net, const std::function<void(void* send, void* recv)>& afterSetup) {
  int toPeer[2], fromPeer[2];
  EXPECT_NET(pipe(toPeer) == 0 && pipe(fromPeer) == 0);
  PeerProcess peer;
  peer.pid = fork();
  EXPECT_NET(peer.pid >= 0);
  char ours[CHORUS_NET_HANDLE_MAXSIZE], theirs[CHORUS_NET_HANDLE_MAXSIZE];
  initPlugin(net);  // after the fork: each process has its own UCX
  void* listen = nullptr;
  EXPECT_NET_OK(net.listen(0, ours, &listen));
  const int out = peer.pid == 0 ? fromPeer[1] : toPeer[1];
  const int in = peer.pid == 0 ? toPeer[0] : fromPeer[0];
  EXPECT_NET(write(out, ours, sizeof(ours)) == static_cast<ssize_t>(sizeof(ours)));
  EXPECT_NET(read(in, theirs, sizeof(theirs)) == static_cast<ssize_t>(sizeof(theirs)));
  void *send = nullptr, *recv = nullptr;
  const auto t0 = Clock::now();
  while (send == nullptr || recv == nullptr) {
    EXPECT_NET(since(t0) < kWaitSec);
    if (send == nullptr) EXPECT_NET_OK(net.connect(0, theirs, &send));
    if (recv == nullptr) EXPECT_NET_OK(net.accept(listen, &recv));
  }
  if (peer.pid == 0) {
    afterSetup(send, recv);
    sleep(static_cast<unsigned>(kChildDeadlineSec));  // no more plugin calls; killed by the test
    _exit(2);
  }
  peer.listen = listen;
  peer.send = send;
  peer.recv = recv;
  return peer;
}

TEST_P(UcxNet, KilledPeerProcessFailsRequests) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    // The peer is killed: our pending receive and our sends to it must fail with a remote error,
    // not hang. The peer stops calling the plugin once its comms are set up: ours must still
    // complete without it.
    PeerProcess peer = startPeer(net, [](void*, void*) {});
    uint8_t buf[64];
    void* pending = postRecv(net, peer.recv, buf, sizeof(buf), 1);
    // A rendezvous-sized send the peer never receives, pending when it dies.
    std::vector<uint8_t> big(1 << 20, 1);
    void* stuck = postSend(net, peer.send, big.data(), big.size(), 9);
    kill(peer.pid, SIGKILL);
    waitpid(peer.pid, nullptr, 0);
    const auto t1 = Clock::now();
    const auto rs = waitAll(net, {pending, stuck}, 5);
    EXPECT_NET(rs[0].rc == chorusNetRemoteError);
    EXPECT_NET(rs[1].rc == chorusNetRemoteError);
    void* later = nullptr;
    EXPECT_NET(net.isend(peer.send, buf, 8, 2, nullptr, &later) == chorusNetRemoteError);
    EXPECT_NET(since(t1) < 5);
    EXPECT_NET_OK(net.closeSend(peer.send));
    EXPECT_NET_OK(net.closeRecv(peer.recv));
    EXPECT_NET_OK(net.closeListen(peer.listen));
  });
}

TEST_P(UcxNet, PeerThatClosesAndGoesQuietIsSeen) {
  inChild(GetParam(), [](const chorusNet_v1_t& net) {
    // The peer closes its comms and then makes no further plugin call (it waits on something
    // else, or aborts): the close alone must fail our pending receive and our sends.
    PeerProcess peer = startPeer(net, [&net](void* send, void* recv) {
      usleep(100000);  // our receive is posted by then
      EXPECT_NET_OK(net.closeSend(send));
      EXPECT_NET_OK(net.closeRecv(recv));
    });
    uint8_t buf[64];
    void* pending = postRecv(net, peer.recv, buf, sizeof(buf), 1);
    const auto t0 = Clock::now();
    EXPECT_NET(waitAll(net, {pending}, 5)[0].rc == chorusNetRemoteError);
    chorusNetResult_t last = chorusNetSuccess;
    while (last == chorusNetSuccess) {
      EXPECT_NET(since(t0) < 5);
      void* s = nullptr;
      last = net.isend(peer.send, buf, 8, 0, nullptr, &s);
      if (last == chorusNetSuccess && s != nullptr) last = waitAll(net, {s}, 5)[0].rc;
    }
    EXPECT_NET(last == chorusNetRemoteError);
    kill(peer.pid, SIGKILL);
    waitpid(peer.pid, nullptr, 0);
    EXPECT_NET_OK(net.closeSend(peer.send));
    EXPECT_NET_OK(net.closeRecv(peer.recv));
    EXPECT_NET_OK(net.closeListen(peer.listen));
  });
}

// tcp: TCP only. sm,tcp: shared memory and TCP (see the top of the file).
INSTANTIATE_TEST_SUITE_P(Tls, UcxNet, ::testing::Values("tcp", "sm,tcp"), [](const ::testing::TestParamInfo<const char*>& info) {
  return std::string(strcmp(info.param, "tcp") == 0 ? "tcp" : "shm");
});

}  // namespace
}  // namespace chorus::test

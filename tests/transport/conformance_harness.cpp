#include "transport/conformance_harness.h"

#include <dirent.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "bootstrap/unique_id.h"
#include "base/host_identity.h"

#ifndef CHORUS_NET_PLUGIN_DIR
#error "CMake defines CHORUS_NET_PLUGIN_DIR (where libchorus-net-*.so are built) for this suite"
#endif

namespace chorus::test {

// ---- the transports under test ---------------------------------------------------------------
//
// Loopback only: every rank also gets CHORUS_SOCKET_IFNAME=lo (RankTransport), which the plugins
// read themselves for their listen address (UCX) or domain (libfabric's socket providers), and
// UCX_NET_DEVICES=lo keeps UCX's own lanes on loopback.
// UCX needs its tcp transport even for "shared memory": its connection manager (the listener a
// connection is set up through) needs a network transport on the listen interface; with
// UCX_TLS=sm,tcp, shared memory carries eager messages between two processes of this host
// (transports/ucx and tests/unit/test_net_ucx.cpp say which lane UCX 1.13 uses for what).
const std::vector<TransportParam>& transportParams() {
#ifdef CHORUS_HAVE_UCX
  constexpr bool kUcx = true;
#else
  constexpr bool kUcx = false;
#endif
#ifdef CHORUS_HAVE_OFI
  constexpr bool kOfi = true;
#else
  constexpr bool kOfi = false;
#endif
  const std::string dir = CHORUS_NET_PLUGIN_DIR;
  static const std::vector<TransportParam> params = {
      {"shm", TransportId::Shm, {}, "", true, "", "shm"},
      {"tcp", TransportId::Tcp, {}, "", true, "", "tcp"},
      {"ucx_tcp", TransportId::Ucx, {{"UCX_TLS", "tcp"}, {"UCX_NET_DEVICES", "lo"}}, "", kUcx, "CHORUS_WITH_UCX=OFF", "ucx"},
      {"ucx_shm", TransportId::Ucx, {{"UCX_TLS", "sm,tcp"}, {"UCX_NET_DEVICES", "lo"}}, "", kUcx, "CHORUS_WITH_UCX=OFF", "ucx"},
      {"ofi_tcp", TransportId::Ofi, {{"CHORUS_OFI_PROVIDER", "tcp;ofi_rxm"}}, "", kOfi, "CHORUS_WITH_OFI=OFF", "ofi"},
      {"ofi_shm", TransportId::Ofi, {{"CHORUS_OFI_PROVIDER", "shm"}}, "", kOfi, "CHORUS_WITH_OFI=OFF", "ofi"},
      {"plugin_ucx", TransportId::Plugin, {{"UCX_TLS", "tcp"}, {"UCX_NET_DEVICES", "lo"}}, dir + "/libchorus-net-ucx.so", kUcx,
       "CHORUS_WITH_UCX=OFF (libchorus-net-ucx.so is not built)", "plugin:ucx"},
      {"plugin_ofi_name", TransportId::Plugin, {{"CHORUS_OFI_PROVIDER", "tcp;ofi_rxm"}}, "ofi", kOfi,
       "CHORUS_WITH_OFI=OFF (libchorus-net-ofi.so is not built)", "plugin:ofi", /*needsLibraryPath=*/true},
  };
  return params;
}

void PrintTo(const TransportParam& p, std::ostream* os) { *os << p.label; }

// ---- RankTransport ---------------------------------------------------------------------------

void RankTransport::Forwarder::send(int peer, uint32_t tag, const void* data, size_t bytes, Deadline deadline) {
  CHORUS_ASSERT(target != nullptr);
  target->send(peer, tag, data, bytes, deadline);
}

void RankTransport::Forwarder::recv(int peer, uint32_t tag, void* data, size_t bytes, Deadline deadline) {
  CHORUS_ASSERT(target != nullptr);
  target->recv(peer, tag, data, bytes, deadline);
}

RankTransport::RankTransport(const TransportParam& param, int rank, int nranks, const chorusUniqueId& id, double timeoutSec)
    : rank_(rank), nranks_(nranks), cards_(static_cast<size_t>(nranks)) {
  // This process is one rank, forked for this test: its environment is its own.
  setenv("CHORUS_SOCKET_IFNAME", "lo", 1);
  for (const auto& [name, value] : param.env) setenv(name.c_str(), value.c_str(), 1);
  config_ = Config::fromEnv();
  config_.socketIfname = "lo";
  config_.timeoutSec = timeoutSec;
  config_.netPlugin = param.netPlugin;

  UniqueIdData uid = decodeUniqueId(id);
  ctx_.rank = rank;
  ctx_.nranks = nranks;
  ctx_.commId = uid.commId;
  ctx_.secret[0] = uid.secret[0];
  ctx_.secret[1] = uid.secret[1];
  ctx_.cards = &cards_;
  ctx_.oob = &oob_;
  ctx_.config = &config_;
  transport_ = makeTransport(param.id, ctx_);

  PeerCard card;
  card.rank = rank;
  card.pid = getpid();
  card.hostHash = hostHash(config_.hostId);
  card.pidNamespace = pidNamespaceId();
  snprintf(card.hostname, sizeof(card.hostname), "%s", hostName().c_str());
  card.transports = 1u << static_cast<unsigned>(param.id);
  transport_->fillCard(card);
  bootstrap_ = Bootstrap::join(uid, rank, nranks, card, config_, Deadline::after(timeoutSec));
  oob_.target = bootstrap_.get();
  cards_ = bootstrap_->cards();
}

RankTransport::~RankTransport() = default;

std::vector<std::unique_ptr<Connection>> RankTransport::connect(const std::vector<int>& peers, double seconds) {
  return transport_->connect(peers, Deadline::after(seconds));
}

void RankTransport::barrier(double seconds) { bootstrap_->barrier(Deadline::after(seconds)); }

void RankTransport::notify(int peer, uint32_t value) { bootstrap_->send(peer, kTagUser, &value, sizeof value, Deadline::after(kRankWaitSec)); }

uint32_t RankTransport::awaitNote(int peer, double seconds) {
  uint32_t value = 0;
  bootstrap_->recv(peer, kTagUser, &value, sizeof value, Deadline::after(seconds));
  return value;
}

// ---- rank processes ----------------------------------------------------------------------------

namespace {

std::vector<std::string> shmNames() {
  std::vector<std::string> out;
  DIR* d = opendir("/dev/shm");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) out.push_back(e->d_name);
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<std::string> shmLeftBehind(int pid, const std::vector<std::string>& existedBefore) {
  std::vector<std::string> out;
  const std::string prefix = std::to_string(pid);
  for (const std::string& name : shmNames())
    if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 && !isdigit(static_cast<unsigned char>(name[prefix.size()])) &&
        !std::binary_search(existedBefore.begin(), existedBefore.end(), name))
      out.push_back(name);
  return out;
}

std::vector<RankExit> runRanksTidy(int n, const std::function<int(int rank, const chorusUniqueId& id)>& body,
                                   std::vector<std::string>* leftBehind) {
  std::vector<int> pids;
  // Loopback only, also for the unique id's root (made in rank 0 before the body runs).
  ScopedEnv loopback("CHORUS_SOCKET_IFNAME", "lo");
  const std::vector<std::string> before = shmNames();  // sorted
  auto exits = runRanksWithId(n, body, kTestDeadlineSec, [&](RankHandles& h) { pids.assign(h.pids.begin(), h.pids.end()); });
  // Every rank has ended (runRanks reaps them all): what is named after them is garbage.
  for (size_t r = 0; r < pids.size(); ++r)
    for (const std::string& name : shmLeftBehind(pids[r], before)) {
      if (leftBehind) leftBehind->push_back("rank " + std::to_string(r) + ": /dev/shm/" + name);
      unlink(("/dev/shm/" + name).c_str());
    }
  return exits;
}

// ---- progress --------------------------------------------------------------------------------

void drive(const std::vector<Connection*>& conns, const std::function<bool()>& done, double seconds) {
  Deadline deadline = Deadline::after(seconds);
  Backoff backoff;
  Clock::time_point lastCheck = Clock::now();
  while (!done()) {
    bool moved = false;
    for (Connection* c : conns) moved |= c->progress();
    Clock::time_point now = Clock::now();
    if (now - lastCheck >= std::chrono::milliseconds(2)) {
      for (Connection* c : conns) c->checkAlive();
      lastCheck = now;
    }
    if (moved) {
      backoff.reset();
      continue;
    }
    if (deadline.expired()) CHORUS_THROW(chorusTimeout, "test deadline: the connections did not finish in %.1f s", seconds);
    backoff.pause();
  }
}

std::vector<Connection*> pointers(const std::vector<std::unique_ptr<Connection>>& conns) {
  std::vector<Connection*> out;
  for (const auto& c : conns) out.push_back(c.get());
  return out;
}

chorusResult_t codeOf(const std::function<void()>& f, std::string* what) {
  try {
    f();
    return chorusSuccess;
  } catch (const Error& e) {
    if (what) *what = e.what();
    return e.code();
  } catch (const std::exception& e) {
    if (what) *what = std::string("not a chorus::Error: ") + e.what();
    return chorusInternalError;
  }
}

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// ---- content -----------------------------------------------------------------------------------

namespace {

inline uint64_t patternWord(uint64_t seed, size_t i) {
  if (i == 0) return seed;
  uint64_t x = (seed + 0x9e3779b97f4a7c15ull) ^ (static_cast<uint64_t>(i) * 0xbf58476d1ce4e5b9ull);
  return x ^ (x >> 31);
}

}  // namespace

void fillPattern(void* buf, size_t n, uint64_t seed) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t words = n / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w = patternWord(seed, i);
    memcpy(p + 8 * i, &w, 8);
  }
  if (n % 8) {
    uint64_t w = patternWord(seed, words);
    memcpy(p + 8 * words, &w, n % 8);
  }
}

long long patternMismatch(const void* buf, size_t n, uint64_t seed) {
  auto* p = static_cast<const uint8_t*>(buf);
  size_t words = (n + 7) / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w = patternWord(seed, i);
    size_t len = std::min<size_t>(8, n - 8 * i);
    if (memcmp(p + 8 * i, &w, len) == 0) continue;
    auto* e = reinterpret_cast<const uint8_t*>(&w);
    for (size_t j = 0; j < len; ++j)
      if (p[8 * i + j] != e[j]) return static_cast<long long>(8 * i + j);
  }
  return -1;
}

uint64_t storedSeed(const void* buf, size_t n) {
  uint64_t w = 0;
  memcpy(&w, buf, std::min<size_t>(n, 8));
  return w;
}

Buffer::Buffer(size_t bytes, size_t misalign) : bytes_(bytes), misalign_(misalign) {
  size_t total = (kGuard + misalign + bytes + kGuard + 63) / 64 * 64;
  base_ = static_cast<uint8_t*>(aligned_alloc(64, total));
  if (base_ == nullptr) CHORUS_THROW(chorusSystemError, "test: cannot allocate %zu bytes", total);
  memset(base_, 0xA5, kGuard + misalign);
  data_ = base_ + kGuard + misalign;
  memset(data_, 0x5A, bytes);
  memset(data_ + bytes, 0xA5, kGuard);
}

Buffer::~Buffer() { free(base_); }

Buffer::Buffer(Buffer&& o) noexcept : base_(o.base_), data_(o.data_), bytes_(o.bytes_), misalign_(o.misalign_) {
  o.base_ = nullptr;
  o.data_ = nullptr;
}

bool Buffer::guardsIntact() const {
  for (size_t i = 0; i < kGuard + misalign_; ++i)
    if (base_[i] != 0xA5) return false;
  for (size_t i = 0; i < kGuard; ++i)
    if (data_[bytes_ + i] != 0xA5) return false;
  return true;
}

// ---- Traffic ---------------------------------------------------------------------------------

void Traffic::noteTicket(Connection& c, bool isSend, uint64_t ticket) {
  if (std::find(conns_.begin(), conns_.end(), &c) == conns_.end()) conns_.push_back(&c);
  for (auto& [key, next] : nextTicket_) {
    if (key.first != &c || key.second != isSend) continue;
    EXPECT_EQ(ticket, next) << (isSend ? "send" : "recv") << " tickets to rank " << c.peer() << " must count up by one";
    next = ticket + 1;
    return;
  }
  // The first post this Traffic sees on (c, direction): it continues whatever came before (a
  // post may complete at once, e.g. a zero-byte message, so completed counts prove nothing here).
  nextTicket_.push_back({{&c, isSend}, ticket + 1});
}

void Traffic::send(Connection& c, size_t bytes, uint64_t seed, size_t misalign) {
  Buffer buf(bytes, misalign);
  fillPattern(buf.data(), bytes, seed);
  uint64_t t = c.postSend(buf.data(), bytes);
  noteTicket(c, true, t);
  ops_.push_back(Op{&c, true, t, seed, std::move(buf)});
}

void Traffic::recv(Connection& c, size_t bytes, uint64_t seed, size_t misalign) {
  Buffer buf(bytes, misalign);
  RecvSink sink;
  sink.dst = buf.data();
  sink.bytes = bytes;
  uint64_t t = c.postRecv(sink);
  noteTicket(c, false, t);
  ops_.push_back(Op{&c, false, t, seed, std::move(buf)});
}

bool Traffic::done() const {
  for (const Op& op : ops_) {
    uint64_t completed = op.isSend ? op.conn->sendsCompleted() : op.conn->recvsCompleted();
    if (completed <= op.ticket) return false;
  }
  return true;
}

void Traffic::run(double seconds) {
  drive(conns_, [this] { return done(); }, seconds);
}

int Traffic::check() const {
  int bad = 0;
  for (const Op& op : ops_) {
    bool guards = op.buf.guardsIntact();
    EXPECT_TRUE(guards) << (op.isSend ? "send" : "recv") << " buffer of " << op.buf.size() << " bytes (peer " << op.conn->peer()
                        << ", ticket " << op.ticket << "): guard bytes around it were overwritten";
    // A receive must hold its message; a send buffer must be as it was (transports never write it).
    long long at = patternMismatch(op.buf.data(), op.buf.size(), op.seed);
    if (at < 0 && guards) continue;
    if (++bad <= 5 && at >= 0)
      ADD_FAILURE() << (op.isSend ? "send buffer changed" : "received message wrong") << ": peer " << op.conn->peer() << ", ticket "
                    << op.ticket << ", " << op.buf.size() << " bytes, expected seed 0x" << std::hex << op.seed << ", found seed 0x"
                    << storedSeed(op.buf.data(), op.buf.size()) << std::dec << ", first wrong byte at " << at;
  }
  if (bad > 5) ADD_FAILURE() << bad << " messages wrong in all (first 5 shown)";
  return bad;
}

// ---- shared memory between the test and its ranks -------------------------------------------

void* mapShared(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    abort();
  }
  return p;
}

void unmapShared(void* p, size_t bytes) { munmap(p, bytes); }

int64_t monotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace chorus::test

// The TCP transport: a data listener opened at construction, and connect() that builds one
// TcpConnection (numSockets streams) per listed peer.
//
// Who dials: the lower rank of a pair opens all the pair's sockets to the higher rank's listener
// and sends a Hello on each (tcp_wire.h). connect() first dials every higher peer it lists (a
// dial completes in the kernel's accept queue, without the other side's help), then accepts and
// reads hellos until every lower peer it lists has all its sockets there. So a ring, or any
// pattern of connects, cannot deadlock. Hellos are read without blocking, several at a time, so
// a stray connection that never says hello delays nobody.
//
// Sockets that arrive for a peer (or for a connect ordinal) not asked for yet are kept for the
// later connect() that asks for them. A hello with the wrong secret, communicator or layout is
// closed with a warning (tcp_hello.h). Sockets whose hello is not complete are held to the
// limits of bootstrap/auth_gate.h: closed after CHORUS_AUTH_TIMEOUT, at most
// CHORUS_AUTH_MAX_PENDING at once, and when accept() runs out of descriptors the oldest is
// closed (or, with none, the listener rests a moment) instead of failing the connect. Accepting
// happens only inside connect(); between calls, connections wait in the kernel's queue.
//
// Failure: every peer's listener was open before the cards were exchanged, so a refused dial
// means the peer is gone: chorusRemoteError at once, not retries until the deadline. The
// context's abort flag (chorusCommAbort) is looked at before each dial, at least every 100 ms
// while one is in progress, and on every waiting round (poll() <= 100 ms): chorusInvalidUsage.
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "bootstrap/auth_gate.h"
#include "bootstrap/socket.h"
#include "base/error.h"
#include "base/log.h"
#include "transports/tcp/tcp_connection.h"
#include "transports/tcp/tcp_hello.h"
#include "transports/tcp/tcp_wire.h"

namespace chorus {
namespace tcp {
namespace {

// Socket buffers asked for: 4 MiB each way holds a few 512 KiB chunks per socket in flight and
// covers the bandwidth-delay product of a 25 Gb/s link at ~1 ms. The kernel caps it at
// net.core.{w,r}mem_max (and doubles what it grants); the grant is logged at connect.
constexpr int kSocketBufferBytes = 4 << 20;
constexpr int kMaxSockets = 64;

void tuneBuffers(int fd) {
  int want = kSocketBufferBytes;
  // Best effort: a refusal leaves the kernel's default (autotuned) buffers, which still work.
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
}

std::pair<int, int> bufferSizes(int fd) {
  int snd = 0, rcv = 0;
  socklen_t len = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, &len);
  len = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, &len);
  return {snd, rcv};
}

class TcpTransport final : public TcpTransportBase {
 public:
  explicit TcpTransport(const TransportContext& ctx);

  const char* name() const override { return "tcp"; }
  double latencyUs() const override { return 15.0; }
  double bandwidthGBps() const override { return 2.2; }
  bool canReach(int peer) const override;
  WireAddr listenAddress() const override { return addr_; }
  void fillCard(PeerCard& card) const override { card.tcpAddr = addr_; }
  std::vector<std::unique_ptr<Connection>> connect(const std::vector<int>& peers, Deadline deadline) override;

 private:
  using Key = std::pair<int, uint64_t>;  // (peer rank, connect ordinal of the pair)

  // An accepted socket whose hello is not complete yet.
  struct Handshake {
    Fd fd;
    std::string remote;
    Hello hello;
    size_t got = 0;
    Clock::time_point since;
  };

  std::unique_ptr<Connection> makeConnection(int peer, std::vector<Fd> socks, const char* how);
  std::vector<Fd> dial(int peer, uint64_t ordinal, Deadline deadline);
  // Throws chorusInvalidUsage once chorusCommAbort has set the context's abort flag.
  void checkAbort(int peer) const;
  bool complete(const Key& key) const;
  void waitForSockets(Deadline deadline);
  // Throws chorusRemoteError when a peer we wait for is known gone (ctx_.peerGone, every 250 ms).
  void checkGone(const std::vector<std::pair<size_t, Key>>& incoming);
  void acceptQueued();
  void admit(Fd fd);
  void readHellos();
  // Reads what has arrived of h's hello. Returns false when h is done with (adopted or closed).
  bool readHello(Handshake& h);

  TransportContext ctx_;
  int numSockets_;
  size_t chunkBytes_;
  double timeoutSec_;
  Fd listen_;
  WireAddr addr_;
  std::map<int, uint64_t> ordinals_;    // connect() calls so far, per peer
  HelloExpect expect_;
  std::unique_ptr<AuthGate> gate_;
  std::deque<Handshake> handshakes_;          // oldest first
  Clock::time_point acceptPausedUntil_{};     // out of descriptors: the listener rests
  Clock::time_point nextGoneCheck_{};         // when checkGone asks ctx_.peerGone again
  std::map<Key, std::vector<Fd>> arrived_;  // verified sockets, by socket index
};

TcpTransport::TcpTransport(const TransportContext& ctx) : ctx_(ctx) {
  CHORUS_CHECK_ARG(ctx.config != nullptr, "tcp transport: no config");
  numSockets_ = ctx.config->tcpNumSockets;
  chunkBytes_ = ctx.config->tcpChunkBytes;
  timeoutSec_ = ctx.config->timeoutSec;
  CHORUS_CHECK_ARG(numSockets_ >= 1 && numSockets_ <= kMaxSockets, "CHORUS_TCP_NSOCKS=%d is outside [1, %d]",
                   numSockets_, kMaxSockets);
  CHORUS_CHECK_ARG(chunkBytes_ > 0 && chunkBytes_ % 64 == 0, "CHORUS_TCP_CHUNK=%zu is not a positive multiple of 64",
                   chunkBytes_);
  WireAddr local = chooseLocalAddress(ctx.config->socketIfname);
  local.port = 0;
  listen_ = listenOn(local, &addr_);
  setNonBlocking(listen_.get(), true);
  tuneBuffers(listen_.get());  // accepted sockets inherit the listener's buffer sizes
  expect_.secret[0] = ctx.secret[0];
  expect_.secret[1] = ctx.secret[1];
  expect_.commId = ctx.commId;
  expect_.rank = ctx.rank;
  expect_.numSockets = numSockets_;
  gate_ = std::make_unique<AuthGate>(format("tcp: rank %d: data listener %s", ctx.rank, addrToString(addr_).c_str()),
                                     kLogTransport, AuthLimits::fromEnv(timeoutSec_));
  auto [snd, rcv] = bufferSizes(listen_.get());
  CHORUS_INFO(kLogTransport, "tcp: data listener on %s (%d socket(s) per peer, chunk %zu, socket buffers %d/%d)",
              addrToString(addr_).c_str(), numSockets_, chunkBytes_, snd, rcv);
}

bool TcpTransport::canReach(int peer) const {
  if (ctx_.cards == nullptr || peer < 0 || peer >= static_cast<int>(ctx_.cards->size()) || peer == ctx_.rank)
    return false;
  const WireAddr& a = (*ctx_.cards)[peer].tcpAddr;
  return (a.family == AF_INET || a.family == AF_INET6) && a.port != 0;
}

std::vector<std::unique_ptr<Connection>> TcpTransport::connect(const std::vector<int>& peers, Deadline deadline) {
  CHORUS_CHECK_ARG(ctx_.cards != nullptr, "tcp transport: connect() before the peer cards were exchanged");
  std::set<int> seen;
  for (int p : peers) {
    CHORUS_CHECK_ARG(p >= 0 && p < ctx_.nranks && p != ctx_.rank, "tcp connect: rank %d is not a peer of rank %d", p,
                     ctx_.rank);
    CHORUS_CHECK_ARG(seen.insert(p).second, "tcp connect: rank %d listed twice", p);
    CHORUS_CHECK_ARG(canReach(p), "tcp connect: rank %d published no TCP address", p);
  }
  std::vector<std::unique_ptr<Connection>> out(peers.size());
  std::vector<std::pair<size_t, Key>> incoming;
  // Dial every higher peer first: that never waits on the other side's connect() call.
  for (size_t i = 0; i < peers.size(); ++i) {
    int p = peers[i];
    uint64_t ordinal = ordinals_[p]++;
    if (ctx_.rank < p) {
      out[i] = makeConnection(p, dial(p, ordinal, deadline), "dialed");
    } else {
      incoming.push_back({i, {p, ordinal}});
    }
  }
  // Then collect the sockets the lower peers dial to us.
  while (!incoming.empty()) {
    for (size_t k = 0; k < incoming.size();) {
      auto [i, key] = incoming[k];
      if (!complete(key)) {
        ++k;
        continue;
      }
      auto node = arrived_.extract(key);
      out[i] = makeConnection(key.first, std::move(node.mapped()), "accepted");
      incoming[k] = incoming.back();
      incoming.pop_back();
    }
    if (incoming.empty()) break;
    checkAbort(incoming.front().second.first);
    checkGone(incoming);
    if (deadline.expired()) {
      std::string missing;
      for (auto& [i, key] : incoming) {
        auto it = arrived_.find(key);
        int got = 0;
        if (it != arrived_.end())
          for (const Fd& fd : it->second) got += fd ? 1 : 0;
        missing += format("%s%d (%d of %d sockets)", missing.empty() ? "" : ", ", key.first, got, numSockets_);
      }
      CHORUS_THROW(chorusTimeout, "tcp: rank %d timed out waiting for connections from rank(s) %s", ctx_.rank,
                   missing.c_str());
    }
    waitForSockets(deadline);
  }
  return out;
}

std::unique_ptr<Connection> TcpTransport::makeConnection(int peer, std::vector<Fd> socks, const char* how) {
  auto [snd, rcv] = bufferSizes(socks[0].get());
  CHORUS_INFO(kLogTransport, "tcp: rank %d <-> rank %d connected (%s; peer listens on %s): %zu socket(s), chunk %zu, "
              "sndbuf %d, rcvbuf %d", ctx_.rank, peer, how, addrToString((*ctx_.cards)[peer].tcpAddr).c_str(),
              socks.size(), chunkBytes_, snd, rcv);
  return std::make_unique<TcpConnection>(ctx_.rank, peer, std::move(socks), chunkBytes_);
}

void TcpTransport::checkGone(const std::vector<std::pair<size_t, Key>>& incoming) {
  // A peer that died before dialing us would be waited for until the deadline: ask now and then.
  if (!ctx_.peerGone || Clock::now() < nextGoneCheck_) return;
  nextGoneCheck_ = Clock::now() + std::chrono::milliseconds(250);
  for (const auto& [i, key] : incoming)
    if (ctx_.peerGone(key.first)) {
      Error gone(chorusRemoteError,
                 format("tcp: rank %d will not connect to rank %d: its process died or its communicator broke", key.first, ctx_.rank));
      gone.setPeer(key.first);  // run() then asks it where the failure started
      throw gone;
    }
}

void TcpTransport::checkAbort(int peer) const {
  if (ctx_.abortFlag && ctx_.abortFlag->load(std::memory_order_acquire))
    CHORUS_THROW(chorusInvalidUsage, "tcp: rank %d: aborted by chorusCommAbort while connecting to rank %d", ctx_.rank,
                 peer);
}

std::vector<Fd> TcpTransport::dial(int peer, uint64_t ordinal, Deadline deadline) {
  const WireAddr& addr = (*ctx_.cards)[peer].tcpAddr;
  std::vector<Fd> socks;
  for (int s = 0; s < numSockets_; ++s) {
    checkAbort(peer);
    Fd fd;
    try {
      // The peer opened this listener before the cards were exchanged: a refusal means it is
      // gone (closed or died), so it is reported at once instead of retried until the deadline.
      fd = connectTo(addr, deadline, /*retryRefused=*/false, ctx_.abortFlag);
    } catch (const Error& e) {
      checkAbort(peer);
      CHORUS_THROW(e.code(), "tcp: rank %d cannot connect to rank %d's data listener at %s: %s", ctx_.rank, peer,
                   addrToString(addr).c_str(), e.what());
    }
    setNoDelay(fd.get());
    tuneBuffers(fd.get());
    Hello h;
    h.secret[0] = ctx_.secret[0];
    h.secret[1] = ctx_.secret[1];
    h.commId = ctx_.commId;
    h.fromRank = ctx_.rank;
    h.toRank = peer;
    h.socketIndex = s;
    h.numSockets = numSockets_;
    h.ordinal = ordinal;
    sendAll(fd.get(), &h, sizeof(h), deadline);
    socks.push_back(std::move(fd));
  }
  return socks;
}

bool TcpTransport::complete(const Key& key) const {
  auto it = arrived_.find(key);
  if (it == arrived_.end()) return false;
  for (const Fd& fd : it->second)
    if (!fd) return false;
  return true;
}

// One round of waiting: sleeps in poll() until a connection or hello bytes arrive (or a short
// while passes), then accepts and reads whatever is there.
void TcpTransport::waitForSockets(Deadline deadline) {
  bool acceptPaused = Clock::now() < acceptPausedUntil_;
  std::vector<pollfd> fds;
  fds.push_back({listen_.get(), static_cast<short>(acceptPaused ? 0 : POLLIN), 0});
  for (const Handshake& h : handshakes_) fds.push_back({h.fd.get(), POLLIN, 0});
  int r = ::poll(fds.data(), fds.size(), deadline.millisLeft(acceptPaused ? 20 : 100));
  if (r < 0 && errno != EINTR) CHORUS_THROW_ERRNO("tcp: poll on the data listener");
  readHellos();
  if (Clock::now() >= acceptPausedUntil_) acceptQueued();
}

void TcpTransport::acceptQueued() {
  for (;;) {
    int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c >= 0) {
      admit(Fd(c));
      continue;
    }
    int err = errno;
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      // Strangers give way to whoever is next in the accept queue; without any, the listener
      // rests a moment (the kernel keeps the queue) rather than failing the connect.
      if (!handshakes_.empty()) {
        gate_->rejected(handshakes_.front().remote, "closed to free a descriptor (this process has no more)");
        handshakes_.pop_front();
        continue;
      }
      gate_->rejected("(not accepted yet)", format("cannot accept: %s", strerror(err)));
      acceptPausedUntil_ = Clock::now() + std::chrono::milliseconds(50);
      return;
    }
    errno = err;
    CHORUS_THROW_ERRNO("tcp: accept on the data listener");
  }
}

// A new socket: a rank's hello is usually there already; a stranger waits within the gate's
// limits.
void TcpTransport::admit(Fd fd) {
  Handshake h;
  h.remote = peerAddressOf(fd.get());
  h.fd = std::move(fd);
  h.since = Clock::now();
  if (!readHello(h)) return;
  if (handshakes_.size() >= static_cast<size_t>(gate_->limits().maxPending)) {
    gate_->rejected(handshakes_.front().remote,
                    format("no hello yet; closed to make room (at most %d connections wait for their hello)",
                           gate_->limits().maxPending));
    handshakes_.pop_front();
  }
  handshakes_.push_back(std::move(h));
}

void TcpTransport::readHellos() {
  auto now = Clock::now();
  std::deque<Handshake> still;
  for (Handshake& h : handshakes_) {
    if (!readHello(h)) continue;
    if (gate_->expired(h.since, now)) {
      gate_->rejected(h.remote, format("no complete hello within %.1f s (%zu of %zu bytes)", gate_->limits().timeoutSec,
                                       h.got, sizeof(Hello)));
      continue;
    }
    still.push_back(std::move(h));
  }
  handshakes_ = std::move(still);
}

bool TcpTransport::readHello(Handshake& h) {
  while (h.got < sizeof(Hello)) {
    ssize_t r = ::recv(h.fd.get(), reinterpret_cast<char*>(&h.hello) + h.got, sizeof(Hello) - h.got, MSG_DONTWAIT);
    if (r > 0) {
      h.got += static_cast<size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    std::string how = r == 0 ? "closed" : strerror(errno);
    if (h.got > 0)
      gate_->rejected(h.remote, format("left after %zu of %zu bytes of its hello (%s)", h.got, sizeof(Hello), how.c_str()));
    else
      CHORUS_TRACE(kLogTransport, "tcp: rank %d: connection from %s went away before its hello (%s)", ctx_.rank,
                   h.remote.c_str(), how.c_str());
    return false;
  }
  std::string drop = helloProblem(h.hello, expect_);
  if (drop.empty()) {
    auto& slots = arrived_[{h.hello.fromRank, h.hello.ordinal}];
    slots.resize(static_cast<size_t>(numSockets_));
    Fd& slot = slots[static_cast<size_t>(h.hello.socketIndex)];
    if (slot) {
      drop = "duplicate socket index";
    } else {
      setNoDelay(h.fd.get());
      slot = std::move(h.fd);
      return false;
    }
  }
  gate_->rejected(h.remote, drop);
  return false;
}

}  // namespace
}  // namespace tcp

std::unique_ptr<TcpTransportBase> makeTcpTransport(const TransportContext& ctx) {
  return std::make_unique<tcp::TcpTransport>(ctx);
}

}  // namespace chorus

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
// closed with a warning.
//
// Failure: every peer's listener was open before the cards were exchanged, so a refused dial
// means the peer is gone: chorusRemoteError at once, not retries until the deadline. The
// context's abort flag (chorusCommAbort) is looked at before each dial, at least every 100 ms
// while one is in progress, and on every waiting round (poll() <= 100 ms): chorusInvalidUsage.
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "bootstrap/socket.h"
#include "core/error.h"
#include "core/log.h"
#include "transports/tcp/tcp_connection.h"
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
  void acceptQueued();
  void readHellos();
  // Returns "" when the hello is acceptable, else why not.
  std::string verify(const Hello& h) const;

  TransportContext ctx_;
  int numSockets_;
  size_t chunkBytes_;
  double timeoutSec_;
  Fd listen_;
  WireAddr addr_;
  std::map<int, uint64_t> ordinals_;    // connect() calls so far, per peer
  std::vector<Handshake> handshakes_;
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
  std::vector<pollfd> fds;
  fds.push_back({listen_.get(), POLLIN, 0});
  for (const Handshake& h : handshakes_) fds.push_back({h.fd.get(), POLLIN, 0});
  int r = ::poll(fds.data(), fds.size(), deadline.millisLeft(100));
  if (r < 0 && errno != EINTR) CHORUS_THROW_ERRNO("tcp: poll on the data listener");
  acceptQueued();
  readHellos();
}

void TcpTransport::acceptQueued() {
  for (;;) {
    int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      CHORUS_THROW_ERRNO("tcp: accept on the data listener");
    }
    Handshake h;
    h.fd = Fd(c);
    h.since = Clock::now();
    setNoDelay(c);
    handshakes_.push_back(std::move(h));
  }
}

void TcpTransport::readHellos() {
  auto staleBefore =
      Clock::now() - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeoutSec_));
  for (size_t k = 0; k < handshakes_.size();) {
    Handshake& h = handshakes_[k];
    std::string drop;
    ssize_t r = ::recv(h.fd.get(), reinterpret_cast<char*>(&h.hello) + h.got, sizeof(Hello) - h.got, MSG_DONTWAIT);
    if (r > 0) {
      h.got += static_cast<size_t>(r);
      if (h.got == sizeof(Hello)) {
        drop = verify(h.hello);
        if (drop.empty()) {
          auto& slots = arrived_[{h.hello.fromRank, h.hello.ordinal}];
          slots.resize(numSockets_);
          Fd& slot = slots[h.hello.socketIndex];
          if (slot) {
            drop = "duplicate socket index";
          } else {
            slot = std::move(h.fd);
          }
        }
        if (drop.empty()) {
          handshakes_[k] = std::move(handshakes_.back());
          handshakes_.pop_back();
          continue;
        }
      }
    } else if (r == 0) {
      drop = "closed before its hello was complete";
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      drop = format("failed before its hello was complete: %s", strerror(errno));
    } else if (timeoutSec_ > 0 && h.since < staleBefore) {
      drop = "sent no hello in CHORUS_TIMEOUT";
    }
    if (drop.empty()) {
      ++k;
      continue;
    }
    CHORUS_WARN(kLogTransport, "tcp: rank %d rejected a connection from %s: %s", ctx_.rank,
                peerAddressOf(h.fd.get()).c_str(), drop.c_str());
    handshakes_[k] = std::move(handshakes_.back());
    handshakes_.pop_back();
  }
}

std::string TcpTransport::verify(const Hello& h) const {
  if (h.magic != kHelloMagic) return "not a Chorus TCP hello";
  if (h.secret[0] != ctx_.secret[0] || h.secret[1] != ctx_.secret[1]) return "wrong secret";
  if (h.commId != ctx_.commId)
    return format("hello for another communicator (%#lx)", static_cast<unsigned long>(h.commId));
  if (h.toRank != ctx_.rank) return format("hello addressed to rank %d", h.toRank);
  if (h.fromRank < 0 || h.fromRank >= ctx_.rank)
    return format("hello from rank %d, which should not dial rank %d", h.fromRank, ctx_.rank);
  if (h.numSockets != numSockets_)
    return format("peer uses %d sockets per pair, this rank %d", h.numSockets, numSockets_);
  if (h.socketIndex < 0 || h.socketIndex >= numSockets_) return format("socket index %d out of range", h.socketIndex);
  return "";
}

}  // namespace
}  // namespace tcp

std::unique_ptr<TcpTransportBase> makeTcpTransport(const TransportContext& ctx) {
  return std::make_unique<tcp::TcpTransport>(ctx);
}

}  // namespace chorus

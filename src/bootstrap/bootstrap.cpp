// Bootstrap over TCP sockets: rendezvous at the root, Bruck all-gather of the PeerCards, then
// authenticated out-of-band (Oob) messages between any two ranks.
//
// Message pattern, p ranks, L = ceil(log2 p):
//   1. Check-in (root.cpp). Each rank opens its own listener on the chosen interface, connects
//      to the root and sends Hello {magic, secret, comm id, rank, nranks, listener address}.
//      The root answers rank r with the listener addresses of (r - 2^k) mod p, k < L.
//   2. Card all-gather (Bruck). Round k = 0 .. L-1, distance d = 2^k: rank r holds the cards of
//      ranks r .. r+d-1 (mod p) and sends min(d, p-d) of them to r - d, receiving as many from
//      r + d; afterwards tmp[i] is the card of rank r+i. The first round already carries full
//      cards, whose bootstrapAddr then tells every rank every listener address.
//   3. Oob send/recv: one TCP connection per direction and peer pair, opened by the sender on
//      its first message (Auth {magic, secret, comm id, from, to} first), then framed messages
//      {tag, bytes} + payload. The receiver accepts on its listener, checks the Auth (a wrong
//      secret is logged as a WARN and closed; serving goes on) and files every arriving message
//      in a stash keyed by (peer, tag), so recv(peer, tag) finds it whatever arrived before.
//
// Cost per rank: check-in = 1 connection, 64 bytes out, 16 + 28 L bytes in. Card all-gather =
// L messages out and L in, (p-1) * sizeof(PeerCard) bytes each way, L outgoing connections and
// L accepted ones. allgather(b bytes) = L messages, (p-1) * b bytes each way; barrier =
// L messages of 8 bytes (dissemination: send to r + 2^k, receive from r - 2^k). Sockets held:
// O(L) plus the peers later Oob users talk to; the p cards are the only O(p) state. p = 1 talks
// to the root only.
//
// Progress: every wait is one poll() over the wake eventfd, the listener, the accepted
// connections and (while a send is incomplete) the outgoing socket, with a timeout from the
// Deadline. While waiting for anything, the rank keeps reading every peer into the stash and
// keeps writing its own pending message, so "everybody sends, then everybody receives" cannot
// deadlock even for messages larger than the socket buffers.
//
// Threads: Oob calls on one Bootstrap are serialized by a mutex (a second caller waits).
// abort() does not take that mutex: it shuts down every socket (tracked in a registry under
// its own small lock) and writes the wake eventfd, so a call blocked in poll() returns with an
// error; the owner closes the descriptors when it destroys the object.
#include "bootstrap/bootstrap.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "bootstrap/socket.h"
#include "bootstrap/wire.h"
#include "core/error.h"
#include "core/log.h"

namespace chorus {
namespace {

const char* tagName(uint32_t tag) {
  switch (tag) {
    case kTagBarrier: return "barrier";
    case kTagBootstrapCards: return "bootstrap cards";
    case kTagAllgather: return "bootstrap allgather";
    case kTagShmSetup: return "shm setup";
    case kTagShmReady: return "shm ready";
    case kTagTcpSetup: return "tcp setup";
    default: return tag >= kTagUser ? "user" : "unnamed";
  }
}

double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

int pollMs(const Deadline& d) {
  if (d.infinite()) return 1000;
  auto left = d.at() - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > 1000 ? 1000 : static_cast<int>(ms);
}

// Every socket the bootstrap owns, so that abort() can shut them down from another thread
// without racing with their close (close happens under the same lock, so a number is never
// shut down after it was reused by someone else).
class FdRegistry {
 public:
  int add(Fd&& fd) {
    std::lock_guard<std::mutex> g(mu_);
    int raw = fd.release();
    fds_.insert(raw);
    return raw;
  }
  void close(int fd) {
    if (fd < 0) return;
    std::lock_guard<std::mutex> g(mu_);
    fds_.erase(fd);
    ::close(fd);
  }
  void shutdownAll() noexcept {
    std::lock_guard<std::mutex> g(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  std::mutex mu_;
  std::set<int> fds_;
};

// A descriptor registered in a FdRegistry; closes through it.
class TrackedFd {
 public:
  TrackedFd(FdRegistry& reg, Fd&& fd) : reg_(reg), fd_(reg.add(std::move(fd))) {}
  ~TrackedFd() { reg_.close(fd_); }
  TrackedFd(const TrackedFd&) = delete;
  TrackedFd& operator=(const TrackedFd&) = delete;
  int get() const { return fd_; }

 private:
  FdRegistry& reg_;
  int fd_;
};

class SocketBootstrap final : public Bootstrap {
 public:
  SocketBootstrap(const UniqueIdData& id, int rank, int nranks, const Config& config)
      : id_(id), rank_(rank), nranks_(nranks), config_(config) {}

  ~SocketBootstrap() override {
    // Members close their descriptors through registry_, which is declared first and so
    // destroyed last.
  }

  void init(PeerCard card, Deadline deadline);

  void send(int peer, uint32_t tag, const void* data, size_t bytes, Deadline deadline) override {
    std::lock_guard<std::mutex> g(opMu_);
    checkPeer(peer, "send to");
    Outgoing out = startSend(peer, tag, data, bytes, deadline);
    pump(&out, -1, 0, deadline);
  }

  void recv(int peer, uint32_t tag, void* data, size_t bytes, Deadline deadline) override {
    std::lock_guard<std::mutex> g(opMu_);
    checkPeer(peer, "receive from");
    pump(nullptr, peer, tag, deadline);
    take(peer, tag, data, bytes);
  }

  const std::vector<PeerCard>& cards() const override { return cards_; }

  void allgather(void* buf, size_t bytes, Deadline deadline) override {
    CHORUS_CHECK_ARG(buf || bytes == 0, "bootstrap allgather: NULL buffer");
    std::lock_guard<std::mutex> g(opMu_);
    auto t0 = Clock::now();
    bruck(buf, bytes, kTagAllgather, deadline);
    CHORUS_TRACE(kLogBootstrap, "rank %d: allgather of %zu bytes per rank took %.2f ms", rank_, bytes, msSince(t0));
  }

  void barrier(Deadline deadline) override {
    std::lock_guard<std::mutex> g(opMu_);
    if (nranks_ == 1) return;
    const uint32_t seq = ++barrierSeq_;
    uint32_t round = 0;
    for (int d = 1; d < nranks_; d <<= 1, ++round) {
      uint32_t token[2] = {seq, round};
      uint32_t got[2] = {0, 0};
      int from = wire::bruckSendPeer(rank_, nranks_, d);  // r - d
      exchange(wire::bruckRecvPeer(rank_, nranks_, d), kTagBarrier, token, sizeof(token), from, got, sizeof(got),
               deadline);
      if (got[0] != seq || got[1] != round)
        CHORUS_THROW(chorusInvalidUsage,
                     "rank %d: barrier mismatch: rank %d is in barrier #%u round %u while this rank is in barrier #%u "
                     "round %u (ranks called barrier a different number of times)",
                     rank_, from, got[0], got[1], seq, round);
    }
  }

  void abort() noexcept override {
    aborted_.store(true);
    registry_.shutdownAll();
    if (wake_ >= 0) {
      uint64_t one = 1;
      ssize_t n = ::write(wake_, &one, sizeof(one));
      (void)n;
    }
  }

 private:
  // An accepted connection: Auth first, then frames.
  struct Conn {
    Conn(FdRegistry& reg, Fd&& f, std::string r) : fd(reg, std::move(f)), remote(std::move(r)) {}
    enum Phase { kAuth, kHeader, kBody };
    TrackedFd fd;
    std::string remote;
    int peer = -1;  // known once the Auth is verified
    Phase phase = kAuth;
    size_t got = 0;
    wire::Auth auth;
    wire::FrameHeader header;
    std::vector<char> body;
    bool dead = false;
  };

  // One message being written: [Auth] FrameHeader payload.
  struct Outgoing {
    int peer = -1;
    uint32_t tag = 0;
    int fd = -1;
    std::vector<char> head;
    const char* data = nullptr;
    size_t bytes = 0;
    size_t done = 0;
    size_t total() const { return head.size() + bytes; }
    bool finished() const { return done == total(); }
  };

  void checkPeer(int peer, const char* what) const {
    CHORUS_CHECK_ARG(peer >= 0 && peer < nranks_, "rank %d: cannot %s rank %d: outside [0, %d)", rank_, what, peer,
                     nranks_);
  }

  void checkAborted() const {
    if (aborted_.load()) CHORUS_THROW(chorusInvalidUsage, "rank %d: bootstrap was aborted", rank_);
  }

  void checkIn(Deadline deadline);
  void bruck(void* buf, size_t bytes, uint32_t tag, Deadline deadline);
  void exchange(int to, uint32_t tag, const void* sbuf, size_t sbytes, int from, void* rbuf, size_t rbytes,
                Deadline deadline) {
    Outgoing out = startSend(to, tag, sbuf, sbytes, deadline);
    pump(&out, from, tag, deadline);
    take(from, tag, rbuf, rbytes);
  }

  WireAddr addressOf(int peer) const;
  int sendSocket(int peer, bool* fresh, Deadline deadline);
  Outgoing startSend(int peer, uint32_t tag, const void* data, size_t bytes, Deadline deadline);
  bool trySend(Outgoing& out);
  void pump(Outgoing* out, int wantPeer, uint32_t wantTag, Deadline deadline);
  void acceptAll();
  void readConn(Conn& c);
  void onAuth(Conn& c);
  void onFrame(Conn& c);
  void onClosed(Conn& c, const std::string& why);
  bool stashed(int peer, uint32_t tag) const {
    auto it = stash_.find({peer, tag});
    return it != stash_.end() && !it->second.empty();
  }
  void take(int peer, uint32_t tag, void* data, size_t bytes);

  FdRegistry registry_;  // first: destroyed after every TrackedFd below
  UniqueIdData id_;
  int rank_;
  int nranks_;
  Config config_;
  std::mutex opMu_;
  std::atomic<bool> aborted_{false};
  std::unique_ptr<TrackedFd> wakeFd_;
  int wake_ = -1;
  std::unique_ptr<TrackedFd> listener_;
  WireAddr listenAddr_;
  std::vector<PeerCard> cards_;
  bool cardsKnown_ = false;
  std::unordered_map<int, WireAddr> rootAddrs_;  // from the root, until the cards are known
  std::unordered_map<int, std::unique_ptr<TrackedFd>> sendFds_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::map<std::pair<int, uint32_t>, std::deque<std::vector<char>>> stash_;
  std::unordered_map<int, std::string> closedPeers_;  // peer -> how its connection ended
  std::set<int> connectedPeers_;                       // peers that have authenticated to us
  uint32_t barrierSeq_ = 0;
};

void SocketBootstrap::init(PeerCard card, Deadline deadline) {
  auto t0 = Clock::now();
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) CHORUS_THROW_ERRNO("eventfd");
  wakeFd_ = std::make_unique<TrackedFd>(registry_, Fd(efd));
  wake_ = efd;
  listener_ = std::make_unique<TrackedFd>(registry_, listenOn(chooseLocalAddress(config_.socketIfname), &listenAddr_));
  card.rank = rank_;
  card.bootstrapAddr = listenAddr_;

  checkIn(deadline);
  auto t1 = Clock::now();

  cards_.assign(static_cast<size_t>(nranks_), PeerCard{});
  cards_[static_cast<size_t>(rank_)] = card;
  bruck(cards_.data(), sizeof(PeerCard), kTagBootstrapCards, deadline);
  for (int r = 0; r < nranks_; ++r) {
    const PeerCard& c = cards_[static_cast<size_t>(r)];
    if (c.rank != r || (c.bootstrapAddr.family != AF_INET && c.bootstrapAddr.family != AF_INET6))
      CHORUS_THROW(chorusInternalError, "rank %d: card %d after the all-gather is malformed (rank field %d)", rank_, r,
                   c.rank);
  }
  cardsKnown_ = true;
  rootAddrs_.clear();
  CHORUS_INFO(kLogBootstrap, "rank %d/%d: bootstrap done in %.2f ms (root check-in %.2f ms, card all-gather %.2f ms in "
              "%d rounds), listening at %s",
              rank_, nranks_, msSince(t0), std::chrono::duration<double, std::milli>(t1 - t0).count(), msSince(t1),
              wire::log2Ceil(nranks_), addrToString(listenAddr_).c_str());
}

void SocketBootstrap::checkIn(Deadline deadline) {
  const std::string root = addrToString(id_.root);
  wire::Hello hello;
  hello.secret[0] = id_.secret[0];
  hello.secret[1] = id_.secret[1];
  hello.commId = id_.commId;
  hello.rank = rank_;
  hello.nranks = nranks_;
  hello.listenAddr = listenAddr_;
  wire::Reply reply;
  std::vector<wire::PeerAddr> addrs;
  std::string text;
  try {
    Fd sock = connectTo(id_.root, deadline);
    sendAll(sock.get(), &hello, sizeof(hello), deadline);
    recvAll(sock.get(), &reply, sizeof(reply), deadline);
    if (reply.magic != wire::kReplyMagic)
      CHORUS_THROW(chorusInternalError, "malformed answer (magic 0x%08x)", reply.magic);
    if (reply.code != chorusSuccess) {
      text.resize(std::min<uint32_t>(reply.textLen, 1u << 16));
      recvAll(sock.get(), text.data(), text.size(), deadline);
    } else {
      if (static_cast<int>(reply.count) != wire::log2Ceil(nranks_))
        CHORUS_THROW(chorusInternalError, "answer holds %u addresses, expected %d", reply.count,
                     wire::log2Ceil(nranks_));
      addrs.resize(reply.count);
      recvAll(sock.get(), addrs.data(), addrs.size() * sizeof(wire::PeerAddr), deadline);
    }
  } catch (const Error& e) {
    if (e.code() == chorusRemoteError)
      CHORUS_THROW(chorusRemoteError,
                   "rank %d: the root rendezvous at %s closed the connection without answering (wrong unique id "
                   "or secret, or the root is gone): %s",
                   rank_, root.c_str(), e.what());
    if (e.code() == chorusTimeout)
      CHORUS_THROW(chorusTimeout, "rank %d of %d: no answer from the root rendezvous at %s before the deadline: %s",
                   rank_, nranks_, root.c_str(), e.what());
    CHORUS_THROW(e.code(), "rank %d: check-in at the root rendezvous %s failed: %s", rank_, root.c_str(), e.what());
  }
  if (reply.code != chorusSuccess) {
    auto code = (reply.code > chorusSuccess && reply.code < chorusNumResults) ? static_cast<chorusResult_t>(reply.code)
                                                                               : chorusInternalError;
    CHORUS_THROW(code, "rank %d: rendezvous at %s failed: %s", rank_, root.c_str(), text.c_str());
  }
  for (const auto& pa : addrs) rootAddrs_[pa.rank] = pa.addr;
}

// Bruck's all-gather over Oob (see the top of this file). buf holds nranks records of `bytes`.
void SocketBootstrap::bruck(void* buf, size_t bytes, uint32_t tag, Deadline deadline) {
  const int p = nranks_;
  if (p == 1 || bytes == 0) return;
  CHORUS_CHECK_ARG(bytes <= SIZE_MAX / static_cast<size_t>(p), "bootstrap allgather: %zu bytes x %d ranks overflows",
                   bytes, p);
  auto* out = static_cast<char*>(buf);
  std::vector<char> tmp(bytes * static_cast<size_t>(p));
  memcpy(tmp.data(), out + static_cast<size_t>(rank_) * bytes, bytes);
  for (int d = 1; d < p; d <<= 1) {
    // Holding ranks r .. r+d-1: send the first n of them to r-d, receive r+d .. r+d+n-1 from r+d.
    size_t n = static_cast<size_t>(std::min(d, p - d)) * bytes;
    exchange(wire::bruckSendPeer(rank_, p, d), tag, tmp.data(), n, wire::bruckRecvPeer(rank_, p, d),
             tmp.data() + static_cast<size_t>(d) * bytes, n, deadline);
  }
  for (int i = 0; i < p; ++i)
    memcpy(out + static_cast<size_t>((rank_ + i) % p) * bytes, tmp.data() + static_cast<size_t>(i) * bytes, bytes);
}

WireAddr SocketBootstrap::addressOf(int peer) const {
  if (cardsKnown_) return cards_[static_cast<size_t>(peer)].bootstrapAddr;
  auto it = rootAddrs_.find(peer);
  if (it == rootAddrs_.end())
    CHORUS_THROW(chorusInternalError, "rank %d: address of rank %d is not known yet (bootstrap not finished)", rank_,
                 peer);
  return it->second;
}

int SocketBootstrap::sendSocket(int peer, bool* fresh, Deadline deadline) {
  *fresh = false;
  auto it = sendFds_.find(peer);
  if (it != sendFds_.end()) return it->second->get();
  WireAddr addr = addressOf(peer);
  Fd sock;
  try {
    // Every address learned from the root or the cards is of a listener opened before its
    // owner checked in: a refusal means that rank is gone, not that it is not up yet.
    sock = connectTo(addr, deadline, /*retryRefused=*/false);
    setNoDelay(sock.get());
  } catch (const Error& e) {
    CHORUS_THROW(e.code(), "rank %d: cannot connect to rank %d's bootstrap listener at %s: %s", rank_, peer,
                 addrToString(addr).c_str(), e.what());
  }
  CHORUS_TRACE(kLogBootstrap, "rank %d: connected to rank %d at %s", rank_, peer, addrToString(addr).c_str());
  auto tracked = std::make_unique<TrackedFd>(registry_, std::move(sock));
  int fd = tracked->get();
  sendFds_[peer] = std::move(tracked);
  *fresh = true;
  return fd;
}

SocketBootstrap::Outgoing SocketBootstrap::startSend(int peer, uint32_t tag, const void* data, size_t bytes,
                                                     Deadline deadline) {
  checkAborted();
  CHORUS_CHECK_ARG(data || bytes == 0, "rank %d: Oob send of %zu bytes from a NULL buffer", rank_, bytes);
  CHORUS_CHECK_ARG(bytes <= wire::kMaxMessageBytes, "rank %d: Oob message of %zu bytes is too large", rank_, bytes);
  Outgoing out;
  out.peer = peer;
  out.tag = tag;
  bool fresh = false;
  out.fd = sendSocket(peer, &fresh, deadline);
  if (fresh) {
    wire::Auth auth;
    auth.secret[0] = id_.secret[0];
    auth.secret[1] = id_.secret[1];
    auth.commId = id_.commId;
    auth.fromRank = rank_;
    auth.toRank = peer;
    out.head.insert(out.head.end(), reinterpret_cast<char*>(&auth), reinterpret_cast<char*>(&auth) + sizeof(auth));
  }
  wire::FrameHeader h;
  h.tag = tag;
  h.bytes = bytes;
  out.head.insert(out.head.end(), reinterpret_cast<char*>(&h), reinterpret_cast<char*>(&h) + sizeof(h));
  out.data = static_cast<const char*>(data);
  out.bytes = bytes;
  CHORUS_TRACE(kLogBootstrap, "rank %d: send %zu bytes tag %u (%s) to rank %d", rank_, bytes, tag, tagName(tag), peer);
  return out;
}

// Writes what the socket takes without waiting. Returns true when the message is complete.
bool SocketBootstrap::trySend(Outgoing& out) {
  while (!out.finished()) {
    iovec iov[2];
    int n = 0;
    if (out.done < out.head.size()) {
      iov[n++] = {out.head.data() + out.done, out.head.size() - out.done};
      if (out.bytes) iov[n++] = {const_cast<char*>(out.data), out.bytes};
    } else {
      size_t off = out.done - out.head.size();
      iov[n++] = {const_cast<char*>(out.data) + off, out.bytes - off};
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n);
    ssize_t w = ::sendmsg(out.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      out.done += static_cast<size_t>(w);
      continue;
    }
    int err = errno;
    if (w < 0 && err == EINTR) continue;
    if (w < 0 && (err == EAGAIN || err == EWOULDBLOCK)) return false;
    checkAborted();
    sendFds_.erase(out.peer);  // the stream is broken mid-message: never reuse it
    CHORUS_THROW(chorusRemoteError, "rank %d: lost the bootstrap connection to rank %d while sending tag %u (%s): %s",
                 rank_, out.peer, out.tag, tagName(out.tag), w == 0 ? "no progress" : strerror(err));
  }
  return true;
}

// The single waiting loop: makes progress on `out` (if any) and on every incoming connection
// until `out` is written and a message (wantPeer, wantTag) is stashed (wantPeer < 0: none).
void SocketBootstrap::pump(Outgoing* out, int wantPeer, uint32_t wantTag, Deadline deadline) {
  std::vector<pollfd> fds;
  for (;;) {
    checkAborted();
    bool outDone = !out || trySend(*out);
    bool inDone = wantPeer < 0 || stashed(wantPeer, wantTag);
    if (outDone && inDone) return;
    if (!inDone) {
      auto it = closedPeers_.find(wantPeer);
      if (it != closedPeers_.end())
        CHORUS_THROW(chorusRemoteError,
                     "rank %d: rank %d %s before sending the message with tag %u (%s): rank %d failed or aborted",
                     rank_, wantPeer, it->second.c_str(), wantTag, tagName(wantTag), wantPeer);
    }
    if (deadline.expired()) {
      if (!outDone)
        CHORUS_THROW(chorusTimeout,
                     "rank %d: timed out sending tag %u (%s) to rank %d (%zu of %zu bytes written): rank %d is not "
                     "receiving",
                     rank_, out->tag, tagName(out->tag), out->peer, out->done, out->total(), out->peer);
      CHORUS_THROW(chorusTimeout, "rank %d: timed out waiting for the message with tag %u (%s) from rank %d%s", rank_,
                   wantTag, tagName(wantTag), wantPeer,
                   connectedPeers_.count(wantPeer) ? "" : " (rank has never connected to this rank)");
    }
    fds.clear();
    fds.push_back({wake_, POLLIN, 0});
    fds.push_back({listener_->get(), POLLIN, 0});
    for (auto& c : conns_) fds.push_back({c->fd.get(), POLLIN, 0});
    if (!outDone) fds.push_back({out->fd, POLLOUT, 0});
    int n = poll(fds.data(), fds.size(), pollMs(deadline));
    if (n < 0 && errno != EINTR) CHORUS_THROW_ERRNO("rank %d: poll", rank_);
    if (n <= 0) continue;
    if (fds[0].revents) {
      uint64_t v;
      ssize_t r = ::read(wake_, &v, sizeof(v));
      (void)r;
    }
    for (size_t i = 0; i < conns_.size(); ++i)
      if (fds[i + 2].revents) readConn(*conns_[i]);
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const auto& c) { return c->dead; }), conns_.end());
    if (fds[1].revents) acceptAll();
  }
}

void SocketBootstrap::acceptAll() {
  for (;;) {
    int c = accept4(listener_->get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c >= 0) {
      Fd fd(c);
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      std::string remote = "?";
      if (getpeername(c, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        WireAddr w;
        w.family = ss.ss_family;
        if (ss.ss_family == AF_INET) {
          auto* in = reinterpret_cast<sockaddr_in*>(&ss);
          w.port = ntohs(in->sin_port);
          memcpy(w.addr, &in->sin_addr, 4);
        } else {
          auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
          w.port = ntohs(in6->sin6_port);
          memcpy(w.addr, &in6->sin6_addr, 16);
        }
        remote = addrToString(w);
      }
      conns_.push_back(std::make_unique<Conn>(registry_, std::move(fd), std::move(remote)));
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    checkAborted();
    CHORUS_THROW_ERRNO("rank %d: accept on the bootstrap listener", rank_);
  }
}

// Reads everything available on c, filing complete messages in the stash.
void SocketBootstrap::readConn(Conn& c) {
  while (!c.dead) {
    char* dst;
    size_t want;
    switch (c.phase) {
      case Conn::kAuth: dst = reinterpret_cast<char*>(&c.auth); want = sizeof(c.auth); break;
      case Conn::kHeader: dst = reinterpret_cast<char*>(&c.header); want = sizeof(c.header); break;
      default: dst = c.body.data(); want = c.body.size(); break;
    }
    ssize_t n = ::recv(c.fd.get(), dst + c.got, want - c.got, MSG_DONTWAIT);
    if (n > 0) {
      c.got += static_cast<size_t>(n);
      if (c.got < want) continue;
      c.got = 0;
      if (c.phase == Conn::kAuth) onAuth(c);
      else if (c.phase == Conn::kHeader) onFrame(c);
      else {
        stash_[{c.peer, c.header.tag}].push_back(std::move(c.body));
        c.body = {};
        c.phase = Conn::kHeader;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    onClosed(c, n == 0 ? "closed its bootstrap connection" : format("reset its bootstrap connection (%s)", strerror(errno)));
  }
}

void SocketBootstrap::onAuth(Conn& c) {
  const wire::Auth& a = c.auth;
  const char* why = nullptr;
  if (a.magic != wire::kAuthMagic) why = "not a Chorus bootstrap connection";
  else if (a.version != wire::kVersion) why = "other protocol version";
  else if (a.secret[0] != id_.secret[0] || a.secret[1] != id_.secret[1] || a.commId != id_.commId)
    why = "wrong secret or communicator id";
  else if (a.toRank != rank_) why = "addressed to another rank";
  else if (a.fromRank < 0 || a.fromRank >= nranks_) why = "sender rank out of range";
  if (why) {
    CHORUS_WARN(kLogBootstrap, "rank %d: rejected a bootstrap connection from %s: %s", rank_, c.remote.c_str(), why);
    c.dead = true;
    return;
  }
  c.peer = a.fromRank;
  if (!connectedPeers_.insert(c.peer).second)
    CHORUS_WARN(kLogBootstrap, "rank %d: rank %d opened a second bootstrap connection (from %s)", rank_, c.peer,
                c.remote.c_str());
  c.phase = Conn::kHeader;
  CHORUS_TRACE(kLogBootstrap, "rank %d: accepted rank %d from %s", rank_, c.peer, c.remote.c_str());
}

void SocketBootstrap::onFrame(Conn& c) {
  if (c.header.bytes > wire::kMaxMessageBytes) {
    onClosed(c, format("sent a corrupt message header (%llu bytes)", static_cast<unsigned long long>(c.header.bytes)));
    return;
  }
  CHORUS_TRACE(kLogBootstrap, "rank %d: message tag %u (%s), %llu bytes from rank %d", rank_, c.header.tag,
               tagName(c.header.tag), static_cast<unsigned long long>(c.header.bytes), c.peer);
  if (c.header.bytes == 0) {
    stash_[{c.peer, c.header.tag}].emplace_back();
    return;
  }
  c.body.resize(c.header.bytes);
  c.phase = Conn::kBody;
}

void SocketBootstrap::onClosed(Conn& c, const std::string& why) {
  c.dead = true;
  if (c.peer < 0) {
    CHORUS_TRACE(kLogBootstrap, "rank %d: unauthenticated connection from %s went away", rank_, c.remote.c_str());
    return;
  }
  std::string text = why;
  if (c.phase != Conn::kHeader || c.got != 0) text += " in the middle of a message";
  CHORUS_TRACE(kLogBootstrap, "rank %d: rank %d %s", rank_, c.peer, text.c_str());
  closedPeers_.emplace(c.peer, std::move(text));
}

void SocketBootstrap::take(int peer, uint32_t tag, void* data, size_t bytes) {
  auto it = stash_.find({peer, tag});
  CHORUS_ASSERT(it != stash_.end() && !it->second.empty());
  std::vector<char> msg = std::move(it->second.front());
  it->second.pop_front();
  if (it->second.empty()) stash_.erase(it);
  if (msg.size() != bytes)
    CHORUS_THROW(chorusInternalError, "rank %d: message with tag %u (%s) from rank %d has %zu bytes, expected %zu",
                 rank_, tag, tagName(tag), peer, msg.size(), bytes);
  if (bytes) memcpy(data, msg.data(), bytes);
}

}  // namespace

std::unique_ptr<Bootstrap> Bootstrap::join(const UniqueIdData& id, int rank, int nranks, PeerCard card,
                                           const Config& config, Deadline deadline) {
  CHORUS_CHECK_ARG(nranks >= 1, "nranks must be at least 1 (got %d)", nranks);
  CHORUS_CHECK_ARG(rank >= 0 && rank < nranks, "rank %d is outside [0, %d)", rank, nranks);
  auto bs = std::make_unique<SocketBootstrap>(id, rank, nranks, config);
  bs->init(std::move(card), deadline);
  return bs;
}

}  // namespace chorus

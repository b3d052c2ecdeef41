// Authenticated out-of-band messages over TCP (protocol, progress and threads in
// oob_sockets.h).
#include "bootstrap/oob_sockets.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "base/log.h"
#include "base/oob.h"

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

}  // namespace

int FdRegistry::add(Fd&& fd) {
  std::lock_guard<std::mutex> g(mu_);
  int raw = fd.release();
  fds_.insert(raw);
  return raw;
}

void FdRegistry::close(int fd) {
  if (fd < 0) return;
  std::lock_guard<std::mutex> g(mu_);
  fds_.erase(fd);
  ::close(fd);
}

void FdRegistry::shutdownAll() noexcept {
  std::lock_guard<std::mutex> g(mu_);
  for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
}

OobSockets::OobSockets(const UniqueIdData& id, int rank, int nranks, const Config& config)
    : id_(id), rank_(rank), nranks_(nranks) {
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) CHORUS_THROW_ERRNO("eventfd");
  wakeFd_ = std::make_unique<TrackedFd>(registry_, Fd(efd));
  wake_ = efd;
  AuthLimits limits = AuthLimits::fromEnv(config.timeoutSec);
  listener_ = std::make_unique<TrackedFd>(registry_, listenOn(chooseLocalAddress(config.socketIfname), &listenAddr_));
  gate_ = std::make_unique<AuthGate>(format("rank %d: bootstrap listener %s", rank, addrToString(listenAddr_).c_str()),
                                     kLogBootstrap, limits);
}

void OobSockets::send(int peer, uint32_t tag, const void* data, size_t bytes, Deadline deadline) {
  checkPeer(peer, "send to");
  Outgoing out = startSend(peer, tag, data, bytes, deadline);
  pump(&out, -1, 0, deadline);
}

void OobSockets::recv(int peer, uint32_t tag, void* data, size_t bytes, Deadline deadline) {
  checkPeer(peer, "receive from");
  pump(nullptr, peer, tag, deadline);
  take(peer, tag, data, bytes);
}

void OobSockets::exchange(int to, uint32_t tag, const void* sbuf, size_t sbytes, int from, void* rbuf, size_t rbytes,
                          Deadline deadline) {
  Outgoing out = startSend(to, tag, sbuf, sbytes, deadline);
  pump(&out, from, tag, deadline);
  take(from, tag, rbuf, rbytes);
}

void OobSockets::abort() noexcept {
  aborted_.store(true);
  registry_.shutdownAll();
  if (wake_ >= 0) {
    uint64_t one = 1;
    ssize_t n = ::write(wake_, &one, sizeof(one));
    (void)n;
  }
}

namespace {
void bump(std::atomic<uint64_t>& counter, uint64_t by) { counter.fetch_add(by, std::memory_order_relaxed); }
}  // namespace

BootstrapTraffic OobSockets::traffic() const {
  constexpr auto r = std::memory_order_relaxed;
  return {msgsSent_.load(r), msgsRecv_.load(r), bytesSent_.load(r), bytesRecv_.load(r), connsOpened_.load(r), connsAccepted_.load(r)};
}

void OobSockets::checkPeer(int peer, const char* what) const {
  CHORUS_CHECK_ARG(peer >= 0 && peer < nranks_, "rank %d: cannot %s rank %d: outside [0, %d)", rank_, what, peer,
                   nranks_);
}

void OobSockets::checkAborted() const {
  if (aborted_.load()) CHORUS_THROW(chorusInvalidUsage, "rank %d: bootstrap was aborted", rank_);
}

WireAddr OobSockets::addressOf(int peer) const {
  if (cards_) return (*cards_)[static_cast<size_t>(peer)].bootstrapAddr;
  auto it = rootAddrs_.find(peer);
  if (it == rootAddrs_.end())
    CHORUS_THROW(chorusInternalError, "rank %d: address of rank %d is not known yet (bootstrap not finished)", rank_,
                 peer);
  return it->second;
}

int OobSockets::sendSocket(int peer, bool* fresh, Deadline deadline) {
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
  bump(connsOpened_, 1);
  *fresh = true;
  return fd;
}

OobSockets::Outgoing OobSockets::startSend(int peer, uint32_t tag, const void* data, size_t bytes,
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
  bump(msgsSent_, 1);
  bump(bytesSent_, out.total());
  CHORUS_TRACE(kLogBootstrap, "rank %d: send %zu bytes tag %u (%s) to rank %d", rank_, bytes, tag, tagName(tag), peer);
  return out;
}

// Writes what the socket takes without waiting. Returns true when the message is complete.
bool OobSockets::trySend(Outgoing& out) {
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
void OobSockets::pump(Outgoing* out, int wantPeer, uint32_t wantTag, Deadline deadline) {
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
    settle();
    auto now = Clock::now();
    bool acceptPaused = now < acceptPausedUntil_;
    fds.clear();
    fds.push_back({wake_, POLLIN, 0});
    fds.push_back({listener_->get(), static_cast<short>(acceptPaused ? 0 : POLLIN), 0});
    for (auto& c : conns_) fds.push_back({c->fd.get(), POLLIN, 0});
    for (auto& c : strangers_) fds.push_back({c->fd.get(), POLLIN, 0});
    if (!outDone) fds.push_back({out->fd, POLLOUT, 0});
    // Wake for the deadline, the oldest stranger's expiry and the end of an accept pause.
    Clock::time_point wake = deadline.at();
    if (!strangers_.empty()) wake = std::min(wake, gate_->expiry(strangers_.front()->since));
    if (acceptPaused) wake = std::min(wake, acceptPausedUntil_);
    int n = poll(fds.data(), fds.size(), Deadline(wake).millisLeft());
    if (n < 0 && errno != EINTR) CHORUS_THROW_ERRNO("rank %d: poll", rank_);
    if (n <= 0) continue;
    if (fds[0].revents) {
      uint64_t v;
      ssize_t r = ::read(wake_, &v, sizeof(v));
      (void)r;
    }
    size_t i = 2;
    for (auto& c : conns_)
      if (fds[i++].revents) readConn(*c);
    for (auto& c : strangers_)
      if (fds[i++].revents) readConn(*c);
    settle();
    if (fds[1].revents) acceptAll();
  }
}

// Drops dead connections, moves strangers that authenticated to conns_, and closes strangers
// that have had their time.
void OobSockets::settle() {
  conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const auto& c) { return c->dead; }), conns_.end());
  auto now = Clock::now();
  std::deque<std::unique_ptr<Conn>> still;
  for (auto& c : strangers_) {
    if (c->dead) continue;
    if (c->in.peer() >= 0) {
      conns_.push_back(std::move(c));
    } else if (gate_->expired(c->since, now)) {
      gate_->rejected(c->remote, format("no Auth within %.1f s (%zu of %zu bytes)", gate_->limits().timeoutSec,
                                        c->in.authBytes(), sizeof(wire::Auth)));
    } else {
      still.push_back(std::move(c));
    }
  }
  strangers_ = std::move(still);
}

void OobSockets::acceptAll() {
  for (;;) {
    int c = accept4(listener_->get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c >= 0) {
      admit(Fd(c));
      continue;
    }
    int err = errno;
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    checkAborted();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      // Strangers give way to whoever is next in the accept queue; without any, the listener
      // rests a moment (the kernel keeps the queue) rather than failing this rank's call.
      if (!strangers_.empty()) {
        gate_->rejected(strangers_.front()->remote, "closed to free a descriptor (this process has no more)");
        strangers_.pop_front();
        continue;
      }
      gate_->rejected("(not accepted yet)", format("cannot accept: %s", strerror(err)));
      acceptPausedUntil_ = Clock::now() + std::chrono::milliseconds(50);
      return;
    }
    errno = err;
    CHORUS_THROW_ERRNO("rank %d: accept on the bootstrap listener", rank_);
  }
}

// A new connection: a rank's Auth (and often its first message) is usually there already; a
// stranger waits within the gate's limits.
void OobSockets::admit(Fd fd) {
  std::string remote = peerAddressOf(fd.get());
  auto conn = std::make_unique<Conn>(registry_, std::move(fd), std::move(remote), OobInbound(id_, rank_, nranks_));
  readConn(*conn);
  if (conn->dead) return;
  if (conn->in.peer() >= 0) {
    conns_.push_back(std::move(conn));
    return;
  }
  if (strangers_.size() >= static_cast<size_t>(gate_->limits().maxPending)) {
    gate_->rejected(strangers_.front()->remote,
                    format("no Auth yet; closed to make room (at most %d connections wait for their Auth)",
                           gate_->limits().maxPending));
    strangers_.pop_front();
  }
  strangers_.push_back(std::move(conn));
}

// Reads everything available on c, filing complete messages in the stash.
void OobSockets::readConn(Conn& c) {
  while (!c.dead) {
    auto [dst, want] = c.in.space();
    ssize_t n = ::recv(c.fd.get(), dst, want, MSG_DONTWAIT);
    if (n > 0) {
      switch (c.in.received(static_cast<size_t>(n))) {
        case OobInbound::Event::None: break;
        case OobInbound::Event::Authenticated:
          if (!connectedPeers_.insert(c.in.peer()).second)
            CHORUS_WARN(kLogBootstrap, "rank %d: rank %d opened a second bootstrap connection (from %s)", rank_,
                        c.in.peer(), c.remote.c_str());
          CHORUS_TRACE(kLogBootstrap, "rank %d: accepted rank %d from %s", rank_, c.in.peer(), c.remote.c_str());
          bump(connsAccepted_, 1);
          bump(bytesRecv_, sizeof(wire::Auth));
          break;
        case OobInbound::Event::Message: {
          CHORUS_TRACE(kLogBootstrap, "rank %d: message tag %u (%s) from rank %d", rank_, c.in.tag(),
                       tagName(c.in.tag()), c.in.peer());
          stash_[{c.in.peer(), c.in.tag()}].push_back(c.in.takeBody());
          break;
        }
        case OobInbound::Event::Rejected:
          if (c.in.peer() < 0) {
            gate_->rejected(c.remote, c.in.why());
            c.dead = true;
          } else {
            onClosed(c, c.in.why());
          }
          break;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    onClosed(c, n == 0 ? "closed its bootstrap connection" : format("reset its bootstrap connection (%s)", strerror(errno)));
  }
}

void OobSockets::onClosed(Conn& c, const std::string& why) {
  c.dead = true;
  if (c.in.peer() < 0) {
    if (c.in.authBytes() > 0)
      gate_->rejected(c.remote, format("left after %zu of %zu bytes of its Auth", c.in.authBytes(), sizeof(wire::Auth)));
    else
      CHORUS_TRACE(kLogBootstrap, "rank %d: unauthenticated connection from %s went away", rank_, c.remote.c_str());
    return;
  }
  std::string text = why;
  if (c.in.midMessage()) text += " in the middle of a message";
  CHORUS_TRACE(kLogBootstrap, "rank %d: rank %d %s", rank_, c.in.peer(), text.c_str());
  closedPeers_.emplace(c.in.peer(), std::move(text));
}

// ---------------------------------------------------------------------------------------------
// OobInbound: the bytes of one connection
// ---------------------------------------------------------------------------------------------

std::pair<char*, size_t> OobInbound::space() {
  switch (phase_) {
    case kAuth: return {reinterpret_cast<char*>(&auth_) + got_, sizeof(auth_) - got_};
    case kHeader: return {reinterpret_cast<char*>(&header_) + got_, sizeof(header_) - got_};
    case kBody: {
      // Grow the payload buffer only as far as kBodyStep past what has arrived.
      if (got_ == body_.size()) body_.resize(got_ + std::min<size_t>(header_.bytes - got_, kBodyStep));
      return {body_.data() + got_, body_.size() - got_};
    }
    case kDead: break;
  }
  return {nullptr, 0};
}

OobInbound::Event OobInbound::received(size_t n) {
  if (phase_ == kDead || n == 0) return Event::None;
  const size_t room = phase_ == kAuth ? sizeof(auth_) : phase_ == kHeader ? sizeof(header_) : body_.size();
  CHORUS_ASSERT(got_ + n <= room);
  got_ += n;
  switch (phase_) {
    case kAuth:
      if (got_ < sizeof(auth_)) return Event::None;
      return onAuth();
    case kHeader:
      if (got_ < sizeof(header_)) return Event::None;
      return onHeader();
    case kBody:
      if (got_ < header_.bytes) return Event::None;
      got_ = 0;
      phase_ = kHeader;
      return Event::Message;
    case kDead: break;
  }
  return Event::None;
}

OobInbound::Event OobInbound::reject(std::string why) {
  phase_ = kDead;
  why_ = std::move(why);
  body_ = {};
  return Event::Rejected;
}

OobInbound::Event OobInbound::onAuth() {
  const wire::Auth& a = auth_;
  if (a.magic != wire::kAuthMagic) return reject("not a Chorus bootstrap connection");
  if (a.version != wire::kVersion) return reject("other protocol version");
  if (a.secret[0] != id_.secret[0] || a.secret[1] != id_.secret[1] || a.commId != id_.commId)
    return reject("wrong secret or communicator id");
  if (a.toRank != rank_) return reject(format("addressed to rank %d", a.toRank));
  if (a.fromRank < 0 || a.fromRank >= nranks_) return reject(format("sender rank %d out of range", a.fromRank));
  peer_ = a.fromRank;
  phase_ = kHeader;
  got_ = 0;
  return Event::Authenticated;
}

OobInbound::Event OobInbound::onHeader() {
  got_ = 0;
  if (header_.bytes > wire::kMaxMessageBytes)
    return reject(format("sent a corrupt message header (%llu bytes)", static_cast<unsigned long long>(header_.bytes)));
  body_ = {};
  if (header_.bytes == 0) return Event::Message;  // phase stays kHeader
  phase_ = kBody;
  return Event::None;
}

void OobSockets::take(int peer, uint32_t tag, void* data, size_t bytes) {
  auto it = stash_.find({peer, tag});
  CHORUS_ASSERT(it != stash_.end() && !it->second.empty());
  std::vector<char> msg = std::move(it->second.front());
  it->second.pop_front();
  if (it->second.empty()) stash_.erase(it);
  bump(msgsRecv_, 1);
  bump(bytesRecv_, sizeof(wire::FrameHeader) + msg.size());
  if (msg.size() != bytes)
    CHORUS_THROW(chorusInternalError, "rank %d: message with tag %u (%s) from rank %d has %zu bytes, expected %zu",
                 rank_, tag, tagName(tag), peer, msg.size(), bytes);
  if (bytes) memcpy(data, msg.data(), bytes);
}

}  // namespace chorus

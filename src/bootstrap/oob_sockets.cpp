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

#include "core/error.h"
#include "core/log.h"
#include "core/oob.h"

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
  listener_ = std::make_unique<TrackedFd>(registry_, listenOn(chooseLocalAddress(config.socketIfname), &listenAddr_));
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
    fds.clear();
    fds.push_back({wake_, POLLIN, 0});
    fds.push_back({listener_->get(), POLLIN, 0});
    for (auto& c : conns_) fds.push_back({c->fd.get(), POLLIN, 0});
    if (!outDone) fds.push_back({out->fd, POLLOUT, 0});
    int n = poll(fds.data(), fds.size(), deadline.millisLeft());
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

void OobSockets::acceptAll() {
  for (;;) {
    int c = accept4(listener_->get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c >= 0) {
      Fd fd(c);
      std::string remote = peerAddressOf(c);
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
void OobSockets::readConn(Conn& c) {
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

void OobSockets::onAuth(Conn& c) {
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

void OobSockets::onFrame(Conn& c) {
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

void OobSockets::onClosed(Conn& c, const std::string& why) {
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

void OobSockets::take(int peer, uint32_t tag, void* data, size_t bytes) {
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

}  // namespace chorus

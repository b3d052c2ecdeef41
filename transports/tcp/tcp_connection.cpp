#include "transports/tcp/tcp_connection.h"

#include <errno.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "base/log.h"

namespace chorus::tcp {

namespace {

// errno values that mean the peer went away (as opposed to a local failure).
bool isPeerLoss(int err) {
  return err == ECONNRESET || err == EPIPE || err == ENOTCONN || err == ETIMEDOUT || err == ECONNABORTED ||
         err == EHOSTUNREACH || err == ENETUNREACH;
}

}  // namespace

TcpConnection::TcpConnection(int rank, int peer, std::vector<Fd> socks, size_t chunkBytes)
    : Connection(peer), rank_(rank), chunkBytes_(chunkBytes) {
  CHORUS_CHECK_ARG(!socks.empty(), "tcp connection to rank %d needs at least one socket", peer);
  CHORUS_CHECK_ARG(chunkBytes > 0 && chunkBytes % 64 == 0, "tcp chunk size %zu is not a positive multiple of 64",
                   chunkBytes);
  socks_.resize(socks.size());
  for (size_t i = 0; i < socks.size(); ++i) {
    setNonBlocking(socks[i].get(), true);
    socks_[i].fd = std::move(socks[i]);
  }
}

// --- posting ----------------------------------------------------------------------------------

uint64_t TcpConnection::post(Queue& q, Op op) {
  op.numChunks = (op.bytes + chunkBytes_ - 1) / chunkBytes_;
  op.chunksLeft = op.numChunks;
  op.firstChunk = q.nextChunk;
  q.nextChunk += op.numChunks;
  uint64_t ticket = q.posted();
  q.ops.push_back(op);
  // A zero-byte message has no chunks: it is complete as soon as everything before it is.
  while (!q.ops.empty() && q.ops.front().chunksLeft == 0) {
    q.ops.pop_front();
    ++q.done;
  }
  return ticket;
}

uint64_t TcpConnection::doPostSend(const void* buf, size_t bytes, const CallStamp& stamp) {
  throwIfFailed();
  CHORUS_CHECK_ARG(buf != nullptr || bytes == 0, "tcp send to rank %d: null buffer", peer());
  Op op;
  op.bytes = bytes;
  op.src = static_cast<const char*>(buf);
  op.header.bytes = bytes;
  op.header.seq = static_cast<uint32_t>(sendQ_.posted());
  op.header.stamp = stamp;
  uint64_t ticket = post(sendQ_, op);
  CHORUS_TRACE(kLogTransport, "tcp: send #%lu to rank %d, %zu bytes", static_cast<unsigned long>(ticket), peer(),
               bytes);
  return ticket;
}

uint64_t TcpConnection::postRecv(const RecvSink& sink) {
  throwIfFailed();
  CHORUS_CHECK_ARG(sink.dst != nullptr || sink.bytes == 0, "tcp recv from rank %d: null buffer", peer());
  if (sink.reduce != nullptr) {
    CHORUS_CHECK_ARG(sink.elemSize > 0 && sink.bytes % sink.elemSize == 0 && chunkBytes_ % sink.elemSize == 0,
                     "tcp recv from rank %d: %zu bytes is not a whole number of %zu-byte elements", peer(),
                     sink.bytes, sink.elemSize);
    CHORUS_CHECK_ARG(sink.local != nullptr || sink.bytes == 0, "tcp recv from rank %d: null local buffer", peer());
  }
  Op op;
  op.bytes = sink.bytes;
  op.sink = sink;
  uint64_t ticket = post(recvQ_, op);
  CHORUS_TRACE(kLogTransport, "tcp: recv #%lu from rank %d, %zu bytes%s", static_cast<unsigned long>(ticket),
               peer(), sink.bytes, sink.reduce ? " (reduce)" : "");
  return ticket;
}

// --- cursors ----------------------------------------------------------------------------------

bool TcpConnection::locate(Queue& q, int s, Cursor& c) {
  const uint64_t n = socks_.size();
  if (c.ticket < q.done) {
    // The cursor's message completed on the other sockets; so did everything before q.done.
    c.ticket = q.done;
    c.chunk = kUnset;
  }
  while (c.ticket < q.posted()) {
    const Op& op = q.at(c.ticket);
    if (c.chunk == kUnset) {
      c.chunk = (static_cast<uint64_t>(s) + n - op.firstChunk % n) % n;
      c.off = 0;
    }
    if (c.chunk < op.numChunks) return true;
    ++c.ticket;
    c.chunk = kUnset;
  }
  return false;
}

TcpConnection::Segment TcpConnection::segment(Queue& q, int s, const Cursor& c, bool recv) {
  Op& op = q.at(c.ticket);
  Segment g;
  size_t dataOff = c.chunk * chunkBytes_;
  g.dataLen = std::min(chunkBytes_, op.bytes - dataOff);
  if (c.chunk == 0) {
    g.head = reinterpret_cast<char*>(&op.header);
    g.headLen = sizeof(MsgHeader);
  }
  if (!recv) {
    g.data = const_cast<char*>(op.src) + dataOff;
  } else if (op.sink.reduce == nullptr) {
    g.data = static_cast<char*>(op.sink.dst) + dataOff;
  } else {
    Socket& sock = socks_[s];
    if (!sock.bounce) sock.bounce.reset(new char[chunkBytes_]);
    g.data = sock.bounce.get();
    g.bounce = true;
  }
  return g;
}

// Fills iov with the socket's next segments from cursor c on; returns the iovec count.
int TcpConnection::gather(Queue& q, int s, Cursor c, bool recv, iovec* iov, size_t* total) {
  int n = 0;
  *total = 0;
  while (n + 2 <= kMaxIov && locate(q, s, c)) {
    Segment g = segment(q, s, c, recv);
    size_t off = c.off;
    if (off < g.headLen) {
      iov[n++] = {g.head + off, g.headLen - off};
      off = 0;
    } else {
      off -= g.headLen;
    }
    if (off < g.dataLen) iov[n++] = {g.data + off, g.dataLen - off};
    *total += g.len() - c.off;
    if (g.bounce) break;  // the bounce buffer holds one chunk at a time
    c.chunk += socks_.size();
    c.off = 0;
  }
  return n;
}

// Moves socket s's cursor over n transferred bytes, finishing chunks on the way.
void TcpConnection::advance(Queue& q, int s, bool recv, size_t n) {
  Cursor& c = recv ? socks_[s].recv : socks_[s].send;
  while (n > 0) {
    bool found = locate(q, s, c);
    CHORUS_ASSERT(found);
    Segment g = segment(q, s, c, recv);
    size_t before = c.off;
    size_t take = std::min(n, g.len() - c.off);
    c.off += take;
    n -= take;
    if (recv && before < g.headLen && c.off >= g.headLen) checkHeader(c.ticket, q.at(c.ticket));
    if (c.off < g.len()) break;
    if (g.bounce) q.at(c.ticket).sink.deliver(c.chunk * chunkBytes_, g.data, g.dataLen);
    uint64_t ticket = c.ticket;
    c.chunk += socks_.size();
    c.off = 0;
    chunkDone(q, ticket);
  }
}

void TcpConnection::chunkDone(Queue& q, uint64_t ticket) {
  --q.at(ticket).chunksLeft;
  while (!q.ops.empty() && q.ops.front().chunksLeft == 0) {
    q.ops.pop_front();
    ++q.done;
  }
}

void TcpConnection::checkHeader(uint64_t ticket, const Op& op) {
  const MsgHeader& h = op.header;
  if (h.magic != kMsgMagic || h.seq != static_cast<uint32_t>(ticket)) {
    fail(chorusInternalError,
         format("tcp: corrupt message header from rank %d for recv #%lu (magic %#x, seq %u): message sizes "
                "posted on the two sides diverged earlier",
                peer(), static_cast<unsigned long>(ticket), h.magic, h.seq));
  }
  if (!stampsMatch(h.stamp, op.sink.stamp)) {
    std::string text = "tcp: " + rawMismatchText(peer(), h.stamp, op.sink.stamp);
    markFailed(chorusInvalidUsage, text);
    throw CallMismatch(peer(), h.stamp, op.sink.stamp, text);
  }
  if (h.bytes != op.bytes) {
    fail(chorusInvalidUsage, format("tcp: size mismatch on recv #%lu from rank %d: posted %zu bytes, peer sent %lu",
                                     static_cast<unsigned long>(ticket), peer(), op.bytes,
                                     static_cast<unsigned long>(h.bytes)));
  }
}

// --- progress ---------------------------------------------------------------------------------

bool TcpConnection::progressSocket(int s, bool recv) {
  Queue& q = recv ? recvQ_ : sendQ_;
  int fd = socks_[s].fd.get();
  bool moved = false;
  for (;;) {
    iovec iov[kMaxIov];
    size_t total = 0;
    int n = gather(q, s, recv ? socks_[s].recv : socks_[s].send, recv, iov, &total);
    if (n == 0) break;
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = static_cast<size_t>(n);
    ssize_t r = recv ? ::recvmsg(fd, &m, MSG_DONTWAIT) : ::sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      failErrno(err, s, recv ? "recv" : "send");
    }
    if (r == 0 && recv) {
      fail(chorusRemoteError, format("tcp: rank %d closed the connection (EOF on socket %d) with recv #%lu pending",
                                     peer(), s, static_cast<unsigned long>(recvQ_.done)));
    }
    moved = true;
    advance(q, s, recv, static_cast<size_t>(r));
    if (static_cast<size_t>(r) < total) break;  // the kernel has no more room / data for now
  }
  return moved;
}

bool TcpConnection::progress() {
  throwIfFailed();
  bool moved = false;
  for (int s = 0; s < numSockets(); ++s) {
    if (sendQ_.done < sendQ_.posted()) moved |= progressSocket(s, false);
    if (recvQ_.done < recvQ_.posted()) moved |= progressSocket(s, true);
  }
  return moved;
}

// --- failure ----------------------------------------------------------------------------------

void TcpConnection::checkAlive() {
  throwIfFailed();
  // A peer that left matters only while something is still owed to or by it.
  if (sendQ_.ops.empty() && recvQ_.ops.empty()) return;
  std::vector<pollfd> fds(socks_.size());
  for (size_t s = 0; s < socks_.size(); ++s) fds[s] = {socks_[s].fd.get(), POLLRDHUP, 0};
  int r = ::poll(fds.data(), fds.size(), 0);
  if (r <= 0) return;
  int closed = -1;
  for (size_t s = 0; s < socks_.size(); ++s) {
    short ev = fds[s].revents;
    if (ev & POLLERR) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fds[s].fd, SOL_SOCKET, SO_ERROR, &err, &len);
      fail(chorusRemoteError, format("tcp: connection to rank %d failed (socket %zu: %s)", peer(), s,
                                     err ? strerror(err) : "error"));
    }
    if ((ev & (POLLHUP | POLLRDHUP)) && closed < 0) closed = static_cast<int>(s);
  }
  if (closed < 0) return;
  // Bytes the peer sent before it left are still ours to read: while any socket holds some,
  // progress() takes them and meets the end of the stream itself.
  for (size_t s = 0; s < socks_.size(); ++s) {
    int avail = 0;
    if (::ioctl(fds[s].fd, FIONREAD, &avail) == 0 && avail > 0) return;
  }
  fail(chorusRemoteError,
       format("tcp: rank %d closed the connection (socket %d hung up) with %zu send(s) and %zu recv(s) pending",
              peer(), closed, sendQ_.ops.size(), recvQ_.ops.size()));
}

void TcpConnection::abort() noexcept {
  if (!failed_) {
    failed_ = true;
    failCode_ = chorusInvalidUsage;
    failMessage_ = "tcp: connection to rank " + std::to_string(peer()) + " was aborted";
  }
  // Shut down rather than close: the peer sees EOF at once, and the descriptors stay valid
  // until the connection is destroyed.
  for (Socket& sock : socks_) {
    if (sock.fd) ::shutdown(sock.fd.get(), SHUT_RDWR);
  }
}

void TcpConnection::throwIfFailed() const {
  if (failed_) throw Error(failCode_, failMessage_);
}

void TcpConnection::markFailed(chorusResult_t code, const std::string& message) {
  failed_ = true;
  failCode_ = code;
  failMessage_ = message;
  CHORUS_INFO(kLogTransport, "%s", message.c_str());
}

void TcpConnection::fail(chorusResult_t code, const std::string& message) {
  markFailed(code, message);
  throw Error(code, message);
}

void TcpConnection::failErrno(int err, int s, const char* op) {
  char buf[128];
  const char* text = strerror_r(err, buf, sizeof(buf));
  fail(isPeerLoss(err) ? chorusRemoteError : chorusSystemError,
       format("tcp: %s on socket %d to rank %d failed: %s (errno %d)", op, s, peer(), text, err));
}

}  // namespace chorus::tcp

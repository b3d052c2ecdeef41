// POSIX TCP helpers shared by the bootstrap and the TCP transport (contract in socket.h).
//
// Waiting policy: no call here ever blocks in the kernel without a timeout. Data moves with
// MSG_DONTWAIT, so the helpers behave the same on blocking and non-blocking sockets, and every
// wait is a poll() whose timeout is the time left on the Deadline (capped, so that an infinite
// deadline still wakes up now and then). poll() sleeps in the kernel: nothing here spins.
//
// Errors: deadline passed -> chorusTimeout; peer closed or reset the connection ->
// chorusRemoteError; anything else from the OS -> chorusSystemError. Messages name the remote
// address where there is one; callers that know the peer's rank add it on the way up.
#include "bootstrap/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "base/log.h"

namespace chorus {
namespace {

// How often a wait that can be aborted looks at its abort flag.
constexpr int kAbortCheckMs = 100;

bool aborted(const std::atomic<bool>* abortFlag) {
  return abortFlag && abortFlag->load(std::memory_order_acquire);
}

// Waits for `events` on fd until the deadline; returns the revents, or 0 when the deadline
// passed. EINTR restarts the wait with the time that is left. With an abort flag the wait
// wakes every kAbortCheckMs to look at it, and ends with chorusInvalidUsage once it is set.
short waitFor(int fd, short events, const Deadline& deadline, const std::atomic<bool>* abortFlag = nullptr) {
  for (;;) {
    if (aborted(abortFlag)) CHORUS_THROW(chorusInvalidUsage, "wait aborted");
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, deadline.millisLeft(abortFlag ? kAbortCheckMs : 1000));
    if (n > 0) return p.revents ? p.revents : events;
    if (n < 0 && errno != EINTR) CHORUS_THROW_ERRNO("poll");
    if (n == 0 && deadline.expired()) return 0;
  }
}

socklen_t sockaddrOf(const WireAddr& a, sockaddr_storage* ss) {
  memset(ss, 0, sizeof(*ss));
  if (a.family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(a.port);
    memcpy(&in->sin_addr, a.addr, 4);
    return sizeof(sockaddr_in);
  }
  if (a.family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(a.port);
    memcpy(&in6->sin6_addr, a.addr, 16);
    return sizeof(sockaddr_in6);
  }
  CHORUS_THROW(chorusInvalidArgument, "socket address has unknown family %u", a.family);
}

WireAddr wireOf(const sockaddr* sa) {
  WireAddr w;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    w.family = AF_INET;
    w.port = ntohs(in->sin_port);
    memcpy(w.addr, &in->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    w.family = AF_INET6;
    w.port = ntohs(in6->sin6_port);
    memcpy(w.addr, &in6->sin6_addr, 16);
  }
  return w;
}

bool isConnectionLoss(int err) { return err == ECONNRESET || err == EPIPE || err == ENOTCONN || err == ETIMEDOUT; }

// Errors after which connecting again may succeed: the listener is not up yet (refused), or
// a transient network condition. Everything else is reported at once.
bool isRetryableConnectError(int err) {
  return err == ECONNREFUSED || err == ETIMEDOUT || err == ECONNRESET || err == EHOSTUNREACH || err == ENETUNREACH ||
         err == EAGAIN;
}

void sleepMs(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

bool isUsableV6(const in6_addr& a) { return !IN6_IS_ADDR_LINKLOCAL(&a) && !IN6_IS_ADDR_UNSPECIFIED(&a); }

}  // namespace

void Fd::reset(int fd) {
  if (fd_ >= 0 && fd_ != fd) {
    // close() is not retried on EINTR: on Linux the descriptor is released either way.
    ::close(fd_);
  }
  fd_ = fd;
}

WireAddr chooseLocalAddress(const std::string& ifname) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) CHORUS_THROW_ERRNO("getifaddrs");
  // With a name: the first matching interface's IPv4 address, else its first usable IPv6 one.
  // Without: the first up, non-loopback IPv4 interface, else loopback.
  const ifaddrs* v4 = nullptr;
  const ifaddrs* v6 = nullptr;
  for (const ifaddrs* it = list; it; it = it->ifa_next) {
    if (!it->ifa_addr || !(it->ifa_flags & IFF_UP)) continue;
    int fam = it->ifa_addr->sa_family;
    if (fam != AF_INET && fam != AF_INET6) continue;
    if (!ifname.empty()) {
      if (strncmp(it->ifa_name, ifname.c_str(), ifname.size()) != 0) continue;
    } else if (it->ifa_flags & IFF_LOOPBACK) {
      continue;
    }
    if (fam == AF_INET && !v4) v4 = it;
    if (fam == AF_INET6 && !v6 && !ifname.empty() &&
        isUsableV6(reinterpret_cast<const sockaddr_in6*>(it->ifa_addr)->sin6_addr))
      v6 = it;
  }
  WireAddr out;
  std::string chosenIf;
  if (v4 || v6) {
    const ifaddrs* pick = v4 ? v4 : v6;
    out = wireOf(pick->ifa_addr);
    chosenIf = pick->ifa_name;
  }
  freeifaddrs(list);
  if (out.family == 0) {
    // A name that matches nothing is a configuration mistake: using some other interface
    // instead could route traffic over a network the operator meant to avoid.
    if (!ifname.empty())
      CHORUS_THROW(chorusInvalidUsage, "CHORUS_SOCKET_IFNAME=%s matches no interface that is up with an IP address",
                   ifname.c_str());
    out = parseAddress("127.0.0.1", 0);
    chosenIf = "lo (fallback)";
  }
  out.port = 0;
  CHORUS_INFO(kLogBootstrap, "using interface %s address %s", chosenIf.c_str(), addrToString(out).c_str());
  return out;
}

std::string addrToString(const WireAddr& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr.family == AF_INET) {
    inet_ntop(AF_INET, addr.addr, host, sizeof(host));
    return format("%s:%u", host, addr.port);
  }
  if (addr.family == AF_INET6) {
    inet_ntop(AF_INET6, addr.addr, host, sizeof(host));
    return format("[%s]:%u", host, addr.port);
  }
  return format("<family %u>:%u", addr.family, addr.port);
}

std::string peerAddressOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return addrToString(wireOf(reinterpret_cast<sockaddr*>(&ss)));
}

WireAddr parseAddress(const std::string& host, int port) {
  CHORUS_CHECK_ARG(port >= 0 && port <= 65535, "port %d out of range", port);
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  WireAddr w;
  w.port = static_cast<uint16_t>(port);
  if (inet_pton(AF_INET, h.c_str(), w.addr) == 1) {
    w.family = AF_INET;
    return w;
  }
  if (inet_pton(AF_INET6, h.c_str(), w.addr) == 1) {
    w.family = AF_INET6;
    return w;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(h.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res)
    CHORUS_THROW(chorusInvalidArgument, "cannot resolve host \"%s\": %s", host.c_str(), gai_strerror(rc));
  // Prefer IPv4 when the name has both.
  const addrinfo* pick = res;
  for (const addrinfo* it = res; it; it = it->ai_next)
    if (it->ai_family == AF_INET) {
      pick = it;
      break;
    }
  w = wireOf(pick->ai_addr);
  freeaddrinfo(res);
  CHORUS_CHECK_ARG(w.family != 0, "host \"%s\" has no IPv4/IPv6 address", host.c_str());
  w.port = static_cast<uint16_t>(port);
  return w;
}

Fd listenOn(const WireAddr& addr, WireAddr* bound, int backlog) {
  sockaddr_storage ss;
  socklen_t len = sockaddrOf(addr, &ss);
  Fd fd(socket(addr.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) CHORUS_THROW_ERRNO("socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    CHORUS_THROW_ERRNO("bind %s", addrToString(addr).c_str());
  if (listen(fd.get(), backlog) != 0) CHORUS_THROW_ERRNO("listen %s", addrToString(addr).c_str());
  if (bound) {
    sockaddr_storage got{};
    socklen_t glen = sizeof(got);
    if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&got), &glen) != 0) CHORUS_THROW_ERRNO("getsockname");
    *bound = wireOf(reinterpret_cast<sockaddr*>(&got));
  }
  return fd;
}

Fd connectTo(const WireAddr& addr, Deadline deadline, bool retryRefused, const std::atomic<bool>* abortFlag) {
  sockaddr_storage ss;
  socklen_t len = sockaddrOf(addr, &ss);
  // Backoff between refused attempts: 1 ms doubling to 100 ms. Short first steps because the
  // usual cause is a listener that comes up a moment later; the cap keeps a long wait cheap.
  int backoffMs = 1;
  int attempts = 0;
  int lastErr = 0;
  for (;;) {
    ++attempts;
    Fd fd(socket(addr.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) CHORUS_THROW_ERRNO("socket");
    int err = 0;
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      err = errno;
      if (err == EINPROGRESS || err == EINTR) {
        short ev = waitFor(fd.get(), POLLOUT, deadline, abortFlag);
        if (ev == 0) {
          err = ETIMEDOUT;
        } else {
          socklen_t elen = sizeof(err);
          if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen) != 0) err = errno;
        }
      }
    }
    if (err == 0) {
      setNonBlocking(fd.get(), false);
      CHORUS_TRACE(kLogBootstrap, "connected to %s after %d attempt(s)", addrToString(addr).c_str(), attempts);
      return fd;
    }
    lastErr = err;
    if (err == ECONNREFUSED && !retryRefused)
      CHORUS_THROW(chorusRemoteError, "connect to %s refused: nothing listens there any more", addrToString(addr).c_str());
    if (!isRetryableConnectError(err)) {
      errno = err;
      CHORUS_THROW_ERRNO("connect to %s", addrToString(addr).c_str());
    }
    if (deadline.expired()) break;
    if (aborted(abortFlag)) CHORUS_THROW(chorusInvalidUsage, "aborted while connecting to %s", addrToString(addr).c_str());
    int wait = std::min(backoffMs, std::max(deadline.millisLeft(), 1));
    sleepMs(wait);
    backoffMs = std::min(backoffMs * 2, kAbortCheckMs);
    if (deadline.expired()) break;
  }
  CHORUS_THROW(chorusTimeout, "connect to %s timed out after %d attempt(s) (last error: %s)",
               addrToString(addr).c_str(), attempts, strerror(lastErr));
}

Fd acceptOne(int listenFd, Deadline deadline) {
  for (;;) {
    int c = accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) {
      // Accepted sockets do not inherit O_NONBLOCK on Linux: they are blocking, like connectTo's.
      return Fd(c);
    }
    int err = errno;
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err != EAGAIN && err != EWOULDBLOCK) {
      errno = err;
      CHORUS_THROW_ERRNO("accept");
    }
    // A blocking listener would not get here; a non-blocking one waits for a connection.
    if (waitFor(listenFd, POLLIN, deadline) == 0)
      CHORUS_THROW(chorusTimeout, "timed out waiting for an incoming connection");
  }
}

void setNonBlocking(int fd, bool on) {
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0) CHORUS_THROW_ERRNO("fcntl(F_GETFL)");
  int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (want != flags && fcntl(fd, F_SETFL, want) != 0) CHORUS_THROW_ERRNO("fcntl(F_SETFL)");
}

void setNoDelay(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) CHORUS_THROW_ERRNO("setsockopt(TCP_NODELAY)");
}

void sendAll(int fd, const void* data, size_t bytes, Deadline deadline) {
  auto* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < bytes) {
    ssize_t n = ::send(fd, p + done, bytes - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    int err = errno;
    if (n < 0 && err == EINTR) continue;
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
      if (waitFor(fd, POLLOUT, deadline) == 0)
        CHORUS_THROW(chorusTimeout, "timed out sending to %s (sent %zu of %zu bytes)", peerAddressOf(fd).c_str(), done,
                     bytes);
      continue;
    }
    if (n < 0 && isConnectionLoss(err))
      CHORUS_THROW(chorusRemoteError, "connection to %s lost while sending (%s; sent %zu of %zu bytes)",
                   peerAddressOf(fd).c_str(), strerror(err), done, bytes);
    errno = err;
    CHORUS_THROW_ERRNO("send to %s", peerAddressOf(fd).c_str());
  }
}

void recvAll(int fd, void* data, size_t bytes, Deadline deadline) {
  auto* p = static_cast<char*>(data);
  size_t done = 0;
  while (done < bytes) {
    ssize_t n = ::recv(fd, p + done, bytes - done, MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0)
      CHORUS_THROW(chorusRemoteError, "connection closed by %s (received %zu of %zu bytes)", peerAddressOf(fd).c_str(),
                   done, bytes);
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      if (waitFor(fd, POLLIN, deadline) == 0)
        CHORUS_THROW(chorusTimeout, "timed out receiving from %s (received %zu of %zu bytes)", peerAddressOf(fd).c_str(),
                     done, bytes);
      continue;
    }
    if (isConnectionLoss(err))
      CHORUS_THROW(chorusRemoteError, "connection to %s lost while receiving (%s; received %zu of %zu bytes)",
                   peerAddressOf(fd).c_str(), strerror(err), done, bytes);
    errno = err;
    CHORUS_THROW_ERRNO("recv from %s", peerAddressOf(fd).c_str());
  }
}

}  // namespace chorus

// Small helpers over POSIX TCP sockets shared by the bootstrap and the TCP transport.
// All blocking-looking helpers poll with the given Deadline and throw chorusTimeout when it
// passes, chorusRemoteError when the peer closed/reset, chorusSystemError on other failures.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>

#include "base/deadline.h"
#include "bootstrap/peer_card.h"

namespace chorus {

// RAII file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept { if (this != &o) { reset(); fd_ = o.release(); } return *this; }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// The local address to use: the first address of the interface whose name starts with ifname,
// or (ifname empty) the first up, non-loopback IPv4 interface, else loopback.
WireAddr chooseLocalAddress(const std::string& ifname);
std::string addrToString(const WireAddr& addr);            // "10.0.0.1:4242", "[::1]:4242"
// addrToString of a connected socket's remote end, for messages; "?" when there is none.
std::string peerAddressOf(int fd);
WireAddr parseAddress(const std::string& host, int port);  // numeric or resolvable host name

// Listening socket bound to addr (port 0 = ephemeral); *bound receives the actual address.
Fd listenOn(const WireAddr& addr, WireAddr* bound, int backlog = 1024);
// Connects with retries (ECONNREFUSED while the listener is not up yet) until the deadline.
// retryRefused = false: the listener is known to have been up, so a refusal means its owner is
// gone; it is reported at once as chorusRemoteError. abortFlag (optional): checked at least
// every 100 ms while waiting; once set, the wait ends with chorusInvalidUsage. The socket
// returned is in blocking mode.
Fd connectTo(const WireAddr& addr, Deadline deadline, bool retryRefused = true,
             const std::atomic<bool>* abortFlag = nullptr);
// Accepts one connection, waiting until the deadline.
Fd acceptOne(int listenFd, Deadline deadline);

void setNonBlocking(int fd, bool on);
void setNoDelay(int fd);
// Full-buffer send/recv on a (blocking or non-blocking) socket, polling up to the deadline.
void sendAll(int fd, const void* data, size_t bytes, Deadline deadline);
void recvAll(int fd, void* data, size_t bytes, Deadline deadline);

}  // namespace chorus

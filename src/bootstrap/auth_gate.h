// Limits on connections that have not authenticated yet, shared by every listener that anyone
// on the network can reach: the root rendezvous (root.cpp), each rank's out-of-band listener
// (oob_sockets.cpp), the TCP transport's data listener (transports/tcp/tcp_transport.cpp) and
// each rank's health service (src/health/health_service.cpp).
//
// A connection is "pending" from its accept until it has sent a complete, valid first record
// (check-in, Auth, TCP Hello or health request: each carries the communicator's secret). Real
// ranks write that record right after connecting, so it is normally already there when the
// connection is accepted. Strangers are held to two limits:
//   - a deadline: a pending connection is closed once it has waited CHORUS_AUTH_TIMEOUT seconds
//     (default 2, never more than CHORUS_TIMEOUT);
//   - a cap: at most CHORUS_AUTH_MAX_PENDING (default 32) pending connections per listener.
//     When a new one arrives at the cap, the oldest pending one is closed: it has had the most
//     time to authenticate. (Turning the newcomer away instead would let a burst of idle
//     strangers, all accepted together, shut out a real rank whose first record is a few
//     microseconds behind its connect: that happened on a loaded machine.)
// So the descriptors a listener holds for strangers stay below the cap whatever arrives.
//
// Every connection turned away is logged at WARN with its address, at most one line per second
// per listener; the lines not printed are counted in the next one, and in a last line when the
// gate is destroyed.
//
// accept() (used by the health service) also handles a process out of descriptors: the
// listener's oldest pending connection is closed to make one, and without any the listener
// rests (is not polled) for kAcceptRest while the kernel keeps its queue: a listener that stays
// readable while accept() fails would otherwise spin its thread. One WARN line per episode.
//
// Not thread-safe: each listener's gate is used by the one thread that serves that listener.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "bootstrap/socket.h"
#include "base/deadline.h"

namespace chorus {

struct AuthLimits {
  double timeoutSec = 2.0;  // CHORUS_AUTH_TIMEOUT
  int maxPending = 32;      // CHORUS_AUTH_MAX_PENDING
  // Reads CHORUS_AUTH_TIMEOUT and CHORUS_AUTH_MAX_PENDING (chorusInvalidArgument when
  // malformed); the deadline is capped at commTimeoutSec when that is positive.
  static AuthLimits fromEnv(double commTimeoutSec);
};

class AuthGate {
 public:
  // `listener` names the listener in log lines ("root 10.0.0.1:4242", "rank 3's bootstrap
  // listener"); subsys is the log subsystem.
  AuthGate(std::string listener, uint32_t subsys, AuthLimits limits);
  ~AuthGate();
  AuthGate(const AuthGate&) = delete;
  AuthGate& operator=(const AuthGate&) = delete;

  const AuthLimits& limits() const { return limits_; }
  // Whether a connection accepted at `since` has had its time.
  bool expired(Clock::time_point since, Clock::time_point now) const;
  // When a connection accepted at `since` will have had its time.
  Clock::time_point expiry(Clock::time_point since) const;

  // Logs a connection turned away (rate-limited WARN) and counts it.
  void rejected(const std::string& remote, const std::string& why);
  uint64_t rejectedCount() const { return rejectedTotal_; }

  // The next connection queued on `listener` (close-on-exec, non-blocking), or an invalid Fd
  // when none is (or the listener rests). When the process has no descriptor left and a
  // connection is queued, closeOldest() is asked to close the listener's longest-waiting pending
  // connection (through rejected(); false when there is none) and accepting goes on; without
  // one the listener rests. Errors other than those of a full process or of a connection
  // already gone are thrown.
  Fd accept(int listener, const std::function<bool()>& closeOldest);
  // While resting, do not poll the listener for POLLIN (it stays readable): wake at restsUntil().
  bool resting(Clock::time_point now) const { return now < restUntil_; }
  Clock::time_point restsUntil() const { return restUntil_; }
  static constexpr std::chrono::milliseconds kAcceptRest{50};

 private:
  void rest(int err);
  std::string listener_;
  uint32_t subsys_;
  AuthLimits limits_;
  Clock::duration timeout_;
  Clock::time_point lastWarn_{};
  bool warned_ = false;
  uint64_t suppressed_ = 0;
  uint64_t rejectedTotal_ = 0;
  // Out of descriptors: resting until restUntil_; the episode began at restSince_ (zero: none).
  Clock::time_point restUntil_{}, restSince_{}, lastRestWarn_{};
  uint64_t restTries_ = 0, restEpisodes_ = 0;
};

}  // namespace chorus

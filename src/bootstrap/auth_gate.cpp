// Limits on unauthenticated connections (auth_gate.h).
#include "bootstrap/auth_gate.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "base/config.h"
#include "base/error.h"
#include "base/log.h"

namespace chorus {
namespace {

// At most one WARN line per listener per this long; the lines in between are counted.
constexpr auto kWarnInterval = std::chrono::seconds(1);
constexpr int kMaxPendingLimit = 1 << 16;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

AuthLimits AuthLimits::fromEnv(double commTimeoutSec) {
  AuthLimits l;
  l.timeoutSec = envDouble("CHORUS_AUTH_TIMEOUT", l.timeoutSec);
  CHORUS_CHECK_ARG(l.timeoutSec > 0 && l.timeoutSec <= 1e6, "CHORUS_AUTH_TIMEOUT=%g is outside (0, 1e6] seconds",
                   l.timeoutSec);
  long long cap = envInt("CHORUS_AUTH_MAX_PENDING", l.maxPending);
  CHORUS_CHECK_ARG(cap >= 1 && cap <= kMaxPendingLimit, "CHORUS_AUTH_MAX_PENDING=%lld is outside [1, %d]", cap,
                   kMaxPendingLimit);
  l.maxPending = static_cast<int>(cap);
  if (commTimeoutSec > 0) l.timeoutSec = std::min(l.timeoutSec, commTimeoutSec);
  return l;
}

AuthGate::AuthGate(std::string listener, uint32_t subsys, AuthLimits limits)
    : listener_(std::move(listener)), subsys_(subsys), limits_(limits), timeout_(seconds(limits.timeoutSec)) {}

AuthGate::~AuthGate() {
  if (restEpisodes_ > 1)
    CHORUS_WARN(subsys_, "%s: ran out of descriptors %llu times in all", listener_.c_str(),
                static_cast<unsigned long long>(restEpisodes_));
  if (suppressed_ > 0)
    CHORUS_WARN(subsys_, "%s: %llu more unauthenticated connection(s) were closed (not shown; %llu in all)",
                listener_.c_str(), static_cast<unsigned long long>(suppressed_),
                static_cast<unsigned long long>(rejectedTotal_));
}

bool AuthGate::expired(Clock::time_point since, Clock::time_point now) const { return now - since >= timeout_; }

Clock::time_point AuthGate::expiry(Clock::time_point since) const { return since + timeout_; }

void AuthGate::rejected(const std::string& remote, const std::string& why) {
  ++rejectedTotal_;
  auto now = Clock::now();
  if (warned_ && now - lastWarn_ < kWarnInterval) {
    ++suppressed_;
    return;
  }
  if (suppressed_ > 0)
    CHORUS_WARN(subsys_, "%s: closed a connection from %s: %s (%llu more closed since the previous line, not shown)",
                listener_.c_str(), remote.c_str(), why.c_str(), static_cast<unsigned long long>(suppressed_));
  else
    CHORUS_WARN(subsys_, "%s: closed a connection from %s: %s", listener_.c_str(), remote.c_str(), why.c_str());
  warned_ = true;
  lastWarn_ = now;
  suppressed_ = 0;
}

Fd AuthGate::accept(int listener, const std::function<bool()>& closeOldest) {
  for (;;) {
    int c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c >= 0) {
      if (restSince_ != Clock::time_point{}) {
        CHORUS_INFO(subsys_, "%s: accepting again after %.0f ms without descriptors (%llu tries)", listener_.c_str(),
                    std::chrono::duration<double, std::milli>(Clock::now() - restSince_).count(),
                    static_cast<unsigned long long>(restTries_));
        restSince_ = Clock::time_point{};
      }
      return Fd(c);
    }
    int err = errno;
    switch (err) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        return Fd();
      // A connection that failed while queued (accept(2): "treat like EAGAIN by retrying").
      case EINTR: case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN:
      case ENONET: case EHOSTUNREACH: case ENETUNREACH: case EPERM: case ETIMEDOUT:
        continue;
      case EMFILE: case ENFILE: case ENOBUFS: case ENOMEM: {
        // accept() wants a descriptor before it looks at the queue: is anybody there at all?
        pollfd queued{listener, POLLIN, 0};
        if (::poll(&queued, 1, 0) == 0) return Fd();
        // Strangers give way to whoever is next in the queue.
        if (closeOldest && closeOldest()) continue;
        rest(err);
        return Fd();
      }
      default:
        errno = err;
        CHORUS_THROW_ERRNO("%s: accept", listener_.c_str());
    }
  }
}

// One WARN line when an episode without descriptors begins (at most one per kWarnInterval;
// the rest are counted), none per try.
void AuthGate::rest(int err) {
  auto now = Clock::now();
  restUntil_ = now + kAcceptRest;
  ++restTries_;
  if (restSince_ != Clock::time_point{}) return;
  restSince_ = now;
  restTries_ = 1;
  ++restEpisodes_;
  if (lastRestWarn_ != Clock::time_point{} && now - lastRestWarn_ < kWarnInterval) return;
  lastRestWarn_ = now;
  CHORUS_WARN(subsys_,
              "%s: cannot accept connections: %s; not accepting for %lld ms at a time until a descriptor is free "
              "(queued connections wait; %llu such episode(s) so far)",
              listener_.c_str(), strerror(err), static_cast<long long>(kAcceptRest.count()),
              static_cast<unsigned long long>(restEpisodes_));
}

}  // namespace chorus

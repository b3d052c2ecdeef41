// Limits on unauthenticated connections (auth_gate.h).
#include "bootstrap/auth_gate.h"

#include <algorithm>
#include <chrono>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"

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

}  // namespace chorus

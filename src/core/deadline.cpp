#include "core/deadline.h"

#include <sched.h>
#include <time.h>

namespace chorus {

// Thresholds: ~2k pause iterations is a few microseconds, the scale of a cross-core cache-line
// round trip on these hosts (0.07-0.3 us) times the handful of round trips a step needs.
// Sleeps start at 1 us and double up to 256 us, so an idle rank costs little CPU while the
// worst added latency after a long wait stays a fraction of a millisecond.
void Backoff::pause() {
  ++idle_;
  if (idle_ < 2000) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
    return;
  }
  if (idle_ < 2200) {
    sched_yield();
    return;
  }
  uint64_t shift = (idle_ - 2200) / 64;  // double the sleep every 64 idle passes
  long ns = 1000L << (shift > 8 ? 8 : shift);
  timespec ts{0, ns};
  nanosleep(&ts, nullptr);
}

}  // namespace chorus

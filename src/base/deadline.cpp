#include "base/deadline.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>

namespace chorus {

namespace {
std::atomic<bool> gSpin{true};
}  // namespace

void Backoff::setSpin(bool on) { gSpin.store(on, std::memory_order_relaxed); }
bool Backoff::spins() { return gSpin.load(std::memory_order_relaxed); }

void Backoff::pause() {
  if (idle_++ == 0) spinning_ = gSpin.load(std::memory_order_relaxed);
  // Read the clock only every 16th pass while spinning: a clock read costs as much as a short
  // wait. The stretch is timed from the first read (16 passes, well under a microsecond, in).
  if (spinning_ && (idle_ & 15) != 0) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
    return;
  }
  Clock::time_point now = Clock::now();
  if (idle_ == 1 || (spinning_ && idle_ <= 16)) since_ = now;
  auto waited = now - since_;
  if (spinning_) {
    if (waited < std::chrono::microseconds(2)) return;
    spinning_ = false;
  }
  if (waited < std::chrono::milliseconds(2)) {
    sched_yield();
    return;
  }
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count() / 16;
  timespec ts{0, static_cast<long>(std::min<long long>(ns, 1000000))};
  nanosleep(&ts, nullptr);
}

}  // namespace chorus

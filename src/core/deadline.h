// Deadlines and the waiting policy every loop in Chorus uses.
//
// Rule: no wait without a Deadline. Loops that poll call Backoff::pause() when a pass made no
// progress: it spins briefly (cheap when the peer runs on the other core), then yields, then
// sleeps in growing steps up to a cap, because on an oversubscribed 2-core host a spinning
// waiter can steal a whole scheduler slice (~4 ms) from the very peer it waits for.
#pragma once

#include <chrono>
#include <cstdint>

namespace chorus {

using Clock = std::chrono::steady_clock;

class Deadline {
 public:
  Deadline() : at_(Clock::time_point::max()) {}
  explicit Deadline(Clock::time_point at) : at_(at) {}
  static Deadline after(double seconds) {
    if (seconds <= 0) return Deadline();
    return Deadline(Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)));
  }
  bool expired() const { return at_ != Clock::time_point::max() && Clock::now() >= at_; }
  bool infinite() const { return at_ == Clock::time_point::max(); }
  // Milliseconds left, clamped to [0, cap]; for poll() timeouts.
  int millisLeft(int cap = 1000) const {
    if (infinite()) return cap;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at_ - Clock::now()).count();
    if (left < 0) return 0;
    return left > cap ? cap : static_cast<int>(left);
  }
  Clock::time_point at() const { return at_; }

 private:
  Clock::time_point at_;
};

class Backoff {
 public:
  // Call when a polling pass made no progress.
  void pause();
  // Call when a pass made progress.
  void reset() { idle_ = 0; }
  // Number of consecutive idle passes; loops use it to run costly checks (liveness) rarely.
  uint64_t idlePasses() const { return idle_; }

 private:
  uint64_t idle_ = 0;
};

}  // namespace chorus

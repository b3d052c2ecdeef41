// Deadlines and the waiting policy every loop in Chorus uses.
//
// Rule: no wait without a Deadline. Loops that poll call Backoff::pause() when a pass made no
// progress. The policy is by elapsed idle time: spin ~2 us (enough for a peer running on the
// other core to answer: a cache-line round trip is 0.07-0.3 us here), then yield up to 2 ms (on
// an oversubscribed host a spinning waiter otherwise steals the core from the very peer it waits
// for; measured with 4 ranks on 2 cores, an 8-byte all-reduce took 85 us with a 30 us spin and
// 17 us with a 2 us one, while 2 ranks stayed at 1.1-1.2 us), then sleep for 1/16 of the time waited so far, capped at 1 ms, so that a long
// wait costs little CPU and wakes at most ~6% late. Where a host runs more ranks than it has
// CPUs even the 2 us spin is lost to the peer that would answer, so a communicator created there
// turns spinning off for the process (Backoff::setSpin; CHORUS_SPIN): 8-byte all-reduce with 4
// ranks on 2 cores 9.9 -> 5.8 us, all-gather of 16 bytes 10.2 -> 5.4 us (medians of 7,
// alternating).
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
  // The poll() timeout for the time left: milliseconds rounded up (a deadline less than a
  // millisecond away sleeps instead of spinning), 0 once expired, at most cap (so that a loop
  // waiting on an infinite deadline still wakes up to re-check its state).
  int millisLeft(int cap = 1000) const {
    if (infinite()) return cap;
    auto left = at_ - Clock::now();
    if (left <= Clock::duration::zero()) return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return ms > cap ? cap : static_cast<int>(ms);
  }
  Clock::time_point at() const { return at_; }

 private:
  Clock::time_point at_;
};

class Backoff {
 public:
  // Call when a polling pass made no progress.
  void pause();
  // Whether waits of this process spin before they yield (default true).
  static void setSpin(bool on);
  static bool spins();
  // Call when a pass made progress.
  void reset() { idle_ = 0; }
  // Number of consecutive idle passes; loops use it to run costly checks (liveness) rarely.
  uint64_t idlePasses() const { return idle_; }
  // How long this idle stretch has lasted (zero before the first pause).
  Clock::duration idleFor() const { return idle_ > 16 ? Clock::now() - since_ : Clock::duration::zero(); }

 private:
  uint64_t idle_ = 0;
  bool spinning_ = false;
  Clock::time_point since_;
};

}  // namespace chorus

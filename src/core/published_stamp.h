// The stamp of the collective a rank is in, written by the thread that runs its calls and read
// by the health service's threads (a seqlock: the writer never waits, a reader retries the
// rare read that overlapped a write).
#pragma once

#include <atomic>
#include <cstring>

#include "exec/call_stamp.h"

namespace chorus {

class PublishedStamp {
 public:
  void store(const CallStamp& s) {
    uint64_t w[kWords];
    memcpy(w, &s, sizeof s);
    uint32_t v = version_.load(std::memory_order_relaxed);
    version_.store(v + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    for (int i = 0; i < kWords; ++i) words_[i].store(w[i], std::memory_order_relaxed);
    version_.store(v + 2, std::memory_order_release);
  }
  CallStamp load() const {
    uint64_t w[kWords];
    for (;;) {
      uint32_t v = version_.load(std::memory_order_acquire);
      if (v & 1) continue;
      for (int i = 0; i < kWords; ++i) w[i] = words_[i].load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (version_.load(std::memory_order_relaxed) == v) break;
    }
    CallStamp s;
    memcpy(&s, w, sizeof s);
    return s;
  }

 private:
  static constexpr int kWords = sizeof(CallStamp) / sizeof(uint64_t);
  static_assert(sizeof(CallStamp) % sizeof(uint64_t) == 0, "CallStamp is whole words");
  std::atomic<uint32_t> version_{0};
  std::atomic<uint64_t> words_[kWords] = {};
};

}  // namespace chorus

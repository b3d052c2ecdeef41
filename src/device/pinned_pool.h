// Pinned host memory and events for staging, kept for reuse: a call on the same sizes as an
// earlier one takes its block and events from here instead of asking the plugin (whose pinned
// allocations cost milliseconds on real drivers). Process-wide, shared by every communicator.
//
// Blocks are kept by size class (eight per power of two, from 64 KiB); at most CHORUS_DEVICE_POOL
// bytes (default 1 GiB) wait in the pool: a block coming back evicts those that waited longest. reserve() puts a block of a
// size in the pool ahead of use (chorusCommRegister).
#pragma once

#include <chorus/device_plugin.h>

#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace chorus {

class PinnedPool {
 public:
  static PinnedPool& instance();
  // A pinned block of at least `bytes` bytes (throws on the plugin's failure).
  void* acquire(const chorusDevice_v1_t* plugin, size_t bytes);
  void release(const chorusDevice_v1_t* plugin, void* block, size_t bytes);
  // Makes sure a block for `bytes` waits in the pool.
  void reserve(const chorusDevice_v1_t* plugin, size_t bytes);
  void* event(const chorusDevice_v1_t* plugin);
  void returnEvent(const chorusDevice_v1_t* plugin, void* event);
  // Bytes of blocks waiting in the pool (tests).
  size_t pooledBytes() const;

 private:
  static size_t sizeClass(size_t bytes);
  mutable std::mutex mutex_;
  std::map<std::pair<const chorusDevice_v1_t*, size_t>, std::vector<void*>> blocks_;
  struct Entry {
    const chorusDevice_v1_t* plugin;
    void* block;
    size_t bytes;
  };
  std::deque<Entry> order_;  // pooled blocks, oldest first
  std::map<const chorusDevice_v1_t*, std::vector<void*>> events_;
  size_t pooled_ = 0;
};

}  // namespace chorus

#include "device/pinned_pool.h"

#include <algorithm>

#include "base/config.h"
#include "device/device.h"

namespace chorus {

PinnedPool& PinnedPool::instance() {
  static PinnedPool* pool = new PinnedPool;  // never destroyed: blocks may be in flight at exit
  return *pool;
}

size_t PinnedPool::sizeClass(size_t bytes) {
  // Eight classes per power of two: a block is at most 12.5% larger than asked for.
  size_t c = 64 * 1024;
  if (bytes <= c) return c;
  size_t top = c;
  while (top < bytes) top <<= 1;
  size_t step = top / 16;  // classes between top/2 and top
  return (bytes + step - 1) / step * step;
}

void* PinnedPool::acquire(const chorusDevice_v1_t* plugin, size_t bytes) {
  const size_t c = sizeClass(bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.find({plugin, c});
    if (it != blocks_.end() && !it->second.empty()) {
      void* b = it->second.back();
      it->second.pop_back();
      order_.erase(std::find_if(order_.begin(), order_.end(), [b](const Entry& e) { return e.block == b; }));
      pooled_ -= c;
      return b;
    }
  }
  void* b = nullptr;
  deviceCheck(plugin->hostAlloc(c, &b), plugin, "hostAlloc (staging memory)");
  return b;
}

void PinnedPool::release(const chorusDevice_v1_t* plugin, void* block, size_t bytes) {
  if (!block) return;
  static const size_t limit = envBytes("CHORUS_DEVICE_POOL", size_t{1} << 30);
  const size_t c = sizeClass(bytes);
  if (c > limit) {
    plugin->hostFree(block);
    return;
  }
  // The block just used stays; the blocks waiting longest make room for it.
  std::vector<std::pair<const chorusDevice_v1_t*, void*>> evicted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    while (pooled_ + c > limit && !order_.empty()) {
      Entry old = order_.front();
      order_.pop_front();
      std::vector<void*>& list = blocks_[{old.plugin, old.bytes}];
      list.erase(std::find(list.begin(), list.end(), old.block));
      pooled_ -= old.bytes;
      evicted.emplace_back(old.plugin, old.block);
    }
    blocks_[{plugin, c}].push_back(block);
    order_.push_back({plugin, block, c});
    pooled_ += c;
  }
  for (auto& [p, b] : evicted) p->hostFree(b);
}

void PinnedPool::reserve(const chorusDevice_v1_t* plugin, size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.find({plugin, sizeClass(bytes)});
    if (it != blocks_.end() && !it->second.empty()) return;
  }
  release(plugin, acquire(plugin, bytes), bytes);
}

void* PinnedPool::event(const chorusDevice_v1_t* plugin) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<void*>& free = events_[plugin];
    if (!free.empty()) {
      void* e = free.back();
      free.pop_back();
      return e;
    }
  }
  void* e = nullptr;
  deviceCheck(plugin->eventCreate(&e), plugin, "eventCreate");
  return e;
}

void PinnedPool::returnEvent(const chorusDevice_v1_t* plugin, void* event) {
  std::lock_guard<std::mutex> lock(mutex_);
  events_[plugin].push_back(event);
}

size_t PinnedPool::pooledBytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pooled_;
}

}  // namespace chorus

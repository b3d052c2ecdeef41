#include "device/pinned_pool.h"

#include "base/config.h"
#include "device/device.h"

namespace chorus {

PinnedPool& PinnedPool::instance() {
  static PinnedPool* pool = new PinnedPool;  // never destroyed: blocks may be in flight at exit
  return *pool;
}

size_t PinnedPool::sizeClass(size_t bytes) {
  size_t c = 64 * 1024;
  while (c < bytes) c <<= 1;
  return c;
}

void* PinnedPool::acquire(const chorusDevice_v1_t* plugin, size_t bytes) {
  const size_t c = sizeClass(bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.find({plugin, c});
    if (it != blocks_.end() && !it->second.empty()) {
      void* b = it->second.back();
      it->second.pop_back();
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
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pooled_ + c <= limit) {
      blocks_[{plugin, c}].push_back(block);
      pooled_ += c;
      return;
    }
  }
  plugin->hostFree(block);
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

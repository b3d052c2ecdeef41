// Registration cache of the libfabric plugin: the memory registrations made on the plugin's own
// behalf, for isend/irecv called with mhandle == NULL on a provider that needs FI_MR_LOCAL
// (verbs;ofi_rxm, efa, cxi). A post asks for a region covering [addr, addr + len); the cache
// answers with an existing registration that covers it (a hit) or registers the page-aligned
// range (a miss). The caller holds the region until the provider completes the operation, then
// releases it. Regions nobody holds stay registered, in least-recently-used order, until the
// cache is over its bounds (entries or bytes); only unheld regions are ever evicted, so the cache
// may stay over its bounds while every region is in use.
//
// Stale mappings: the cache knows virtual addresses, not memory. If the application frees a
// buffer and new memory is mapped at the same address, a cached registration still pins (and on
// an RDMA NIC still translates to) the OLD physical pages: a later post on the new buffer would
// hit the cache and the NIC would read or write pages that are no longer the buffer. The plugin
// installs no memory hooks (libfabric's own cache does, with userfaultfd or malloc hooks, inside
// providers that register through it). What it does about it: (1) the cache serves only posts
// without an mhandle on FI_MR_LOCAL providers; buffers Chorus registers with regMr are never
// cached; (2) CHORUS_OFI_MR_CACHE_MAX=0 turns caching off (each post registers, and deregisters
// at completion), the safe choice for an application that frees and reallocates buffers it hands
// to Chorus; (3) a region is only reused when it covers the whole request, so a reallocation of
// a different size at the same address misses at least where it grew. This is documented, not
// solved: a same-size reallocation at the same address with caching on is the residual risk.
//
// Not thread-safe: the owner (one device of the plugin) calls it under its own lock. Header-only
// so that the unit test can drive it with a fake register function without libfabric.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>

namespace chorus::ofi {

class MrCache {
 public:
  struct Region {
    uintptr_t start = 0;  // page-aligned
    uintptr_t end = 0;    // page-aligned, exclusive
    void* handle = nullptr;
    void* desc = nullptr;
    int refs = 0;
    std::list<Region*>::iterator lru;  // position in lru_ (front = most recently used)
  };
  // Registers [addr, addr + len): returns 0 and fills handle/desc, or a negative error.
  using RegisterFn = std::function<int(void* addr, size_t len, void** handle, void** desc)>;
  using DeregisterFn = std::function<void(void* handle)>;

  // maxEntries == 0 disables caching: every acquire registers, every release deregisters.
  MrCache(RegisterFn reg, DeregisterFn dereg, size_t maxEntries, size_t maxBytes, size_t pageSize = 4096)
      : reg_(std::move(reg)), dereg_(std::move(dereg)), maxEntries_(maxEntries), maxBytes_(maxBytes), page_(pageSize) {}
  ~MrCache() { clear(); }
  MrCache(const MrCache&) = delete;
  MrCache& operator=(const MrCache&) = delete;

  // A region covering [addr, addr + len) (len >= 1), held once more; *out is null on error and
  // the register function's error is returned.
  int acquire(const void* addr, size_t len, Region** out) {
    *out = nullptr;
    const uintptr_t lo = reinterpret_cast<uintptr_t>(addr) & ~(page_ - 1);
    const uintptr_t hi = (reinterpret_cast<uintptr_t>(addr) + len + page_ - 1) & ~(page_ - 1);
    if (Region* r = findCovering(lo, hi)) {
      ++hits_;
      ++r->refs;
      lru_.splice(lru_.begin(), lru_, r->lru);
      *out = r;
      return 0;
    }
    ++misses_;
    auto* r = new Region;
    r->start = lo;
    r->end = hi;
    const int rc = reg_(reinterpret_cast<void*>(lo), hi - lo, &r->handle, &r->desc);
    if (rc != 0) {
      delete r;
      return rc;
    }
    r->refs = 1;
    lru_.push_front(r);
    r->lru = lru_.begin();
    byStart_.emplace(lo, r);
    bytes_ += hi - lo;
    if (hi - lo > longest_) longest_ = hi - lo;
    evictOverBounds();
    *out = r;
    return 0;
  }

  // One hold less. With caching off the region is deregistered at once.
  void release(Region* r) {
    if (r == nullptr) return;
    --r->refs;
    if (r->refs == 0 && maxEntries_ == 0) drop(r);
    else evictOverBounds();
  }

  // Deregisters everything (regions still held included: the owner is going away).
  void clear() {
    for (Region* r : lru_) {
      dereg_(r->handle);
      delete r;
    }
    lru_.clear();
    byStart_.clear();
    bytes_ = 0;
  }

  size_t entries() const { return lru_.size(); }
  size_t bytes() const { return bytes_; }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }
  uint64_t evictions() const { return evictions_; }

 private:
  // Regions may overlap (each miss registers exactly what it needs), so a covering region may
  // start well before lo: walk back from lo, but no further than the longest region ever held.
  Region* findCovering(uintptr_t lo, uintptr_t hi) {
    auto it = byStart_.upper_bound(lo);
    while (it != byStart_.begin()) {
      --it;
      Region* r = it->second;
      if (lo - r->start >= longest_) break;
      if (r->end >= hi) return r;
    }
    return nullptr;
  }

  void evictOverBounds() {
    auto it = lru_.end();
    while ((lru_.size() > maxEntries_ || bytes_ > maxBytes_) && it != lru_.begin()) {
      --it;
      Region* r = *it;
      if (r->refs > 0) continue;
      ++evictions_;
      it = std::next(it);  // stays valid: only r's node goes
      drop(r);
    }
  }

  void drop(Region* r) {
    auto range = byStart_.equal_range(r->start);
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second == r) {
        byStart_.erase(it);
        break;
      }
    }
    lru_.erase(r->lru);
    bytes_ -= r->end - r->start;
    dereg_(r->handle);
    delete r;
  }

  RegisterFn reg_;
  DeregisterFn dereg_;
  size_t maxEntries_;
  size_t maxBytes_;
  uintptr_t page_;
  std::multimap<uintptr_t, Region*> byStart_;
  std::list<Region*> lru_;
  size_t bytes_ = 0;
  uintptr_t longest_ = 0;
  uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

}  // namespace chorus::ofi

#include "device/staging.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>

#include "base/deadline.h"
#include "base/error.h"
#include "device/device.h"
#include "device/pinned_pool.h"

namespace chorus {
namespace {

size_t chooseSlice(size_t bytes, size_t requested) {
  if (requested) return requested;
  constexpr size_t kMin = 256 * 1024, kMax = 4 * 1024 * 1024, kUnit = 64 * 1024;
  size_t s = (bytes / 8 + kUnit - 1) / kUnit * kUnit;  // about eight slices
  return std::clamp(s, kMin, kMax);
}

size_t align64(size_t n) { return (n + 63) & ~size_t{63}; }

}  // namespace

StagedCall::StagedCall(const chorusDevice_v1_t* plugin, const Layout& l, void* stream, size_t sliceBytes)
    : plugin_(plugin), stream_(stream) {
  CHORUS_ASSERT(plugin && stream);
  // The host block: one mirror of the larger buffer when in place, else one per staged side.
  const bool inPlace = l.inPlace && l.inDevice && l.outDevice;
  size_t inAt = 0, outAt = 0;
  if (inPlace) {
    dataBytes_ = l.outputInsideInput ? l.inBytes : l.outBytes;
    inAt = l.outputInsideInput ? 0 : l.aliasOffset;
    outAt = l.outputInsideInput ? l.aliasOffset : 0;
  } else {
    size_t inStaged = l.inDevice ? align64(l.inBytes) : 0;
    outAt = inStaged;
    dataBytes_ = inStaged + (l.outDevice ? l.outBytes : 0);
  }
  slice_ = chooseSlice(std::max(l.inBytes, l.outBytes), sliceBytes);
  const size_t outSlices = l.outDevice && l.outBytes ? (l.outBytes + slice_ - 1) / slice_ : 0;
  blockBytes_ = align64(dataBytes_) + outSlices * sizeof(uint64_t);
  block_ = PinnedPool::instance().acquire(plugin_, blockBytes_);
  blockData_ = static_cast<char*>(block_);
  words_ = reinterpret_cast<uint64_t*>(blockData_ + align64(dataBytes_));
  for (size_t k = 0; k < outSlices; ++k) __atomic_store_n(&words_[k], 0, __ATOMIC_RELEASE);
  hostIn_ = l.inDevice ? blockData_ + inAt : const_cast<void*>(l.in);
  hostOut_ = l.outDevice ? blockData_ + outAt : l.out;
  if (l.outDevice && l.outBytes) h2d_ = {blockData_ + outAt, static_cast<char*>(l.out), l.outBytes};
  // In: the input; the output too where the call leaves bytes of it alone (in place with the
  // input inside the output, that copy covers the input already).
  if (l.inDevice && l.inBytes) d2h_[0] = {blockData_ + inAt, static_cast<char*>(const_cast<void*>(l.in)), l.inBytes};
  if (l.prefillOutput && !(inPlace && l.outputInsideInput)) d2h_[1] = h2d_;
  if (l.prefillOutput && inPlace && !l.outputInsideInput) d2h_[0] = Copy{};
  pending_.assign(outSlices, 0);
  try {
    // 1. what is copied in, slice by slice, an event after each
    for (int r = 0; r < 2; ++r) {
      d2hFirst_[r] = inEvents_.size();
      enqueueIn(d2h_[r]);
    }
    // 2. each output slice once its word is set; 3. the end
    for (size_t k = 0; k < outSlices; ++k) {
      size_t at = k * slice_, len = std::min(slice_, h2d_.bytes - at);
      deviceCheck(plugin_->waitValue(stream_, &words_[k], 1), plugin_, "waitValue");
      deviceCheck(plugin_->copyAsync(h2d_.dev + at, h2d_.host + at, len, stream_), plugin_, "copyAsync (host to device)");
    }
    unreleased_ = outSlices;
    endEvent_ = PinnedPool::instance().event(plugin_);
    deviceCheck(plugin_->eventRecord(endEvent_, stream_), plugin_, "eventRecord");
  } catch (...) {
    abandon();
    finished_ = true;  // nothing to wait for that can be trusted; the destructor returns memory
    for (void* e : inEvents_) PinnedPool::instance().returnEvent(plugin_, e);
    inEvents_.clear();
    if (endEvent_) PinnedPool::instance().returnEvent(plugin_, endEvent_);
    endEvent_ = nullptr;
    throw;
  }
}

StagedCall::~StagedCall() {
  if (!finished_) {
    abandon();
    try {
      finish(60, nullptr);
    } catch (const Error&) {
      // The device stream did not drain in a minute: keep the memory (it may still be copied
      // into) rather than hand it to another call.
      return;
    }
  }
  for (void* e : inEvents_) PinnedPool::instance().returnEvent(plugin_, e);
  if (endEvent_) PinnedPool::instance().returnEvent(plugin_, endEvent_);
  PinnedPool::instance().release(plugin_, block_, blockBytes_);
}

void StagedCall::enqueueIn(const Copy& c) {
  for (size_t k = 0, n = slicesOf(c); k < n; ++k) {
    size_t at = k * slice_, len = std::min(slice_, c.bytes - at);
    deviceCheck(plugin_->copyAsync(c.host + at, c.dev + at, len, stream_), plugin_, "copyAsync (device to host)");
    inEvents_.push_back(PinnedPool::instance().event(plugin_));
    deviceCheck(plugin_->eventRecord(inEvents_.back(), stream_), plugin_, "eventRecord");
  }
}

bool StagedCall::overlap(const Copy& c, const void* p, size_t n, size_t* first, size_t* last) const {
  const char* a = static_cast<const char*>(p);
  if (!c.bytes || n == 0 || a + n <= c.host || a >= c.host + c.bytes) return false;
  size_t from = a > c.host ? static_cast<size_t>(a - c.host) : 0;
  size_t to = std::min(static_cast<size_t>(a + n - c.host), c.bytes);  // exclusive
  *first = from / slice_;
  *last = (to - 1) / slice_;
  return true;
}

bool StagedCall::contains(const void* p) const {
  const char* a = static_cast<const char*>(p);
  return a >= blockData_ && a < blockData_ + dataBytes_;
}

bool StagedCall::inputArrived(size_t slice) {
  while (inArrived_ <= slice) {
    int done = 0;
    deviceCheck(plugin_->eventQuery(inEvents_[inArrived_], &done), plugin_, "eventQuery");
    if (!done) return false;
    ++inArrived_;
  }
  return true;
}

void StagedCall::waitInput(double timeoutSec) {
  if (inEvents_.empty()) return;
  Deadline deadline = Deadline::after(timeoutSec);
  Backoff backoff;
  while (!inputArrived(inEvents_.size() - 1)) {
    if (deadline.expired())
      CHORUS_THROW(chorusTimeout, "device plugin %s: the input's copy to the host did not finish in %.1f s (CHORUS_TIMEOUT)",
                   plugin_->name, timeoutSec);
    backoff.pause();
  }
}

void StagedCall::expectWrite(const void* p, size_t n) {
  size_t first, last;
  if (!overlap(h2d_, p, n, &first, &last)) return;
  for (size_t k = first; k <= last; ++k) ++pending_[k];
}

void StagedCall::start() {
  // Output slices no step writes are final already (their bytes are what the input copy or
  // nothing put there; in place, the copy back is queued after the copy in anyway).
  for (size_t k = 0; k < pending_.size(); ++k)
    if (pending_[k] == 0) release(k);
}

bool StagedCall::ready(const void* p, size_t n) {
  size_t first, last;
  for (int r = 0; r < 2; ++r)
    if (overlap(d2h_[r], p, n, &first, &last) && !inputArrived(d2hFirst_[r] + last)) return false;
  return true;
}

void StagedCall::written(const void* p, size_t n) {
  size_t first, last;
  if (!overlap(h2d_, p, n, &first, &last)) return;
  for (size_t k = first; k <= last; ++k) {
    CHORUS_ASSERT(pending_[k] > 0);
    if (--pending_[k] == 0) release(k);
  }
}

void StagedCall::release(size_t slice) {
  if (__atomic_load_n(&words_[slice], __ATOMIC_RELAXED) != 0) return;
  __atomic_store_n(&words_[slice], 1, __ATOMIC_RELEASE);
  --unreleased_;
}

void StagedCall::abandon() {
  for (size_t k = 0; k < pending_.size(); ++k) release(k);
}

void StagedCall::finish(double timeoutSec, const std::atomic<bool>* abortFlag) {
  if (finished_) return;
  CHORUS_ASSERT(unreleased_ == 0);
  Deadline deadline = Deadline::after(timeoutSec);
  Backoff backoff;
  for (;;) {
    int done = 0;
    deviceCheck(plugin_->eventQuery(endEvent_, &done), plugin_, "eventQuery");
    if (done) break;
    if (deadline.expired() || (abortFlag && abortFlag->load(std::memory_order_relaxed)))
      CHORUS_THROW(chorusTimeout, "device plugin %s: the result's copy to the device did not finish in %.1f s (CHORUS_TIMEOUT)",
                   plugin_->name, timeoutSec);
    backoff.pause();
  }
  finished_ = true;
}

StagedCall* StagingGate::owner(const void* p) const {
  for (StagedCall* c : calls_)
    if (c->contains(p)) return c;
  return nullptr;
}
void StagingGate::expectWrite(const void* p, size_t n) {
  if (StagedCall* c = owner(p)) c->expectWrite(p, n);
}
void StagingGate::start() {
  for (StagedCall* c : calls_) c->start();
}
bool StagingGate::ready(const void* p, size_t n) {
  StagedCall* c = owner(p);
  return !c || c->ready(p, n);
}
void StagingGate::written(const void* p, size_t n) {
  if (StagedCall* c = owner(p)) c->written(p, n);
}

}  // namespace chorus

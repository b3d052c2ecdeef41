#include "device/staging.h"

#include <algorithm>

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

StagedCall::StagedCall(const chorusDevice_v1_t* plugin, const Layout& l, void* inStream, bool bound, void* outStream,
                       size_t sliceBytes)
    : plugin_(plugin), inStream_(inStream), outStream_(outStream), bound_(bound) {
  CHORUS_ASSERT(plugin && inStream && outStream);
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
  blockBytes_ = align64(dataBytes_) + (outSlices + 1) * sizeof(uint64_t);
  block_ = PinnedPool::instance().acquire(plugin_, blockBytes_);
  blockData_ = static_cast<char*>(block_);
  words_ = reinterpret_cast<uint64_t*>(blockData_ + align64(dataBytes_));
  for (size_t k = 0; k <= outSlices; ++k) __atomic_store_n(&words_[k], 0, __ATOMIC_RELEASE);
  hostIn_ = l.inDevice ? blockData_ + inAt : const_cast<void*>(l.in);
  hostOut_ = l.outDevice ? blockData_ + outAt : l.out;
  if (l.outDevice && l.outBytes) h2d_ = {blockData_ + outAt, static_cast<char*>(l.out), l.outBytes};
  // In: the input; the output too where the call leaves bytes of it alone (in place with the
  // input inside the output, that copy covers the input already).
  if (l.inDevice && l.inBytes) d2h_[0] = {blockData_ + inAt, static_cast<char*>(const_cast<void*>(l.in)), l.inBytes};
  if (l.prefillOutput && !(inPlace && l.outputInsideInput)) d2h_[1] = h2d_;
  if (l.prefillOutput && inPlace && !l.outputInsideInput) d2h_[0] = Copy{};
  pending_.assign(outSlices, 0);
  lastWriter_.assign(outSlices, 0);
  try {
    if (bound_) {
      callEvent_ = PinnedPool::instance().event(plugin_);
      deviceCheck(plugin_->eventRecord(callEvent_, inStream_), plugin_, "eventRecord");
    }
    for (int r = 0; r < 2; ++r) {
      d2hFirst_[r] = inEvents_.size();
      enqueueIn(d2h_[r]);
    }
    if (bound_) {
      deviceCheck(plugin_->waitValue(inStream_, &words_[outSlices], 1), plugin_, "waitValue");
      // Passed once the caller's stream has seen the done word: only then may the block (and
      // the word in it) go to another call, whose constructor clears its words.
      releaseEvent_ = PinnedPool::instance().event(plugin_);
      deviceCheck(plugin_->eventRecord(releaseEvent_, inStream_), plugin_, "eventRecord");
    }
  } catch (...) {
    abandon();
    throw;  // the destructor waits for what was enqueued and returns the memory
  }
}

StagedCall::~StagedCall() {
  if (!finished_) {
    abandon();
    try {
      if (endEvent_) waitPassed(endEvent_, 60, nullptr, "the result's copy to the device");
      if (!inEvents_.empty()) waitPassed(inEvents_.back(), 60, nullptr, "the input's copy to the host");
      if (releaseEvent_) waitPassed(releaseEvent_, 60, nullptr, "the device stream's wait for the call");
    } catch (const Error&) {
      // The device did not drain in a minute: keep the memory (it may still be copied into or
      // out of) rather than hand it to another call.
      return;
    }
  }
  for (void* e : inEvents_) PinnedPool::instance().returnEvent(plugin_, e);
  if (endEvent_) PinnedPool::instance().returnEvent(plugin_, endEvent_);
  if (callEvent_) PinnedPool::instance().returnEvent(plugin_, callEvent_);
  if (releaseEvent_) PinnedPool::instance().returnEvent(plugin_, releaseEvent_);
  PinnedPool::instance().release(plugin_, block_, blockBytes_);
}

void StagedCall::enqueueIn(const Copy& c) {
  for (size_t k = 0, n = slicesOf(c); k < n; ++k) {
    size_t at = k * slice_, len = std::min(slice_, c.bytes - at);
    deviceCheck(plugin_->copyAsync(c.host + at, c.dev + at, len, inStream_), plugin_, "copyAsync (device to host)");
    inEvents_.push_back(PinnedPool::instance().event(plugin_));
    deviceCheck(plugin_->eventRecord(inEvents_.back(), inStream_), plugin_, "eventRecord");
  }
}

void StagedCall::enqueueOut() {
  // Slices in the order their last writer comes in the schedule (slices no step writes first):
  // the out stream runs in order, so a slice finished late must not hold up those before it.
  std::vector<uint32_t> order(pending_.size());
  for (uint32_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return lastWriter_[a] < lastWriter_[b]; });
  if (callEvent_) deviceCheck(plugin_->streamWaitEvent(outStream_, callEvent_), plugin_, "streamWaitEvent");
  for (uint32_t k : order) {
    size_t at = k * slice_, len = std::min(slice_, h2d_.bytes - at);
    // In place, a slice's copy out must follow the copy in of the same bytes, which runs on
    // another stream (for slices some step writes, the gate has ordered them already).
    size_t first, last;
    for (int r = 0; r < 2; ++r)
      if (overlap(d2h_[r], h2d_.host + at, len, &first, &last))
        deviceCheck(plugin_->streamWaitEvent(outStream_, inEvents_[d2hFirst_[r] + last]), plugin_, "streamWaitEvent");
    deviceCheck(plugin_->waitValue(outStream_, &words_[k], 1), plugin_, "waitValue");
    deviceCheck(plugin_->copyAsync(h2d_.dev + at, h2d_.host + at, len, outStream_), plugin_, "copyAsync (host to device)");
  }
  endEvent_ = PinnedPool::instance().event(plugin_);
  deviceCheck(plugin_->eventRecord(endEvent_, outStream_), plugin_, "eventRecord");
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

bool StagedCall::passed(void* event) {
  int done = 0;
  deviceCheck(plugin_->eventQuery(event, &done), plugin_, "eventQuery");
  return done != 0;
}

void StagedCall::waitPassed(void* event, double timeoutSec, const std::atomic<bool>* abortFlag, const char* what) {
  Deadline deadline = Deadline::after(timeoutSec);
  Backoff backoff;
  while (!passed(event)) {
    if (abortFlag && abortFlag->load(std::memory_order_relaxed))
      CHORUS_THROW(chorusInvalidUsage, "aborted by chorusCommAbort while waiting for %s", what);
    if (deadline.expired())
      CHORUS_THROW(chorusTimeout, "device plugin %s: %s did not finish in %.1f s (CHORUS_TIMEOUT)", plugin_->name, what, timeoutSec);
    backoff.pause();
  }
}

bool StagedCall::inputArrived(size_t slice) {
  while (inArrived_ <= slice) {
    if (!passed(inEvents_[inArrived_])) return false;
    ++inArrived_;
  }
  return true;
}

void StagedCall::waitInput(double timeoutSec) {
  if (!inEvents_.empty()) waitPassed(inEvents_.back(), timeoutSec, nullptr, "the input's copy to the host");
  inArrived_ = inEvents_.size();
}

void StagedCall::expectWrite(const void* p, size_t n) {
  ++writes_;
  size_t first, last;
  if (!overlap(h2d_, p, n, &first, &last)) return;
  for (size_t k = first; k <= last; ++k) {
    ++pending_[k];
    lastWriter_[k] = writes_;
  }
}

void StagedCall::start() {
  enqueueOut();
  // Output slices no step writes are final already (their bytes are what the copy in or
  // nothing put there).
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

void StagedCall::release(size_t slice) { setWord(&words_[slice]); }

void StagedCall::abandon() {
  for (size_t k = 0; k <= pending_.size(); ++k) setWord(&words_[k]);
}

void StagedCall::finish(double timeoutSec, const std::atomic<bool>* abortFlag) {
  if (finished_) return;
  if (endEvent_) waitPassed(endEvent_, timeoutSec, abortFlag, "the result's copy to the device");
  if (!inEvents_.empty()) waitPassed(inEvents_.back(), timeoutSec, abortFlag, "the input's copy to the host");
  setWord(&words_[pending_.size()]);  // the caller's device stream goes on
  if (releaseEvent_) waitPassed(releaseEvent_, timeoutSec, abortFlag, "the device stream's wait for the call");
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

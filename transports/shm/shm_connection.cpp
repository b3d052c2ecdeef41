#include "transports/shm/shm_connection.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "base/log.h"

// Fails the connection (sets our abort flag so the peer notices) and throws.
#define SHM_FAIL(code, ...) fail((code), __FILE__, __LINE__, ::chorus::format(__VA_ARGS__))

namespace chorus::shm {

void ShmConnection::FreeDeleter::operator()(char* p) const { free(p); }

ShmConnection::ShmConnection(int peer, std::unique_ptr<Segment> in, std::unique_ptr<Segment> out,
                             const ShmConnectionOptions& opts)
    : Connection(peer),
      opts_(opts),
      in_(std::move(in)),
      out_(std::move(out)),
      watch_(opts.peerPid),
      ownPid_(getpid()),
      ringTaken_(out_->numSlots(), 0) {}

ShmConnection::~ShmConnection() {
  // Closing with nothing pending is orderly; anything else tells the peer to stop waiting.
  uint32_t flag = (!failed_ && sends_.empty() && recvs_.empty()) ? kFlagClosed : kFlagAborted;
  out_->header()->senderFlags.fetch_or(flag, std::memory_order_release);
  in_->header()->receiverFlags.fetch_or(flag, std::memory_order_release);
}

uint64_t ShmConnection::doPostSend(const void* buf, size_t bytes, const CallStamp& stamp) {
  rethrowIfFailed();
  CHORUS_CHECK_ARG(buf != nullptr || bytes == 0, "shm postSend to rank %d: null buffer for %zu bytes", peer(), bytes);
  SendOp op{};
  op.buf = static_cast<const char*>(buf);
  op.bytes = bytes;
  op.stamp = stamp;
  const size_t threshold = (stamp.flags & kStampCopyOnly) ? opts_.copyOnlyThreshold : opts_.singleCopyThreshold;
  op.rendezvous = bytes > kInlineBytes && opts_.singleCopySend && bytes >= threshold;  // inline beats any copy
  sends_.push_back(op);
  return sendsPosted_++;
}

uint64_t ShmConnection::postRecv(const RecvSink& sink) {
  rethrowIfFailed();
  CHORUS_CHECK_ARG(sink.dst != nullptr || sink.bytes == 0, "shm postRecv from rank %d: null destination for %zu bytes",
                   peer(), sink.bytes);
  if (sink.reduce != nullptr) {
    // Fragments are multiples of 64 bytes, so element sizes must divide 64 to arrive whole.
    CHORUS_CHECK_ARG(sink.elemSize > 0 && 64 % sink.elemSize == 0 && sink.bytes % sink.elemSize == 0,
                     "shm postRecv from rank %d: reduce of %zu bytes with element size %zu", peer(), sink.bytes,
                     sink.elemSize);
    CHORUS_CHECK_ARG(sink.local != nullptr || sink.bytes == 0, "shm postRecv from rank %d: reduce without local input",
                     peer());
  }
  recvs_.push_back(RecvOp{sink, 0});
  return recvsPosted_++;
}

uint32_t ShmConnection::peerFlags() const {
  return in_->header()->senderFlags.load(std::memory_order_acquire) |
         out_->header()->receiverFlags.load(std::memory_order_acquire);
}

bool ShmConnection::progress() {
  rethrowIfFailed();
  // Read the flags before trying to move: if the peer had closed or aborted by then, everything
  // it ever published is visible to the attempt below, so "stopped and nothing moved" is final.
  // Messages a peer published before it aborted are whole and still delivered: a peer that
  // finished its part of a collective and then aborted (or failed its next call) must not fail
  // ours. (A single-copy read from an aborted peer fails instead: its buffer may be gone.)
  uint32_t flags = peerFlags();
  bool moved = progressSends();
  moved = progressRecvs() || moved;
  if (!moved && (flags & (kFlagAborted | kFlagClosed)) && !(sends_.empty() && recvs_.empty()))
    SHM_FAIL(chorusRemoteError, "rank %d %s the connection with %zu send(s) and %zu recv(s) still pending here", peer(),
             flags & kFlagAborted ? "aborted" : "closed", sends_.size(), recvs_.size());
  return moved;
}

void ShmConnection::checkAlive() {
  rethrowIfFailed();
  if (!(peerFlags() & kFlagAborted) && watch_.alive()) return;
  // A peer that finished its part of a collective may exit while its last messages still sit in
  // our inbound FIFO (its sends completed when it copied them into the slots). Death is final,
  // so everything it published is visible now: drain, and fail only when nothing is left to move.
  if (progress()) return;
  // Whole messages it published before it exited may wait for receives this rank has not
  // posted yet (their dependencies on other peers are not done): those are still deliverable.
  if (!(peerFlags() & kFlagAborted) && slotReady()) return;
  if (peerFlags() & kFlagAborted) SHM_FAIL(chorusRemoteError, "rank %d aborted the connection", peer());
  SHM_FAIL(chorusRemoteError, "rank %d (pid %d) died", peer(), static_cast<int>(watch_.pid()));
}

void ShmConnection::abort() noexcept {
  out_->header()->senderFlags.fetch_or(kFlagAborted, std::memory_order_release);
  in_->header()->receiverFlags.fetch_or(kFlagAborted, std::memory_order_release);
  if (!failed_) {
    failed_ = true;
    failCode_ = chorusInvalidUsage;
    failMessage_ = format("shm connection rank %d <-> rank %d: used after abort()", opts_.rank, peer());
  }
}

void ShmConnection::rethrowIfFailed() const {
  if (failed_) throw Error(failCode_, failMessage_);
}

void ShmConnection::markFailed(chorusResult_t code, const std::string& message) {
  out_->header()->senderFlags.fetch_or(kFlagAborted, std::memory_order_release);
  in_->header()->receiverFlags.fetch_or(kFlagAborted, std::memory_order_release);
  failed_ = true;
  failCode_ = code;
  failMessage_ = format("shm connection rank %d <-> rank %d: %s", opts_.rank, peer(), message.c_str());
  CHORUS_INFO(kLogTransport, "%s", failMessage_.c_str());
}

void ShmConnection::fail(chorusResult_t code, const char* file, int line, const std::string& message) {
  markFailed(code, message);
  throwError(code, file, line, failMessage_);
}

void ShmConnection::failMismatch(const CallStamp& sent, const CallStamp& posted) {
  std::string text = rawMismatchText(peer(), sent, posted);
  markFailed(chorusInvalidUsage, text);
  throw CallMismatch(peer(), sent, posted, failMessage_);
}

// --- sending --------------------------------------------------------------------------------

void ShmConnection::refreshTail() {
  const uint64_t tail = out_->header()->tail.load(std::memory_order_acquire);
  for (; tailSeen_ < tail; ++tailSeen_) {
    uint32_t& taken = ringTaken_[tailSeen_ % ringTaken_.size()];
    ringUsed_ -= taken;
    taken = 0;
  }
}

bool ShmConnection::slotFree() {
  if (head_ - tailSeen_ < out_->numSlots()) return true;
  refreshTail();
  return head_ - tailSeen_ < out_->numSlots();
}

bool ShmConnection::reserveRing(size_t bytes, uint32_t* offset) {
  const size_t ring = out_->ringBytes();
  const size_t need = (bytes + 63) & ~size_t(63);
  for (int attempt = 0; attempt < 2; ++attempt) {
    // Nothing in the FIFO: start at the ring's beginning again (cache lines already warm).
    if (head_ == tailSeen_) ringHead_ = 0;
    // Start over at 0 before the end too, once this stretch spans kWindowFragments fragments of
    // this size and the beginning is free: fragments of one size then cycle through as many
    // bytes as that many fixed slots would (the cache footprint of the old FIFO), not the ring.
    const bool beginningFree = ringUsed_ <= ringHead_ && ringHead_ - ringUsed_ >= need;
    const bool early = ringHead_ + need > kWindowFragments * need && beginningFree;
    const size_t gap = !early && ringHead_ + need <= ring ? 0 : ring - ringHead_;  // a fragment never wraps
    if (ringUsed_ + gap + need <= ring) {
      *offset = static_cast<uint32_t>(gap ? 0 : ringHead_);
      ringHead_ = (gap ? 0 : ringHead_) + need;
      if (ringHead_ == ring) ringHead_ = 0;
      ringUsed_ += gap + need;
      ringTaken_[head_ % ringTaken_.size()] = static_cast<uint32_t>(gap + need);
      return true;
    }
    refreshTail();
  }
  return false;
}

void ShmConnection::publishSlot(SlotHeader* s) { std::atomic_ref<uint64_t>(s->ready).store(++head_, std::memory_order_release); }

bool ShmConnection::progressSends() {
  bool moved = false;
  const size_t maxFragment = out_->maxFragment();
  // Publish: walk the queued sends in order and put in the FIFO whatever fits.
  while (sendsPublished_ < sends_.size()) {
    SendOp& op = sends_[sendsPublished_];
    if (op.bytes <= kInlineBytes) {
      // The message in the slot's own line (an empty one still takes a slot: its receive
      // checks the size like any other).
      if (!slotFree()) break;
      SlotHeader* s = out_->slotHeader(head_);
      s->msgBytes = op.bytes;
      s->stamp = op.stamp;
      s->kind = kSlotInline;
      s->fragBytes = static_cast<uint32_t>(op.bytes);
      if (op.bytes) memcpy(s->inlineBytes(), op.buf, op.bytes);
      publishSlot(s);
    } else if (op.rendezvous) {
      if (!slotFree()) break;
      SlotHeader* s = out_->slotHeader(head_);
      s->msgBytes = op.bytes;
      s->addr = reinterpret_cast<uintptr_t>(op.buf);
      s->stamp = op.stamp;
      s->fragBytes = 0;
      s->kind = kSlotRendezvous;
      s->pid = ownPid_;
      op.ackSlot = head_;
      publishSlot(s);
    } else {
      // A message of a few KiB or more looks whether the receiver has drained the FIFO first,
      // so that the ring starts over at 0 (a read of the receiver's line: too dear per small
      // message, nothing next to a 4 KiB copy).
      if (op.pushed == 0 && op.bytes >= kRefreshTailBytes && head_ != tailSeen_) refreshTail();
      uint32_t at = 0;
      while (op.pushed < op.bytes && slotFree() && reserveRing(std::min(maxFragment, op.bytes - op.pushed), &at)) {
        size_t n = std::min(maxFragment, op.bytes - op.pushed);
        memcpy(out_->payloadAt(at), op.buf + op.pushed, n);
        SlotHeader* s = out_->slotHeader(head_);
        s->ringOffset = at;
        s->msgBytes = op.bytes;
        s->offset = op.pushed;
        s->stamp = op.stamp;
        s->fragBytes = static_cast<uint32_t>(n);
        s->kind = kSlotEager;
        publishSlot(s);
        op.pushed += n;
        moved = true;
      }
      if (op.pushed < op.bytes) break;
    }
    ++sendsPublished_;
    moved = true;
  }
  // Complete in ticket order: eager sends once published, rendezvous once the peer released
  // the rendezvous slot (it has read the whole buffer).
  while (sendsPublished_ > 0) {
    const SendOp& op = sends_.front();
    if (op.rendezvous && tailSeen_ <= op.ackSlot) {
      refreshTail();
      if (tailSeen_ <= op.ackSlot) break;
    }
    sends_.pop_front();
    --sendsPublished_;
    ++sendsDone_;
    moved = true;
  }
  return moved;
}

// --- receiving ------------------------------------------------------------------------------

bool ShmConnection::slotReady() {
  return std::atomic_ref<uint64_t>(in_->slotHeader(tail_)->ready).load(std::memory_order_acquire) == tail_ + 1;
}

void ShmConnection::releaseSlot() { in_->header()->tail.store(++tail_, std::memory_order_release); }

bool ShmConnection::progressRecvs() {
  bool moved = false;
  size_t cmaBudget = kCmaBytesPerProgress;
  while (!recvs_.empty()) {
    RecvOp& op = recvs_.front();
    const size_t bytes = op.sink.bytes;
    {
      if (!slotReady()) break;
      // The slot is ours until we release it; copy its header once.
      const SlotHeader slot = *in_->slotHeader(tail_);
      if (!stampsMatch(slot.stamp, op.sink.stamp)) failMismatch(slot.stamp, op.sink.stamp);
      if (slot.msgBytes != bytes)
        SHM_FAIL(chorusInvalidUsage, "size mismatch: rank %d sent a message of %llu bytes, the matching recv #%llu expects %zu",
                 peer(), static_cast<unsigned long long>(slot.msgBytes), static_cast<unsigned long long>(recvsDone_), bytes);
      if ((slot.kind == kSlotInline) != (bytes <= kInlineBytes))
        SHM_FAIL(chorusInternalError, "protocol error: a %zu-byte message in a slot of kind %u", bytes, slot.kind);
      if (slot.kind == kSlotInline) {
        if (slot.fragBytes != bytes) SHM_FAIL(chorusInternalError, "protocol error: malformed inline message");
        if (bytes) op.sink.deliver(0, slot.inlineBytes(), bytes);
        op.received = bytes;
        releaseSlot();
      } else if (slot.kind == kSlotEager) {
        if (slot.offset != op.received || slot.fragBytes == 0 || slot.fragBytes > in_->maxFragment() ||
            slot.fragBytes > bytes - op.received || slot.ringOffset % 64 != 0 || slot.ringOffset > in_->ringBytes() - slot.fragBytes)
          SHM_FAIL(chorusInternalError,
                   "protocol error: fragment [%llu, +%u) of a %zu-byte message at ring offset %u, %zu bytes received so far",
                   static_cast<unsigned long long>(slot.offset), slot.fragBytes, bytes, slot.ringOffset, op.received);
        op.sink.deliver(op.received, in_->payloadAt(slot.ringOffset), slot.fragBytes);
        op.received += slot.fragBytes;
        releaseSlot();
        moved = true;
        if (op.received < bytes) continue;
      } else if (slot.kind == kSlotRendezvous) {
        if (cmaBudget == 0) break;
        bool done = readRendezvous(op, slot, cmaBudget);
        moved = true;
        if (!done) break;
        releaseSlot();
      } else {
        SHM_FAIL(chorusInternalError, "protocol error: unknown slot kind %u", slot.kind);
      }
    }
    recvs_.pop_front();
    ++recvsDone_;
    moved = true;
  }
  return moved;
}

bool ShmConnection::readRendezvous(RecvOp& op, const SlotHeader& slot, size_t& budget) {
  if (slot.pid != static_cast<int32_t>(opts_.peerPid))
    SHM_FAIL(chorusInternalError, "protocol error: single-copy request from pid %d, expected rank %d's pid %d", slot.pid,
             peer(), static_cast<int>(opts_.peerPid));
  const size_t bytes = op.sink.bytes;
  while (op.received < bytes && budget > 0) {
    size_t n;
    int err;
    if (op.sink.reduce == nullptr) {
      n = std::min({bytes - op.received, kCmaCopyPiece, budget});
      err = cmaRead(opts_.peerPid, static_cast<char*>(op.sink.dst) + op.received, slot.addr + op.received, n);
    } else {
      if (!bounce_) {
        bounce_.reset(static_cast<char*>(aligned_alloc(4096, kCmaReducePiece)));
        if (!bounce_) SHM_FAIL(chorusSystemError, "out of memory for a %zu-byte bounce buffer", kCmaReducePiece);
      }
      n = std::min(bytes - op.received, kCmaReducePiece);
      err = cmaRead(opts_.peerPid, bounce_.get(), slot.addr + op.received, n);
      if (err == 0) op.sink.deliver(op.received, bounce_.get(), n);
    }
    if (err != 0) {
      if (peerFlags() & kFlagAborted) SHM_FAIL(chorusRemoteError, "rank %d aborted during a single-copy transfer", peer());
      if (err == ESRCH || !watch_.alive())
        SHM_FAIL(chorusRemoteError, "rank %d (pid %d) died during a single-copy transfer", peer(), slot.pid);
      SHM_FAIL(err == EFAULT ? chorusInternalError : chorusSystemError,
               "single-copy read of %zu bytes at offset %zu of rank %d's %zu-byte message failed: %s", n, op.received,
               peer(), bytes, strerror(err));
    }
    op.received += n;
    budget -= std::min(budget, n);
  }
  if (op.received < bytes) return false;
  // A peer that aborted may have reused the buffer while we read it: do not hand that out.
  if (peerFlags() & kFlagAborted) SHM_FAIL(chorusRemoteError, "rank %d aborted during a single-copy transfer", peer());
  return true;
}

}  // namespace chorus::shm

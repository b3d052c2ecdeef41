// A Connection over two shm segments, one per direction (see shm_segment.h for the FIFO).
//
// Sending a message of n bytes:
//  * n == 0: nothing crosses; the send completes as soon as the sends before it have.
//  * eager (n below the single-copy threshold, or single-copy unavailable): the message is cut
//    into fragments of at most the segment's maxFragment bytes (every fragment but the last a
//    multiple of 64 bytes); each takes a free slot and a piece of the payload ring sized by the
//    fragment (shm_segment.h), is copied there and published. The send completes when its last fragment
//    is in the FIFO: the buffer is free again even though the peer may not have read it.
//  * single-copy (n >= threshold and the peer proved at connect time that it can read our
//    memory): one rendezvous slot carries {address, n, pid}; the receiver reads the buffer with
//    process_vm_readv and then releases the slot, which is the acknowledgement that completes
//    the send.
// Receiving: the receiver takes slots in FIFO order for the oldest posted recv, checks the
// message size carried by the slot against the recv's size (a mismatch is chorusInternalError)
// and hands each eager slot straight to RecvSink::deliver (copy or reduce from the slot: no
// staging). A rendezvous is read directly into dst for a plain recv; for a reducing recv it is
// read in cache-sized pieces into a small bounce buffer and reduced from there into dst.
//
// Which path is faster depends on the kernel's copy routine, not on the count of copies alone.
// On the 2-core EPYC VMs of the baselines (no ERMS/FSRM exposed) process_vm_readv moved
// ~10 GB/s in cache and ~5 GB/s at 256 MiB, against ~35 and ~14 GB/s for memcpy; there the
// FIFO (two memcpys, on two cores, its slots staying in L3) streamed 20-28 GB/s in cache and
// ~10 GB/s at 256 MiB, single copy 6-9 and ~5 GB/s (ShmTransport.Bandwidth prints both).
// CHORUS_SHM_CMA / CHORUS_SHM_CMA_THRESHOLD choose per machine.
//
// progress() never waits: it does what the FIFO state allows (bounded: at most the FIFO's
// capacity of eager bytes, kCmaBytesPerProgress of single-copy bytes per call) and returns.
// Failures: the peer's abort flag (checked on every progress) and its death (checkAlive, via
// ProcessWatch) raise chorusRemoteError; protocol violations chorusInternalError. Either way
// we set our own abort flag, so the peer fails promptly as well.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "transports/shm/process_watch.h"
#include "transports/shm/shm_segment.h"
#include "transports/transport.h"

namespace chorus::shm {

struct ShmConnectionOptions {
  int rank = -1;               // our rank, for messages
  pid_t peerPid = 0;           // for the liveness check and single-copy reads
  bool singleCopySend = false;  // the peer can read our memory: large sends may go by rendezvous
  size_t singleCopyThreshold = 1024 * 1024;  // from this size (SIZE_MAX: never)
  size_t copyOnlyThreshold = SIZE_MAX;  // the same for messages stamped kStampCopyOnly (<= the above)
};

class ShmConnection final : public Connection {
 public:
  // in: the segment we created (peer -> us); out: the peer's segment we opened (us -> peer).
  ShmConnection(int peer, std::unique_ptr<Segment> in, std::unique_ptr<Segment> out, const ShmConnectionOptions& opts);
  ~ShmConnection() override;

  uint64_t doPostSend(const void* buf, size_t bytes, const CallStamp& stamp) override;
  uint64_t postRecv(const RecvSink& sink) override;
  bool progress() override;
  uint64_t sendsCompleted() const override { return sendsDone_; }
  uint64_t recvsCompleted() const override { return recvsDone_; }
  void checkAlive() override;
  void abort() noexcept override;
  const char* kind() const override { return "shm"; }

  bool singleCopySend() const { return opts_.singleCopySend; }

  // Single-copy reads are split into pieces: a plain recv reads up to kCmaCopyPiece bytes per
  // system call straight into dst; a reducing recv reads kCmaReducePiece bytes into the bounce
  // buffer (small enough to stay in L2 while it is reduced into dst) per call.
  static constexpr size_t kCmaCopyPiece = 4u << 20;
  static constexpr size_t kCmaReducePiece = 256u << 10;
  // Upper bound of single-copy bytes one progress() call reads, so that one large message
  // does not starve the caller's other connections.
  static constexpr size_t kCmaBytesPerProgress = 8u << 20;
  // The payload ring's reuse (shm_segment.h): fragments of one size start over at offset 0 once
  // they span this many; messages from kRefreshTailBytes look at the receiver's tail first.
  static constexpr size_t kWindowFragments = 8;
  static constexpr size_t kRefreshTailBytes = 4096;

 private:
  struct SendOp {
    const char* buf;
    size_t bytes;
    CallStamp stamp;
    size_t pushed;        // eager bytes published so far
    bool rendezvous;
    uint64_t ackSlot;     // rendezvous: the slot whose release completes the send
  };
  struct RecvOp {
    RecvSink sink;
    size_t received;  // bytes delivered so far
  };

  bool progressSends();
  bool progressRecvs();
  // One rendezvous slot: reads up to the per-call budget; true when the message is complete.
  bool readRendezvous(RecvOp& op, const SlotHeader& slot, size_t& budget);
  uint32_t peerFlags() const;
  bool slotFree();
  // Reads the receiver's tail and takes the ring bytes of the slots it released off ringUsed_.
  void refreshTail();
  // Takes `bytes` (a fragment) of the payload ring for the next slot: its offset, or false
  // while they do not fit (the caller waits for the receiver).
  bool reserveRing(size_t bytes, uint32_t* offset);
  // Stores the slot's ready word (its ordinal + 1): the receiver may read it from now on.
  void publishSlot(SlotHeader* s);
  bool slotReady();
  void releaseSlot();
  void rethrowIfFailed() const;
  void markFailed(chorusResult_t code, const std::string& message);
  [[noreturn]] void fail(chorusResult_t code, const char* file, int line, const std::string& message);
  [[noreturn]] void failMismatch(const CallStamp& sent, const CallStamp& posted);

  ShmConnectionOptions opts_;
  std::unique_ptr<Segment> in_;
  std::unique_ptr<Segment> out_;
  ProcessWatch watch_;
  int32_t ownPid_;

  // Sender state (out_): slots published, last tail seen, sends queued/done.
  uint64_t head_ = 0;
  uint64_t tailSeen_ = 0;
  // The payload ring (shm_segment.h): where the next fragment's bytes go, how many bytes the
  // unreleased slots hold, and how many each slot took (its gap at the ring's end included).
  size_t ringHead_ = 0;
  size_t ringUsed_ = 0;
  std::vector<uint32_t> ringTaken_;
  std::deque<SendOp> sends_;
  size_t sendsPublished_ = 0;  // sends_[0, sendsPublished_) are fully in the FIFO
  uint64_t sendsPosted_ = 0;
  uint64_t sendsDone_ = 0;

  // Receiver state (in_): slots released, recvs queued/done.
  uint64_t tail_ = 0;
  std::deque<RecvOp> recvs_;
  uint64_t recvsPosted_ = 0;
  uint64_t recvsDone_ = 0;
  struct FreeDeleter {
    void operator()(char* p) const;
  };
  std::unique_ptr<char, FreeDeleter> bounce_;  // single-copy reduce pieces, allocated on first use

  bool failed_ = false;
  chorusResult_t failCode_ = chorusSuccess;
  std::string failMessage_;
};

}  // namespace chorus::shm

// One direction of a shared-memory channel: a POSIX shm segment (shm_open + ftruncate + mmap)
// that holds a FIFO of fixed-size slots.
//
// Layout (all offsets multiples of 64, the payload page-aligned):
//
//   SegmentHeader   identity line (read-only after creation) | flags line | head line | tail line
//   SlotHeader[n]   one cache line per slot: what the slot carries
//   payload         n slots of slotBytes each
//
// The sender owns `head` (slots published so far), the receiver owns `tail` (slots released
// so far); the FIFO holds head - tail slots, at most n. Slot i lives at index i % n. Publishing
// a slot is a release store of head after writing the slot; consuming reads head with acquire,
// uses the slot, then releases it with a release store of tail (so the sender's next writes to
// it cannot overtake the receiver's reads). No locks, and no other shared writes on the data path.
//
// Who does what: the receiver of a direction creates its segment and sends the name to the
// sender out of band; the sender opens it, checks the identity line (communicator secret, nonce,
// rank pair, geometry) and confirms; the creator then unlinks the name at once, so nothing is
// left in /dev/shm even if a process crashes later.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "exec/call_stamp.h"
#include <memory>
#include <string>

namespace chorus::shm {

static_assert(std::atomic<uint64_t>::is_always_lock_free, "shm FIFO counters must be lock-free atomics");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "shm flags must be lock-free atomics");

constexpr uint64_t kSegmentMagic = 0x314d4853524f4843ull;  // "CHORSHM1" in memory order
constexpr uint32_t kSegmentVersion = 1;

// What a slot carries.
enum SlotKind : uint32_t {
  kSlotEager = 1,       // fragBytes bytes of the message at `offset`, in the slot's payload
  kSlotRendezvous = 2,  // the whole message stays in the sender's memory at `addr` (pid `pid`)
};

struct alignas(64) SlotHeader {
  uint64_t msgBytes;  // total size of the message (checked against the posted recv)
  union {
    uint64_t offset;  // eager: where this fragment starts in the message
    uint64_t addr;    // rendezvous: address of the message in the sender's process
  };
  uint64_t seq;        // ordinal of the message among the channel's messages (empty ones included)
  CallStamp stamp;     // the call the message belongs to (checked against the posted recv's)
  uint32_t fragBytes;  // eager: payload bytes in this slot
  uint32_t kind;       // SlotKind
  int32_t pid;         // rendezvous: the sender's process id
};
static_assert(sizeof(SlotHeader) == 64);

// Flag bits each side may set, in its own word of the flags line.
enum SegmentFlag : uint32_t {
  kFlagAborted = 1u << 0,  // the side failed or gave up: the other side must fail promptly
  kFlagClosed = 1u << 1,   // the side closed its connection with nothing pending
};

struct SegmentHeader {
  // Identity: written once by the creator before it shares the name.
  alignas(64) uint64_t magic;
  uint32_t version;
  uint32_t numSlots;
  uint64_t slotBytes;
  uint64_t commId;
  uint64_t secret[2];
  uint64_t nonce;
  int32_t from;  // sending rank
  int32_t to;    // receiving (creating) rank
  // Rarely written state flags, one word per side.
  alignas(64) std::atomic<uint32_t> senderFlags;
  std::atomic<uint32_t> receiverFlags;
  // FIFO counters, each alone on its line so that the two sides never write the same line.
  alignas(64) std::atomic<uint64_t> head;
  alignas(64) std::atomic<uint64_t> tail;
};
static_assert(sizeof(SegmentHeader) == 256);

// What identifies a segment: both ends must agree on all of it.
struct SegmentIdentity {
  uint64_t commId = 0;
  uint64_t secret[2] = {0, 0};
  uint64_t nonce = 0;
  int from = -1;
  int to = -1;
};

class Segment {
 public:
  // Creates and maps a new segment (O_EXCL, mode 0600, space reserved up front so that a full
  // /dev/shm is a clear error here instead of a SIGBUS later). Throws chorusSystemError.
  static std::unique_ptr<Segment> create(const std::string& name, const SegmentIdentity& id, size_t slotBytes,
                                         uint32_t numSlots);
  // Opens and maps an existing segment and checks its identity; geometry comes from the header.
  // Throws chorusRemoteError (no such name: its creator removed it), chorusSystemError (cannot
  // open/map) or chorusInternalError (identity mismatch).
  static std::unique_ptr<Segment> open(const std::string& name, const SegmentIdentity& id);

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Removes the name (idempotent). The mapping stays valid.
  void unlink() noexcept;

  SegmentHeader* header() const { return header_; }
  SlotHeader* slotHeader(uint64_t index) const { return slots_ + index % numSlots_; }
  char* slotPayload(uint64_t index) const { return payload_ + (index % numSlots_) * slotBytes_; }
  uint32_t numSlots() const { return numSlots_; }
  size_t slotBytes() const { return slotBytes_; }
  const std::string& name() const { return name_; }

  // Total mapped size of a segment with this geometry.
  static size_t mappedBytes(size_t slotBytes, uint32_t numSlots);

 private:
  Segment() = default;
  void mapFd(int fd, size_t bytes);

  std::string name_;
  bool linked_ = false;  // created by us and not unlinked yet
  void* base_ = nullptr;
  size_t bytes_ = 0;
  SegmentHeader* header_ = nullptr;
  SlotHeader* slots_ = nullptr;
  char* payload_ = nullptr;
  uint32_t numSlots_ = 0;
  size_t slotBytes_ = 0;
};

}  // namespace chorus::shm

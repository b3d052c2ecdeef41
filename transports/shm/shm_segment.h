// One direction of a shared-memory channel: a POSIX shm segment (shm_open + ftruncate + mmap)
// that holds a FIFO of message fragments: n slots (descriptors) and a ring of payload bytes.
//
// Layout (all offsets multiples of 64, the payload page-aligned):
//
//   SegmentHeader   identity line (read-only after creation) | flags line | tail line
//   SlotHeader[n]   one cache line per slot: what the slot carries, and where its bytes are (or
//                   the bytes themselves, for a message of up to 16 bytes)
//   payload         a ring of ringBytes; each eager fragment takes a contiguous, 64-byte aligned
//                   piece of it sized by the fragment (at most maxFragment bytes)
//
// The sender owns the slots' contents and the count of slots it published (its own memory),
// the receiver owns `tail` (slots released so far); the FIFO holds published - tail slots, at
// most n. Slot i lives at index i % n. Publishing slot i is a release store of i + 1 to the
// slot's `ready` word after writing the slot and its bytes; the receiver waits for that value in
// the slot it expects next (acquire), uses the slot, then releases it with a release store of
// tail (so the sender's next writes to its bytes cannot overtake the receiver's reads). No locks,
// and no other shared writes on the data path: a message of up to 16 bytes is one cache line
// from sender to receiver.
//
// Payload bytes are handed out in slot order, so the bytes in use are one contiguous stretch of
// the ring ending where the last fragment ended; the sender alone tracks it (how much each
// unreleased slot took). A fragment that does not fit before the ring's end starts at 0 (the
// tail end stays unused until then). Where fragments go, for the cache's sake: when the sender
// finds the FIFO empty it starts again at offset 0, and fragments of one size start over at 0
// once they span 8 of that size and the beginning is free, so they cycle through as many bytes as
// 8 fixed slots of their size would (the footprint of the fixed-slot FIFO this replaced), not the
// whole ring: sweeping 2 MiB made 64 KiB collectives 1.5-3x slower. A message from 4 KiB reads
// the receiver's tail before it starts; smaller ones do not (a read of the receiver's line per
// 8-byte message cost ~0.2 us of an 8-byte all-reduce) and run until slots or bytes run out: 64
// of them take 4 KiB. Against the fixed slots (8 of 256 KiB each), a sender may run 64 small
// messages ahead instead of 8 (a broadcast root), at the same 2 MiB per channel.
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
constexpr uint32_t kSegmentVersion = 3;

// What a slot carries.
enum SlotKind : uint32_t {
  kSlotEager = 1,       // fragBytes bytes of the message at `offset`, in the slot's payload
  kSlotRendezvous = 2,  // the whole message stays in the sender's memory at `addr` (pid `pid`)
  kSlotInline = 3,      // the whole message, fragBytes <= kInlineBytes, in the slot's own line
};

// The largest message carried in its slot's line (the bytes of offset, pid and ringOffset).
constexpr size_t kInlineBytes = 16;

struct alignas(64) SlotHeader {
  // The slot's ordinal in the channel + 1, stored last (release) when the slot is published.
  // The receiver polls this word of the slot it expects next: a message of up to kInlineBytes
  // then moves from core to core as this one cache line (a counter on a line of its own, as
  // before, cost two more line transfers per message).
  uint64_t ready;
  uint64_t msgBytes;   // total size of the message (checked against the posted recv)
  CallStamp stamp;     // the call the message belongs to (checked against the posted recv's)
  uint32_t kind;       // SlotKind
  uint32_t fragBytes;  // eager: payload bytes of this fragment; inline: the message's
  union {
    uint64_t offset;  // eager: where this fragment starts in the message
    uint64_t addr;    // rendezvous: address of the message in the sender's process
  };
  int32_t pid;          // rendezvous: the sender's process id
  uint32_t ringOffset;  // eager: where the fragment's bytes start in the payload ring
  // Inline: the message's bytes, over offset, pid and ringOffset.
  unsigned char* inlineBytes() { return reinterpret_cast<unsigned char*>(&offset); }
  const unsigned char* inlineBytes() const { return reinterpret_cast<const unsigned char*>(&offset); }
};
static_assert(sizeof(SlotHeader) == 64);
static_assert(offsetof(SlotHeader, pid) == offsetof(SlotHeader, offset) + 8 &&
                  offsetof(SlotHeader, ringOffset) + sizeof(uint32_t) - offsetof(SlotHeader, offset) == kInlineBytes,
              "the inline bytes are offset, pid and ringOffset, contiguous");

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
  uint32_t maxFragment;  // the largest eager fragment (a multiple of 64)
  uint32_t ringBytes;    // the payload ring (a multiple of 64, at least maxFragment)
  uint64_t commId;
  uint64_t secret[2];
  uint64_t nonce;
  int32_t from;  // sending rank
  int32_t to;    // receiving (creating) rank
  // Rarely written state flags, one word per side.
  alignas(64) std::atomic<uint32_t> senderFlags;
  std::atomic<uint32_t> receiverFlags;
  // Slots released by the receiver, alone on its line (the sender publishes through each
  // slot's `ready` word instead of a counter).
  alignas(64) std::atomic<uint64_t> tail;
};
static_assert(sizeof(SegmentHeader) == 192);

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
  static std::unique_ptr<Segment> create(const std::string& name, const SegmentIdentity& id, size_t maxFragment,
                                         uint32_t numSlots, size_t ringBytes);
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
  char* payloadAt(size_t ringOffset) const { return payload_ + ringOffset; }
  uint32_t numSlots() const { return numSlots_; }
  size_t maxFragment() const { return maxFragment_; }
  size_t ringBytes() const { return ringBytes_; }
  const std::string& name() const { return name_; }

  // Total mapped size of a segment with this geometry.
  static size_t mappedBytes(uint32_t numSlots, size_t ringBytes);

 private:
  Segment() = default;
  void mapFd(int fd, size_t bytes);
  // Records the geometry of the mapped segment (checked by the caller) and where its payload is.
  void setGeometry(uint32_t numSlots, size_t maxFragment, size_t ringBytes);

  std::string name_;
  bool linked_ = false;  // created by us and not unlinked yet
  void* base_ = nullptr;
  size_t bytes_ = 0;
  SegmentHeader* header_ = nullptr;
  SlotHeader* slots_ = nullptr;
  char* payload_ = nullptr;
  uint32_t numSlots_ = 0;
  size_t maxFragment_ = 0;
  size_t ringBytes_ = 0;
};

}  // namespace chorus::shm

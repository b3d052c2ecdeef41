// Helpers shared by the ring builder and other builders (the ring builder itself:
// collectives/families.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "exec/schedule.h"

namespace chorus {

// "No step" for optional dependencies.
constexpr uint32_t kNoStep = ~0u;

// Appends `step` after whichever of dep1, dep2 is not kNoStep; returns its index.
uint32_t addStepAfter(RankSchedule& s, const Step& step, uint32_t dep1, uint32_t dep2 = kNoStep);

// Chunk layout shared by the ring builders: chunk c covers [chunkOffset(c), +chunkCount(c)).
struct RingChunks {
  RingChunks(size_t count, int nranks, size_t alignElems);
  size_t offset(int c) const;
  size_t size(int c) const;
  size_t count;
  size_t chunkElems;  // every chunk but the tail ones holds exactly this many
};

// Scratch for the partial sums a rank receives, reduces and forwards (reduction chains and
// trees). Partials take slots in turn; a slot is reused once the send that forwarded its
// previous partial has completed (write-after-read: a single-copy transport reads the send
// buffer until the receiver is done), so at most `slots` partials are in flight and the Scratch
// buffer stays a few slices whatever the message size.
// Deadlock freedom: a builder that emits its steps in one global order of events shared by all
// ranks (an event: one slice crossing one hop on every rank) stays free of deadlocks when a
// partial's slot waits only for a send of an earlier event whose receive is also earlier; with
// at least two slots, the awaited send is two uses back, so its receive, one hop on, is in the
// event before ours at the latest.
class ScratchSlots {
 public:
  static constexpr size_t kDefaultSlots = 8;
  // `uses` partials of at most `slotElems` elements of `elemSize` bytes; slots are 64-byte
  // aligned from `base`, the first Scratch element they may use.
  ScratchSlots(size_t slotElems, size_t uses, size_t elemSize, size_t base = 0, size_t maxSlots = kDefaultSlots);
  // Scratch elements the slots span from `base` (0 when there are no uses).
  size_t end() const { return base_ + slotElems_ * lastSend_.size(); }
  // The slot for the next partial, `count` <= slotElems elements. *after is the step that must
  // be done before the slot is written (kNoStep when none).
  Region next(size_t count, uint32_t* after);
  // The send that forwards the partial last handed out by next().
  void sentBy(uint32_t step);

 private:
  size_t slotElems_, base_, used_ = 0;
  std::vector<uint32_t> lastSend_;  // per slot
};

// Receives one message from each of peers[0..n) in turn and reduces them into dst: dst = local
// OP the first, then dst = dst OP the next, ... The order is fixed, so every run gives the same
// bits. The first receive waits for `after` (kNoStep: nothing). Returns the last step.
uint32_t recvReduceAll(RankSchedule& s, const int* peers, int n, Region local, Region dst, uint32_t after);

// recvReduceAll into the next scratch slot, then the send of that partial to `to`; returns the
// send.
uint32_t reduceAndForward(RankSchedule& s, ScratchSlots& slots, const int* peers, int n, Region local, int to);

}  // namespace chorus

// Ring helpers shared with other builders (the ring builder itself: collectives/families.h).
#pragma once

#include <cstddef>

namespace chorus {

// Chunk layout shared by the ring builders: chunk c covers [chunkOffset(c), +chunkCount(c)).
struct RingChunks {
  RingChunks(size_t count, int nranks, size_t alignElems);
  size_t offset(int c) const;
  size_t size(int c) const;
  size_t count;
  size_t chunkElems;  // every chunk but the tail ones holds exactly this many
};

}  // namespace chorus

// Ring all-reduce as a schedule builder (pure function: no sockets, no buffers).
#pragma once

#include <cstddef>

#include "exec/schedule.h"

namespace chorus {

struct RingAllReduceParams {
  int rank = 0;
  int nranks = 1;
  size_t count = 0;        // elements
  size_t elemSize = 4;     // bytes per element (for alignment and slicing)
  size_t sliceBytes = 256 * 1024;
  bool inPlace = false;    // input and output are the same buffer
  bool average = false;    // divide the reduced chunk by nranks before the all-gather
};

RankSchedule buildRingAllReduce(const RingAllReduceParams& params);

// Chunk layout shared by the ring builders: chunk c covers [chunkOffset(c), +chunkCount(c)).
struct RingChunks {
  RingChunks(size_t count, int nranks, size_t alignElems);
  size_t offset(int c) const;
  size_t size(int c) const;
  size_t count;
  size_t chunkElems;  // every chunk but the tail ones holds exactly this many
};

}  // namespace chorus

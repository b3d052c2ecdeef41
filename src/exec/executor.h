// The executor: runs one rank's RankSchedule over its connections.
//
// It posts every Send and Recv as soon as its dependencies are done, in schedule order per
// peer and direction (the matching rule of schedule.h), drives progress on the connections
// that have work in flight, and runs local steps (Copy, Divide) when they become ready. It
// never blocks in the kernel: idle passes back off (core/deadline.h) and, every few
// milliseconds, probe the busy peers' liveness. No progress for `timeoutSec` seconds is
// chorusTimeout naming the peers still owing data.
#pragma once

#include <chorus/chorus.h>

#include <atomic>
#include <string>
#include <vector>

#include "exec/reduce.h"
#include "exec/schedule.h"

namespace chorus {

class Connection;

struct ExecArgs {
  const RankSchedule* schedule = nullptr;
  const void* input = nullptr;
  void* output = nullptr;
  size_t elemSize = 1;
  chorusDataType_t dtype = chorusInt8;
  ReduceFn reduce = nullptr;
  // connections[peer] for every peer the schedule uses (others may be null).
  const std::vector<Connection*>* connections = nullptr;
  double timeoutSec = 300;
  const std::atomic<bool>* abortFlag = nullptr;  // set by chorusCommAbort
  std::string what;                               // "chorusAllReduce #12 (ring, 1000 x float sum)"
};

// Runs the schedule to completion or throws chorus::Error.
void execute(const ExecArgs& args);

}  // namespace chorus

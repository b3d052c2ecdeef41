// The schedule IR: a collective as data. For one rank, an ordered list of steps over regions
// of the call's buffers, with the dependencies that make pipelining safe. The same schedule is
// executed by src/exec/executor.cpp, and can be checked symbolically (tests) or simulated.
//
// Matching rule: the k-th Send from rank a to rank b matches the k-th Recv/RecvReduce on b from
// a, so a builder must emit, for every pair, sends and receives in the same order on both
// sides, with equal sizes. Regions count elements, not bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace chorus {

// The buffers a step may touch. Input and Output are the caller's (for an in-place call they
// overlap as the collective defines, see collectives/collective.h); Scratch is library memory
// of RankSchedule::scratchElems elements that the executor's caller provides. A schedule
// merged from several calls (a group) numbers the buffers of call k as 3k + {0, 1, 2}.
enum class BufferId : uint16_t { Input = 0, Output = 1, Scratch = 2 };
constexpr int kBuffersPerCall = 3;
inline BufferId bufferOfCall(int call, BufferId b) { return static_cast<BufferId>(call * kBuffersPerCall + static_cast<int>(b)); }

struct Region {
  BufferId buf = BufferId::Output;
  size_t offset = 0;  // elements
  size_t count = 0;   // elements
};

enum class StepKind : uint8_t {
  Send,        // send src to peer
  Recv,        // receive from peer into dst
  RecvReduce,  // receive from peer; dst = src (local operand) OP incoming
  Copy,        // dst = src, locally
  Divide,      // dst = dst / divisor (the last stage of an average)
};

struct Step {
  StepKind kind = StepKind::Copy;
  int peer = -1;          // Send / Recv / RecvReduce
  int divisor = 1;        // Divide
  Region src;             // Send, RecvReduce (local operand), Copy
  Region dst;             // Recv, RecvReduce, Copy, Divide
  uint32_t depBegin = 0;  // deps[depBegin, depBegin + depCount) must be done before this step starts
  uint32_t depCount = 0;
};

struct RankSchedule {
  std::string algorithm;  // "ring", ...
  int rank = 0;
  int nranks = 1;
  std::vector<Step> steps;
  std::vector<uint32_t> deps;  // step indices, referenced by Step::depBegin/depCount
  size_t scratchElems = 0;     // size of the Scratch buffer the steps use (elements)

  // Appends a step with the given dependencies (indices of earlier steps); returns its index.
  uint32_t add(const Step& step, std::initializer_list<uint32_t> dependsOn = {});
  // The distinct peers this rank exchanges data with, in first-use order.
  std::vector<int> peers() const;
  // Human-readable listing for logs and test failures.
  std::string describe() const;
};

const char* stepKindName(StepKind kind);

// Concatenates the schedules of several calls of one rank into one (a group): call k's
// buffers are renumbered to bufferOfCall(k, .) and its dependencies shifted. Steps of different
// calls do not depend on each other; per peer, call k's messages precede call k+1's (so both
// sides must list the calls in the same order, which a group requires).
RankSchedule mergeSchedules(const std::vector<const RankSchedule*>& calls);

}  // namespace chorus

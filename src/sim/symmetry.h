// Folding a simulation by symmetry (docs/SIMULATOR.md, "Folding"): on a fabric that repeats
// every T ranks (Fabric::period) and schedules that do too (rank r + kT's schedule is rank r's
// with every peer shifted by kT, the same steps, sizes and dependencies), ranks r and r + kT do
// the same thing at the same times, so only ranks 0..T-1 need simulating (simulator.h). A ring
// all-reduce on 16,384 ranks of a rail fabric with 8 GPUs per host is 8 simulated ranks.
//
// The schedules' side is checked, not assumed: the first T ranks are built and kept, and then
// every rank (FoldCheck::Every) or a sample (FoldCheck::Sampled: the second and the last
// period, and 64 ranks spread over the rest) is built, compared and dropped. A rank that
// differs ends the folding: every rank is then built and simulated, and `why` says which rank
// differed and how. The check builds schedules one at a time, so its memory is one rank's.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "exec/schedule.h"
#include "sim/fabric.h"

namespace chorus::sim {

// Sampled and Every check the other ranks' schedules (above). Relaxed checks the sample but
// lets dependencies differ: ranks whose queues carry the same messages (kinds, sizes, order)
// fold although a step may wait for other steps than its counterpart does, an approximation
// whose effect must be measured (docs/SIMULATOR.md, "Speed and folding").
enum class FoldCheck { Sampled, Every, Relaxed };

struct FoldedSchedules {
  std::vector<RankSchedule> schedules;  // ranks 0..period-1 (every rank when not folded)
  int period = 0;                       // simulate(..., period)
  size_t checked = 0;                   // ranks past the first period built and compared
  std::string why;                      // when not folded: why not
};

// Builds what simulate() needs, with build(r) giving rank r's schedule. fold = false builds
// every rank. Throws chorusInvalidArgument once the schedules kept hold more than maxSteps
// steps (the simulator keeps ~100 bytes per step), suggesting a larger slice.
FoldedSchedules buildForSimulation(const Fabric& fabric, const std::function<RankSchedule(int rank)>& build, bool fold,
                                   FoldCheck check, size_t maxSteps);

// Whether b is a's schedule moved by b.rank - a.rank ranks (mod p): the same steps, kinds, sizes
// and dependencies (unless relaxed), every peer shifted alike. Offsets inside buffers are not
// compared (the simulator does not use them). On a difference, *why names the first one.
bool sameUpToShift(const RankSchedule& a, const RankSchedule& b, std::string* why, bool relaxed = false);

}  // namespace chorus::sim

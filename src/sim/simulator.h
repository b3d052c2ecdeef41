// The simulator (docs/SIMULATOR.md): runs the schedules the builders emit, one per rank, on a
// fabric model, with the executor's rules and flow-level bandwidth sharing.
//
// - Each rank issues its steps as the executor does (exec/executor.h's ExecPlan): a send or
//   receive once its dependencies are done, in schedule order per peer and direction; local
//   steps (copy, divide) once theirs are.
// - The k-th send from a to b meets the k-th receive b posts from a. A message starts when
//   both are posted, after the fabric's per-message overhead and the latencies of the links it
//   crosses, and once the message before it from a to b has finished (one pair's messages
//   cross in order, as on a transport's FIFO or queue pair). Its bytes then flow at a rate
//   shared max-min fairly with every other flow on any link it crosses (two flows on one link
//   get half each), recomputed whenever a flow starts or ends.
// - A receive that reduces finishes bytes / reduceBytesPerUs after its data arrived; a copy
//   takes bytes / copyBytesPerUs.
// - Folded ranks (sim/symmetry.h): when ranks r and r + T of the fabric are alike (same links,
//   same speeds, schedules the same up to the shift), only ranks 0..T-1 are simulated. A
//   message from simulated rank a to absolute rank b stands for every pair (a + kT, b + kT);
//   its links are the links' classes under the shift, each carrying, for each simulated flow
//   on it, one real flow, so the max-min shares are the unfolded run's exactly.
// - A rank starts at most one message per fabric gap_us (its NIC's message rate; 0: no limit).
// - Not modelled: transports' in-flight limits and fragmentation, CPU contention between
//   ranks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "exec/schedule.h"
#include "sim/fabric.h"

namespace chorus::sim {

struct SimOptions {
  double reduceBytesPerUs = 100e3;  // device reduction kernel: 100 GB/s
  double copyBytesPerUs = 200e3;    // device-local copy: 200 GB/s
  bool linkLoad = false;            // record each link's bytes over time (SimResult::linkLoad)
};

// Bytes each link carried per time bin: bins of binUs from time 0, as many as the run needed
// (at most kLoadBins; the bins widen by doubling as the run goes on). With folded ranks only
// each class's representative has a row (the others carried the same).
struct LinkLoadOverTime {
  static constexpr size_t kLoadBins = 256;
  double binUs = 1;
  std::vector<std::vector<double>> bytes;  // per link: empty if it carried nothing
};

// The chain of steps that set the end time: from the step that ended last, back through the
// step whose end let each one start (a dependency, the message before it on its pair, the
// later of a message's two halves, or the step before it in its queue). Its parts add up to
// the simulated time: bytes crossing (wire), latency, overhead and waiting between the steps
// (wait), and reductions and copies (local).
struct CriticalPath {
  size_t messages = 0, localSteps = 0;
  double wireUs = 0, waitUs = 0, localUs = 0;
  std::vector<std::pair<uint32_t, double>> links;  // the links its messages spent most time on (us), up to 5
};

struct SimResult {
  double timeUs = 0;          // the last rank's end
  uint64_t messages = 0;
  uint64_t wireBytes = 0;     // bytes of all messages
  std::vector<double> linkBytes;  // per fabric link: bytes carried
  int lastRank = 0;           // the rank that ended last
  std::vector<double> rankEndUs;  // per rank: when its last step finished
  size_t events = 0;          // rate recomputations (a measure of the simulator's own work)
  int simulatedRanks = 0;     // ranks simulated: all, or the period T when folded
  CriticalPath critical;
  LinkLoadOverTime linkLoad;  // when SimOptions::linkLoad
};

// Runs schedules[r] for every rank r of the fabric; elemSize converts their element counts to
// bytes. With period T > 0 the ranks are folded: schedules holds ranks 0..T-1 only, T divides
// the fabric's ranks, rank r + kT's schedule is rank r's with every peer shifted by kT, and the
// fabric repeats every T ranks (Fabric::linkClasses; sim/symmetry.h finds T and checks the
// schedules). The result is then given for every rank. Throws chorusInvalidArgument when the
// schedules do not fit the fabric, and chorusInternalError when they deadlock (a receive that
// no send ever meets), naming the rank.
SimResult simulate(const Fabric& fabric, const std::vector<RankSchedule>& schedules, size_t elemSize,
                   const SimOptions& options = SimOptions{}, int period = 0);

}  // namespace chorus::sim

// One rank of a trial, in its own process: joins the communicator, loops the trial's collective
// with every result checked exactly, injects the fault where the plan puts it on this rank (a
// victim signals itself; a culprit makes the skewed call), and on the first error reports it,
// stays up as a real job would while it logs or shrinks (so that slower survivors can still ask
// it where the failure started), aborts the communicator and exits.
#pragma once

#include <vector>

#include "trial_plan.h"

namespace chorus::campaign {

// How long a survivor stays up after its error before it aborts and exits.
constexpr double kLingerSec = 1.5;

struct RankPipes {
  int reportFd = -1;            // records to the parent (report_wire.h)
  int idReadFd = -1;            // ranks > 0: the unique id from rank 0
  std::vector<int> idWriteFds;  // rank 0: to every other rank
};

// Never returns: exits the process (exit code 0 after a reported error, 3 when init failed).
[[noreturn]] void runRank(const TrialPlan& plan, int rank, const RankPipes& pipes);

}  // namespace chorus::campaign

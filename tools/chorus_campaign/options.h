// chorus-campaign's command line.
#pragma once

#include <cstdint>
#include <string>

#include "trial_plan.h"
#include "verdict.h"

namespace chorus::campaign {

struct Options {
  int trials = 20;
  uint64_t seed = 0;
  bool seedGiven = false;
  std::string transports;  // as given ("" = every built transport)
  std::string faults = "kill,stop,mismatch";
  bool replay = false;  // run the one trial whose seed is replaySeed
  uint64_t replaySeed = 0;
  bool verbose = false;
  bool keepLogs = false;
  bool cycleTransports = false;
  bool dryRun = false;  // print the trials' plans only  // trial i runs over entry i mod n of --transports
  std::string jsonPath;
  std::string logDir;
  PlanChoices choices;
  Limits limits;
  bool killLimitGiven = false;
};

// Parses argv; on --help or an error prints to stderr and sets *exitCode (0 for --help).
bool parseOptions(int argc, char** argv, Options* opts, int* exitCode);

// The flags that make --replay draw this trial again: its own transport variant and fault kind
// (each is one draw whatever the list), and the run's --max-ranks and --timeout.
std::string replayFlags(const Options& opts, const TrialPlan& plan);

}  // namespace chorus::campaign

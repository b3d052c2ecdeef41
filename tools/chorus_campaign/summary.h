// What a campaign prints: one line per trial (and its problems), the summary table per fault
// kind and transport, and the same as JSON (--json).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "trial_plan.h"
#include "trial_runner.h"
#include "verdict.h"

namespace chorus::campaign {

struct TrialRecord {
  int index = 0;
  TrialPlan plan;
  TrialOutcome outcome;
  Verdict verdict;
};

// "#12 PASS seed ...: ... -> 4/4 errored in <= 0.03 s (limit 5 s), 4/4 named"; problems below it.
void printTrial(FILE* out, const TrialRecord& t, bool verbose, const std::string& replayFlags);  // flags incl. --replay

// The table (markdown) per fault kind and transport, with a total row.
void printSummary(FILE* out, const std::vector<TrialRecord>& trials);

struct CampaignInfo {
  uint64_t seed = 0;
  std::string transports, faults;
  double timeoutSec = 0, killLimitSec = 0;
  int maxRanks = 0;
  double wallSec = 0;
};

bool writeJson(const std::string& path, const CampaignInfo& info, const std::vector<TrialRecord>& trials);

}  // namespace chorus::campaign

// Judging one trial: did every survivor return an error, was any result wrong, how long after
// the fault did the slowest survivor see its error (against the limit for that fault), and does
// every error message name the collective ("chorusAllReduce #"), a sequence number and the
// culprit ("rank V": the victim, or the mismatch culprit).
#pragma once

#include <string>
#include <vector>

#include "trial_plan.h"
#include "trial_runner.h"

namespace chorus::campaign {

// How soon after the fault the slowest survivor must have its error.
struct Limits {
  double killSec = 5;      // a dead peer: seconds, not the deadline
  double mismatchSec = 5;  // a mismatch is seen in the call itself
  double stopFactor = 2;   // a stopped peer: within stopFactor x CHORUS_TIMEOUT
  double limitFor(const TrialPlan& plan) const;
};

struct Verdict {
  int survivors = 0;
  int errored = 0;          // survivors whose call failed (any code)
  int namedCollective = 0;  // ... whose text has "<api> #<digits>"
  int namedSeq = 0;         // ... which names the failing call's own number
  int namedCulprit = 0;     // ... whose text has "rank V"
  int invalidUsage = 0;     // ... with chorusInvalidUsage (what a mismatch should give)
  int wrongCalls = 0;       // calls that returned success with wrong data (all ranks)
  bool hang = false;
  bool teardownHang = false;
  bool setupFailed = false;
  double maxErrSec = -1;  // slowest survivor, from the fault
  double limitSec = 0;
  std::vector<std::string> problems;  // each one fails the trial
  std::vector<std::string> notes;     // worth reading, not failures

  bool allErrored() const { return survivors > 0 && errored == survivors; }
  bool allNamedCall() const { return survivors > 0 && namedCollective == survivors; }
  bool allNamedCulprit() const { return survivors > 0 && namedCulprit == survivors; }
  bool pass() const { return problems.empty(); }
};

Verdict judge(const TrialPlan& plan, const TrialOutcome& outcome, const Limits& limits);

// Whether text names "<api> #<digits>", or rank v: "rank v" (not a prefix of a longer number), or
// v inside a list of the hang report ("ranks 0,4", "ranks 0-14,16-31").
bool namesCall(const std::string& text, const char* api);
bool namesRank(const std::string& text, int rank);

}  // namespace chorus::campaign

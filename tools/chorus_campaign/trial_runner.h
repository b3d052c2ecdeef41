// The parent's side of one trial: forks the ranks, injects the mid-call signal, collects every
// rank's records, and enforces its own deadline. The parent never waits on Chorus: past
// 2 x CHORUS_TIMEOUT + a margin after the fault, the trial is a hang and every rank is killed.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "trial_plan.h"

namespace chorus::campaign {

struct RankOutcome {
  pid_t pid = -1;
  bool ready = false;
  bool initFailed = false;
  bool reported = false;  // an error record came
  int code = 0;           // chorusResult_t of the failing call
  long errCall = -1;      // 0-based index of the failing call (Chorus's #errCall+1)
  double errAt = 0;       // monotonic seconds
  std::string text;       // chorusGetLastError (or the init failure)
  int wrongCalls = 0;     // calls that returned success with wrong data
  std::string firstWrong;
  bool skewPassed = false;  // the mismatched call returned success here
  long lastEntered = -1;    // the last call entered from the fault moment on
  double abortSec = -1;     // how long chorusCommAbort took
  bool exited = false;      // reaped
  int exitCode = -1;
  int termSignal = 0;
  std::string hungState;  // /proc state and CPU time when the parent gave up on it
};

struct TrialOutcome {
  std::vector<RankOutcome> ranks;
  double faultAt = -1;            // monotonic seconds; -1: the fault never happened
  bool setupFailed = false;       // init failed, the victim never reached its call, or a rank failed first
  bool failedUnprovoked = false;  // ... a rank's call failed before any fault was injected
  std::string setupText;
  bool hang = false;          // a survivor reported nothing by the deadline
  bool teardownHang = false;  // survivors reported, but did not exit (abort did not return)
  double deadlineSec = 0;     // after the fault
  double wallSec = 0;
  std::string logPath;  // the ranks' stderr
};

struct RunnerOptions {
  std::string logPath;  // where the ranks' stdout/stderr go
  bool verbose = false;
};

TrialOutcome runTrial(const TrialPlan& plan, const RunnerOptions& options);

// Whether rank r is a survivor (every rank but the victim; every rank in a mismatch trial).
bool isSurvivor(const TrialPlan& plan, int rank);

}  // namespace chorus::campaign

// chorus-campaign: randomized fault trials of real processes against the public C API
// (docs/RELIABILITY.md, "Fault campaign"). Each trial is drawn from a seed (trial_plan.h), run
// as forked ranks (trial_runner.h, rank_body.h) and judged (verdict.h); the campaign prints one
// line per trial and a table per fault kind and transport (summary.h).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "options.h"
#include "report_wire.h"
#include "rng.h"
#include "summary.h"
#include "trial_runner.h"

using namespace chorus::campaign;

namespace {

std::string defaultLogDir() {
  const char* tmp = getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/chorus-campaign-" + std::to_string(getpid());
}

void progress(int done, int total, int failed, double elapsed) {
  const bool tty = isatty(STDERR_FILENO);
  if (!tty && done % 10 != 0 && done != total) return;
  const double left = done ? elapsed / done * (total - done) : 0;
  fprintf(stderr, "%s[%d/%d] %.0f s elapsed, ~%.0f s left, %d failing%s", tty ? "\r" : "", done, total, elapsed, left, failed,
          tty && done != total ? "" : "\n");
  fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  int code = 0;
  if (!parseOptions(argc, argv, &opts, &code)) return code;
  if (!opts.seedGiven) opts.seed = mix64(static_cast<uint64_t>(time(nullptr)) ^ (static_cast<uint64_t>(getpid()) << 32));
  if (opts.logDir.empty()) opts.logDir = defaultLogDir();
  mkdir(opts.logDir.c_str(), 0755);
  const int total = opts.replay ? 1 : opts.trials;
  printf(
      "chorus-campaign: %d trial%s, %s 0x%016llx, transports %s, faults %s, CHORUS_TIMEOUT %g s, kill/mismatch limit %g s, "
      "stop limit %g s, up to %d ranks\n",
      total, total == 1 ? "" : "s", opts.replay ? "replaying trial seed" : "seed",
      static_cast<unsigned long long>(opts.replay ? opts.replaySeed : opts.seed), opts.transports.c_str(), opts.faults.c_str(),
      opts.choices.timeoutSec, opts.limits.killSec, opts.limits.stopFactor * opts.choices.timeoutSec, opts.choices.maxRanks);
  fflush(stdout);

  std::vector<TrialRecord> records;
  const double start = monotonicNow();
  int failed = 0;
  for (int i = 0; i < total; ++i) {
    TrialRecord t;
    t.index = i;
    t.plan = drawTrial(opts.replay ? opts.replaySeed : trialSeed(opts.seed, static_cast<uint64_t>(i)), opts.choices,
                       opts.cycleTransports ? i : -1);
    if (opts.dryRun) {
      printf("#%-4d %s\n", i, t.plan.describe().c_str());
      continue;
    }
    RunnerOptions ro;
    ro.logPath = opts.logDir + "/trial-" + std::to_string(i) + ".log";
    ro.verbose = opts.verbose;
    t.outcome = runTrial(t.plan, ro);
    t.verdict = judge(t.plan, t.outcome, opts.limits);
    failed += !t.verdict.pass();
    if (t.verdict.pass() && !opts.keepLogs) unlink(ro.logPath.c_str());
    printTrial(stdout, t, opts.verbose, replayFlags(opts, t.plan));
    records.push_back(std::move(t));
    progress(i + 1, total, failed, monotonicNow() - start);
  }
  rmdir(opts.logDir.c_str());  // only when no log was kept
  if (opts.dryRun) return 0;

  printf("\n");
  printSummary(stdout, records);
  const double wall = monotonicNow() - start;
  printf("\n%d of %d trials failed; %.0f s\n", failed, total, wall);
  if (!opts.jsonPath.empty()) {
    CampaignInfo info{opts.seed,           opts.transports,       opts.faults, opts.choices.timeoutSec,
                      opts.limits.killSec, opts.choices.maxRanks, wall};
    if (!writeJson(opts.jsonPath, info, records)) {
      fprintf(stderr, "chorus-campaign: cannot write %s\n", opts.jsonPath.c_str());
      return 1;
    }
  }
  return failed ? 1 : 0;
}

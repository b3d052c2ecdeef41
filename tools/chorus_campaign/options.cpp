#include "options.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace chorus::campaign {
namespace {

const char* kUsage =
    "usage: chorus-campaign [--trials N] [--seed S] [--transports shm,tcp,ucx,ofi] [--faults kill,stop,mismatch]\n"
    "                       [--timeout SEC] [--max-ranks N] [--kill-limit SEC] [--json FILE] [--log-dir DIR]\n"
    "                       [--keep-logs] [--cycle-transports] [--dry-run] [--verbose] [--replay TRIAL_SEED]\n"
    "\n"
    "Randomized fault trials of real processes: each trial forks 2-8 ranks that loop one collective\n"
    "(checked exactly), then kills (SIGKILL) or stops (SIGSTOP) one rank, or makes one rank call with\n"
    "another dtype, op, count or root, and checks that every survivor fails in time, with an error that\n"
    "names the collective, its number and the culprit rank.\n"
    "\n"
    "  --trials N        trials to run (default 20)\n"
    "  --seed S          campaign seed (default: from the clock; printed); trial i's seed derives from it\n"
    "  --transports L    comma list of shm, tcp, ucx, ofi (a variant: ucx:tcp, ucx:sm, ofi:tcp, ofi:shm);\n"
    "                    default: every transport this build has\n"
    "  --faults L        comma list of kill, stop, mismatch (default all)\n"
    "  --timeout SEC     CHORUS_TIMEOUT of the ranks (default 10); a trial with a survivor still silent\n"
    "                    2 x SEC + 5 s after the fault is a hang\n"
    "  --max-ranks N     largest rank count drawn from {2,3,4,5,8} (default 8)\n"
    "  --kill-limit SEC  how soon a dead peer or a mismatch must be reported (default: half the timeout,\n"
    "                    at most 5 s); a stopped peer: within 2 x the timeout\n"
    "  --json FILE       every trial and the summary as JSON\n"
    "  --log-dir DIR     the ranks' stderr, one file per trial, kept for failing trials (default: a\n"
    "                    directory under $TMPDIR)\n"
    "  --keep-logs       keep the logs of passing trials too\n"
    "  --cycle-transports  trial i runs over entry i mod n of --transports (balanced) instead of a drawn one\n"
    "  --verbose         every survivor's error under its trial (failing trials always show them)\n"
    "  --dry-run         print each trial's parameters and seed without running it\n"
    "  --replay SEED     run only the trial with this seed; a failing trial prints its whole replay\n"
    "                    line (its transport variant and fault, the run's --max-ranks and --timeout)\n"
    "\n"
    "Exit code: 0 when every trial passed, 1 when any trial hung, gave a wrong result, crashed a\n"
    "survivor, was late, or left a culprit unnamed; 2 on bad arguments.\n";

bool parseU64(const char* s, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || end == s || *end) return false;
  *out = v;
  return true;
}

bool parseFaults(const std::string& list, std::vector<FaultKind>* out) {
  std::stringstream in(list);
  for (std::string f; std::getline(in, f, ',');) {
    if (f == "kill")
      out->push_back(FaultKind::Kill);
    else if (f == "stop")
      out->push_back(FaultKind::Stop);
    else if (f == "mismatch")
      out->push_back(FaultKind::Mismatch);
    else if (!f.empty())
      return false;
  }
  return !out->empty();
}

}  // namespace

bool parseOptions(int argc, char** argv, Options* o, int* exitCode) {
  *exitCode = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char** v) {
      if (i + 1 >= argc) {
        fprintf(stderr, "chorus-campaign: %s needs a value\n%s", a.c_str(), kUsage);
        return false;
      }
      *v = argv[++i];
      return true;
    };
    const char* v = nullptr;
    uint64_t n = 0;
    if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      *exitCode = 0;
      return false;
    } else if (a == "--verbose" || a == "-v") {
      o->verbose = true;
    } else if (a == "--keep-logs") {
      o->keepLogs = true;
    } else if (a == "--dry-run") {
      o->dryRun = true;
    } else if (a == "--cycle-transports") {
      o->cycleTransports = true;
    } else if (a == "--trials" || a == "--seed" || a == "--max-ranks" || a == "--replay") {
      if (!value(&v)) return false;
      if (!parseU64(v, &n)) {
        fprintf(stderr, "chorus-campaign: %s: '%s' is not a number\n", a.c_str(), v);
        return false;
      }
      if (a == "--trials") o->trials = static_cast<int>(n);
      if (a == "--seed") o->seed = n, o->seedGiven = true;
      if (a == "--max-ranks") o->choices.maxRanks = static_cast<int>(n);
      if (a == "--replay") o->replay = true, o->replaySeed = n;
    } else if (a == "--timeout" || a == "--kill-limit") {
      if (!value(&v)) return false;
      char* end = nullptr;
      double d = strtod(v, &end);
      if (end == v || *end || !(d > 0)) {
        fprintf(stderr, "chorus-campaign: %s: '%s' is not a positive number of seconds\n", a.c_str(), v);
        return false;
      }
      if (a == "--timeout") o->choices.timeoutSec = d;
      if (a == "--kill-limit") o->limits.killSec = o->limits.mismatchSec = d, o->killLimitGiven = true;
    } else if (a == "--transports" || a == "--faults" || a == "--json" || a == "--log-dir") {
      if (!value(&v)) return false;
      if (a == "--transports") o->transports = v;
      if (a == "--faults") o->faults = v;
      if (a == "--json") o->jsonPath = v;
      if (a == "--log-dir") o->logDir = v;
    } else {
      fprintf(stderr, "chorus-campaign: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return false;
    }
  }
  if (o->choices.maxRanks < 2) {
    fprintf(stderr, "chorus-campaign: --max-ranks must be at least 2\n");
    return false;
  }
  if (o->transports.empty())
    for (const std::string& t : builtTransports()) o->transports += (o->transports.empty() ? "" : ",") + t;
  std::string error;
  if (!parseTransports(o->transports, &o->choices.transports, &error)) {
    fprintf(stderr, "chorus-campaign: --transports: %s\n", error.c_str());
    return false;
  }
  if (!parseFaults(o->faults, &o->choices.faults)) {
    fprintf(stderr, "chorus-campaign: --faults: '%s' (want a comma list of kill, stop, mismatch)\n", o->faults.c_str());
    return false;
  }
  if (!o->killLimitGiven) o->limits.killSec = o->limits.mismatchSec = std::min(o->choices.timeoutSec / 2, 5.0);
  *exitCode = 0;
  return true;
}

std::string replayFlags(const Options& o, const TrialPlan& plan) {
  char timeout[32];
  snprintf(timeout, sizeof timeout, "%g", o.choices.timeoutSec);
  char seed[32];
  snprintf(seed, sizeof seed, "0x%016llx", static_cast<unsigned long long>(plan.seed));
  return std::string("--replay ") + seed + " --transports " + variantSpec(plan.transport) + " --faults " + faultName(plan.fault) +
         " --max-ranks " + std::to_string(o.choices.maxRanks) + " --timeout " + timeout;
}

}  // namespace chorus::campaign

#include "summary.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "typed_values.h"

namespace chorus::campaign {
namespace {

struct Row {
  int trials = 0, failed = 0, hangs = 0, wrong = 0, allErrored = 0, namedCall = 0, namedCulprit = 0;
  std::vector<double> errSec;
  double maxRatio = 0;  // slowest error / CHORUS_TIMEOUT
  void add(const TrialRecord& t) {
    const Verdict& v = t.verdict;
    ++trials;
    failed += !v.pass();
    hangs += v.hang || v.teardownHang;
    wrong += v.wrongCalls > 0;
    allErrored += v.allErrored();
    namedCall += v.allNamedCall();
    namedCulprit += v.allNamedCulprit();
    if (v.maxErrSec >= 0) {
      errSec.push_back(v.maxErrSec);
      maxRatio = std::max(maxRatio, v.maxErrSec / t.plan.timeoutSec);
    }
  }
};

void printRow(FILE* out, const std::string& fault, const std::string& transport, Row r) {
  std::sort(r.errSec.begin(), r.errSec.end());
  const double median = r.errSec.empty() ? 0 : r.errSec[r.errSec.size() / 2];
  const double max = r.errSec.empty() ? 0 : r.errSec.back();
  fprintf(out, "| %-8s | %-9s | %6d | %6d | %5d | %5d | %11d | %14d | %13d | %13.2f | %10.2f | %9.2f |\n", fault.c_str(),
          transport.c_str(), r.trials, r.failed, r.hangs, r.wrong, r.allErrored, r.namedCall, r.namedCulprit, median, max,
          r.maxRatio);
}

std::string json(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

std::string num(double v) {
  char b[32];
  snprintf(b, sizeof b, "%.4f", v);
  return b;
}

std::string argsJson(const CallArgs& a) {
  return "{\"count\": " + std::to_string(a.count) + ", \"dtype\": " + json(typeName(a.dtype)) +
         ", \"op\": " + json(opName(a.op)) + ", \"root\": " + std::to_string(a.root) + "}";
}

}  // namespace

void printTrial(FILE* out, const TrialRecord& t, bool verbose, const std::string& replayFlags) {
  const Verdict& v = t.verdict;
  std::string result;
  char buf[256];
  if (v.setupFailed) {
    result = t.outcome.failedUnprovoked ? "failed without a fault" : "setup failed";
  } else {
    snprintf(buf, sizeof buf, "%d/%d errored, slowest %.2f s (limit %.1f s), named: call %d/%d, rank %d %d/%d", v.errored,
             v.survivors, v.maxErrSec, v.limitSec, v.namedCollective, v.survivors, t.plan.victim, v.namedCulprit, v.survivors);
    result = buf;
  }
  fprintf(out, "#%-4d %s %s -> %s\n", t.index, v.pass() ? "PASS" : "FAIL", t.plan.describe().c_str(), result.c_str());
  for (const std::string& p : v.problems) fprintf(out, "        %s\n", p.c_str());
  if (verbose || !v.pass())
    for (const std::string& n : v.notes) fprintf(out, "        note: %s\n", n.c_str());
  if (verbose || !v.pass()) {
    for (size_t r = 0; r < t.outcome.ranks.size(); ++r) {
      const RankOutcome& o = t.outcome.ranks[r];
      if (!isSurvivor(t.plan, static_cast<int>(r)) || !o.reported) continue;
      char when[64];
      if (t.outcome.faultAt >= 0)
        snprintf(when, sizeof when, "%.3f s after the fault", o.errAt - t.outcome.faultAt);
      else
        snprintf(when, sizeof when, "before any fault");
      fprintf(out, "        rank %zu: %s %s, at #%ld: %s\n", r, chorusGetErrorString(static_cast<chorusResult_t>(o.code)), when,
              o.errCall + 1, o.text.c_str());
    }
  }
  if (!v.pass()) {
    fprintf(out, "        replay: chorus-campaign %s; ranks' stderr: %s\n", replayFlags.c_str(), t.outcome.logPath.c_str());
  }
  fflush(out);
}

void printSummary(FILE* out, const std::vector<TrialRecord>& trials) {
  std::map<std::pair<std::string, std::string>, Row> rows;
  std::map<std::string, Row> perFault;
  Row total;
  for (const TrialRecord& t : trials) {
    rows[{faultName(t.plan.fault), t.plan.transport.label}].add(t);
    perFault[faultName(t.plan.fault)].add(t);
    total.add(t);
  }
  fprintf(out,
          "| fault    | transport | trials | failed | hangs | wrong | all errored | named call & # | named culprit | median err "
          "s | max err s "
          "| max err/T |\n"
          "|----------|-----------|-------:|-------:|------:|------:|------------:|---------------:|--------------:|-------------"
          ":|----------:"
          "|----------:|\n");
  std::string last;
  for (const auto& [key, row] : rows) {
    if (!last.empty() && key.first != last) printRow(out, last, "all", perFault[last]);
    last = key.first;
    printRow(out, key.first, key.second, row);
  }
  if (!last.empty()) printRow(out, last, "all", perFault[last]);
  printRow(out, "all", "all", total);
  fflush(out);
}

bool writeJson(const std::string& path, const CampaignInfo& info, const std::vector<TrialRecord>& trials) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) return false;
  char seed[32];
  snprintf(seed, sizeof seed, "0x%016llx", static_cast<unsigned long long>(info.seed));
  fprintf(f,
          "{\n  \"campaign\": {\"seed\": %s, \"transports\": %s, \"faults\": %s, \"timeout_s\": %s, \"kill_limit_s\": %s, "
          "\"max_ranks\": %d, \"wall_s\": %s, \"trials\": %zu},\n  \"trials\": [\n",
          json(seed).c_str(), json(info.transports).c_str(), json(info.faults).c_str(), num(info.timeoutSec).c_str(),
          num(info.killLimitSec).c_str(), info.maxRanks, num(info.wallSec).c_str(), trials.size());
  for (size_t i = 0; i < trials.size(); ++i) {
    const TrialRecord& t = trials[i];
    const TrialPlan& p = t.plan;
    const Verdict& v = t.verdict;
    snprintf(seed, sizeof seed, "0x%016llx", static_cast<unsigned long long>(p.seed));
    fprintf(
        f,
        "    {\"index\": %d, \"seed\": %s, \"pass\": %s, \"nranks\": %d, \"transport\": %s, \"collective\": %s, \"algo\": %s, "
        "\"args\": %s, \"fault\": %s, \"victim\": %d, \"moment\": %s, \"call\": %d, \"delay_fraction\": %s, \"skew\": %s, "
        "\"skewed_args\": %s,\n",
        t.index, json(seed).c_str(), v.pass() ? "true" : "false", p.nranks, json(p.transport.label).c_str(),
        json(collectiveApiName(p.coll)).c_str(), json(p.algo.empty() ? "default" : p.algo).c_str(), argsJson(p.args).c_str(),
        json(faultName(p.fault)).c_str(), p.victim, json(p.moment == Moment::AfterCalls ? "after_calls" : "mid_call").c_str(),
        p.faultCall + 1, num(p.delayFraction).c_str(), json(skewName(p.skew)).c_str(), argsJson(p.skewed).c_str());
    fprintf(f,
            "     \"setup_failed\": %s, \"hang\": %s, \"teardown_hang\": %s, \"wrong_calls\": %d, \"survivors\": %d, "
            "\"errored\": %d, "
            "\"named_call\": %d, \"named_own_seq\": %d, \"named_culprit\": %d, \"invalid_usage\": %d, \"max_error_s\": %s, "
            "\"limit_s\": %s, \"wall_s\": %s,\n     \"problems\": [",
            v.setupFailed ? "true" : "false", v.hang ? "true" : "false", v.teardownHang ? "true" : "false", v.wrongCalls,
            v.survivors, v.errored, v.namedCollective, v.namedSeq, v.namedCulprit, v.invalidUsage, num(v.maxErrSec).c_str(),
            num(v.limitSec).c_str(), num(t.outcome.wallSec).c_str());
    for (size_t k = 0; k < v.problems.size(); ++k) fprintf(f, "%s%s", k ? ", " : "", json(v.problems[k]).c_str());
    fprintf(f, "], \"notes\": [");
    for (size_t k = 0; k < v.notes.size(); ++k) fprintf(f, "%s%s", k ? ", " : "", json(v.notes[k]).c_str());
    fprintf(f, "],\n     \"ranks\": [");
    for (size_t r = 0; r < t.outcome.ranks.size(); ++r) {
      const RankOutcome& o = t.outcome.ranks[r];
      fprintf(f,
              "%s\n       {\"rank\": %zu, \"survivor\": %s, \"reported\": %s, \"code\": %d, \"call\": %ld, \"error_s\": %s, "
              "\"abort_s\": %s, \"wrong_calls\": %d, \"exit_code\": %d, \"signal\": %d, \"text\": %s}",
              r ? "," : "", r, isSurvivor(p, static_cast<int>(r)) ? "true" : "false", o.reported ? "true" : "false", o.code,
              o.errCall + 1, num(o.reported && t.outcome.faultAt >= 0 ? o.errAt - t.outcome.faultAt : -1).c_str(),
              num(o.abortSec).c_str(), o.wrongCalls, o.exitCode, o.termSignal, json(o.text).c_str());
    }
    fprintf(f, "]}%s\n", i + 1 < trials.size() ? "," : "");
  }
  fprintf(f, "  ]\n}\n");
  return fclose(f) == 0;
}

}  // namespace chorus::campaign

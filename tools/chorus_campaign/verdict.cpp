#include "verdict.h"

#include <cctype>
#include <cstdio>

namespace chorus::campaign {
namespace {

std::string fmt(const char* f, double a, double b = 0) {
  char text[160];
  snprintf(text, sizeof text, f, a, b);
  return text;
}

std::string shorten(const std::string& s, size_t max = 300) {
  return s.size() <= max ? s : s.substr(0, max) + "...";
}

bool digitAt(const std::string& s, size_t i) {
  return i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]));
}

}  // namespace

double Limits::limitFor(const TrialPlan& plan) const {
  switch (plan.fault) {
    case FaultKind::Kill:
      return killSec;
    case FaultKind::Stop:
      return stopFactor * plan.timeoutSec;
    case FaultKind::Mismatch:
      return mismatchSec;
  }
  return 0;
}

bool namesCall(const std::string& text, const char* api) {
  const std::string key = std::string(api) + " #";
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1))
    if (digitAt(text, at + key.size())) return true;
  return false;
}

bool namesRank(const std::string& text, int rank) {
  // "rank 3", and the hang report's lists: "ranks 0,4", "ranks 0-14,16-31".
  for (size_t at = text.find("rank"); at != std::string::npos; at = text.find("rank", at + 1)) {
    size_t i = at + 4;
    if (i < text.size() && text[i] == 's') ++i;
    if (i >= text.size() || text[i] != ' ' || !digitAt(text, i + 1)) continue;
    ++i;
    while (digitAt(text, i)) {
      long lo = 0;
      while (digitAt(text, i)) lo = lo * 10 + (text[i++] - '0');
      long hi = lo;
      if (i + 1 < text.size() && text[i] == '-' && digitAt(text, i + 1)) {
        hi = 0;
        for (++i; digitAt(text, i);) hi = hi * 10 + (text[i++] - '0');
      }
      if (rank >= lo && rank <= hi) return true;
      if (i + 1 < text.size() && text[i] == ',' && digitAt(text, i + 1))
        ++i;
      else
        break;
    }
  }
  return false;
}

Verdict judge(const TrialPlan& plan, const TrialOutcome& out, const Limits& limits) {
  Verdict v;
  v.limitSec = limits.limitFor(plan);
  v.setupFailed = out.setupFailed;
  v.hang = out.hang;
  v.teardownHang = out.teardownHang;
  const char* api = collectiveApiName(plan.coll);
  if (out.setupFailed) v.problems.push_back((out.failedUnprovoked ? "FAILED WITHOUT A FAULT: " : "setup: ") + out.setupText);
  std::string silent, stuck;
  for (int r = 0; r < plan.nranks; ++r) {
    const RankOutcome& o = out.ranks[r];
    const std::string who = "rank " + std::to_string(r);
    v.wrongCalls += o.wrongCalls;
    if (o.wrongCalls > 0)
      v.problems.push_back("WRONG RESULT on " + who + " (" + std::to_string(o.wrongCalls) + " calls), " + o.firstWrong);
    if (!isSurvivor(plan, r) || out.setupFailed) continue;
    ++v.survivors;
    if (!o.reported) {
      if (out.hang && o.termSignal == 9 && o.hungState.size()) {
        silent += (silent.empty() ? "" : "; ") + who + " (last entered #" + std::to_string(o.lastEntered + 1) + ", " +
                  o.hungState + ")";
      } else {
        std::string how =
            o.termSignal ? "killed by signal " + std::to_string(o.termSignal) : "exit code " + std::to_string(o.exitCode);
        v.problems.push_back("CRASH: " + who + " ended without an error (" + how + ")");
      }
      continue;
    }
    ++v.errored;
    if (o.code == chorusInvalidUsage) ++v.invalidUsage;
    const double errSec = out.faultAt >= 0 ? o.errAt - out.faultAt : -1;
    if (errSec > v.maxErrSec) v.maxErrSec = errSec;
    if (out.faultAt >= 0 && errSec > v.limitSec)
      v.problems.push_back("SLOW: " + who + fmt("'s error came %.2f s after the fault (limit %.1f s)", errSec, v.limitSec));
    const bool call = namesCall(o.text, api);
    const bool seq = o.text.find("#" + std::to_string(o.errCall + 1)) != std::string::npos;
    const bool culprit = namesRank(o.text, plan.victim);
    v.namedCollective += call;
    v.namedSeq += seq;
    v.namedCulprit += culprit;
    if (!call || !culprit) {
      std::string missing = !call ? std::string(api) + " #N" : "";
      if (!culprit) missing += (missing.empty() ? "" : " and ") + std::string("rank ") + std::to_string(plan.victim);
      v.problems.push_back("UNNAMED: " + who + "'s error does not name " + missing + ": \"" + shorten(o.text) + "\"");
    }
    if (o.abortSec > 1) v.notes.push_back(who + fmt(": chorusCommAbort took %.2f s", o.abortSec));
    if (out.teardownHang && !o.hungState.empty()) stuck += (stuck.empty() ? "" : "; ") + who + " (" + o.hungState + ")";
  }
  if (out.hang)
    v.problems.push_back("HANG: no error by " + fmt("%.0f s after the fault: ", out.deadlineSec) +
                         (silent.empty() ? "?" : silent));
  if (out.teardownHang) v.problems.push_back("HANG in teardown (chorusCommAbort did not return): " + stuck);
  if (plan.fault == FaultKind::Mismatch && !out.setupFailed) {
    std::string passed;
    for (int r = 0; r < plan.nranks; ++r)
      if (out.ranks[r].skewPassed) passed += (passed.empty() ? "" : ",") + std::to_string(r);
    if (!passed.empty())
      v.notes.push_back("the mismatched call #" + std::to_string(plan.faultCall + 1) + " returned success on ranks " + passed);
    if (v.invalidUsage < v.errored)
      v.notes.push_back(std::to_string(v.errored - v.invalidUsage) + " of " + std::to_string(v.errored) +
                        " errors are not chorusInvalidUsage");
  }
  if (v.errored > v.namedSeq)
    v.notes.push_back(std::to_string(v.errored - v.namedSeq) + " of " + std::to_string(v.errored) +
                      " errors do not name their own call's number");
  return v;
}

}  // namespace chorus::campaign

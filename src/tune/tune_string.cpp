// Tune strings (CHORUS_ALGO): which algorithm a collective uses for which sizes.
//
//   tune   := entry (';' entry)*           entries may be empty ("allreduce:ring;" is fine)
//   entry  := coll ':' rule (',' rule)*
//   rule   := [size '-' size ':'] algo     no range: every size
//   size   := digits [K|M|G] | "inf"       K/M/G are powers of 1024; a range is [lo, hi)
//
// Names match collName()/algoName() case-insensitively; blanks around any piece are ignored.
// alltoallv rules take no range: its ranks' sizes differ, and all must choose alike.
// Ranges of one collective may not overlap (whichever entry names them), so at most one rule
// applies to a call and the order of rules never matters. Every error names the piece it
// could not use, and where a name was wrong, the names that would have been right.
#include <algorithm>
#include <cctype>
#include <string_view>

#include "base/error.h"
#include "tune/tuner.h"

namespace chorus {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  for (;;) {
    size_t at = s.find(sep);
    parts.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return parts;
    s.remove_prefix(at + 1);
  }
}

std::string allNames(int count, const char* (*name)(int)) {
  std::string out;
  for (int i = 0; i < count; ++i) out += std::string(i ? ", " : "") + name(i);
  return out;
}
const char* collNameAt(int i) { return collName(static_cast<Coll>(i)); }
const char* algoNameAt(int i) { return algoName(static_cast<Algo>(i)); }

// Context for error messages: the whole string and the piece being read.
struct Where {
  const std::string& text;
  std::string_view piece;
};

[[noreturn]] void fail(const Where& w, const std::string& what) {
  CHORUS_THROW(chorusInvalidArgument, "tune string \"%s\": %s in \"%s\"", w.text.c_str(), what.c_str(),
               std::string(w.piece).c_str());
}

size_t parseSize(std::string_view s, const Where& w) {
  s = trim(s);
  if (lower(s) == "inf") return SIZE_MAX;
  auto bad = [&](const char* why) { fail(w, "size \"" + std::string(s) + "\" " + why); };
  size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  std::string suffix = lower(trim(s.substr(digits)));
  int shift = suffix.empty() ? 0 : suffix == "k" ? 10 : suffix == "m" ? 20 : suffix == "g" ? 30 : -1;
  if (digits == 0 || shift < 0) bad("is not a byte count (digits with an optional K, M or G suffix, or inf)");
  size_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    size_t d = static_cast<size_t>(s[i] - '0');
    if (value > (SIZE_MAX - d) / 10) bad("is too large");
    value = value * 10 + d;
  }
  if (value > (SIZE_MAX >> shift)) bad("is too large");
  return value << shift;
}

void parseRule(Coll coll, std::string_view ruleText, const std::string& text, std::vector<TuneRule>* rules) {
  Where w{text, trim(ruleText)};
  TuneRule rule;
  rule.coll = coll;
  std::vector<std::string_view> parts = split(ruleText, ':');
  if (parts.size() > 2) fail(w, "a rule is [lo-hi:]algorithm, with one ':'");
  if (parts.size() == 2) {
    // Each rank of an all-to-all-v has its own S: a size rule could send ranks different ways.
    if (coll == Coll::AlltoAllV) fail(w, "alltoallv sizes differ between ranks, so its rules cannot name sizes");
    std::vector<std::string_view> bounds = split(parts[0], '-');
    if (bounds.size() != 2) fail(w, "range \"" + std::string(trim(parts[0])) + "\" is not lo-hi");
    rule.minBytes = parseSize(bounds[0], w);
    rule.maxBytes = parseSize(bounds[1], w);
    if (rule.minBytes >= rule.maxBytes) fail(w, "range \"" + std::string(trim(parts[0])) + "\" is empty (ranges are [lo, hi))");
  }
  std::string algoText = lower(trim(parts.back()));
  if (algoText.empty()) fail(w, "missing algorithm");
  if (!parseAlgo(algoText, &rule.algo))
    fail(w, "unknown algorithm \"" + algoText + "\" (algorithms: " + allNames(static_cast<int>(Algo::kCount), algoNameAt) + ")");
  if (!algoServes(rule.algo, coll))
    fail(w, std::string("algorithm ") + algoName(rule.algo) + " cannot run " + collName(coll) + "; algorithms for " + collName(coll) +
                ": " + algosServing(coll));
  for (const TuneRule& other : *rules)
    if (other.coll == coll && other.minBytes < rule.maxBytes && rule.minBytes < other.maxBytes)
      fail(w, std::string("this range overlaps an earlier rule for ") + collName(coll));
  rules->push_back(rule);
}

}  // namespace

std::vector<TuneRule> parseTuneString(const std::string& text) {
  std::vector<TuneRule> rules;
  for (std::string_view entry : split(text, ';')) {
    if (trim(entry).empty()) continue;
    Where w{text, trim(entry)};
    size_t colon = entry.find(':');
    if (colon == std::string_view::npos) fail(w, "an entry is collective:rules, and the ':' is missing");
    std::string name = lower(trim(entry.substr(0, colon)));
    Coll coll;
    if (!parseColl(name, &coll))
      fail(w, "unknown collective \"" + name + "\" (collectives: " + allNames(static_cast<int>(Coll::kCount), collNameAt) + ")");
    for (std::string_view rule : split(entry.substr(colon + 1), ',')) {
      if (trim(rule).empty()) fail(w, "empty rule");
      parseRule(coll, rule, text, &rules);
    }
  }
  return rules;
}

}  // namespace chorus

#include "health/hang_report.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <tuple>

#include "core/call_stamps.h"
#include "base/error.h"

namespace chorus {
namespace {

// At most this many ranks of a culprit group are named with their host and pid.
constexpr size_t kNamedCulprits = 4;

std::string ranksWord(const std::vector<int>& ranks) {
  return (ranks.size() == 1 ? "rank " : "ranks ") + rankRanges(ranks);
}

// "rank 15 (host h3, pid 1234)", "ranks 3,7 (h1 pid 10, h2 pid 11)".
std::string namedRanks(const std::vector<int>& ranks, const std::vector<PeerCard>& cards) {
  std::string where;
  for (size_t i = 0; i < ranks.size() && i < kNamedCulprits; ++i) {
    const PeerCard& c = cards[ranks[i]];
    where += format("%s%s%s, pid %d", i ? "; " : "", ranks.size() == 1 ? "host " : "", c.hostname, c.pid);
  }
  if (ranks.size() > kNamedCulprits) where += format("; %zu more", ranks.size() - kNamedCulprits);
  return ranksWord(ranks) + " (" + where + ")";
}

std::string callName(const RankStatus& s, uint32_t seq) {
  if (s.pointToPoint) return format("a chorusSend/chorusRecv before collective #%u", seq + 1);
  return format("%s #%u", collApiName(s.coll), seq);
}

// Ranks that made different calls at the same ordinal (their stamps differ: health_wire.h's
// RankStatus::call), one line per ordinal: "ranks disagree about collective #5: rank 2 called
// chorusBroadcast #5 (direct, 257 x float, root 1); ranks 0-1,3 called chorusBroadcast #5
// (direct, 257 x float, root 0)". The ranks outside the largest group are culprits (all of them
// on a tie).
std::vector<std::string> disagreements(const std::vector<RankStatus>& statuses, std::vector<int>* culprits) {
  std::map<uint32_t, std::vector<std::pair<CallStamp, std::vector<int>>>> bySeq;
  for (size_t r = 0; r < statuses.size(); ++r) {
    const RankStatus& s = statuses[r];
    if (s.state == RankState::Unreachable || s.call.kind != StampKind::Collective) continue;
    auto& calls = bySeq[s.call.seq];
    auto it = std::find_if(calls.begin(), calls.end(), [&](const auto& c) { return stampsMatch(c.first, s.call); });
    if (it == calls.end()) it = calls.insert(calls.end(), {s.call, {}});
    it->second.push_back(static_cast<int>(r));
  }
  std::vector<std::string> lines;
  for (auto& [seq, calls] : bySeq) {
    if (calls.size() < 2) continue;
    std::stable_sort(calls.begin(), calls.end(), [](const auto& a, const auto& b) { return a.second.size() < b.second.size(); });
    const bool tie = calls[calls.size() - 1].second.size() == calls[calls.size() - 2].second.size();
    std::string line = format("ranks disagree about collective #%u:", seq);
    for (size_t i = 0; i < calls.size(); ++i) {
      const auto& [stamp, ranks] = calls[i];
      line += format("%s %s called %s", i ? ";" : "", ranksWord(ranks).c_str(), describeStamp(stamp).c_str());
      if (tie || i + 1 < calls.size()) culprits->insert(culprits->end(), ranks.begin(), ranks.end());
    }
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

std::string rankRanges(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(ranks[i]);
    if (j > i) out += "-" + std::to_string(ranks[j]);
    i = j + 1;
  }
  return out;
}

HangReport summarizeStatuses(const std::vector<RankStatus>& statuses, const std::vector<PeerCard>& cards) {
  uint32_t latest = 0;  // the latest collective any reachable rank has entered
  for (const RankStatus& s : statuses)
    if (s.state != RankState::Unreachable) latest = std::max(latest, s.startedSeq);
  // Groups of ranks that are in the same place. Key: (order, state, started, finished, coll, p2p, waitingOn)
  using Key = std::tuple<int, int, uint32_t, uint32_t, int, int, int>;
  std::map<Key, std::vector<int>> groups;
  for (size_t r = 0; r < statuses.size(); ++r) {
    const RankStatus& s = statuses[r];
    bool inLatest = s.state == RankState::InCall && !s.pointToPoint && s.startedSeq == latest;
    bool behind = s.state == RankState::Unreachable || (!inLatest && s.state != RankState::Broken && s.finishedSeq < latest);
    int order = s.state == RankState::Unreachable || s.state == RankState::Closed ? 0 : behind ? 1 : s.state == RankState::Broken ? 2 : 3;
    groups[{order, static_cast<int>(s.state), s.startedSeq, s.finishedSeq, s.coll, s.pointToPoint, inLatest ? s.waitingOn : -2}]
        .push_back(static_cast<int>(r));
  }
  HangReport report;
  for (const auto& [key, ranks] : groups) {
    const RankStatus& s = statuses[ranks[0]];
    const int order = std::get<0>(key);
    std::string line;
    if (s.state == RankState::Unreachable) {
      line = namedRanks(ranks, cards) + " did not answer (dead, stopped, or cut off)";
    } else if (s.state == RankState::Closed) {
      line = namedRanks(ranks, cards) + " destroyed the communicator";
    } else if (s.state == RankState::Broken) {
      line = ranksWord(ranks) + format(" failed in %s", callName(s, s.startedSeq).c_str());
      if (s.causeOrigin >= 0) line += format(" (first failure: rank %d)", s.causeOrigin);
    } else if (order == 1 && s.state == RankState::Idle) {
      line = namedRanks(ranks, cards) + format(" last finished #%u and has not entered #%u", s.finishedSeq, latest);
    } else if (order == 1) {
      line = namedRanks(ranks, cards) + format(" %s in %s, behind #%u", s.state == RankState::InCall ? "waits" : "is",
                                                 callName(s, s.startedSeq).c_str(), latest);
    } else if (s.state == RankState::InCall) {
      line = ranksWord(ranks) + format(" %s in %s", ranks.size() == 1 ? "waits" : "wait", callName(s, s.startedSeq).c_str());
      if (s.waitingOn >= 0) line += format(" (on rank %d)", s.waitingOn);
    } else {
      line = ranksWord(ranks) + format(" %s idle after #%u", ranks.size() == 1 ? "is" : "are", s.finishedSeq);
    }
    report.lines.push_back(line);
  }
  // The summary: every culprit line, then the largest group of the rest.
  std::string culprits, rest;
  size_t restSize = 0;
  size_t i = 0;
  for (const auto& [key, ranks] : groups) {
    const std::string& line = report.lines[i++];
    if (std::get<0>(key) <= 1) {
      culprits += (culprits.empty() ? "" : "; ") + line;
      report.culprits.insert(report.culprits.end(), ranks.begin(), ranks.end());
    } else if (ranks.size() > restSize) {
      rest = line;
      restSize = ranks.size();
    }
  }
  // A disagreement is the cause of whatever waits it led to: it goes first.
  std::vector<int> disagreeing;
  std::vector<std::string> calls = disagreements(statuses, &disagreeing);
  for (const std::string& line : calls) culprits = line + (culprits.empty() ? "" : "; ") + culprits;
  report.lines.insert(report.lines.begin(), calls.begin(), calls.end());
  report.mismatch = !calls.empty();
  if (report.mismatch) report.culprits = disagreeing;  // the ranks waiting on them are victims
  std::sort(report.culprits.begin(), report.culprits.end());
  report.culprits.erase(std::unique(report.culprits.begin(), report.culprits.end()), report.culprits.end());
  report.summary = culprits.empty() ? rest : rest.empty() ? culprits : culprits + "; " + rest;
  if (groups.size() > 1 + (culprits.empty() ? 0 : 1)) report.summary += format(" (%zu groups in all)", groups.size());
  return report;
}

std::string encodeReport(const HangReport& report) {
  std::string text = format("culprits %d ", report.mismatch ? 1 : 0);
  for (size_t i = 0; i < report.culprits.size(); ++i) text += (i ? "," : "") + std::to_string(report.culprits[i]);
  text += "\n" + report.summary;
  for (const std::string& line : report.lines) text += "\n" + line;
  return text;
}

HangReport decodeReport(const std::string& text) {
  std::vector<std::string> lines;
  for (size_t at = 0;;) {
    size_t nl = text.find('\n', at);
    lines.push_back(text.substr(at, nl == std::string::npos ? std::string::npos : nl - at));
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  HangReport rep;
  size_t first = 0;
  const std::string tag = "culprits ";
  if (lines.size() >= 2 && lines[0].compare(0, tag.size(), tag) == 0 && lines[0].size() >= tag.size() + 1) {
    rep.mismatch = lines[0][tag.size()] == '1';
    const char* p = lines[0].c_str() + tag.size() + 1;
    while (*p == ' ' || *p == ',') {
      ++p;
      char* end = nullptr;
      long r = strtol(p, &end, 10);
      if (end == p || r < 0 || r > (1L << 30)) break;
      rep.culprits.push_back(static_cast<int>(r));
      p = end;
    }
    first = 1;
  }
  rep.summary = lines[first];
  rep.lines.assign(lines.begin() + static_cast<long>(first) + 1, lines.end());
  return rep;
}

}  // namespace chorus

#include "health/hang_report.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "core/call_stamps.h"
#include "core/error.h"

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
    int order = s.state == RankState::Unreachable ? 0 : behind ? 1 : s.state == RankState::Broken ? 2 : 3;
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
  std::sort(report.culprits.begin(), report.culprits.end());
  report.summary = culprits.empty() ? rest : rest.empty() ? culprits : culprits + "; " + rest;
  if (groups.size() > 1 + (culprits.empty() ? 0 : 1)) report.summary += format(" (%zu groups in all)", groups.size());
  return report;
}

}  // namespace chorus

// The cluster-wide hang report: from every rank's RankStatus (gathered by the health service)
// to one line that names the ranks that are behind and where they are, e.g.
//   "rank 15 (host h3, pid 1234) last finished chorusAllReduce #41 and has not entered #42;
//    ranks 0-14,16-31 wait in chorusAllReduce #42 (on rank 15)"
// plus one line per group of ranks in the same state for the log. Pure: tests feed it statuses.
#pragma once

#include <string>
#include <vector>

#include "bootstrap/peer_card.h"
#include "health/health_wire.h"

namespace chorus {

struct HangReport {
  std::string summary;             // one line, the culprits first
  std::vector<std::string> lines;  // one per group of ranks in the same state
  std::vector<int> culprits;       // ranks that disagree, or else did not answer or are behind, ascending
  bool mismatch = false;           // ranks made different calls at the same ordinal (misuse)
};

// statuses[r] is rank r's (RankState::Unreachable where it did not answer); cards give hosts
// and pids. Ranks whose calls at one ordinal differ are named first ("ranks disagree about
// collective #5: ..."). Ranks are "behind" when they are idle, or in another call, while others already
// wait in a later collective; unreachable ranks are named as such.
HangReport summarizeStatuses(const std::vector<RankStatus>& statuses, const std::vector<PeerCard>& cards);

// The report as the coordinator sends it (health_wire.h's Report op): a first line
// "culprits <mismatch 0|1> <rank>,<rank>,...", the summary, then the lines. decodeReport takes
// what it can from malformed text (the summary is the whole text when the first line is not
// the culprits line).
std::string encodeReport(const HangReport& report);
HangReport decodeReport(const std::string& text);

// "0-14,16,18-31"
std::string rankRanges(const std::vector<int>& ranks);

}  // namespace chorus

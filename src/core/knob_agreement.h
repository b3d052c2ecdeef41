// Settings every rank of a communicator must share. Ranks that build schedules or cut messages
// differently would wait on each other until the deadline (another CHORUS_ALGO picks another
// algorithm; another CHORUS_TCP_NSOCKS stripes bytes over other sockets), so each rank puts a
// hash of each such setting in its card and init compares them: a difference fails
// chorusCommInitRank on every rank with chorusInvalidUsage naming the variable and the ranks.
#pragma once

#include <vector>

#include "base/config.h"
#include "bootstrap/peer_card.h"

namespace chorus {

void fillKnobHashes(const Config& config, PeerCard* card);
// Throws chorusInvalidUsage at the first setting on which some rank differs from this one.
void checkKnobAgreement(const Config& config, const std::vector<PeerCard>& cards, int rank);

}  // namespace chorus

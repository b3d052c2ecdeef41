// The card exchange: the PeerCards every rank receives in the bootstrap's all-gather, checked
// by checkPeerCards (src/bootstrap/bootstrap.h) before anything reads them, then used as a
// communicator uses them (ClusterTopology::build, describe, toJson). Checks: a card set is
// refused unless every card's rank field and bootstrap address are right; an accepted one has
// NUL-terminated host names, only known address families and sanitized topology cards.
//
// Input: a flags byte (bit 0: set each card's rank field and bootstrap address family right,
// so that the fuzzer spends its time on the rest), then up to 16 cards as raw bytes.
#include <cmath>

#include "bootstrap/bootstrap.h"
#include "base/error.h"
#include "bootstrap/peer_card.h"
#include "fuzz_util.h"
#include "topology/cluster_topology.h"
#include "topology/topo_card.h"

using namespace chorus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Reader in(data, size);
  uint8_t flags = in.byte();
  size_t n = std::min<size_t>(16, std::max<size_t>(1, in.left() / sizeof(PeerCard)));
  std::vector<PeerCard> cards(n);
  for (size_t r = 0; r < n; ++r) {
    in.bytes(&cards[r], sizeof(PeerCard));
    if (flags & 1) {
      cards[r].rank = static_cast<int32_t>(r);
      cards[r].bootstrapAddr.family = (flags & 2) ? AF_INET6 : AF_INET;
    }
  }
  try {
    checkPeerCards(cards, 0);
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == chorusInternalError);
    return 0;
  }
  for (size_t r = 0; r < n; ++r) {
    const PeerCard& c = cards[r];
    FUZZ_CHECK(c.rank == static_cast<int>(r));
    FUZZ_CHECK(c.bootstrapAddr.family == AF_INET || c.bootstrapAddr.family == AF_INET6);
    for (const WireAddr* a : {&c.tcpAddr, &c.healthAddr})
      FUZZ_CHECK(a->family == AF_INET || a->family == AF_INET6 || a->family == 0);
    FUZZ_CHECK(c.hostname[sizeof c.hostname - 1] == '\0');
    TopoCard t = c.topo;
    FUZZ_CHECK(sanitizeTopoCard(t) == 0);
  }
  TransportClasses classes;
  classes.local = {"shm", 1.0, 10.0, "fuzz"};
  classes.network = {"tcp", 15.0, 2.2, "fuzz"};
  try {
    auto topo = ClusterTopology::build(cards, nullptr, classes);
    FUZZ_CHECK(topo->nranks() == static_cast<int>(n));
    topo->describe();
    topo->toJson();
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() != chorusSuccess);
  }
  return 0;
}

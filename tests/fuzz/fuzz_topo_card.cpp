// The topology card (src/topology/topo_card.h) as it arrives from other ranks inside their
// PeerCards: arbitrary bytes, sanitized by sanitizeTopoCard, then used as a communicator uses
// it (ClusterTopology::build, describe, toJson). Checks: after sanitizing, names end with a
// NUL, counts and NUMA nodes are in range, speeds are finite and >= 0, and a second pass
// changes nothing; the topology built from such cards is well formed.
//
// Input: up to four TopoCards (one per host, two ranks each), as raw bytes.
#include <cmath>

#include "base/error.h"
#include "bootstrap/peer_card.h"
#include "fuzz_util.h"
#include "topology/cluster_topology.h"
#include "topology/topo_card.h"

using namespace chorus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Reader in(data, size);
  const int hosts = 1 + static_cast<int>(size / sizeof(TopoCard)) % 4;
  std::vector<PeerCard> cards(static_cast<size_t>(2 * hosts));
  for (int h = 0; h < hosts; ++h) {
    TopoCard t = in.pod<TopoCard>();
    sanitizeTopoCard(t);
    FUZZ_CHECK(sanitizeTopoCard(t) == 0);
    FUZZ_CHECK(t.boundNuma >= -1 && t.numaNodes >= 0 && t.nicCount >= 0 && t.accelerators >= 0 && t.cpus >= 0 && t.reserved == 0);
    for (int i = 0; i < kTopoCardNics; ++i) {
      const TopoCardNic& n = t.nics[i];
      FUZZ_CHECK(n.name[sizeof n.name - 1] == '\0' && n.kind[sizeof n.kind - 1] == '\0');
      FUZZ_CHECK(std::isfinite(n.speedGbps) && n.speedGbps >= 0);
      FUZZ_CHECK(n.numaNode >= -1);
    }
    for (int k = 0; k < 2; ++k) {
      PeerCard& c = cards[static_cast<size_t>(2 * h + k)];
      c.rank = 2 * h + k;
      c.hostHash = 0x1000 + static_cast<uint64_t>(h);
      snprintf(c.hostname, sizeof c.hostname, "node%d", h);
      c.bootstrapAddr.family = AF_INET;
      c.bootstrapAddr.port = static_cast<uint16_t>(5000 + c.rank);
      c.bootstrapAddr.addr[0] = 10;
      c.bootstrapAddr.addr[3] = static_cast<uint8_t>(1 + h);
      c.topo = t;
    }
  }
  TransportClasses classes;
  classes.local = {"shm", 1.0, 10.0, "fuzz"};
  classes.network = {"tcp", 15.0, 2.2, "fuzz"};
  try {
    auto topo = ClusterTopology::build(cards, nullptr, classes);
    FUZZ_CHECK(topo->nranks() == static_cast<int>(cards.size()));
    for (int r = 0; r < topo->nranks(); ++r) FUZZ_CHECK(topo->numaOf(r) >= -1);
    topo->describe();
    topo->toJson();
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() != chorusSuccess);
  }
  return 0;
}

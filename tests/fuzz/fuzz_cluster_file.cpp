// Cluster description files (CHORUS_CLUSTER_FILE, src/topology/cluster_file.cpp), parsed and
// then used the way a communicator uses one: matched against hosts and turned into a
// ClusterTopology (link classes, ring order, weights) for a few synthetic hosts, whose
// describe() and toJson() are printed too. Checks: a parsed file's lines hold valid names and
// positive speeds; anything else is chorusInvalidArgument naming the line; building the
// topology from an accepted file never fails with anything but a typed error.
//
// Input: the file's text.
#include <arpa/inet.h>

#include <cmath>

#include "base/error.h"
#include "bootstrap/peer_card.h"
#include "fuzz_util.h"
#include "topology/cluster_file.h"
#include "topology/cluster_topology.h"

using namespace chorus;

namespace {

// Four hosts of two ranks each, named node0..node3 at 10.0.0.1..4, with one NIC each.
std::vector<PeerCard> fuzzCards() {
  std::vector<PeerCard> cards(8);
  for (int r = 0; r < 8; ++r) {
    PeerCard& c = cards[static_cast<size_t>(r)];
    int host = r / 2;
    c.rank = r;
    c.pid = 100 + r;
    c.hostHash = 0x1000 + static_cast<uint64_t>(host);
    snprintf(c.hostname, sizeof c.hostname, "node%d", host);
    c.bootstrapAddr.family = AF_INET;
    c.bootstrapAddr.port = static_cast<uint16_t>(5000 + r);
    c.bootstrapAddr.addr[0] = 10;
    c.bootstrapAddr.addr[3] = static_cast<uint8_t>(1 + host);
    c.tcpAddr = c.bootstrapAddr;
    c.topo.numaNodes = 2;
    c.topo.boundNuma = static_cast<int16_t>(r % 2);
    c.topo.nicCount = 1;
    snprintf(c.topo.nics[0].name, sizeof c.topo.nics[0].name, "eth0");
    snprintf(c.topo.nics[0].kind, sizeof c.topo.nics[0].kind, "ethernet");
    c.topo.nics[0].speedGbps = 25;
  }
  return cards;
}

TransportClasses fuzzClasses() {
  TransportClasses t;
  t.local = {"shm", 1.0, 10.0, "fuzz"};
  t.network = {"tcp", 15.0, 2.2, "fuzz"};
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  ClusterFile file;
  try {
    file = parseClusterFile(text, "fuzz.cluster");
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == chorusInvalidArgument);
    FUZZ_CHECK(strstr(e.what(), "fuzz.cluster") != nullptr);
    return 0;
  }
  for (const ClusterFileHost& h : file.hosts) {
    FUZZ_CHECK(!h.pattern.empty() && h.line >= 1);
    FUZZ_CHECK(h.gbps >= 0 && std::isfinite(h.gbps));
  }
  for (const ClusterFileLink& l : file.links) {
    FUZZ_CHECK(!l.a.empty() && !l.b.empty());
    FUZZ_CHECK(l.gbps > 0 || l.latencyUs >= 0);
    FUZZ_CHECK(std::isfinite(l.gbps) && std::isfinite(l.latencyUs));
  }
  file.hostFor("node1", "10.0.0.2");
  try {
    auto topo = ClusterTopology::build(fuzzCards(), &file, fuzzClasses());
    FUZZ_CHECK(topo->nranks() == 8);
    for (int a = 0; a < 8; ++a)
      for (int b = 0; b < 8; ++b)
        if (a != b) {
          const LinkClass& lc = topo->link(a, b);
          FUZZ_CHECK(lc.bandwidthGBps > 0 && lc.latencyUs >= 0);
        }
    topo->describe();
    topo->toJson();
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() != chorusSuccess);
  }
  return 0;
}

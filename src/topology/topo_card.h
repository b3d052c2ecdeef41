// The part of a rank's topology every other rank needs (it rides in the PeerCard, which the
// bootstrap all-gathers at init): where the rank is bound and what its host's NICs and
// accelerators are. Plain old data: it goes on the wire.
#pragma once

#include <cstdint>

namespace chorus {

constexpr int kTopoCardNics = 4;

struct TopoCardNic {
  char name[16] = {};   // OS name, truncated
  char kind[12] = {};   // NicInfo::kind
  float speedGbps = 0;  // 0 = unknown
  int16_t numaNode = -1;
  int16_t reserved = 0;
};

struct TopoCard {
  int16_t boundNuma = -1;  // NodeTopology::boundNuma
  int16_t numaNodes = 0;
  int16_t nicCount = 0;    // NICs hwloc saw (only the first kTopoCardNics are listed)
  int16_t accelerators = 0;
  int16_t cpus = 0;      // NodeTopology::pus: the CPUs of the rank's host (0 = unknown)
  int16_t reserved = 0;
  TopoCardNic nics[kTopoCardNics];
};

struct NodeTopology;
// The card of the calling process from its topology: the fastest NICs first.
TopoCard makeTopoCard(const NodeTopology& topo);

// Makes a card that came from another process safe to use (the bootstrap calls it on every
// card it receives; tests/fuzz/fuzz_topo_card.cpp on arbitrary bytes): names and kinds end
// with a NUL, counts are >= 0 (nicCount may exceed the kTopoCardNics listed), NUMA nodes are
// >= -1, speeds are finite and >= 0, and the unlisted NIC entries are zero. Returns how many
// fields it had to change (0 for a well-formed card).
int sanitizeTopoCard(TopoCard& card);

}  // namespace chorus

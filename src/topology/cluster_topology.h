// The cluster as one communicator sees it, gathered at init: which ranks share a host, each
// host's NICs, accelerators and declared grouping, and a link class (latency, bandwidth) for
// every pair of ranks. Built identically on every rank from the all-gathered peer cards and the
// cluster description file (CHORUS_CLUSTER_FILE, src/topology/cluster_file.h), so every rank's
// algorithm choices agree. docs/TOPOLOGY.md describes the model and the file format.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/collective.h"
#include "bootstrap/peer_card.h"
#include "topology/cluster_file.h"
#include "tune/tuner.h"

namespace chorus {

// How a pair of ranks is connected, as the tuner's model sees it.
struct LinkClass {
  std::string name;          // "shm", "tcp", "tcp rack0<->rack1" ...
  double latencyUs = 0;      // one message's fixed cost
  double bandwidthGBps = 0;  // sustained bytes per nanosecond of one pair
  std::string why;           // where the numbers came from, for chorus-topo and logs
};

struct HostInfo {
  std::string name;         // host name (or the cluster file's label)
  std::string address;      // the bootstrap address of its first rank
  std::string group;        // cluster file: group / rack ("" when undeclared)
  std::string rail;         // cluster file: rail or switch group ("")
  std::vector<int> ranks;   // its ranks, ascending (local rank = index here)
  std::vector<TopoCardNic> nics;  // what its first rank's hwloc saw (bounded by kTopoCardNics)
  int accelerators = 0;
  int numaNodes = 0;
  double uplinkGbps = 0;    // the host's link to the rest of the cluster (file, else fastest NIC; 0 = unknown)
};

// What the communicator declares about its transports (the tuner's link classes).
struct TransportClasses {
  LinkClass local;    // ranks on one host (shm, or tcp under CHORUS_TRANSPORT=tcp)
  LinkClass network;  // ranks on different hosts
  LinkClass rack;     // ranks on different hosts of one cluster-file group (empty name: as network)
};

// Whether some host has more of these ranks than CPUs (TopoCard::cpus; a host whose count is
// unknown is not). From the cards alone, so every rank of a communicator gets the same answer
// (the tuner's choices depend on it: LinkModel::roundUs).
bool someHostOversubscribed(const std::vector<PeerCard>& cards);

class ClusterTopology {
 public:
  // cards: every rank's card (indexed by rank). file: may be null; host lines that match no
  // host of this communicator are ignored (one file can describe a whole cluster), and a host
  // that no line matches keeps what hwloc saw.
  static std::shared_ptr<const ClusterTopology> build(const std::vector<PeerCard>& cards, const ClusterFile* file,
                                                      const TransportClasses& transports);

  int nranks() const { return static_cast<int>(hostOf_.size()); }
  const std::vector<HostInfo>& hosts() const { return hosts_; }
  int hostOf(int rank) const { return hostOf_[rank]; }
  int localRank(int rank) const { return localRank_[rank]; }
  int numaOf(int rank) const { return numa_[rank]; }  // bound NUMA node (-1: unknown)
  // The link class between two ranks (a != b).
  const LinkClass& link(int a, int b) const;
  // Distinct link classes in use, with the number of rank pairs in each.
  std::vector<std::pair<LinkClass, size_t>> linkSummary() const;
  // The slowest class between two hosts (null on one host): what the flat algorithms are paced by.
  const LinkClass* slowestNetworkClass() const;
  // The tuner's view (tune/tuner.h), given the local and network classes as LinkModels.
  TopoModel tuneModel(const LinkModel& intra, const LinkModel& inter) const;
  // Ring order, hosts and bandwidth weights for the builders (collectives/collective.h).
  const std::shared_ptr<const RankLayout>& layout() const { return layout_; }
  // Readable dump (chorus-topo, CHORUS_DEBUG_SUBSYS=TOPO) and JSON.
  std::string describe() const;
  std::string toJson() const;

 private:
  std::vector<HostInfo> hosts_;
  std::vector<int> hostOf_, localRank_, numa_;
  std::vector<LinkClass> classes_;
  std::vector<uint16_t> hostPairClass_;  // hosts x hosts -> index into classes_
  uint16_t localClass_ = 0;
  std::shared_ptr<const RankLayout> layout_;
  double weightedUsPerByte_ = 0;
};

}  // namespace chorus

// A fabric model for the simulator (docs/SIMULATOR.md): hosts with accelerators, the links a
// message crosses between two ranks, and their bandwidths and latencies. Links are directed
// (full duplex: each direction is its own link). Shapes come from generators, so nobody writes
// 16k hosts by hand:
//
//   flat:hosts=H,gpus=G                one switch joins every host's NICs
//   fat-tree:hosts=H,gpus=G,leaf=K,oversub=R
//                                      K hosts per leaf switch, the leaves joined by a spine
//                                      whose uplink per leaf carries 1/R of the leaf's NIC bandwidth
//   rail:hosts=H,gpus=G                NIC i of every host on rail switch i; a message between
//                                      different rails first crosses the host (NVLink) to the GPU
//                                      on the destination's rail (as NCCL's PXN does)
// with common keys: nic=<Gbit/s per GPU NIC> (default 400), nvlink=<GB/s per GPU> (default 450),
// hop_us=<latency per switch hop> (default 1), alpha_us=<per message> (default 2),
// gap_us=<the least time between two messages a rank starts: its NIC's message rate, LogGP's g;
// default 0, as many at once as it likes>,
// slow=<first host>-<last host>@<Gbit/s> (those hosts' NICs run slower; repeatable, joined by ';'),
// membus=<GB/s> (a link every message inside a host also crosses: the host's memory bus when its
// ranks copy through host memory, as shared-memory transports do; default none).
// Ranks are numbered host by host: rank r is GPU r % G of host r / G.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace chorus::sim {

struct Link {
  std::string name;        // "host3.gpu1->leaf0", for reports
  double bytesPerUs = 0;   // bandwidth (bytes per microsecond = MB/s)
  double latencyUs = 0;    // added once per message that crosses it
};

class Fabric {
 public:
  // Parses a generator spec (above). Throws chorusInvalidArgument naming the bad key or value.
  static Fabric generate(const std::string& spec);
  // Reads a fabric file: the cluster file's format (docs/TOPOLOGY.md, the runtime's
  // CHORUS_CLUSTER_FILE) with its `fabric` line, which the runtime skips:
  //   fabric <flat|fat-tree|rail> hosts=H gpus=G [the generator's keys, but slow=]
  //   host <pattern> [group=<leaf>] [gbps=<uplink Gbit/s>]
  // The simulator's hosts are named host0..host<H-1>, and the first host line whose pattern
  // matches a name applies, as in the runtime: gbps is the host's uplink (its G NICs together),
  // group its leaf on a fat tree (every host in one, or none: then leaf=K). name= and rail= are
  // accepted and not used; link lines are refused (not simulated yet). Errors name file:line.
  static Fabric load(const std::string& path);

  int ranks() const { return hosts_ * gpus_; }
  int hosts() const { return hosts_; }
  int gpusPerHost() const { return gpus_; }
  double alphaUs() const { return alphaUs_; }
  double gapUs() const { return gapUs_; }
  const std::vector<Link>& links() const { return links_; }
  // The links a message from rank a to rank b crosses, in order (empty for a == b).
  void path(int a, int b, std::vector<uint32_t>* out) const;
  // NIC bandwidth of a host, bytes/us.
  double nicBytesPerUs(int host) const { return nic_[host]; }
  std::string describe() const;  // "fat-tree: 64 hosts x 8 GPUs, ..."

  // Folding (simulator.h): for a period T dividing ranks(), maps every link to its class under
  // the shift of all ranks by T (the link rank r + T has where rank r has link l), or returns
  // an empty vector when the fabric does not repeat every T ranks (a partial leaf, slower
  // hosts out of step, a T that is not a whole number of hosts or leaves). T = ranks() maps
  // each link to itself.
  std::vector<uint32_t> linkClasses(int period) const;
  // The smallest T that linkClasses accepts (ranks() when nothing smaller repeats).
  int period() const;

 private:
  enum class Shape { Flat, FatTree, Rail };
  uint32_t addLink(const std::string& name, double bytesPerUs, double latencyUs);
  // Builds the shape from its keys; adjust (may be null) sees the hosts before the links are
  // made. Errors start with `where`.
  static Fabric make(const std::string& shape, const std::map<std::string, std::string>& kv,
                     const std::function<void(Fabric&)>& adjust, const std::string& where);
  Shape shape_ = Shape::Flat;
  int hosts_ = 1, gpus_ = 1, leafHosts_ = 1;
  double oversub_ = 1, hopUs_ = 1, alphaUs_ = 2, gapUs_ = 0;
  std::vector<double> nic_;  // per host, bytes/us
  std::vector<int> leafOf_;  // per host: its leaf switch (fat tree)
  bool fromGroups_ = false;  // leaves from a fabric file's groups
  std::vector<Link> links_;
  // Link ids: per rank, NVLink up/down and NIC up/down; per leaf, spine up/down.
  std::vector<uint32_t> nvUp_, nvDown_, nicUp_, nicDown_, leafUp_, leafDown_, membus_;
};

}  // namespace chorus::sim

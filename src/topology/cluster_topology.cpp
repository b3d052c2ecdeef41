// Building the cluster topology from the peer cards (model: cluster_topology.h and
// docs/TOPOLOGY.md).
//
// Hosts are the distinct PeerCard::hostHash values, numbered by their first rank. A pair of
// ranks on one host gets the local class (the shared-memory transport's declaration). A pair
// on two hosts gets the network transport's class, narrowed by what is known about the wire:
// each host's uplink (the cluster file's gbps, else its fastest NIC's speed from hwloc) and the
// most specific `link` line of the cluster file for the two hosts. Bandwidth is the smallest of
// those, latency the transport's plus the line's latency_us. Classes are shared by every pair
// with the same numbers and reason.
//
// Ring order: hosts of one cluster-file group stay together (groups in order of their first
// rank), hosts in order of their first rank within a group, and inside a host the ranks bound
// to one NUMA node are contiguous (NUMA nodes in ascending order, unbound ranks last), ties by
// rank. The layout's host lists follow the same order, so "local rank" for the hierarchical
// algorithm means the position in that order.
#include "topology/cluster_topology.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>

#include "base/error.h"
#include "base/log.h"
#include "topology/json_text.h"
#include "topology/weights.h"

namespace chorus {
namespace {

std::string ipOf(const WireAddr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family == AF_INET) inet_ntop(AF_INET, a.addr, buf, sizeof buf);
  else if (a.family == AF_INET6) inet_ntop(AF_INET6, a.addr, buf, sizeof buf);
  return buf;
}

std::string fixedString(const char* s, size_t n) { return std::string(s, strnlen(s, n)); }

// How specifically a link line's end names a host: its label 3, its rail 2, its group 1, '*' 0;
// -1 when it does not name this host.
int endScore(const std::string& end, const HostInfo& h) {
  if (end == h.name) return 3;
  if (!h.rail.empty() && end == h.rail) return 2;
  if (!h.group.empty() && end == h.group) return 1;
  if (end == "*") return 0;
  return -1;
}

// The most specific line for hosts x and y (the later one on a tie); null when none applies.
const ClusterFileLink* linkLineFor(const ClusterFile* file, const HostInfo& x, const HostInfo& y) {
  if (!file) return nullptr;
  const ClusterFileLink* best = nullptr;
  int bestScore = -1;
  for (const ClusterFileLink& l : file->links) {
    int s1 = std::min(endScore(l.a, x), endScore(l.b, y));
    int s2 = std::min(endScore(l.a, y), endScore(l.b, x));
    int score = -1;
    if (s1 >= 0) score = endScore(l.a, x) + endScore(l.b, y);
    if (s2 >= 0) score = std::max(score, endScore(l.a, y) + endScore(l.b, x));
    if (score >= 0 && score >= bestScore) best = &l, bestScore = score;
  }
  return best;
}

std::string gbpsText(double gbps) { return format("%g Gb/s", gbps); }

}  // namespace

bool someHostOversubscribed(const std::vector<PeerCard>& cards) {
  std::map<uint64_t, std::pair<int, int>> hosts;  // host -> ranks, CPUs
  for (const PeerCard& c : cards) {
    auto& h = hosts[c.hostHash];
    ++h.first;
    h.second = std::max<int>(h.second, c.topo.cpus);
  }
  for (const auto& [host, h] : hosts)
    if (h.second > 0 && h.first > h.second) return true;
  return false;
}

std::shared_ptr<const ClusterTopology> ClusterTopology::build(const std::vector<PeerCard>& cards, const ClusterFile* file,
                                                              const TransportClasses& transports) {
  auto topo = std::make_shared<ClusterTopology>();
  ClusterTopology& t = *topo;
  const int p = static_cast<int>(cards.size());
  CHORUS_ASSERT(p >= 1);
  t.hostOf_.assign(p, -1);
  t.localRank_.assign(p, 0);
  t.numa_.assign(p, -1);
  std::map<uint64_t, int> hostByHash;
  for (int r = 0; r < p; ++r) {
    const PeerCard& c = cards[r];
    auto [it, added] = hostByHash.emplace(c.hostHash, static_cast<int>(t.hosts_.size()));
    if (added) {
      HostInfo h;
      h.name = fixedString(c.hostname, sizeof c.hostname);
      h.address = ipOf(c.bootstrapAddr);
      for (int i = 0; i < std::min<int>(c.topo.nicCount, kTopoCardNics); ++i) h.nics.push_back(c.topo.nics[i]);
      h.accelerators = c.topo.accelerators;
      h.numaNodes = c.topo.numaNodes;
      if (const ClusterFileHost* fh = file ? file->hostFor(h.name, h.address) : nullptr) {
        if (!fh->name.empty()) h.name = fh->name;
        h.group = fh->group;
        h.rail = fh->rail;
        h.uplinkGbps = fh->gbps;
      }
      if (h.uplinkGbps <= 0)  // not declared: the fastest NIC hwloc saw
        for (const TopoCardNic& n : h.nics) h.uplinkGbps = std::max(h.uplinkGbps, static_cast<double>(n.speedGbps));
      t.hosts_.push_back(h);
    }
    int h = it->second;
    t.hostOf_[r] = h;
    t.localRank_[r] = static_cast<int>(t.hosts_[h].ranks.size());
    t.hosts_[h].ranks.push_back(r);
    t.numa_[r] = c.topo.boundNuma;
  }
  const size_t H = t.hosts_.size();

  // Link classes.
  auto classIndex = [&](const LinkClass& lc) {
    for (size_t i = 0; i < t.classes_.size(); ++i)
      if (t.classes_[i].name == lc.name && t.classes_[i].latencyUs == lc.latencyUs && t.classes_[i].bandwidthGBps == lc.bandwidthGBps)
        return static_cast<uint16_t>(i);
    t.classes_.push_back(lc);
    return static_cast<uint16_t>(t.classes_.size() - 1);
  };
  t.localClass_ = classIndex(transports.local);
  t.hostPairClass_.assign(H * H, t.localClass_);
  for (size_t x = 0; x < H; ++x) {
    for (size_t y = x + 1; y < H; ++y) {
      const HostInfo &hx = t.hosts_[x], &hy = t.hosts_[y];
      bool sameGroup = !hx.group.empty() && hx.group == hy.group && !transports.rack.name.empty();
      const LinkClass& base = sameGroup ? transports.rack : transports.network;
      LinkClass lc = base;
      std::string limits;
      double gbps = lc.bandwidthGBps * 8;
      auto narrow = [&](double candidate, const std::string& why) {
        if (candidate > 0 && candidate < gbps) {
          gbps = candidate;
          limits = why;
        }
      };
      narrow(hx.uplinkGbps, "uplink of " + hx.name + " " + gbpsText(hx.uplinkGbps));
      narrow(hy.uplinkGbps, "uplink of " + hy.name + " " + gbpsText(hy.uplinkGbps));
      if (const ClusterFileLink* l = linkLineFor(file, hx, hy)) {
        std::string where = format("%s:%d link %s %s", file->path.c_str(), l->line, l->a.c_str(), l->b.c_str());
        narrow(l->gbps, where + " " + gbpsText(l->gbps));
        if (l->latencyUs >= 0) {
          lc.latencyUs += l->latencyUs;
          limits += (limits.empty() ? "" : "; ") + format("+%g us latency (%s)", l->latencyUs, where.c_str());
        }
      }
      lc.bandwidthGBps = gbps / 8;
      lc.why = base.why + (limits.empty() ? "" : "; " + limits);
      if (!limits.empty()) lc.name = format("%s %.4g GB/s %.3g us", base.name.c_str(), lc.bandwidthGBps, lc.latencyUs);
      uint16_t k = classIndex(lc);
      t.hostPairClass_[x * H + y] = t.hostPairClass_[y * H + x] = k;
    }
  }

  // Ring order and the layout.
  std::vector<int> hostOrder(H);
  std::iota(hostOrder.begin(), hostOrder.end(), 0);
  std::map<std::string, int> groupFirst;  // group -> first host index naming it
  for (size_t h = 0; h < H; ++h) groupFirst.emplace(t.hosts_[h].group, static_cast<int>(h));
  std::stable_sort(hostOrder.begin(), hostOrder.end(), [&](int a, int b) {
    int ga = t.hosts_[a].group.empty() ? a : groupFirst[t.hosts_[a].group];
    int gb = t.hosts_[b].group.empty() ? b : groupFirst[t.hosts_[b].group];
    return ga < gb;
  });
  auto layout = std::make_shared<RankLayout>();
  layout->hostOf.assign(p, 0);
  for (int h : hostOrder) {
    std::vector<int> ranks = t.hosts_[h].ranks;
    std::stable_sort(ranks.begin(), ranks.end(), [&](int a, int b) {
      unsigned na = static_cast<unsigned>(t.numa_[a]), nb = static_cast<unsigned>(t.numa_[b]);  // -1 sorts last
      return na < nb;
    });
    for (int r : ranks) {
      layout->hostOf[r] = static_cast<int>(layout->hosts.size());
      layout->ringOrder.push_back(r);
    }
    layout->hosts.push_back(std::move(ranks));
  }
  std::vector<double> uplinkGBps;
  for (int h : hostOrder) {
    double b = transports.network.bandwidthGBps;
    if (t.hosts_[h].uplinkGbps > 0) b = std::min(b, t.hosts_[h].uplinkGbps / 8);
    uplinkGBps.push_back(b);
  }
  // The weighted all-reduce reduces inside each host first (collectives/weighted.cpp), so its
  // split is between hosts, each crossing its link once: hosts of one "rank" each. A host's
  // share is then spread evenly over its ranks (the builder sums them back).
  std::vector<std::vector<int>> single(layout->hosts.size());
  for (size_t h = 0; h < single.size(); ++h) single[h] = {static_cast<int>(h)};
  HostWeights w = hostWeights(single, uplinkGBps, static_cast<int>(single.size()));
  layout->weight.assign(p, 0);
  for (size_t h = 0; h < layout->hosts.size(); ++h)
    for (int r : layout->hosts[h]) layout->weight[r] = w.perRank[h] / static_cast<double>(layout->hosts[h].size());
  t.weightedUsPerByte_ = w.usPerByte;
  checkLayout(*layout, p);
  t.layout_ = layout;
  return topo;
}

const LinkClass& ClusterTopology::link(int a, int b) const {
  size_t H = hosts_.size();
  return classes_[a == b ? localClass_ : hostPairClass_[hostOf_[a] * H + hostOf_[b]]];
}

std::vector<std::pair<LinkClass, size_t>> ClusterTopology::linkSummary() const {
  std::vector<size_t> pairs(classes_.size(), 0);
  int p = nranks();
  for (int a = 0; a < p; ++a)
    for (int b = a + 1; b < p; ++b) ++pairs[hostOf_[a] == hostOf_[b] ? localClass_ : hostPairClass_[hostOf_[a] * hosts_.size() + hostOf_[b]]];
  std::vector<std::pair<LinkClass, size_t>> out;
  for (size_t i = 0; i < classes_.size(); ++i)
    if (pairs[i]) out.emplace_back(classes_[i], pairs[i]);
  return out;
}

TopoModel ClusterTopology::tuneModel(const LinkModel& intra, const LinkModel& inter) const {
  TopoModel m;
  m.hosts = static_cast<int>(hosts_.size());
  m.intra = intra;
  m.inter = inter;
  for (const HostInfo& h : hosts_) m.maxRanksPerHost = std::max(m.maxRanksPerHost, static_cast<int>(h.ranks.size()));
  m.weightedUsPerByte = weightedUsPerByte_;
  return m;
}

const LinkClass* ClusterTopology::slowestNetworkClass() const {
  const LinkClass* slowest = nullptr;
  size_t H = hosts_.size();
  for (size_t x = 0; x < H; ++x)
    for (size_t y = x + 1; y < H; ++y) {
      const LinkClass& c = classes_[hostPairClass_[x * H + y]];
      if (!slowest || c.bandwidthGBps < slowest->bandwidthGBps ||
          (c.bandwidthGBps == slowest->bandwidthGBps && c.latencyUs > slowest->latencyUs))
        slowest = &c;
    }
  return slowest;
}

std::string ClusterTopology::describe() const {
  std::ostringstream o;
  o << "cluster: " << nranks() << " rank(s) on " << hosts_.size() << " host(s)\n";
  for (size_t h = 0; h < hosts_.size(); ++h) {
    const HostInfo& x = hosts_[h];
    o << "  host " << h << " " << x.name << " (" << x.address << ")";
    if (!x.group.empty()) o << " group " << x.group;
    if (!x.rail.empty()) o << " rail " << x.rail;
    o << ": ranks";
    for (int r : x.ranks) {
      o << " " << r;
      if (numa_[r] >= 0) o << "@numa" << numa_[r];
    }
    o << "; " << x.numaNodes << " NUMA node(s), " << x.accelerators << " accelerator(s)";
    if (x.uplinkGbps > 0) o << ", uplink " << x.uplinkGbps << " Gb/s";
    o << "\n";
    for (const TopoCardNic& n : x.nics) {
      o << "    nic " << fixedString(n.name, sizeof n.name) << " " << fixedString(n.kind, sizeof n.kind);
      if (n.speedGbps > 0) o << " " << n.speedGbps << " Gb/s";
      if (n.numaNode >= 0) o << " numa " << n.numaNode;
      o << "\n";
    }
  }
  o << "links:\n";
  for (const auto& [c, pairs] : linkSummary())
    o << "  " << c.name << ": " << c.latencyUs << " us, " << c.bandwidthGBps << " GB/s, " << pairs << " rank pair(s) (" << c.why << ")\n";
  o << "ring order:";
  for (int r : layout_->ringOrder) o << " " << r;
  o << "\nweighted all-reduce shares:";
  for (size_t h = 0; h < layout_->hosts.size(); ++h) {
    double w = 0;
    for (int r : layout_->hosts[h]) w += layout_->weight[r];
    o << " " << hosts_[hostOf_[layout_->hosts[h][0]]].name << " " << format("%.3f", w);
  }
  o << "\n";
  return o.str();
}

std::string ClusterTopology::toJson() const {
  std::ostringstream o;
  o << "{\"ranks\":" << nranks() << ",\"hosts\":[";
  for (size_t h = 0; h < hosts_.size(); ++h) {
    const HostInfo& x = hosts_[h];
    o << (h ? "," : "") << "{\"name\":" << jsonString(x.name) << ",\"address\":" << jsonString(x.address)
      << ",\"group\":" << jsonString(x.group) << ",\"rail\":" << jsonString(x.rail) << ",\"uplink_gbps\":" << jsonNumber(x.uplinkGbps)
      << ",\"numa_nodes\":" << x.numaNodes << ",\"accelerators\":" << x.accelerators << ",\"ranks\":[";
    for (size_t i = 0; i < x.ranks.size(); ++i)
      o << (i ? "," : "") << "{\"rank\":" << x.ranks[i] << ",\"local_rank\":" << i << ",\"numa\":" << numa_[x.ranks[i]] << "}";
    o << "],\"nics\":[";
    for (size_t i = 0; i < x.nics.size(); ++i) {
      const TopoCardNic& n = x.nics[i];
      o << (i ? "," : "") << "{\"name\":" << jsonString(fixedString(n.name, sizeof n.name))
        << ",\"kind\":" << jsonString(fixedString(n.kind, sizeof n.kind)) << ",\"speed_gbps\":" << jsonNumber(n.speedGbps)
        << ",\"numa\":" << n.numaNode << "}";
    }
    o << "]}";
  }
  o << "],\"links\":[";
  bool first = true;
  for (size_t x = 0; x < hosts_.size(); ++x)
    for (size_t y = x; y < hosts_.size(); ++y) {
      if (x == y && hosts_[x].ranks.size() < 2) continue;
      const LinkClass& c = classes_[x == y ? localClass_ : hostPairClass_[x * hosts_.size() + y]];
      o << (first ? "" : ",") << "{\"hosts\":[" << x << "," << y << "],\"class\":" << jsonString(c.name)
        << ",\"latency_us\":" << jsonNumber(c.latencyUs) << ",\"bandwidth_gbps\":" << jsonNumber(c.bandwidthGBps * 8)
        << ",\"why\":" << jsonString(c.why) << "}";
      first = false;
    }
  o << "],\"ring_order\":[";
  for (size_t i = 0; i < layout_->ringOrder.size(); ++i) o << (i ? "," : "") << layout_->ringOrder[i];
  o << "],\"weights\":[";
  for (int r = 0; r < nranks(); ++r) o << (r ? "," : "") << jsonNumber(layout_->weight[r]);
  o << "]}";
  return o.str();
}

}  // namespace chorus

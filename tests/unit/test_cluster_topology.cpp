// The cluster topology from peer cards: the cluster file's grammar and errors, host grouping,
// link classes (uplinks, link lines and their precedence), ring order (hosts and groups
// contiguous, NUMA-local inside a host), the weighted all-reduce's split (against the model's
// own optimum), and the tuner's use of all that (hierarchical across hosts, weighted when one
// host's link is slow, neither on one host).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "topology/cluster_file.h"
#include "topology/cluster_topology.h"
#include "topology/weights.h"
#include "tune/tuner.h"

namespace chorus {
namespace {

std::string parseError(const std::string& text) {
  try {
    parseClusterFile(text, "test.cluster");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidArgument);
    return e.what();
  }
  return "";
}

TEST(ClusterFile, ParsesHostsAndLinks) {
  ClusterFile f = parseClusterFile(
      "# racks\n"
      "host node0* group=rack0 rail=r1 gbps=100   # fast\n"
      "\n"
      "host 10.0.0.9 name=slow gbps=10\n"
      "link rack0 rack1 gbps=25 latency_us=3.5\n"
      "link * * latency_us=0\n",
      "x");
  ASSERT_EQ(f.hosts.size(), 2u);
  EXPECT_EQ(f.hosts[0].pattern, "node0*");
  EXPECT_EQ(f.hosts[0].group, "rack0");
  EXPECT_EQ(f.hosts[0].rail, "r1");
  EXPECT_EQ(f.hosts[0].gbps, 100);
  EXPECT_EQ(f.hosts[0].line, 2);
  EXPECT_EQ(f.hosts[1].name, "slow");
  ASSERT_EQ(f.links.size(), 2u);
  EXPECT_EQ(f.links[0].gbps, 25);
  EXPECT_EQ(f.links[0].latencyUs, 3.5);
  EXPECT_EQ(f.links[1].gbps, 0);
  EXPECT_EQ(f.links[1].latencyUs, 0);
  EXPECT_EQ(f.hostFor("node07", "1.2.3.4"), &f.hosts[0]);
  EXPECT_EQ(f.hostFor("other", "10.0.0.9"), &f.hosts[1]);
  EXPECT_EQ(f.hostFor("other", "10.0.0.10"), nullptr);
}

TEST(ClusterFile, ErrorsNameFileLineAndWord) {
  EXPECT_NE(parseError("host a gbps=fast\n").find("test.cluster:1: gbps=fast"), std::string::npos);
  EXPECT_NE(parseError("\nhost a colour=red\n").find("test.cluster:2: unknown host option 'colour'"), std::string::npos);
  EXPECT_NE(parseError("switch a b\n").find("unknown directive 'switch'"), std::string::npos);
  EXPECT_NE(parseError("link a\n").find("'link' needs two ends"), std::string::npos);
  EXPECT_NE(parseError("link a b\n").find("declares neither"), std::string::npos);
  EXPECT_NE(parseError("link a b gbps=-1\n").find("positive"), std::string::npos);
  EXPECT_NE(parseError("link a b gbps=0\n").find("positive"), std::string::npos);
  EXPECT_NE(parseError("host gbps=1\n").find("needs a host name"), std::string::npos);
  EXPECT_NE(parseError("host a group\n").find("expected key=value"), std::string::npos);
  EXPECT_NE(parseError("host a latency_us=1\n").find("unknown host option"), std::string::npos);
  try {
    loadClusterFile("/nonexistent/chorus.cluster");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/chorus.cluster cannot be read"), std::string::npos) << e.what();
  }
}

// Cards for ranks on the hosts named in `hostOf` (hostname = host name, address 10.0.0.<h+1>).
std::vector<PeerCard> cards(const std::vector<std::string>& hostOf, const std::vector<int>& numa = {}) {
  std::vector<PeerCard> out(hostOf.size());
  for (size_t r = 0; r < hostOf.size(); ++r) {
    PeerCard& c = out[r];
    c.rank = static_cast<int>(r);
    c.hostHash = std::hash<std::string>()(hostOf[r]);
    snprintf(c.hostname, sizeof c.hostname, "%s", hostOf[r].c_str());
    c.bootstrapAddr.family = AF_INET;
    c.bootstrapAddr.addr[0] = 10;
    c.bootstrapAddr.addr[3] = static_cast<uint8_t>(1 + (hostOf[r].back() - '0'));
    c.topo.boundNuma = numa.empty() ? -1 : static_cast<int16_t>(numa[r]);
    c.topo.numaNodes = 2;
    c.topo.nicCount = 1;
    snprintf(c.topo.nics[0].name, sizeof c.topo.nics[0].name, "eth0");
    snprintf(c.topo.nics[0].kind, sizeof c.topo.nics[0].kind, "ethernet");
    c.topo.nics[0].speedGbps = 100;
  }
  return out;
}

TransportClasses transports() {
  TransportClasses t;
  t.local = {"shm", 0.4, 9, "declared by the shm transport"};
  t.network = {"tcp", 15, 2.2, "declared by the tcp transport"};
  return t;
}

TEST(ClusterTopology, GroupsRanksByHostAndClassifiesPairs) {
  auto t = ClusterTopology::build(cards({"h0", "h1", "h0", "h2", "h1"}), nullptr, transports());
  ASSERT_EQ(t->hosts().size(), 3u);
  EXPECT_EQ(t->hosts()[0].ranks, (std::vector<int>{0, 2}));
  EXPECT_EQ(t->hosts()[1].ranks, (std::vector<int>{1, 4}));
  EXPECT_EQ(t->hosts()[2].ranks, (std::vector<int>{3}));
  EXPECT_EQ(t->hosts()[1].address, "10.0.0.2");
  EXPECT_EQ(t->hostOf(4), 1);
  EXPECT_EQ(t->localRank(4), 1);
  EXPECT_EQ(t->link(0, 2).name, "shm");
  EXPECT_EQ(t->link(0, 1).name, "tcp");  // 100 Gb/s NICs do not narrow tcp's 2.2 GB/s
  EXPECT_DOUBLE_EQ(t->link(0, 1).bandwidthGBps, 2.2);
  size_t pairs = 0;
  for (auto& [c, n] : t->linkSummary()) pairs += n;
  EXPECT_EQ(pairs, 10u);
  // Ring order: each host's ranks contiguous, hosts by first rank.
  EXPECT_EQ(t->layout()->ringOrder, (std::vector<int>{0, 2, 1, 4, 3}));
  EXPECT_NO_THROW(checkLayout(*t->layout(), 5));
  EXPECT_NE(t->describe().find("3 host(s)"), std::string::npos);
  EXPECT_NE(t->toJson().find("\"ring_order\":[0,2,1,4,3]"), std::string::npos) << t->toJson();
}

// A host with more ranks than CPUs, known from the cards alone (every rank computes the same).
TEST(ClusterTopology, OversubscribedHostsComeFromTheCards) {
  std::vector<PeerCard> c = cards({"h0", "h1", "h0", "h1", "h0"});
  EXPECT_FALSE(someHostOversubscribed(c)) << "unknown CPU counts are not oversubscribed";
  for (PeerCard& card : c) card.topo.cpus = 4;
  EXPECT_FALSE(someHostOversubscribed(c));  // 3 and 2 ranks on 4 CPUs each
  for (PeerCard& card : c)
    if (std::string(card.hostname) == "h1") card.topo.cpus = 1;
  EXPECT_TRUE(someHostOversubscribed(c));   // h1: 2 ranks on 1 CPU
  c[1].topo.cpus = 2;                       // ranks of one host disagree: the largest count counts
  EXPECT_FALSE(someHostOversubscribed(c));
}

TEST(ClusterTopology, RingOrderKeepsNumaNodesAndGroupsTogether) {
  // One host, ranks bound alternately to NUMA 1 and 0, one unbound: NUMA 0 first, unbound last.
  auto one = ClusterTopology::build(cards({"h0", "h0", "h0", "h0", "h0"}, {1, 0, -1, 0, 1}), nullptr, transports());
  EXPECT_EQ(one->layout()->ringOrder, (std::vector<int>{1, 3, 0, 4, 2}));
  EXPECT_EQ(one->layout()->hosts[0], one->layout()->ringOrder);
  // Hosts h0, h2 in rack A, h1 in rack B: the ring visits h0, h2, then h1.
  ClusterFile f = parseClusterFile("host h0 group=A\nhost h1 group=B\nhost h2 group=A\n", "f");
  auto racks = ClusterTopology::build(cards({"h0", "h1", "h2", "h0"}), &f, transports());
  EXPECT_EQ(racks->layout()->ringOrder, (std::vector<int>{0, 3, 2, 1}));
}

TEST(ClusterTopology, UplinksAndLinkLinesNarrowTheNetworkClass) {
  ClusterFile f = parseClusterFile(
      "host h0 group=A gbps=8\n"     // 1 GB/s uplink
      "host h1 group=A\n"
      "host h2 group=B name=far\n"
      "host h3 group=B\n"
      "link A B gbps=4 latency_us=20\n"  // 0.5 GB/s between the racks
      "link h1 far gbps=12\n"            // a host line beats the group line
      "link * * latency_us=1\n",
      "f");
  auto t = ClusterTopology::build(cards({"h0", "h1", "h2", "h3"}), &f, transports());
  EXPECT_EQ(t->hosts()[2].name, "far");
  EXPECT_DOUBLE_EQ(t->link(0, 1).bandwidthGBps, 1.0);  // h0's uplink
  EXPECT_DOUBLE_EQ(t->link(0, 1).latencyUs, 16);       // '*' line: +1 us
  EXPECT_DOUBLE_EQ(t->link(1, 3).bandwidthGBps, 0.5);  // rack line
  EXPECT_DOUBLE_EQ(t->link(1, 3).latencyUs, 35);
  EXPECT_DOUBLE_EQ(t->link(1, 2).bandwidthGBps, 1.5);  // host line, 12 Gb/s
  EXPECT_DOUBLE_EQ(t->link(1, 2).latencyUs, 15);
  EXPECT_NE(t->link(1, 3).why.find("f:5 link A B"), std::string::npos) << t->link(1, 3).why;
  ASSERT_NE(t->slowestNetworkClass(), nullptr);
  EXPECT_DOUBLE_EQ(t->slowestNetworkClass()->bandwidthGBps, 0.5);
  // One host: no network class.
  EXPECT_EQ(ClusterTopology::build(cards({"h0", "h0"}), &f, transports())->slowestNetworkClass(), nullptr);
}

// The model's time per byte for given host weights (weights.h).
double modelTime(const std::vector<std::vector<int>>& hosts, const std::vector<double>& B, int p, const std::vector<double>& W) {
  double t = 0;
  for (size_t h = 0; h < hosts.size(); ++h) {
    double L = hosts[h].size();
    t = std::max(t, (L + (p - 2 * L) * W[h]) / (B[h] * 1e3));
  }
  return t;
}

TEST(Weights, EqualLinksGiveEqualShares) {
  HostWeights w = hostWeights({{0}, {1}, {2}, {3}}, {1, 1, 1, 1}, 4);
  for (double x : w.perRank) EXPECT_NEAR(x, 0.25, 1e-9);
  // The ring's bandwidth term, 2(p-1)/p bytes per byte of link.
  EXPECT_NEAR(w.usPerByte, 1.5 / 1e3, 1e-9);
  HostWeights one = hostWeights({{0, 1, 2}}, {0}, 3);
  for (double x : one.perRank) EXPECT_NEAR(x, 1.0 / 3, 1e-12);
}

TEST(Weights, SlowHostCarriesLessAndTheMaximumIsMinimal) {
  // One host at a quarter of the others' speed: it should own nothing, and the time is its
  // floor, n / B_slow (it must still send and receive n).
  std::vector<std::vector<int>> hosts{{0}, {1}, {2}, {3}};
  std::vector<double> B{1, 4, 4, 4};
  HostWeights w = hostWeights(hosts, B, 4);
  EXPECT_NEAR(w.perRank[0], 0, 1e-9);
  EXPECT_NEAR(std::accumulate(w.perRank.begin(), w.perRank.end(), 0.0), 1, 1e-9);
  EXPECT_NEAR(w.usPerByte, 1.0 / 1e3, 1e-9);
  // Milder: the slow host owns a positive, smaller share, and no other split does better.
  B = {2, 3, 3, 3};
  w = hostWeights(hosts, B, 4);
  EXPECT_GT(w.perRank[0], 0);
  EXPECT_LT(w.perRank[0], w.perRank[1]);
  double best = modelTime(hosts, B, 4, w.perHost);
  EXPECT_NEAR(best, w.usPerByte, 1e-12);
  for (double a = 0; a <= 1.0; a += 0.01) {
    std::vector<double> W{a, (1 - a) / 3, (1 - a) / 3, (1 - a) / 3};
    EXPECT_GE(modelTime(hosts, B, 4, W), best * (1 - 1e-9)) << a;
  }
}

TEST(Weights, UnevenHostsAndUnknownSpeeds) {
  // Hosts of 3, 1 and 2 ranks; the middle one unknown (taken as fast as the fastest).
  std::vector<std::vector<int>> hosts{{0, 2, 4}, {1}, {3, 5}};
  HostWeights w = hostWeights(hosts, {1, 0, 2}, 6);
  EXPECT_NEAR(std::accumulate(w.perRank.begin(), w.perRank.end(), 0.0), 1, 1e-9);
  for (double x : w.perRank) EXPECT_GE(x, 0);
  EXPECT_NEAR(w.perRank[0], w.perRank[2], 1e-12);  // a host's share is split evenly
  // Brute force over a grid of host weights: nothing beats the solver.
  std::vector<double> B{1, 2, 2};
  for (double a = 0; a <= 1; a += 0.02)
    for (double b = 0; a + b <= 1; b += 0.02) EXPECT_GE(modelTime(hosts, B, 6, {a, b, 1 - a - b}), w.usPerByte * (1 - 1e-9));
}

TEST(TopoTuner, PicksTopologyAlgorithmsOnlyWhereTheyPay) {
  LinkModel shm{0.4, 9, 256 * 1024}, tcp{15, 2.2, 512 * 1024};
  // One host: neither hierarchical nor weighted is ever chosen (they only tie ring and direct).
  Tuner single("", shm, 256 * 1024);
  for (size_t bytes : {8ul, 4096ul, 1ul << 20, 64ul << 20}) {
    Algo a = single.choose(Coll::AllReduce, bytes, 8).algo;
    EXPECT_NE(a, Algo::Hierarchical) << bytes;
    EXPECT_NE(a, Algo::Weighted) << bytes;
  }
  // Four hosts of four ranks with equal links: hierarchical for large messages.
  auto even = ClusterTopology::build(cards({"h0", "h0", "h0", "h0", "h1", "h1", "h1", "h1", "h2", "h2", "h2", "h2", "h3", "h3", "h3", "h3"}),
                                     nullptr, transports());
  Tuner t4("", tcp, 256 * 1024, even->tuneModel(shm, tcp));
  EXPECT_EQ(t4.choose(Coll::AllReduce, 64 << 20, 16).algo, Algo::Hierarchical);
  // One rank per host, one host at a quarter speed: weighted for large messages.
  ClusterFile f = parseClusterFile("host h0 gbps=1\nhost h* gbps=4\n", "f");
  auto slow = ClusterTopology::build(cards({"h0", "h1", "h2", "h3"}), &f, transports());
  LinkModel slowLink{15, 0.125, 512 * 1024};
  Tuner ts("", slowLink, 256 * 1024, slow->tuneModel(shm, slowLink));
  EXPECT_EQ(ts.choose(Coll::AllReduce, 64 << 20, 4).algo, Algo::Weighted);
  double ring = ts.predictUs(Algo::Ring, Coll::AllReduce, 64 << 20, 4);
  double weighted = ts.predictUs(Algo::Weighted, Coll::AllReduce, 64 << 20, 4);
  EXPECT_NEAR(ring / weighted, 1.5, 0.1);  // 2(p-1)/p n / B_slow against n / B_slow
}

}  // namespace
}  // namespace chorus

// All-reduce on emulated multi-host clusters: ranks are put on "hosts" with CHORUS_HOSTID (ranks
// of one host talk over shm, other pairs over TCP), hosts are given uplink speeds by a cluster
// file (CHORUS_CLUSTER_FILE), and the ring, hierarchical and weighted algorithms and the
// default tuner run with every result checked exactly. Layouts include hosts of different
// sizes whose ranks are interleaved by number, and a slow host that the weighted all-reduce
// gives a smaller share. The rank-0 view of the cluster is checked against the layout too.
#include <gtest/gtest.h>

#include <chorus/chorus.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/api_internal.h"
#include "core/comm.h"
#include "fixtures/ranks.h"
#include "fixtures/typed_data.h"

namespace chorus::test {
namespace {

struct Layout {
  const char* name;
  std::vector<std::string> hostOf;  // CHORUS_HOSTID per rank
  const char* clusterFile;          // text of CHORUS_CLUSTER_FILE ("" = none)
};

const Layout kLayouts[] = {
    {"two_by_two", {"a", "a", "b", "b"}, ""},
    {"interleaved_3_hosts", {"a", "b", "a", "c", "b"}, ""},
    {"slow_host", {"a", "b", "c"}, "host a gbps=1\nhost * gbps=4\n"},
    {"slow_pair_uneven", {"a", "a", "b", "c", "c"}, "host c gbps=2\nhost * gbps=8\n"},
};

struct Case {
  chorusDataType_t type;
  chorusRedOp_t op;
};
const Case kCases[] = {{chorusFloat32, chorusSum}, {chorusInt64, chorusMax}, {chorusFloat64, chorusAvg}, {chorusBfloat16, chorusMin}};

class TopologyAllReduce : public ::testing::TestWithParam<std::tuple<int, const char*>> {};

TEST_P(TopologyAllReduce, ExactResults) {
  const Layout& layout = kLayouts[std::get<0>(GetParam())];
  const std::string algo = std::get<1>(GetParam());
  const int p = static_cast<int>(layout.hostOf.size());
  std::string file;
  if (*layout.clusterFile) {
    file = "/tmp/chorus-test-cluster-" + std::to_string(getpid());
    std::ofstream(file) << layout.clusterFile;
  }
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  ScopedEnv slices("CHORUS_SLICE_BYTES", "16K");  // several slices per chunk at modest counts
  ScopedEnv tune("CHORUS_ALGO", algo == "default" ? "" : ("allreduce:" + algo).c_str());
  ScopedEnv cluster("CHORUS_CLUSTER_FILE", file.c_str());
  auto exits = runRanksWithId(p, [&](int rank, const chorusUniqueId& id) {
    setenv("CHORUS_HOSTID", layout.hostOf[rank].c_str(), 1);
    chorusComm_t comm = nullptr;
    if (chorusCommInitRank(&comm, p, id, rank) != chorusSuccess) {
      fprintf(stderr, "rank %d: init failed: %s\n", rank, chorusGetLastError(nullptr));
      return 2;
    }
    int bad = 0;
    // The cluster view: hosts as CHORUS_HOSTID put them, each host's ranks contiguous in the ring.
    const ClusterTopology& topo = communicatorOf(comm).cluster();
    for (int r = 0; r < p; ++r)
      for (int q = 0; q < p; ++q)
        if ((topo.hostOf(r) == topo.hostOf(q)) != (layout.hostOf[r] == layout.hostOf[q])) ++bad;
    const std::vector<int>& ring = topo.layout()->ringOrder;
    int changes = 0;
    for (int i = 0; i < p; ++i) changes += topo.hostOf(ring[i]) != topo.hostOf(ring[(i + 1) % p]);
    if (topo.hosts().size() > 1 && changes != static_cast<int>(topo.hosts().size())) ++bad;
    if (bad) fprintf(stderr, "rank %d: cluster view disagrees with the layout:\n%s", rank, topo.describe().c_str());
    for (const Case& c : kCases)
      for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1021}, size_t{40009}})
        for (bool inPlace : {false, true}) {
          std::vector<char> in = makeBuffer(c.type, count), out = makeBuffer(c.type, count);
          fillInput(in.data(), c.type, c.op, count, rank);
          void* recv = inPlace ? in.data() : out.data();
          if (chorusAllReduce(in.data(), recv, count, c.type, c.op, comm, nullptr) != chorusSuccess) {
            fprintf(stderr, "rank %d: allreduce failed: %s\n", rank, chorusGetLastError(comm));
            return 3;
          }
          size_t wrong = countWrong(recv, c.type, c.op, count, p);
          if (wrong) fprintf(stderr, "rank %d: %zu of %zu wrong (type %d op %d in place %d)\n", rank, wrong, count, c.type, c.op, inPlace);
          bad += wrong != 0;
        }
    chorusCommDestroy(comm);
    return bad;
  });
  if (!file.empty()) unlink(file.c_str());
  EXPECT_TRUE(allRanksSucceeded(exits));
}

INSTANTIATE_TEST_SUITE_P(Layouts, TopologyAllReduce,
                         ::testing::Combine(::testing::Range(0, static_cast<int>(std::size(kLayouts))),
                                            ::testing::Values("ring", "hierarchical", "weighted", "default")),
                         [](const auto& info) {
                           return std::string(kLayouts[std::get<0>(info.param)].name) + "_" + std::get<1>(info.param);
                         });

// The slow host's share of the weighted all-reduce is smaller than the others', as every rank
// computes it (they must agree, or the blocks would not match).
TEST(TopologyWeights, SlowHostGetsTheSmallerShare) {
  std::string file = "/tmp/chorus-test-cluster-w-" + std::to_string(getpid());
  std::ofstream(file) << "host a gbps=2\nhost * gbps=6\n";
  ScopedEnv cluster("CHORUS_CLUSTER_FILE", file.c_str());
  auto exits = runRanksWithId(4, [&](int rank, const chorusUniqueId& id) {
    const char* hosts[] = {"a", "b", "c", "d"};
    setenv("CHORUS_HOSTID", hosts[rank], 1);
    chorusComm_t comm = nullptr;
    if (chorusCommInitRank(&comm, 4, id, rank) != chorusSuccess) return 2;
    const RankLayout& l = *communicatorOf(comm).cluster().layout();
    int bad = 0;
    for (int r = 1; r < 4; ++r) bad += !(l.weight[0] < l.weight[r]) || std::abs(l.weight[r] - l.weight[1]) > 1e-12;
    if (bad) fprintf(stderr, "weights %g %g %g %g\n", l.weight[0], l.weight[1], l.weight[2], l.weight[3]);
    chorusCommDestroy(comm);
    return bad;
  });
  unlink(file.c_str());
  EXPECT_TRUE(allRanksSucceeded(exits));
}

}  // namespace
}  // namespace chorus::test

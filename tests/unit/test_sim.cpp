// The simulator against numbers worked out by hand (docs/SIMULATOR.md): one message, two that
// share a link, max-min sharing with different bottlenecks, the ring all-reduce's bus bandwidth
// against the physics, deadlock detection, and the fabric generators' paths and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "base/error.h"
#include "collectives/collective.h"
#include "sim/fabric.h"
#include "sim/simulator.h"
#include "sim/symmetry.h"
#include "topology/cluster_file.h"

namespace chorus::sim {
namespace {

// One message of `bytes` from a to b (1-byte elements), sent once rank a's steps `sendAfter`
// are done.
void addMessage(std::vector<RankSchedule>& s, int a, int b, size_t bytes, std::initializer_list<uint32_t> sendAfter = {}) {
  Step send;
  send.kind = StepKind::Send;
  send.peer = b;
  send.src = {BufferId::Input, 0, bytes};
  s[a].add(send, sendAfter);
  Step recv;
  recv.kind = StepKind::Recv;
  recv.peer = a;
  recv.dst = {BufferId::Output, 0, bytes};
  s[b].add(recv);
}

std::vector<RankSchedule> empty(int p) {
  std::vector<RankSchedule> s(p);
  for (int r = 0; r < p; ++r) {
    s[r].rank = r;
    s[r].nranks = p;
  }
  return s;
}

// 100 Gbit/s NICs = 12500 bytes/us; 1 us on the sender's NIC link, 2 us per message.
const char* kFlat3 = "flat:hosts=3,gpus=1,nic=100,hop_us=1,alpha_us=2";

TEST(Simulator, OneMessageTakesOverheadLatencyAndBytesOverBandwidth) {
  Fabric f = Fabric::generate(kFlat3);
  auto s = empty(3);
  addMessage(s, 0, 1, 1250000);  // 100 us at 12500 bytes/us
  SimResult r = simulate(f, s, 1);
  EXPECT_NEAR(r.timeUs, 2 + 1 + 100, 1e-6);
  EXPECT_EQ(r.messages, 1u);
  EXPECT_EQ(r.wireBytes, 1250000u);
}

TEST(Simulator, TwoMessagesIntoOneLinkShareIt) {
  Fabric f = Fabric::generate(kFlat3);
  auto s = empty(3);
  addMessage(s, 0, 2, 1250000);
  addMessage(s, 1, 2, 1250000);
  SimResult r = simulate(f, s, 1);
  EXPECT_NEAR(r.timeUs, 3 + 200, 1e-6) << "each gets half of rank 2's link";
  EXPECT_NEAR(r.rankEndUs[0], 203, 1e-6);
}

TEST(Simulator, MessagesOfOnePairCrossInOrderNotSharingTheLink) {
  // Rank 0 sends A then B to rank 1; once A is in, rank 1 sends a small message to rank 2. In
  // order, A is in at 3 + 100 us (B waits for it), so rank 2 ends about 3 us later; had A and
  // B shared the link, A would be in only at 203.
  Fabric f = Fabric::generate(kFlat3);
  auto s = empty(3);
  addMessage(s, 0, 1, 1250000);
  addMessage(s, 0, 1, 1250000);
  addMessage(s, 1, 2, 1, {0});  // after the receive of A (step 0 of rank 1)
  SimResult r = simulate(f, s, 1);
  EXPECT_NEAR(r.rankEndUs[2], 103 + 3 + 1.0 / 12500, 1e-6);
  EXPECT_NEAR(r.rankEndUs[0], 203, 1e-6);
}

TEST(Simulator, MaxMinSharingGivesTheRestToTheFlowThatCanUseIt) {
  // Rank 0's NIC runs at 20 Gbit/s (2500 bytes/us); ranks 0 and 2 both send to rank 1, whose
  // link carries 12500: rank 0's flow is held to 2500 by its own NIC, rank 2's gets 10000.
  Fabric f = Fabric::generate("flat:hosts=3,gpus=1,nic=100,hop_us=0,alpha_us=0,slow=0-0@20");
  auto s = empty(3);
  addMessage(s, 0, 1, 250000);   // 100 us at 2500
  addMessage(s, 2, 1, 1000000);  // 100 us at 10000
  SimResult r = simulate(f, s, 1);
  EXPECT_NEAR(r.rankEndUs[0], 100, 1e-6);
  EXPECT_NEAR(r.rankEndUs[2], 100, 1e-6);
}

TEST(Simulator, ARanksMessagesStartAGapApart) {
  // Rank 0 sends 12500 bytes (1 us at 100 Gbit/s) to ranks 1 and 2 at once. Without a gap
  // both start together and share rank 0's link (2 us); with gap_us=10 the second starts 10 us
  // after the first.
  for (double gap : {0.0, 10.0}) {
    Fabric f = Fabric::generate("flat:hosts=3,gpus=1,nic=100,hop_us=0,alpha_us=0,gap_us=" + std::to_string(gap));
    auto s = empty(3);
    addMessage(s, 0, 1, 12500);
    addMessage(s, 0, 2, 12500);
    SimResult r = simulate(f, s, 1);
    EXPECT_NEAR(r.timeUs, gap > 0 ? 11 : 2, 1e-6) << "gap " << gap;
  }
}

TEST(Simulator, CopiesInsideAHostShareItsMemoryBus) {
  // 10 GB/s per GPU link; with a 10 GB/s memory bus, two messages between different pairs of
  // one host's GPUs get half of it each.
  for (const char* membus : {"", ",membus=10"}) {
    Fabric f = Fabric::generate(std::string("flat:hosts=1,gpus=4,nvlink=10,alpha_us=0,hop_us=0") + membus);
    auto s = empty(4);
    addMessage(s, 0, 1, 1000000);
    addMessage(s, 2, 3, 1000000);
    SimResult r = simulate(f, s, 1);
    EXPECT_NEAR(r.timeUs, *membus ? 200 : 100, 1e-6) << membus;
  }
}

TEST(Simulator, RingAllReduceApproachesButNeverExceedsTheNicBandwidth) {
  // Ideal flat fabric, one GPU per host, no overheads: busbw of a large ring all-reduce.
  Fabric f = Fabric::generate("flat:hosts=8,gpus=1,nic=100,hop_us=0,alpha_us=0");
  CollArgs a;
  a.coll = Coll::AllReduce;
  a.nranks = 8;
  a.count = 64 << 20;  // 256 MiB of floats
  a.elemSize = 4;
  a.sliceBytes = 4 << 20;
  std::vector<RankSchedule> s;
  for (int r = 0; r < 8; ++r) {
    a.rank = r;
    s.push_back(buildSchedule(Algo::Ring, a));
  }
  SimResult res = simulate(f, s, 4, SimOptions{1e12, 1e12});  // reductions and copies free
  const double busbw = static_cast<double>(a.count * 4) / res.timeUs * 2.0 * 7 / 8;  // bytes/us
  EXPECT_LE(busbw, 12500 * (1 + 1e-9));
  EXPECT_GE(busbw, 12500 * 0.9) << "time " << res.timeUs << " us";
}

TEST(Simulator, TheCriticalPathFollowsWhatHeldEachStepAndAddsUpToTheTime) {
  // Rank 0 -> 1 (100 us of bytes), then 1 forwards to 2 once it has it; meanwhile rank 2 sends
  // rank 0 a small message that nothing waits for. The path is the two big messages: 200 us on
  // the wire, 2 x 3 us of overhead and latency.
  Fabric f = Fabric::generate(kFlat3);
  auto s = empty(3);
  addMessage(s, 0, 1, 1250000);
  addMessage(s, 2, 0, 8);
  addMessage(s, 1, 2, 1250000, {0});  // once the first is in
  SimResult r = simulate(f, s, 1);
  EXPECT_NEAR(r.timeUs, 206, 1e-6);
  const CriticalPath& cp = r.critical;
  EXPECT_EQ(cp.messages, 2u);
  EXPECT_EQ(cp.localSteps, 0u);
  EXPECT_NEAR(cp.wireUs, 200, 1e-6);
  EXPECT_NEAR(cp.waitUs, 6, 1e-6);
  EXPECT_NEAR(cp.wireUs + cp.waitUs + cp.localUs, r.timeUs, 1e-6);
  ASSERT_FALSE(cp.links.empty());
  EXPECT_NEAR(cp.links[0].second, 100, 1e-6) << "each link of the path carried one of the two messages";
}

TEST(Simulator, AReceiveNoSendMeetsIsADeadlockNamingTheRank) {
  Fabric f = Fabric::generate(kFlat3);
  auto s = empty(3);
  Step recv;
  recv.kind = StepKind::Recv;
  recv.peer = 0;
  recv.dst = {BufferId::Output, 0, 8};
  s[2].add(recv);
  try {
    simulate(f, s, 1);
    FAIL() << "no deadlock reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 2"), std::string::npos) << e.what();
  }
}

// Every rank's schedule of one all-reduce of `count` floats (1 MiB slices) on the fabric's ranks,
// hosts as the fabric has them (hierarchical needs them).
std::function<RankSchedule(int)> allReduceOn(const Fabric& f, Algo algo, size_t count) {
  auto layout = std::make_shared<RankLayout>();
  const int p = f.ranks(), g = f.gpusPerHost();
  layout->hosts.resize(f.hosts());
  for (int r = 0; r < p; ++r) {
    layout->hosts[r / g].push_back(r);
    layout->hostOf.push_back(r / g);
    layout->ringOrder.push_back(r);
    layout->weight.push_back(1.0 / p);
  }
  return [=](int r) {
    CollArgs a;
    a.coll = Coll::AllReduce;
    a.nranks = p;
    a.rank = r;
    a.count = count;
    a.elemSize = 4;
    a.sliceBytes = 1 << 20;
    a.layout = layout;
    return buildSchedule(algo, a);
  };
}

std::vector<RankSchedule> everyRank(const Fabric& f, const std::function<RankSchedule(int)>& build) {
  std::vector<RankSchedule> s;
  for (int r = 0; r < f.ranks(); ++r) s.push_back(build(r));
  return s;
}

TEST(Folding, AFoldedRingIsTheFullRunExactly) {
  // 2 leaves of 2 hosts x 2 GPUs: the fabric repeats every leaf (4 ranks), so 4 of 8 ranks are
  // simulated; every time, message count and link load must be the unfolded run's.
  Fabric f = Fabric::generate("fat-tree:hosts=4,gpus=2,leaf=2,oversub=2");
  ASSERT_EQ(f.period(), 4);
  auto build = allReduceOn(f, Algo::Ring, 3 << 20);
  SimResult full = simulate(f, everyRank(f, build), 4);
  FoldedSchedules fs = buildForSimulation(f, build, true, FoldCheck::Every, 1 << 20);
  ASSERT_EQ(fs.period, 4) << fs.why;
  EXPECT_EQ(fs.checked, 4u);
  SimResult folded = simulate(f, fs.schedules, 4, SimOptions{}, fs.period);
  EXPECT_EQ(folded.simulatedRanks, 4);
  EXPECT_DOUBLE_EQ(folded.timeUs, full.timeUs);
  EXPECT_EQ(folded.messages, full.messages);
  EXPECT_EQ(folded.wireBytes, full.wireBytes);
  EXPECT_EQ(folded.rankEndUs, full.rankEndUs);
  EXPECT_EQ(folded.linkBytes, full.linkBytes);
}

TEST(Folding, TheFabricsPeriodFollowsLeavesAndSlowHosts) {
  EXPECT_EQ(Fabric::generate("rail:hosts=8,gpus=4").period(), 4);  // one host
  EXPECT_EQ(Fabric::generate("flat:hosts=8,gpus=2,membus=10").period(), 2);
  EXPECT_EQ(Fabric::generate("fat-tree:hosts=8,gpus=2,leaf=4").period(), 8);  // one leaf
  EXPECT_EQ(Fabric::generate("fat-tree:hosts=6,gpus=2,leaf=4").period(), 12) << "a partial leaf: nothing repeats";
  // Hosts 2-3 slower: the pattern repeats every 4 hosts only when 4 divides the hosts.
  EXPECT_EQ(Fabric::generate("flat:hosts=8,gpus=2,slow=2-3@100;6-7@100").period(), 8);
  EXPECT_EQ(Fabric::generate("flat:hosts=8,gpus=2,slow=2-3@100").period(), 16);
  EXPECT_TRUE(Fabric::generate("flat:hosts=8,gpus=2").linkClasses(3).empty()) << "not a whole number of hosts";
}

TEST(Folding, SchedulesThatDifferAreFoundAndEveryRankIsSimulated) {
  // A binary tree is not the same from every rank: the check finds a rank that differs, says
  // which, and the run simulates every rank.
  Fabric f = Fabric::generate("rail:hosts=8,gpus=2");
  auto build = allReduceOn(f, Algo::Tree, 1 << 20);
  FoldedSchedules fs = buildForSimulation(f, build, true, FoldCheck::Sampled, 1 << 20);
  EXPECT_EQ(fs.period, 16);
  EXPECT_EQ(fs.schedules.size(), 16u);
  EXPECT_NE(fs.why.find("is not rank"), std::string::npos) << fs.why;
  EXPECT_DOUBLE_EQ(simulate(f, fs.schedules, 4, SimOptions{}, fs.period).timeUs, simulate(f, everyRank(f, build), 4).timeUs);
}

TEST(Folding, SameUpToShiftComparesQueuesNotTheOrderOfEmission) {
  // Rank 1 emits its two sends in the other order than rank 0 (shifted): the executor's queues
  // (one per peer) are the same, so they are alike; a size or a dependency that differs is not.
  auto two = [](int rank, bool swapped, size_t second, bool secondAfterFirst) {
    RankSchedule s;
    s.rank = rank;
    s.nranks = 4;
    Step first;
    first.kind = StepKind::Send;
    first.peer = (rank + 1) % 4;
    first.src = {BufferId::Input, 0, 8};
    Step next = first;
    next.peer = (rank + 2) % 4;
    next.src.count = second;
    if (secondAfterFirst) {
      s.add(first);
      s.add(next, {0});
    } else if (swapped) {
      s.add(next);
      s.add(first);
    } else {
      s.add(first);
      s.add(next);
    }
    return s;
  };
  std::string why;
  EXPECT_TRUE(sameUpToShift(two(0, false, 16, false), two(1, true, 16, false), &why)) << why;
  EXPECT_FALSE(sameUpToShift(two(0, false, 16, false), two(1, true, 24, false), &why));
  EXPECT_NE(why.find("rank 1's schedule is not rank 0's"), std::string::npos) << why;
  EXPECT_FALSE(sameUpToShift(two(0, false, 16, false), two(1, false, 16, true), &why)) << "a dependency more";
}

TEST(Folding, ARelaxedFoldOfHierarchicalStaysCloseToTheFullRun) {
  // Hierarchical batches intra-host pieces by position in memory, so ranks on different hosts
  // differ in a few dependencies and the check refuses to fold; relaxed, the prediction must
  // stay within 2% of every rank simulated (docs/SIMULATOR.md has the measurement at 1,024).
  Fabric f = Fabric::generate("rail:hosts=8,gpus=4");
  auto build = allReduceOn(f, Algo::Hierarchical, 8 << 20);
  EXPECT_EQ(buildForSimulation(f, build, true, FoldCheck::Sampled, 1 << 20).period, 32) << "the check must refuse";
  FoldedSchedules fs = buildForSimulation(f, build, true, FoldCheck::Relaxed, 1 << 20);
  ASSERT_EQ(fs.period, 4);
  const double folded = simulate(f, fs.schedules, 4, SimOptions{}, fs.period).timeUs;
  const double full = simulate(f, everyRank(f, build), 4).timeUs;
  EXPECT_NEAR(folded, full, 0.02 * full);
  // A tree's ranks send different messages: relaxed or not, it is not folded.
  EXPECT_EQ(buildForSimulation(f, allReduceOn(f, Algo::Tree, 1 << 20), true, FoldCheck::Relaxed, 1 << 20).period, 32);
}

TEST(Folding, TooManyStepsIsAClearErrorSuggestingALargerSlice) {
  Fabric f = Fabric::generate("rail:hosts=8,gpus=2");
  try {
    buildForSimulation(f, allReduceOn(f, Algo::Tree, 64 << 20), false, FoldCheck::Sampled, 1000);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("larger slice"), std::string::npos) << e.what();
  }
}

TEST(Fabric, PathsCrossTheLinksTheShapeHas) {
  std::vector<uint32_t> path;
  Fabric ft = Fabric::generate("fat-tree:hosts=4,gpus=2,leaf=2,oversub=2");
  ft.path(0, 1, &path);  // same host: NVLink up and down
  EXPECT_EQ(path.size(), 2u);
  ft.path(0, 2, &path);  // same leaf: NIC up, NIC down
  EXPECT_EQ(path.size(), 2u);
  ft.path(0, 4, &path);  // other leaf: NIC, leaf up, spine down, NIC
  ASSERT_EQ(path.size(), 4u);
  EXPECT_EQ(ft.links()[path[1]].name, "leaf0->spine");
  // The trunk carries 1/oversub of the leaf's NIC bandwidth: 2 hosts x 2 GPUs x 50000 / 2.
  EXPECT_NEAR(ft.links()[path[1]].bytesPerUs, 100000, 1e-6);
  Fabric rail = Fabric::generate("rail:hosts=2,gpus=4");
  rail.path(1, 6, &path);  // host 0 gpu 1 -> host 1 gpu 2: over NVLink to gpu 2, then rail 2
  ASSERT_EQ(path.size(), 4u);
  EXPECT_EQ(rail.links()[path[2]].name, "host0.gpu2->rail2");
  rail.path(1, 5, &path);  // same rail: straight
  EXPECT_EQ(path.size(), 2u);
}

std::string writeFabricFile(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

TEST(Fabric, AFabricFileIsTheClusterFilesFormatWithAFabricLine) {
  // Two racks as groups (the fat tree's leaves), one host behind a slower uplink; the
  // runtime's parser reads the same file and skips the fabric line.
  const std::string text =
      "# two racks\n"
      "fabric fat-tree hosts=4 gpus=2 oversub=2 nic=400\n"
      "host host3 group=rackB gbps=100   # its two NICs together\n"
      "host host[01] group=rackA\n"
      "host host* group=rackB\n";
  Fabric f = Fabric::load(writeFabricFile("two_racks.fabric", text));
  std::vector<uint32_t> path;
  f.path(0, 2, &path);  // host0 -> host1: one leaf
  EXPECT_EQ(path.size(), 2u);
  f.path(2, 4, &path);  // host1 -> host2: across the spine
  ASSERT_EQ(path.size(), 4u);
  EXPECT_EQ(f.links()[path[1]].name, "leaf0->spine");
  EXPECT_NEAR(f.nicBytesPerUs(3), 50 * 125, 1e-9) << "100 Gbit/s over 2 NICs";
  EXPECT_NEAR(f.nicBytesPerUs(2), 400 * 125, 1e-9);
  EXPECT_EQ(f.period(), 8) << "leaves from groups: not folded";
  const ClusterFile asRuntime = parseClusterFile(text, "two_racks");
  EXPECT_EQ(asRuntime.hosts.size(), 3u);
  EXPECT_EQ(asRuntime.fabric.shape, "fat-tree");

  // Without the slow host, the file and the generator are one fabric: the same prediction.
  Fabric g = Fabric::generate("fat-tree:hosts=4,gpus=2,leaf=2,oversub=2");
  Fabric h = Fabric::load(writeFabricFile("even.fabric", "fabric fat-tree hosts=4 gpus=2 oversub=2\nhost host[01] group=a\nhost host* group=b\n"));
  auto build = allReduceOn(g, Algo::Ring, 1 << 20);
  EXPECT_DOUBLE_EQ(simulate(g, everyRank(g, build), 4).timeUs, simulate(h, everyRank(h, build), 4).timeUs);
}

TEST(Fabric, BadFabricFilesAreRefusedNamingTheLine) {
  const std::pair<const char*, const char*> bad[] = {
      {"host host0 gbps=10\n", "no 'fabric' line"},
      {"fabric torus hosts=2\n", "unknown shape"},
      {"fabric flat hosts=2\nfabric flat hosts=3\n", ":2: a second 'fabric' line"},
      {"fabric flat hosts=2 color=red\n", ":1: fabric: unknown key 'color'"},
      {"fabric flat hosts=2\nlink a b gbps=10\n", ":2: 'link' lines are not simulated"},
      {"fabric fat-tree hosts=2 gpus=1\nhost host0 group=a\n", "host0 has a group and host1 none"},
      {"fabric flat hosts=2 slow=0-0@10\n", "give the hosts their uplink"},
      {"fabric flat hosts=2\nhost host0 gbps=fast\n", ":2: gbps=fast"},
  };
  for (const auto& [text, want] : bad) {
    try {
      Fabric::load(writeFabricFile("bad.fabric", text));
      ADD_FAILURE() << text << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), chorusInvalidArgument) << text;
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
}

TEST(Fabric, BadSpecsAreRefusedNamingWhatIsWrong) {
  for (const char* bad : {"torus:hosts=2", "flat:hosts=0", "flat:gpus=x", "flat:color=red", "flat:hosts=2,slow=5-6@10",
                          "flat:hosts=4,slow=1@10"}) {
    try {
      Fabric::generate(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), chorusInvalidArgument) << bad;
    }
  }
}

}  // namespace
}  // namespace chorus::sim

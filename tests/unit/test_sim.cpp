// The simulator against numbers worked out by hand (docs/SIMULATOR.md): one message, two that
// share a link, max-min sharing with different bottlenecks, the ring all-reduce's bus bandwidth
// against the physics, deadlock detection, and the fabric generators' paths and errors.
#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "collectives/collective.h"
#include "sim/fabric.h"
#include "sim/simulator.h"

namespace chorus::sim {
namespace {

// One message of `bytes` from a to b (1-byte elements), nothing else.
void addMessage(std::vector<RankSchedule>& s, int a, int b, size_t bytes) {
  Step send;
  send.kind = StepKind::Send;
  send.peer = b;
  send.src = {BufferId::Input, 0, bytes};
  s[a].add(send);
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
  Step send;
  send.kind = StepKind::Send;
  send.peer = 2;
  send.src = {BufferId::Input, 0, 1};
  s[1].add(send, {0});  // after the receive of A (step 0 of rank 1)
  Step recv;
  recv.kind = StepKind::Recv;
  recv.peer = 1;
  recv.dst = {BufferId::Output, 0, 1};
  s[2].add(recv);
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

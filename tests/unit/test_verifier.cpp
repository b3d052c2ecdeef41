// The symbolic verifier (collectives/verifier.h) against hand-written schedules: each class of
// bug it must catch, shown on a small schedule that verifies before the bug is put in (so a
// test fails only because of that bug), plus direct-family schedules that must verify.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "collectives/collective.h"
#include "collectives/element_runs.h"
#include "collectives/rank_sets.h"
#include "collectives/verifier.h"

namespace chorus {
namespace {

Region in(size_t off, size_t n) { return {BufferId::Input, off, n}; }
Region out(size_t off, size_t n) { return {BufferId::Output, off, n}; }
Region scratch(size_t off, size_t n) { return {BufferId::Scratch, off, n}; }

Step send(int peer, Region src) { return {StepKind::Send, peer, 1, src, {}}; }
Step recv(int peer, Region dst) { return {StepKind::Recv, peer, 1, {}, dst}; }
Step recvReduce(int peer, Region local, Region dst) { return {StepKind::RecvReduce, peer, 1, local, dst}; }
Step copy(Region src, Region dst) { return {StepKind::Copy, -1, 1, src, dst}; }
Step divide(int divisor, Region dst) { return {StepKind::Divide, -1, divisor, {}, dst}; }

std::vector<CollArgs> argsFor(Coll coll, int p, size_t count, bool inPlace = false, bool average = false, int root = 0) {
  std::vector<CollArgs> perRank(
      p, CollArgs{.coll = coll, .nranks = p, .root = root, .count = count, .inPlace = inPlace, .average = average});
  for (int r = 0; r < p; ++r) perRank[r].rank = r;
  return perRank;
}

std::vector<RankSchedule> emptySchedules(int p) {
  std::vector<RankSchedule> s(p);
  for (int r = 0; r < p; ++r) {
    s[r].rank = r;
    s[r].nranks = p;
    s[r].algorithm = "test";
  }
  return s;
}

// Two ranks swap their inputs of n elements: each sends in[0, n) to the other and receives
// the other's at out[blockOf(1 - r) * n] (reduce: adds it to its own input into out[0, n)).
std::vector<RankSchedule> swapInputs(size_t n, bool reduce, size_t (*blockOf)(int rank) = nullptr) {
  auto s = emptySchedules(2);
  for (int r = 0; r < 2; ++r) {
    s[r].add(send(1 - r, in(0, n)));
    s[r].add(reduce ? recvReduce(1 - r, in(0, n), out(0, n)) : recv(1 - r, out(blockOf(1 - r) * n, n)));
  }
  return s;
}

std::vector<RankSchedule> directSchedules(const std::vector<CollArgs>& perRank) {
  std::vector<RankSchedule> s;
  for (const CollArgs& a : perRank) s.push_back(buildSchedule(Algo::Direct, a));
  return s;
}

// Expects the verifier to reject the schedules with an error containing every fragment.
void expectError(const std::vector<CollArgs>& args, const std::vector<RankSchedule>& s,
                 std::initializer_list<const char*> fragments) {
  VerifyResult v = verifyCollective(args, s);
  ASSERT_FALSE(v.ok) << "the verifier accepted a broken schedule";
  for (const char* f : fragments) EXPECT_NE(v.error.find(f), std::string::npos) << "missing '" << f << "' in: " << v.error;
}

void expectOk(const std::vector<CollArgs>& args, const std::vector<RankSchedule>& s) {
  VerifyResult v = verifyCollective(args, s);
  EXPECT_TRUE(v.ok) << v.error;
}

// ---- positive ----------------------------------------------------------------------------------

TEST(VerifierAccepts, DirectSchedulesOfEveryCollective) {
  for (int c = 0; c < static_cast<int>(Coll::kCount); ++c) {
    Coll coll = static_cast<Coll>(c);
    for (int p : {1, 2, 3, 5}) {
      for (bool inPlace : {false, true}) {
        if (inPlace && (coll == Coll::AlltoAll || coll == Coll::AlltoAllV)) continue;
        auto args = argsFor(coll, p, 7, inPlace, isReduction(coll), p - 1);
        for (CollArgs& a : args) {
          a.counts.assign(p, 0);
          a.displs.assign(p, 0);
          for (int j = 0; j < p; ++j) {
            a.counts[j] = (j * 3) % 4;          // 0, 3, 2, 1, 0: zeros included
            a.displs[j] = 2 * (p - 1 - j) * 4;  // reverse order, with gaps
          }
          // AlltoAllV: rank i sends (i + j) % 3 elements to rank j.
          a.sendCounts.assign(p, 0);
          a.recvCounts.assign(p, 0);
          a.sendDispls.assign(p, 0);
          a.recvDispls.assign(p, 0);
          for (int j = 0; j < p; ++j) {
            a.sendCounts[j] = (a.rank + j) % 3;
            a.recvCounts[j] = (j + a.rank) % 3;
            a.sendDispls[j] = 3 * j + 1;
            a.recvDispls[j] = 3 * (p - 1 - j);
          }
        }
        VerifyResult v = verifyAlgorithm(Algo::Direct, args);
        EXPECT_TRUE(v.ok) << collName(coll) << " p=" << p << " inPlace=" << inPlace << ": " << v.error;
      }
    }
  }
}

TEST(VerifierAccepts, CompatibilityFormTakesAnAverageFromItsDivides) {
  auto sum = argsFor(Coll::AllReduce, 4, 10);
  auto avg = argsFor(Coll::AllReduce, 4, 10, false, true);
  EXPECT_TRUE(verifyAllReduce(directSchedules(sum), 10, false).ok);
  EXPECT_TRUE(verifyAllReduce(directSchedules(avg), 10, false).ok);
}

TEST(VerifierAccepts, LargeRankCounts) {
  // 1024 ranks: 1023 messages into the root, each element a set of up to 1024 ranks.
  auto reduce = argsFor(Coll::Reduce, 1024, 3, false, true, 1000);
  EXPECT_TRUE(verifyAlgorithm(Algo::Direct, reduce).ok);
  auto scatter = argsFor(Coll::Scatter, 1024, 2, true, false, 5);
  EXPECT_TRUE(verifyAlgorithm(Algo::Direct, scatter).ok);
  // An in-place average and an all-gather of log-step families at 1024 (CI stays at p <= 1024
  // but for the 4096-rank case below; tools/chorus_verify runs the families at 16384).
  EXPECT_TRUE(verifyAlgorithm(Algo::HalvingDoubling, argsFor(Coll::AllReduce, 1024, 16 * 1024, true, true)[0]).ok);
  EXPECT_TRUE(verifyAlgorithm(Algo::RecursiveDoubling, argsFor(Coll::AllGather, 1024, 3)[0]).ok);
  VerifyResult tooMany = verifyAlgorithm(Algo::Direct, argsFor(Coll::AllGather, 65537, 1)[0]);
  EXPECT_FALSE(tooMany.ok);
  EXPECT_NE(tooMany.error.find("65537 ranks: the verifier supports 1 to 65536"), std::string::npos) << tooMany.error;
}

TEST(VerifierAccepts, EmptySchedulesForEmptyCalls) {
  for (int c = 0; c < static_cast<int>(Coll::kCount); ++c) {
    auto args = argsFor(static_cast<Coll>(c), 3, 0);
    for (CollArgs& a : args) {
      a.counts.assign(3, 0);
      a.displs.assign(3, 0);
      a.sendCounts.assign(3, 0);
      a.sendDispls.assign(3, 0);
      a.recvCounts.assign(3, 0);
      a.recvDispls.assign(3, 0);
    }
    expectOk(args, emptySchedules(3));
  }
}

// ---- reductions --------------------------------------------------------------------------------

// All-reduce of one element on 3 ranks by a chain: rank 2 -> rank 1 (reduces) -> rank 0
// (reduces: the total), then rank 0 sends the total back to both.
std::vector<RankSchedule> chainAllReduce() {
  auto s = emptySchedules(3);
  s[2].add(send(1, in(0, 1)));
  s[2].add(recv(0, out(0, 1)));
  uint32_t r1 = s[1].add(recvReduce(2, in(0, 1), out(0, 1)));
  uint32_t f1 = s[1].add(send(0, out(0, 1)), {r1});
  s[1].add(recv(0, out(0, 1)), {f1});
  uint32_t r0 = s[0].add(recvReduce(1, in(0, 1), out(0, 1)));
  s[0].add(send(1, out(0, 1)), {r0});
  s[0].add(send(2, out(0, 1)), {r0});
  return s;
}

TEST(VerifierCatches, DoubleCount) {
  auto args = argsFor(Coll::AllReduce, 3, 1);
  expectOk(args, chainAllReduce());
  // Rank 2 also sends its input straight to rank 0, which adds it to a sum that has it.
  auto s = chainAllReduce();
  s[2].add(send(0, in(0, 1)));
  s[0].add(recvReduce(2, out(0, 1), out(0, 1)), {1, 2});
  expectError(args, s, {"rank 0 step 3 (recvReduce from 2", "counts rank 2 twice in out[0]"});
}

TEST(VerifierCatches, MissingContribution) {
  auto args = argsFor(Coll::AllReduce, 3, 1);
  // Rank 1 forwards its own input instead of the partial sum: rank 2's input is lost.
  auto s = chainAllReduce();
  s[1].steps[1].src = in(0, 1);
  expectError(args, s, {"holds element 0 reduced over 2 of 3 ranks {0-1}", "should hold element 0 reduced over 3 of 3 ranks"});
}

TEST(VerifierCatches, ReducingDifferentElements) {
  // All-reduce of 2 elements on 2 ranks; rank 1 sends its elements swapped.
  auto args = argsFor(Coll::AllReduce, 2, 2);
  auto s = swapInputs(2, true);
  expectOk(args, s);
  s[1].scratchElems = 2;
  s[1].add(copy(in(1, 1), scratch(0, 1)));
  s[1].add(copy(in(0, 1), scratch(1, 1)));
  s[1].steps[0].src = scratch(0, 2);
  s[1].steps[0].depBegin = static_cast<uint32_t>(s[1].deps.size());
  s[1].steps[0].depCount = 2;
  s[1].deps.push_back(2);
  s[1].deps.push_back(3);
  expectError(args, s,
              {"rank 0 step 1 (recvReduce from 1", "combines element 0 of rank 0's input with element 1 of rank 1's input"});
}

// ---- dependencies and timing -------------------------------------------------------------------

// Reduce of one element to rank 0 on 3 ranks through rank 1, which accumulates in Scratch.
std::vector<RankSchedule> chainReduce(bool forwardWaits) {
  auto s = emptySchedules(3);
  s[2].add(send(1, in(0, 1)));
  s[1].scratchElems = 1;
  uint32_t c = s[1].add(copy(in(0, 1), scratch(0, 1)));
  uint32_t rr = s[1].add(recvReduce(2, scratch(0, 1), scratch(0, 1)), {c});
  if (forwardWaits) {
    s[1].add(send(0, scratch(0, 1)), {rr});
  } else {
    s[1].add(send(0, scratch(0, 1)), {c});
  }
  s[0].add(recvReduce(1, in(0, 1), out(0, 1)));
  return s;
}

TEST(VerifierCatches, MissingReadAfterWriteDependency) {
  auto args = argsFor(Coll::Reduce, 3, 1);
  expectOk(args, chainReduce(true));
  // The forward waits only for the copy: it would send scratch while rank 2's data lands in it.
  expectError(args, chainReduce(false), {"rank 1 step 2 (send to 0", "may be writing it", "rank 1 step 1 (recvReduce from 2"});
}

// All-gather of one element on 2 ranks where rank 0 stages its block through Scratch and then
// reuses Scratch for the block it receives.
std::vector<RankSchedule> stagedAllGather(bool receiveWaitsForSend) {
  auto s = emptySchedules(2);
  s[0].scratchElems = 1;
  uint32_t c = s[0].add(copy(in(0, 1), scratch(0, 1)));
  uint32_t sd = s[0].add(send(1, scratch(0, 1)), {c});
  uint32_t rv = receiveWaitsForSend ? s[0].add(recv(1, scratch(0, 1)), {sd}) : s[0].add(recv(1, scratch(0, 1)), {c});
  s[0].add(copy(scratch(0, 1), out(1, 1)), {rv});
  s[0].add(copy(in(0, 1), out(0, 1)));
  s[1].add(send(0, in(0, 1)));
  s[1].add(recv(0, out(0, 1)));
  s[1].add(copy(in(0, 1), out(1, 1)));
  return s;
}

TEST(VerifierCatches, MissingWriteAfterReadDependency) {
  auto args = argsFor(Coll::AllGather, 2, 1);
  expectOk(args, stagedAllGather(true));
  // The receive may land in Scratch before rank 1 has read the send out of it (a single-copy
  // transport reads late), whatever order the two messages happen to complete in.
  expectError(args, stagedAllGather(false),
              {"rank 0 step 2 (recv from 1", "may still be reading it", "rank 0 step 1 (send to 1"});
}

// Broadcast of 2 elements from rank 0 to rank 1, which rank 0 stages through Scratch.
std::vector<RankSchedule> stagedBroadcast() {
  auto s = emptySchedules(2);
  s[0].scratchElems = 2;
  uint32_t c = s[0].add(copy(in(0, 2), scratch(0, 2)));
  s[0].add(send(1, scratch(0, 2)), {c});
  s[0].add(copy(in(0, 2), out(0, 2)));
  s[1].add(recv(0, out(0, 2)));
  return s;
}

TEST(VerifierCatches, LocalStepOverwritingASendInFlight) {
  auto args = argsFor(Coll::Broadcast, 2, 2);
  auto s = stagedBroadcast();
  expectOk(args, s);
  s[0].add(copy(out(1, 1), scratch(0, 1)), {2});  // reuses scratch without waiting for the send
  expectError(args, s, {"rank 0 step 3 (copy", "writes scratch[0] while rank 0 step 1 (send to 1"});
}

TEST(VerifierCatches, SendPostedBeforeTheCopyThatFillsIt) {
  // The executor posts ready messages before it runs ready local steps: a send that does not
  // wait for the copy filling its buffer reads it first.
  auto s = stagedBroadcast();
  s[0].steps[1].depCount = 0;
  expectError(argsFor(Coll::Broadcast, 2, 2), s,
              {"rank 0 step 1 (send to 1, scratch[0+2]) reads scratch[0] before anything wrote it"});
}

TEST(VerifierCatches, TwoUnorderedLocalStepsOnTheSameElements) {
  // Two copies into out[0] with no dependency between them: either may land last.
  auto args = argsFor(Coll::AllReduce, 1, 2);
  auto s = emptySchedules(1);
  uint32_t c = s[0].add(copy(in(0, 2), out(0, 2)));
  s[0].add(copy(in(0, 1), out(0, 1)), {c});
  expectOk(args, s);
  s[0].steps[1].depCount = 0;
  expectError(args, s,
              {"rank 0 step 1 (copy, in[0+1] -> out[0+1]) writes out[0] while rank 0 step 0 (copy", "may also be writing it"});
}

TEST(VerifierCatches, TwoReceivesIntoOneRegion) {
  auto args = argsFor(Coll::Gather, 3, 1);
  auto s = emptySchedules(3);
  s[1].add(send(0, in(0, 1)));
  s[2].add(send(0, in(0, 1)));
  s[0].add(recv(1, out(1, 1)));
  s[0].add(recv(2, out(1, 1)));  // should be out[2]
  s[0].add(copy(in(0, 1), out(0, 1)));
  expectError(args, s, {"rank 0 step 1 (recv from 2", "may also be writing it"});
}

TEST(VerifierCatches, ReadBeforeWrite) {
  auto args = argsFor(Coll::AllReduce, 2, 2);
  auto s = swapInputs(2, true);
  s[1].steps[0].src = out(0, 2);  // out-of-place Output holds nothing yet
  expectError(args, s, {"rank 1 step 0 (send to 0, out[0+2])", "reads out[0] before anything wrote it"});

  // Scratch starts empty too.
  auto t = emptySchedules(2);
  t[0].scratchElems = 4;
  t[0].add(copy(scratch(2, 2), out(0, 2)));
  t[1].add(copy(in(0, 2), out(0, 2)));
  expectError(argsFor(Coll::Broadcast, 2, 2, false, false, 1), t,
              {"rank 0 step 0 (copy", "reads scratch[2] before anything wrote it"});
}

TEST(VerifierCatches, InputReadOnARankThatHasNone) {
  // Broadcast from rank 0: rank 1 has no Input, so forwarding "its input" is an error.
  auto args = argsFor(Coll::Broadcast, 3, 2);
  auto s = emptySchedules(3);
  s[0].add(send(1, in(0, 2)));
  s[0].add(copy(in(0, 2), out(0, 2)));
  uint32_t r1 = s[1].add(recv(0, out(0, 2)));
  s[1].add(send(2, out(0, 2)), {r1});
  s[2].add(recv(1, out(0, 2)));
  expectOk(args, s);
  s[1].steps[1].src = in(0, 2);
  expectError(args, s, {"rank 1 step 1 (send to 2, in[0+2])", "outside the buffer's 0 elements"});
}

TEST(VerifierCatches, RegionOutOfRange) {
  auto args = argsFor(Coll::AllReduce, 1, 4);
  auto s = emptySchedules(1);
  s[0].add(copy(in(0, 4), out(1, 4)));
  expectError(args, s, {"rank 0 step 0 (copy", "out[1+4] is outside the buffer's 4 elements"});
  s[0].steps[0] = copy(in(0, 4), out(0, 4));
  expectOk(args, s);
  s[0].scratchElems = 2;
  s[0].add(copy(out(0, 3), scratch(0, 3)), {0});
  expectError(args, s, {"scratch[0+3] is outside the buffer's 2 elements"});
  s[0].steps[1].dst = {static_cast<BufferId>(3), 0, 1};
  expectError(args, s, {"uses buffer 3"});
}

TEST(VerifierCatches, WritingTheCallersInput) {
  auto args = argsFor(Coll::AllReduce, 1, 4);
  auto s = emptySchedules(1);
  s[0].add(copy(in(0, 4), out(0, 4)));
  s[0].add(copy(out(0, 1), in(3, 1)), {0});
  expectError(args, s, {"writes in[3], which the call must leave unchanged (the caller's input)"});
}

TEST(VerifierCatches, WritingAGapOfAVOutput) {
  // AllGatherV on 2 ranks: blocks of 1 at out[0] and out[2]; out[1] is the caller's.
  auto args = argsFor(Coll::AllGatherV, 2, 0);
  for (CollArgs& a : args) {
    a.counts = {1, 1};
    a.displs = {0, 2};
  }
  auto s = swapInputs(1, false, [](int rank) { return static_cast<size_t>(2 * rank); });
  for (int r = 0; r < 2; ++r) s[r].add(copy(in(0, 1), out(2 * r, 1)));
  expectOk(args, s);
  s[1].steps[2].dst = out(1, 1);
  expectError(args, s, {"rank 1 step 2 (copy", "writes out[1]", "outside the blocks the collective defines"});
}

TEST(VerifierCatches, DeadlockAndNamesTheCycle) {
  auto args = argsFor(Coll::AllGather, 2, 1);
  auto s = emptySchedules(2);
  for (int r = 0; r < 2; ++r) {
    uint32_t rv = s[r].add(recv(1 - r, out(1 - r, 1)));
    s[r].add(send(1 - r, in(0, 1)), {rv});  // each waits to receive before it sends
    s[r].add(copy(in(0, 1), out(r, 1)));
  }
  expectError(args, s, {"never ran (deadlock)", "rank 0 step 0 (recv from 1", "rank 1 step 1 (send to 0", "(a cycle)"});
  // Sends first: fine.
  for (int r = 0; r < 2; ++r) s[r].steps[1].depCount = 0;
  expectOk(args, s);
}

TEST(VerifierCatches, UnmatchedMessages) {
  auto args = argsFor(Coll::Broadcast, 2, 2);
  auto s = emptySchedules(2);
  s[0].add(send(1, in(0, 1)));
  s[0].add(send(1, in(1, 1)));
  s[0].add(copy(in(0, 2), out(0, 2)));
  s[1].add(recv(0, out(0, 2)));  // one receive for two sends (of the right total size)
  expectError(args, s, {"message 0 from rank 0 to rank 1", "sends 1 elements", "receives 2"});
  s[1].steps[0].dst = out(0, 1);
  expectError(args, s, {"never ran", "rank 0 sends 2 messages to rank 1, which receives 1 from it"});
  s[1].add(recv(0, out(1, 1)));
  expectOk(args, s);
}

TEST(VerifierCatches, SizeMismatchOfALocalStep) {
  auto args = argsFor(Coll::AllReduce, 1, 4);
  auto s = emptySchedules(1);
  s[0].add(copy(in(0, 4), out(0, 3)));
  expectError(args, s, {"source and destination sizes differ"});
}

TEST(VerifierCatches, BadPeers) {
  auto args = argsFor(Coll::AllReduce, 2, 1);
  auto s = emptySchedules(2);
  s[0].add(send(0, in(0, 1)));
  expectError(args, s, {"rank 0 step 0 (send to 0", "bad peer 0"});
  s[0].steps[0] = send(2, in(0, 1));
  expectError(args, s, {"bad peer 2"});
  s[0].steps[0] = copy(in(0, 1), out(0, 1));
  s[0].steps[0].peer = 1;
  expectError(args, s, {"the executor would queue it as a receive"});
}

// ---- collectives' results ----------------------------------------------------------------------

TEST(VerifierCatches, WrongGatherBlock) {
  auto args = argsFor(Coll::Gather, 3, 2, false, false, 0);
  auto s = directSchedules(args);
  expectOk(args, s);
  // The root swaps where it puts rank 1's and rank 2's blocks.
  for (Step& st : s[0].steps)
    if (st.kind == StepKind::Recv) st.dst.offset = st.peer == 1 ? 4 : 2;
  expectError(args, s, {"rank 0: out[2] holds element 0 of rank 2's input; it should hold element 0 of rank 1's input"});
}

TEST(VerifierCatches, ResultOnTheWrongRank) {
  // Reduce to root 2, but the direct schedule is built for root 0.
  auto args = argsFor(Coll::Reduce, 3, 1, false, false, 2);
  auto wrong = argsFor(Coll::Reduce, 3, 1, false, false, 0);
  expectError(args, directSchedules(wrong), {"rank 0 step"});  // root 0 writes an Output it does not have
}

TEST(VerifierCatches, MissingDivide) {
  auto args = argsFor(Coll::AllReduce, 3, 5, false, true);
  auto s = directSchedules(args);
  expectOk(args, s);
  for (RankSchedule& rs : s)
    for (Step& st : rs.steps)
      if (st.kind == StepKind::Divide) {  // a no-op in its place, with the same dependencies
        st.kind = StepKind::Copy;
        st.src = st.dst;
      }
  expectError(args, s, {"holds element", "reduced over 3 of 3 ranks {0-2}; it should hold", "{0-2}, divided"});
}

TEST(VerifierCatches, DoubleDivide) {
  auto args = argsFor(Coll::Reduce, 3, 2, false, true, 1);
  auto s = directSchedules(args);
  uint32_t last = static_cast<uint32_t>(s[1].steps.size() - 1);
  ASSERT_EQ(s[1].steps[last].kind, StepKind::Divide);
  s[1].add(s[1].steps[last], {last});
  expectError(args, s, {"rank 1 step", "divides out[0] a second time"});
}

TEST(VerifierCatches, DivideThatDoesNotBelong) {
  // A sum that divides.
  auto sum = argsFor(Coll::Reduce, 2, 1);
  auto s = directSchedules(sum);
  s[0].add(divide(2, out(0, 1)), {0});
  expectError(sum, s, {"the call does not average"});
  // Divisor other than nranks.
  auto avg = argsFor(Coll::Reduce, 2, 1, false, true);
  s[0].steps.back().divisor = 3;
  expectError(avg, s, {"divides by 3, not by nranks = 2"});
  // Dividing a partial sum: rank 0 divides before the reduction.
  auto t = emptySchedules(2);
  uint32_t c = t[0].add(copy(in(0, 1), out(0, 1)));
  uint32_t d = t[0].add(divide(2, out(0, 1)), {c});
  t[0].add(recvReduce(1, out(0, 1), out(0, 1)), {d});
  t[1].add(send(0, in(0, 1)));
  expectError(avg, t, {"divides out[0], which holds element 0 of rank 0's input, before it is fully reduced"});
  // Reducing what was divided.
  t[0].steps[1] = divide(2, out(0, 1));
  auto u = directSchedules(avg);
  u[0].add(recvReduce(1, out(0, 1), out(0, 1)), {static_cast<uint32_t>(u[0].steps.size() - 1)});
  u[1].add(send(0, in(0, 1)));
  expectError(avg, u, {"reduces out[0] after it was divided"});
  // A Divide in a collective that is not a reduction.
  auto bc = argsFor(Coll::Broadcast, 2, 1, false, true);
  auto b = directSchedules(bc);
  b[1].add(divide(2, out(0, 1)), {0});
  expectError(bc, b, {"broadcast is not a reduction"});
}

// ---- in place ----------------------------------------------------------------------------------

TEST(VerifierCatches, InPlaceAliasingHazard) {
  // Direct all-reduce: rank r sends chunk j of Input to rank j, then receives chunk j of the
  // result into Output. In place those are the same bytes, so the receive must wait for the
  // send; out of place it need not. Drop those waits: out of place still verifies, in place
  // it must not.
  for (bool inPlace : {false, true}) {
    auto args = argsFor(Coll::AllReduce, 4, 64, inPlace);
    auto s = directSchedules(args);
    expectOk(args, s);
    int dropped = 0;
    for (RankSchedule& rs : s)
      for (Step& st : rs.steps)
        if (st.kind == StepKind::Recv && st.depCount == 1 && rs.steps[rs.deps[st.depBegin]].kind == StepKind::Send) {
          st.depCount = 0;
          ++dropped;
        }
    EXPECT_EQ(dropped > 0, inPlace);  // out of place, direct has no such waits
    if (inPlace) {
      expectError(args, s, {"may still be reading it"});
    } else {
      expectOk(args, s);
    }
  }
}

TEST(VerifierCatches, InPlaceWriteOverTheInput) {
  // In-place all-gather on 2 ranks: rank r's Input is out[r].
  auto args = argsFor(Coll::AllGather, 2, 1, true);
  auto s = swapInputs(1, false, [](int rank) { return static_cast<size_t>(rank); });
  expectOk(args, s);
  // Rank 0 receives into its own slot first, which is its input, then sends "its input".
  s[0] = emptySchedules(2)[0];
  uint32_t rv = s[0].add(recv(1, out(0, 1)));
  s[0].add(send(1, in(0, 1)), {rv});
  expectError(args, s, {"rank 0: out[0] holds element 0 of rank 1's input; it should hold element 0 of rank 0's input"});
}

// ---- arguments ---------------------------------------------------------------------------------

TEST(VerifierCatches, InconsistentArguments) {
  auto args = argsFor(Coll::AlltoAllV, 2, 0);
  for (CollArgs& a : args) {
    a.sendCounts = {1, 1};
    a.sendDispls = {0, 1};
    a.recvCounts = {1, 1};
    a.recvDispls = {0, 1};
  }
  EXPECT_TRUE(verifyAlgorithm(Algo::Direct, args).ok);
  args[1].recvCounts[0] = 2;
  VerifyResult v = verifyCollective(args, emptySchedules(2));
  ASSERT_FALSE(v.ok);
  EXPECT_NE(v.error.find("rank 0 sends 1 elements to rank 1, which expects 2"), std::string::npos) << v.error;
  auto a2 = argsFor(Coll::AllReduce, 2, 4);
  a2[1].count = 5;
  v = verifyCollective(a2, emptySchedules(2));
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.error.find("rank 1's arguments differ"), std::string::npos) << v.error;
  v = verifyCollective(a2, emptySchedules(3));
  EXPECT_FALSE(v.ok);
}

TEST(VerifierCatches, ABuilderThatThrows) {
  CollArgs a;
  a.coll = Coll::Gather;
  a.nranks = 2;
  VerifyResult v = verifyAlgorithm(Algo::Ring, a);  // ring has no gather
  ASSERT_FALSE(v.ok);
  EXPECT_NE(v.error.find("building the ring gather schedule failed"), std::string::npos) << v.error;
}

// ---- the representation at scale -------------------------------------------------------------

TEST(RankSets, ScatteredSetsBecomeBitsetsAndBackToRuns) {
  RankSets sets(1000);
  ASSERT_EQ(sets.maxRuns(), 16u);  // 1000 bits are 16 words: more runs than that cost more
  uint32_t evens = sets.single(0);
  for (int r = 2; r < 40; r += 2) evens = sets.unite(evens, sets.single(r));
  EXPECT_EQ(sets.size(evens), 20);
  EXPECT_EQ(sets.runs(evens), 20u);
  EXPECT_TRUE(sets.isBitset(evens));
  EXPECT_EQ(sets.text(evens), "{0,2,4,6,8,10,12,14,...}");
  EXPECT_EQ(sets.unite(evens, sets.single(4)), RankSets::kOverlap);
  EXPECT_EQ(sets.firstCommon(evens, sets.unite(sets.single(7), sets.single(8))), 8);
  // Filling the gaps: the union is one run again, and the same id as the run built directly.
  uint32_t odds = sets.single(1);
  for (int r = 3; r < 40; r += 2) odds = sets.unite(odds, sets.single(r));
  uint32_t all40 = sets.unite(evens, odds);
  EXPECT_FALSE(sets.isBitset(all40));
  EXPECT_EQ(sets.runs(all40), 1u);
  EXPECT_EQ(sets.text(all40), "{0-39}");
  uint32_t low = sets.single(0);
  for (int r = 1; r < 40; ++r) low = sets.unite(low, sets.single(r));
  EXPECT_EQ(low, all40);
  // A bitset and a run: disjoint, then overlapping at the run's end.
  uint32_t tail = sets.unite(sets.unite(sets.single(998), sets.single(999)), sets.single(997));
  EXPECT_EQ(sets.text(tail), "{997-999}");
  uint32_t both = sets.unite(evens, tail);
  EXPECT_EQ(sets.size(both), 23);
  EXPECT_TRUE(sets.contains(both, 998));
  EXPECT_FALSE(sets.contains(both, 1));
  EXPECT_EQ(sets.unite(both, sets.single(38)), RankSets::kOverlap);
  // The largest rank count: every single rank, the full set.
  RankSets big(RankSets::kMaxRanks);
  EXPECT_EQ(big.size(big.full()), RankSets::kMaxRanks);
  EXPECT_EQ(big.unite(big.single(65535), big.single(0)), big.unite(big.single(0), big.single(65535)));
  EXPECT_EQ(big.text(big.full()), "{0-65535}");
}

TEST(ElementRuns, SplitsAndMergesAffineRuns) {
  ElementRuns e(100);
  EXPECT_EQ(e.runCount(), 1u);
  // Two blocks whose symbols continue each other (rank 0's ids 0-9, rank 1's 10-19): one run.
  e.write(20, 10, {0, ElementSym::kOneRank, false});
  e.write(30, 10, {10, ElementSym::kOneRank, false});
  EXPECT_EQ(e.runCount(), 3u);  // nothing, ids 0-19, nothing
  // Marking the middle as read splits it; unmarking merges it back.
  auto read = [](int delta) {
    return [delta](ElementRun& run, uint64_t, uint64_t) {
      run.readers = static_cast<uint16_t>(run.readers + delta);
      return true;
    };
  };
  e.update(25, 35, read(1));
  EXPECT_EQ(e.runCount(), 5u);
  uint64_t seen = 0;
  e.scan(20, 40, [&](const ElementSym& s, const ElementRun& run, uint64_t b, uint64_t end) {
    EXPECT_EQ(s.value, b - 20);  // element 20 + k holds id k
    EXPECT_EQ(run.readers, b >= 25 && b < 35 ? 1 : 0);
    seen += end - b;
    return true;
  });
  EXPECT_EQ(seen, 20u);
  e.update(25, 35, read(-1));
  EXPECT_EQ(e.runCount(), 3u);
  // A block that does not continue stays apart; a reduced run over one set merges.
  e.write(40, 5, {7, ElementSym::kOneRank, false});
  EXPECT_EQ(e.runCount(), 4u);
  e.write(50, 5, {3, 9, false});
  e.write(55, 5, {8, 9, false});
  e.write(60, 5, {13, 9, true});  // divided: another symbol
  EXPECT_EQ(e.runCount(), 7u);    // nothing, 20-40, 40-45, nothing, 50-60, 60-65, nothing
  EXPECT_FALSE(e.dense());
}

TEST(ElementRuns, DataWithoutShapeBecomesCells) {
  // Blocks of 4 from unrelated places (an all-to-all's): past one run per 64 elements the
  // rank keeps a cell per element, with the same contents.
  ElementRuns e(4096);
  for (uint64_t b = 0; b < 40; ++b) e.write(4 * b, 4, {1000 * b, ElementSym::kOneRank, false});
  EXPECT_FALSE(e.dense());
  for (uint64_t b = 40; b < 80; ++b) e.write(4 * b, 4, {1000 * b, ElementSym::kOneRank, false});
  EXPECT_TRUE(e.dense());
  EXPECT_EQ(e.runCount(), 4096u);
  int checked = 0;
  e.scan(0, 320, [&](const ElementSym& s, const ElementRun&, uint64_t b, uint64_t end) {
    EXPECT_EQ(end, b + 1);
    EXPECT_EQ(s.value, 1000 * (b / 4) + b % 4);
    return ++checked > 0;
  });
  EXPECT_EQ(checked, 320);
  EXPECT_TRUE(e.scan(320, 4096, [](const ElementSym& s, const ElementRun&, uint64_t, uint64_t) { return s.set == 0; }));
}

// Reduce of one element to rank p-1 along a chain that visits the even ranks first, then the
// odd ones: the partial sums are scattered sets (bitsets past a few runs). `twice`, if >= 0,
// also sends rank `twice`'s input to the 20th rank of the chain, which adds it in.
std::vector<RankSchedule> stridedChainReduce(int p, int twice) {
  std::vector<int> order;
  for (int r = 0; r < p; r += 2) order.push_back(r);
  for (int r = 1; r < p; r += 2) order.push_back(r);
  auto s = emptySchedules(p);
  s[order[0]].add(send(order[1], in(0, 1)));
  for (int i = 1; i < p; ++i) {
    RankSchedule& rs = s[order[i]];
    const bool root = i == p - 1;
    if (!root) rs.scratchElems = 1;
    Region acc = root ? out(0, 1) : scratch(0, 1);
    uint32_t rr = rs.add(recvReduce(order[i - 1], in(0, 1), acc));
    if (i == 20 && twice >= 0) {
      rr = rs.add(recvReduce(twice, acc, acc), {rr});
      s[twice].add(send(order[i], in(0, 1)));
    }
    if (!root) rs.add(send(order[i + 1], acc), {rr});
  }
  return s;
}

TEST(VerifierCatches, DoubleCountInAScatteredSet) {
  const int p = 1024;
  auto args = argsFor(Coll::Reduce, p, 1, false, false, p - 1);
  expectOk(args, stridedChainReduce(p, -1));
  expectError(args, stridedChainReduce(p, 10),
              {"rank 40 step 1 (recvReduce from 10", "counts rank 10 twice in scratch[0]",
               "local element 0 reduced over 21 of 1024 ranks {0,2,4,6,8,10,12,14,...}", "incoming element 0 of rank 10's input"});
}

TEST(VerifierCatches, MissingDependencyAt4096Ranks) {
  // The halving-doubling all-reduce at 4096 ranks verifies; rank 1234's first send that
  // forwards a partial sum, freed from waiting for the receive that produces it, does not.
  auto args = argsFor(Coll::AllReduce, 4096, 16 * 4096);
  std::vector<RankSchedule> s;
  for (const CollArgs& a : args) s.push_back(buildSchedule(Algo::HalvingDoubling, a));
  expectOk(args, s);
  uint32_t i = 0;
  RankSchedule& rs = s[1234];
  while (!(rs.steps[i].kind == StepKind::Send && rs.steps[i].depCount > 0 &&
           rs.steps[rs.deps[rs.steps[i].depBegin]].kind == StepKind::RecvReduce))
    ++i;
  rs.steps[i].depCount = 0;
  std::string step = "rank 1234 step " + std::to_string(i) + " (send to ";
  // Out of place, the partial sum's first element is not there yet when the send is posted.
  expectError(args, s, {step.c_str(), "out[0+16384]) reads out[0] before anything wrote it"});
}

}  // namespace
}  // namespace chorus

// Whether waits spin before they yield (base/deadline.h, CHORUS_SPIN): not on a host that runs
// more ranks of the communicator than it has CPUs, unless the user says so; results stay exact.
#include <gtest/gtest.h>

#include <chorus/chorus.h>

#include <string>
#include <vector>

#include "base/deadline.h"
#include "fixtures/ranks.h"
#include "topology/node_topology.h"

namespace chorus {
namespace {

using test::allRanksSucceeded;
using test::runRanksWithId;
using test::ScopedEnv;

// p ranks join, record whether this process now spins, and run one checked all-reduce.
// Exit codes: 0 as expected, 2 init failed, 3 wrong result, 4 the other spin setting.
std::vector<test::RankExit> joinAndCheck(int p, bool expectSpin) {
  return runRanksWithId(p, [&](int rank, const chorusUniqueId& id) {
    chorusComm_t comm = nullptr;
    if (chorusCommInitRank(&comm, p, id, rank) != chorusSuccess) return 2;
    const bool spins = Backoff::spins();
    std::vector<float> buf(1009, static_cast<float>(rank + 1));
    chorusResult_t r = chorusAllReduce(buf.data(), buf.data(), buf.size(), chorusFloat32, chorusSum, comm, nullptr);
    chorusCommDestroy(comm);
    if (r != chorusSuccess) return 3;
    for (float x : buf)
      if (x != static_cast<float>(p * (p + 1) / 2)) return 3;
    return spins == expectSpin ? 0 : 4;
  });
}

TEST(WaitPolicy, AnOversubscribedHostYieldsInsteadOfSpinning) {
  const int cpus = localTopology().pus;
  if (cpus + 1 > 8) GTEST_SKIP() << cpus << " CPUs: oversubscribing them takes more than the 8 ranks a test may start";
  ScopedEnv spin("CHORUS_SPIN", "auto");
  EXPECT_TRUE(allRanksSucceeded(joinAndCheck(cpus + 1, false)));
  if (cpus >= 2) EXPECT_TRUE(allRanksSucceeded(joinAndCheck(cpus, true)));
}

TEST(WaitPolicy, TheUsersSettingWins) {
  {
    ScopedEnv spin("CHORUS_SPIN", "0");
    EXPECT_TRUE(allRanksSucceeded(joinAndCheck(2, false)));
  }
  {
    ScopedEnv spin("CHORUS_SPIN", "1");
    EXPECT_TRUE(allRanksSucceeded(joinAndCheck(3, true)));
  }
}

TEST(WaitPolicy, ABadSettingIsRefusedByName) {
  chorusUniqueId id;
  ASSERT_EQ(chorusGetUniqueId(&id), chorusSuccess);
  ScopedEnv spin("CHORUS_SPIN", "sometimes");
  EXPECT_EQ(chorusGetUniqueId(&id), chorusInvalidArgument);  // it reads the environment too
  chorusComm_t comm = nullptr;
  EXPECT_EQ(chorusCommInitRank(&comm, 1, id, 0), chorusInvalidArgument);
  EXPECT_NE(std::string(chorusGetLastError(nullptr)).find("CHORUS_SPIN"), std::string::npos) << chorusGetLastError(nullptr);
}

}  // namespace
}  // namespace chorus

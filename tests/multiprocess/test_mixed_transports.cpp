// Mixed transports in one communicator: ranks on emulated hosts (CHORUS_HOSTID) grouped by a
// cluster file, with CHORUS_TRANSPORT_MAP giving each pair class its own transport: local pairs
// over shm, pairs inside a group over TCP, pairs across groups over UCX, libfabric or a plugin
// loaded with dlopen. Every pair is connected (an all-to-all), its connection's kind is checked
// against the map, and all-reduces with several algorithms are checked exactly. A second test
// makes one rank lack a transport (its libfabric provider does not exist) so that pairs with it
// fall back to the next entry of the list while the other pairs keep the first.
#include <gtest/gtest.h>

#include <chorus/chorus.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/api_internal.h"
#include "core/comm.h"
#include "fixtures/ranks.h"
#include "fixtures/typed_data.h"

namespace chorus::test {
namespace {

// Hosts a, b (group g1) and c, d (group g2); a and c hold two ranks each.
const char* const kHostOf[] = {"a", "a", "b", "c", "c", "d"};
constexpr int kRanks = 6;
const char* const kClusterFile = "host a group=g1\nhost b group=g1\nhost c group=g2\nhost d group=g2\n";

std::string groupOf(const char* host) { return (!strcmp(host, "a") || !strcmp(host, "b")) ? "g1" : "g2"; }

// Runs an all-to-all (so every pair connects) and checks every connection's kind with
// expectKind(rank, peer); then all-reduces of several sizes, every result checked exactly.
// The all-to-all is pairwise so that every pair connects.
constexpr const char* kAlgos = "allreduce:0-16K:tree,16K-64K:hierarchical,64K-inf:ring;alltoall:pairwise";
int exercise(chorusComm_t comm, int rank, const std::function<std::string(int, int)>& expectKind) {
  int bad = 0;
  const size_t per = 1031;  // a prime: uneven fragments and slices
  std::vector<int32_t> send(per * kRanks), recv(per * kRanks, -1);
  for (int q = 0; q < kRanks; ++q)
    for (size_t i = 0; i < per; ++i) send[q * per + i] = rank * 1000003 + q * 7919 + static_cast<int32_t>(i);
  if (chorusAlltoAll(send.data(), recv.data(), per, chorusInt32, comm, nullptr) != chorusSuccess) {
    fprintf(stderr, "rank %d: alltoall failed: %s\n", rank, chorusGetLastError(comm));
    return 100;
  }
  for (int q = 0; q < kRanks; ++q)
    for (size_t i = 0; i < per; ++i) bad += recv[q * per + i] != q * 1000003 + rank * 7919 + static_cast<int32_t>(i);
  const Communicator& c = communicatorOf(comm);
  for (int q = 0; q < kRanks; ++q) {
    if (q == rank) continue;
    const char* kind = c.connectionKind(q);
    std::string want = expectKind(rank, q);
    if (!kind || want != kind) {
      fprintf(stderr, "rank %d: connection to rank %d is %s, expected %s\n", rank, q, kind ? kind : "(none)", want.c_str());
      ++bad;
    }
  }
  // CHORUS_ALGO (set by the tests) gives each size range its own algorithm.
  for (size_t count : {size_t{0}, size_t{1}, size_t{1999}, size_t{7919}, size_t{300007}}) {
    std::vector<char> in = makeBuffer(chorusFloat32, count), out = makeBuffer(chorusFloat32, count);
    fillInput(in.data(), chorusFloat32, chorusSum, count, rank);
    if (chorusAllReduce(in.data(), out.data(), count, chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) {
      fprintf(stderr, "rank %d: allreduce of %zu failed: %s\n", rank, count, chorusGetLastError(comm));
      return 102;
    }
    size_t wrong = countWrong(out.data(), chorusFloat32, chorusSum, count, kRanks);
    if (wrong) fprintf(stderr, "rank %d: %zu of %zu wrong\n", rank, wrong, count);
    bad += wrong != 0;
  }
  return bad;
}

// The 6 ranks on their emulated hosts with the cluster file and the map; perRank sets what differs
// per rank before init; the connection kinds are checked against expectKind.
void runMixed(const std::string& map, const std::function<void(int rank)>& perRank,
              const std::function<std::string(int, int)>& expectKind) {
  std::string file = "/tmp/chorus-test-mixed-" + std::to_string(getpid());
  std::ofstream(file) << kClusterFile;
  ScopedEnv timeout("CHORUS_TIMEOUT", "60");
  ScopedEnv algos("CHORUS_ALGO", kAlgos);
  ScopedEnv cluster("CHORUS_CLUSTER_FILE", file.c_str());
  ScopedEnv transportMap("CHORUS_TRANSPORT_MAP", map.c_str());
  ScopedEnv slices("CHORUS_NET_CHUNK", "64K");  // several fragments per message
  auto exits = runRanksWithId(kRanks, [&](int rank, const chorusUniqueId& id) {
    setenv("CHORUS_HOSTID", kHostOf[rank], 1);
    perRank(rank);
    chorusComm_t comm = nullptr;
    if (chorusCommInitRank(&comm, kRanks, id, rank) != chorusSuccess) {
      fprintf(stderr, "rank %d: init failed: %s\n", rank, chorusGetLastError(nullptr));
      return 2;
    }
    int bad = exercise(comm, rank, expectKind);
    chorusCommDestroy(comm);
    return bad;
  });
  unlink(file.c_str());
  EXPECT_TRUE(allRanksSucceeded(exits));
}

struct Mix {
  const char* name;
  const char* network;  // transport of pairs across groups
  const char* kind;     // the connection kind those pairs show
};

class MixedTransports : public ::testing::TestWithParam<Mix> {};

TEST_P(MixedTransports, EveryPairClassOnItsOwnTransport) {
  const Mix mix = GetParam();
#ifndef CHORUS_HAVE_UCX
  if (!strcmp(mix.network, "ucx") || !strcmp(mix.name, "plugin")) GTEST_SKIP() << "built without UCX (CHORUS_WITH_UCX=OFF)";
#endif
#ifndef CHORUS_HAVE_OFI
  if (!strcmp(mix.network, "ofi")) GTEST_SKIP() << "built without libfabric (CHORUS_WITH_OFI=OFF)";
#endif
  ScopedEnv plugin("CHORUS_NET_PLUGIN", !strcmp(mix.name, "plugin") ? CHORUS_NET_PLUGIN_DIR "/libchorus-net-ucx.so" : "");
  ScopedEnv provider("CHORUS_OFI_PROVIDER", "tcp;ofi_rxm");
  runMixed(std::string("local=shm,rack=tcp,network=") + mix.network, [](int) {}, [&](int r, int q) -> std::string {
    if (!strcmp(kHostOf[r], kHostOf[q])) return "shm";
    return groupOf(kHostOf[r]) == groupOf(kHostOf[q]) ? "tcp" : mix.kind;
  });
}

INSTANTIATE_TEST_SUITE_P(Networks, MixedTransports,
                         ::testing::Values(Mix{"ucx", "ucx", "ucx"}, Mix{"ofi", "ofi", "ofi"}, Mix{"plugin", "plugin", "plugin:ucx"}),
                         [](const auto& info) { return std::string(info.param.name); });

// Availability: rank 5 cannot make the ofi transport (no such provider), so its pairs across
// groups fall back to TCP as the list "ofi|tcp" allows, while the other cross-group pairs use ofi.
TEST(MixedTransportsFallback, PairsWithARankLackingOfiUseTheNextChoice) {
#ifndef CHORUS_HAVE_OFI
  GTEST_SKIP() << "built without libfabric (CHORUS_WITH_OFI=OFF)";
#endif
  runMixed(
      "local=shm,rack=tcp,network=ofi|tcp", [](int rank) { setenv("CHORUS_OFI_PROVIDER", rank == 5 ? "no-such-provider" : "tcp;ofi_rxm", 1); },
      [](int r, int q) -> std::string {
        if (!strcmp(kHostOf[r], kHostOf[q])) return "shm";
        if (groupOf(kHostOf[r]) == groupOf(kHostOf[q])) return "tcp";
        return r == 5 || q == 5 ? "tcp" : "ofi";
      });
}

// Without a fallback in the list, a rank that cannot make the transport fails at init with the
// reason, instead of silently using something else.
TEST(MixedTransportsFallback, NoFallbackListedMeansAClearInitError) {
#ifndef CHORUS_HAVE_OFI
  GTEST_SKIP() << "built without libfabric (CHORUS_WITH_OFI=OFF)";
#endif
  ScopedEnv timeout("CHORUS_TIMEOUT", "20");
  ScopedEnv map("CHORUS_TRANSPORT_MAP", "network=ofi");
  ScopedEnv provider("CHORUS_OFI_PROVIDER", "no-such-provider");
  auto exits = runRanksWithId(1, [&](int rank, const chorusUniqueId& id) {
    chorusComm_t comm = nullptr;
    chorusResult_t r = chorusCommInitRank(&comm, 1, id, rank);
    std::string text = chorusGetLastError(nullptr);
    if (r != chorusInvalidUsage || text.find("no transport for rack pairs") == std::string::npos || text.find("ofi") == std::string::npos) {
      fprintf(stderr, "unexpected: result %d, \"%s\"\n", r, text.c_str());
      return 1;
    }
    return 0;
  });
  EXPECT_TRUE(allRanksSucceeded(exits));
}

}  // namespace
}  // namespace chorus::test

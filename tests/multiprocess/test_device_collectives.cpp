// Every collective x algorithm on device buffers of the emulated device (CHORUS_DEVICE_PLUGIN=emu:
// memory the host cannot touch, copies that land 20 us late; CHORUS_TEST_DEVICE_PLUGIN=cuda runs
// the same on a GPU, tools/device_check.sh), at p in {1, 2, 3, 5}, in place
// and out of place, awkward counts, with every byte of every buffer checked after it is copied
// back (tests/fixtures/coll_check). Staging slices are 1 KiB here, so that the larger counts
// run through many slices and the executor's gate decides which step may run when. Then the
// device-stream contract: a call on a chorus stream bound to a device stream reads what the
// device stream wrote before it and is done before what comes after it.
#include <chorus/chorus.h>
#include <chorus/device_plugin.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collectives/collective.h"
#include "fixtures/coll_check.h"
#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

// One rank's pass over every collective `algo` serves; returns the failed cases.
int deviceSweep(chorusComm_t comm, int rank, int p, Algo algo) {
  int failures = 0;
  uint64_t salt = 0;
  auto one = [&](CollCase c, const char* what) {
    c.salt = ++salt;
    c.onDevice = true;
    if (isVForm(c.coll)) makeVLayout(c, p, c.salt, 700);
    int r = runCase(comm, rank, p, c, std::string(algoName(algo)) + " np" + std::to_string(p) + " " + what);
    failures += r != 0;
    return r != 2;  // false: the communicator is broken
  };
  for (int i = 0; i < static_cast<int>(Coll::kCount); ++i) {
    Coll coll = static_cast<Coll>(i);
    if (!algoServes(algo, coll)) continue;
    int k = 0;
    for (size_t count : {size_t{0}, size_t{1}, size_t{13}, size_t{20011}})
      for (bool inPlace : {false, true}) {
        CollCase c;
        c.coll = coll;
        c.dtype = isReduction(coll) ? (k % 2 ? chorusInt32 : chorusFloat32) : chorusFloat16;
        c.op = isReduction(coll) ? kBuiltinOps[k % 5] : chorusSum;
        c.count = count;
        c.inPlace = inPlace;
        c.root = (k / 2) % p;
        ++k;
        if (!one(c, "device")) return failures + 1;
      }
  }
  if (chorusBarrier(comm, nullptr) != chorusSuccess) ++failures;
  if (rank == 0) fprintf(stderr, "%s np%d: %llu device calls checked\n", algoName(algo), p, static_cast<unsigned long long>(salt));
  return failures;
}

// emu, or the plugin CHORUS_TEST_DEVICE_PLUGIN names (tools/device_check.sh runs these on cuda).
const char* testPlugin() {
  const char* p = getenv("CHORUS_TEST_DEVICE_PLUGIN");
  return p && *p ? p : "emu";
}

class DeviceCollectives : public ::testing::TestWithParam<Algo> {};

TEST_P(DeviceCollectives, EveryCollectiveOnEmulatedDeviceBuffersIsExact) {
  const Algo algo = GetParam();
  const std::string tune = tuneStringFor(algo);
  ScopedEnv plugin("CHORUS_DEVICE_PLUGIN", testPlugin());
  ScopedEnv delay("CHORUS_EMU_COPY_DELAY_US", "20");
  ScopedEnv slice("CHORUS_DEVICE_SLICE", "1024");
  ScopedEnv forced("CHORUS_ALGO", tune.c_str());
  for (int p : {1, 2, 3, 5}) {
    auto exits = runRanksWithComm(p, [&](chorusComm_t comm, int rank) { return deviceSweep(comm, rank, p, algo) ? 1 : 0; });
    for (size_t r = 0; r < exits.size(); ++r)
      EXPECT_TRUE(exits[r].exited && exits[r].code == 0) << algoName(algo) << " np" << p << " rank " << r << ": " << exits[r].describe();
  }
}

INSTANTIATE_TEST_SUITE_P(EveryFamily, DeviceCollectives,
                         ::testing::Values(Algo::Ring, Algo::Tree, Algo::HalvingDoubling, Algo::RecursiveDoubling, Algo::Bruck,
                                           Algo::Pairwise, Algo::Direct, Algo::Hierarchical, Algo::Weighted),
                         [](const ::testing::TestParamInfo<Algo>& info) { return std::string(algoName(info.param)); });

// Host send buffer, device receive buffer and the reverse, V forms, PreMulSum (which scales
// the input after it has arrived), and a group mixing device and host calls.
TEST(DeviceBuffers, MixedHostAndDeviceArgumentsVFormsPreMulSumAndGroups) {
  ScopedEnv plugin("CHORUS_DEVICE_PLUGIN", testPlugin());
  ScopedEnv slice("CHORUS_DEVICE_SLICE", "4096");
  for (int p : {2, 3}) {
    auto exits = runRanksWithComm(p, [&](chorusComm_t comm, int rank) {
      int failures = 0;
      uint64_t salt = 100;
      for (Coll coll : {Coll::AllGatherV, Coll::ReduceScatterV, Coll::AlltoAllV}) {
        CollCase c;
        c.coll = coll;
        c.dtype = chorusInt32;
        c.salt = ++salt;
        c.onDevice = true;
        makeVLayout(c, p, c.salt, 3000);
        failures += runCase(comm, rank, p, c, "v form") != 0;
      }
      for (Coll coll : {Coll::AllReduce, Coll::ReduceScatter}) {
        CollCase c;
        c.coll = coll;
        c.dtype = chorusFloat32;
        c.preMulScalar = 2;
        c.count = 5003;
        c.salt = ++salt;
        c.onDevice = true;
        if (createPreMulSum(comm, c.dtype, c.preMulScalar, &c.op) != chorusSuccess) return 2;
        failures += runCase(comm, rank, p, c, "premulsum") != 0;
        if (chorusRedOpDestroy(c.op, comm) != chorusSuccess) return 2;
      }
      // Mixed: device input, host output, and the reverse.
      const size_t n = 7001;
      std::vector<float> host(n), out(n);
      for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>((i % 31) + rank);
      auto dev = deviceAlloc(n * sizeof(float));
      deviceCopySync(dev.get(), host.data(), n * sizeof(float));
      if (chorusAllReduce(dev.get(), out.data(), n, chorusFloat32, chorusSum, comm, nullptr) != chorusSuccess) return 2;
      for (size_t i = 0; i < n; ++i)
        failures += out[i] != static_cast<float>(p * (i % 31) + p * (p - 1) / 2);
      auto dev2 = deviceAlloc(n * sizeof(float));
      if (chorusAllReduce(host.data(), dev2.get(), n, chorusFloat32, chorusMax, comm, nullptr) != chorusSuccess) return 2;
      deviceCopySync(out.data(), dev2.get(), n * sizeof(float));
      for (size_t i = 0; i < n; ++i) failures += out[i] != static_cast<float>((i % 31) + p - 1);
      // A group: a device all-reduce and a host broadcast as one merged run.
      std::vector<float> bcast(n, rank == 0 ? 3.0f : 0.0f);
      chorusGroupStart();
      chorusAllReduce(dev.get(), dev.get(), n, chorusFloat32, chorusSum, comm, nullptr);
      chorusBroadcast(bcast.data(), bcast.data(), n, chorusFloat32, 0, comm, nullptr);
      if (chorusGroupEnd() != chorusSuccess) return 2;
      deviceCopySync(out.data(), dev.get(), n * sizeof(float));
      for (size_t i = 0; i < n; ++i) failures += out[i] != static_cast<float>(p * (i % 31) + p * (p - 1) / 2) || bcast[i] != 3.0f;
      if (failures) fprintf(stderr, "rank %d: %d wrong\n", rank, failures);
      return failures ? 1 : 0;
    });
    for (size_t r = 0; r < exits.size(); ++r)
      EXPECT_TRUE(exits[r].exited && exits[r].code == 0) << "np" << p << " rank " << r << ": " << exits[r].describe();
  }
}

// The ordering contract on a bound stream, with copies slow enough (2 ms each) that any missing
// wait shows as wrong data: the device stream first writes the input (host to device), then the
// all-reduce is queued, then the result is copied back on the same device stream; only a
// synchronize of the device stream's event comes before reading it on the host.
TEST(DeviceStream, CallIsOrderedBetweenTheDeviceStreamsEarlierAndLaterWork) {
  ScopedEnv plugin("CHORUS_DEVICE_PLUGIN", testPlugin());
  ScopedEnv delay("CHORUS_EMU_COPY_DELAY_US", "2000");
  ScopedEnv deadline("CHORUS_TIMEOUT", "30");  // a lost wake-up fails instead of hanging the suite
  for (int p : {1, 3}) {
    auto exits = runRanksWithComm(p, [&](chorusComm_t comm, int rank) {
      const chorusDevice_v1_t* d = nullptr;
      if (chorusGetDevicePlugin(&d) != chorusSuccess || !d) return 10;
      void* ds = nullptr;
      void* ev = nullptr;
      if (d->streamCreate(0, &ds) != chorusDevSuccess || d->eventCreate(&ev) != chorusDevSuccess) return 11;
      chorusStream_t s = nullptr;
      if (chorusStreamCreateFromDevice(&s, ds) != chorusSuccess) return 12;
      const size_t n = 100003;
      int failures = 0;
      for (int round = 0; round < 3; ++round) {
        std::vector<int32_t> in(n), out(n, -1);
        for (size_t i = 0; i < n; ++i) in[i] = static_cast<int32_t>(i % 1000) * (rank + 1) + round;
        auto dev = deviceAlloc(n * sizeof(int32_t));
        d->copyAsync(dev.get(), in.data(), n * sizeof(int32_t), ds);
        if (chorusAllReduce(dev.get(), dev.get(), n, chorusInt32, chorusSum, comm, s) != chorusSuccess) return 13;
        d->copyAsync(out.data(), dev.get(), n * sizeof(int32_t), ds);
        d->eventRecord(ev, ds);
        d->eventSynchronize(ev);
        const int32_t ranksSum = p * (p + 1) / 2;
        for (size_t i = 0; i < n; ++i) failures += out[i] != static_cast<int32_t>(i % 1000) * ranksSum + p * round;
        if (chorusStreamSynchronize(s) != chorusSuccess) return 14;
      }
      // Many calls on the bound stream, each queued the moment the one before has finished: a
      // call's staging goes straight to the next one, while the device stream may still be about
      // to notice that the previous call let it go (a block handed on too early hangs here).
      const size_t m = 1000;
      const int calls = 60;
      std::vector<std::shared_ptr<uint8_t>> bufs;
      std::vector<int32_t> in(m), out(m);
      for (int k = 0; k < calls; ++k) {
        for (size_t i = 0; i < m; ++i) in[i] = static_cast<int32_t>(i) + k * (rank + 1);
        bufs.push_back(deviceAlloc(m * sizeof(int32_t)));
        deviceCopySync(bufs.back().get(), in.data(), m * sizeof(int32_t));
      }
      for (int k = 0; k < calls; ++k) {
        if (chorusAllReduce(bufs[k].get(), bufs[k].get(), m, chorusInt32, chorusSum, comm, s) != chorusSuccess) return 15;
        chorusResult_t q;
        // Ends by the call's own deadline (CHORUS_TIMEOUT above) at the latest.
        while ((q = chorusStreamQuery(s)) == chorusInProgress) std::this_thread::yield();
        if (q != chorusSuccess) return 16;
      }
      for (int k = 0; k < calls; ++k) {
        deviceCopySync(out.data(), bufs[k].get(), m * sizeof(int32_t));
        for (size_t i = 0; i < m; ++i) failures += out[i] != static_cast<int32_t>(p * i) + k * p * (p + 1) / 2;
      }
      chorusStreamDestroy(s);
      d->eventDestroy(ev);
      d->streamDestroy(ds);
      if (failures) fprintf(stderr, "rank %d: %d wrong\n", rank, failures);
      return failures ? 1 : 0;
    });
    for (size_t r = 0; r < exits.size(); ++r)
      EXPECT_TRUE(exits[r].exited && exits[r].code == 0) << "np" << p << " rank " << r << ": " << exits[r].describe();
  }
}

}  // namespace
}  // namespace chorus::test

// The device plugin layer on its own (docs/DEVICES.md): the emu plugin's promises (memory the
// host cannot touch, late copies, events, waits on host words, reduction kernels, argument
// checks), plugin selection and its errors, the staging pool, and the C API's device-memory
// calls. Each test runs in a process of its own (ctest), so each may choose its plugin.
#include <chorus/chorus.h>
#include <chorus/device_plugin.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "device/device.h"
#include "device/emu_device.h"
#include "device/pinned_pool.h"
#include "exec/reduce.h"
#include "fixtures/ranks.h"

namespace chorus::test {
namespace {

const chorusDevice_v1_t& emu() {
  const chorusDevice_v1_t* d = emuDevicePlugin();
  int n = 0;
  EXPECT_EQ(d->init(&n), chorusDevSuccess);
  EXPECT_GE(n, 1);
  return *d;
}

TEST(EmuDevice, DeviceMemoryIsInaccessibleToTheHost) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const chorusDevice_v1_t& d = emu();
  void* p = nullptr;
  ASSERT_EQ(d.memAlloc(0, 4096, &p), chorusDevSuccess);
  EXPECT_DEATH(static_cast<volatile char*>(p)[100] = 1, "");
  EXPECT_DEATH((void)static_cast<volatile char*>(p)[0], "");
  EXPECT_EQ(d.memFree(p), chorusDevSuccess);
}

TEST(EmuDevice, CopiesLandLateAndEventsSayWhen) {
  ScopedEnv delay("CHORUS_EMU_COPY_DELAY_US", "30000");
  const chorusDevice_v1_t& d = emu();
  void *dev = nullptr, *stream = nullptr, *event = nullptr;
  ASSERT_EQ(d.memAlloc(0, 1000, &dev), chorusDevSuccess);
  ASSERT_EQ(d.streamCreate(0, &stream), chorusDevSuccess);
  ASSERT_EQ(d.eventCreate(&event), chorusDevSuccess);
  int done = 0;
  ASSERT_EQ(d.eventQuery(event, &done), chorusDevSuccess);
  EXPECT_EQ(done, 1) << "an event never recorded counts as passed";
  std::vector<char> in(1000, 7), out(1000, 0);
  ASSERT_EQ(d.copyAsync(dev, in.data(), in.size(), stream), chorusDevSuccess);
  ASSERT_EQ(d.copyAsync(out.data(), dev, out.size(), stream), chorusDevSuccess);
  ASSERT_EQ(d.eventRecord(event, stream), chorusDevSuccess);
  ASSERT_EQ(d.eventQuery(event, &done), chorusDevSuccess);
  EXPECT_EQ(done, 0) << "two copies of 30 ms each cannot have finished";
  EXPECT_EQ(out[0], 0) << "the copy back landed early";
  ASSERT_EQ(d.eventSynchronize(event), chorusDevSuccess);
  ASSERT_EQ(d.eventQuery(event, &done), chorusDevSuccess);
  EXPECT_EQ(done, 1);
  EXPECT_EQ(out, in);
  EXPECT_EQ(d.eventDestroy(event), chorusDevSuccess);
  EXPECT_EQ(d.streamDestroy(stream), chorusDevSuccess);
  EXPECT_EQ(d.memFree(dev), chorusDevSuccess);
}

TEST(EmuDevice, WaitValueHoldsTheStreamUntilTheWordIsSet) {
  ScopedEnv delay("CHORUS_EMU_COPY_DELAY_US", "0");
  const chorusDevice_v1_t& d = emu();
  void *word = nullptr, *stream = nullptr, *event = nullptr, *other = nullptr, *joined = nullptr;
  ASSERT_EQ(d.hostAlloc(64, &word), chorusDevSuccess);
  auto* w = static_cast<uint64_t*>(word);
  *w = 0;
  ASSERT_EQ(d.streamCreate(0, &stream), chorusDevSuccess);
  ASSERT_EQ(d.streamCreate(0, &other), chorusDevSuccess);
  ASSERT_EQ(d.eventCreate(&event), chorusDevSuccess);
  ASSERT_EQ(d.eventCreate(&joined), chorusDevSuccess);
  void* reached = nullptr;
  ASSERT_EQ(d.eventCreate(&reached), chorusDevSuccess);
  ASSERT_EQ(d.eventRecord(reached, stream), chorusDevSuccess);
  ASSERT_EQ(d.waitValue(stream, w, 2), chorusDevSuccess);
  ASSERT_EQ(d.eventRecord(event, stream), chorusDevSuccess);
  // A second stream joined to the first by an event waits for it too.
  ASSERT_EQ(d.streamWaitEvent(other, event), chorusDevSuccess);
  ASSERT_EQ(d.eventRecord(joined, other), chorusDevSuccess);
  // The stream has run everything before the wait: from here only the word can let it on.
  ASSERT_EQ(d.eventSynchronize(reached), chorusDevSuccess);
  // Whether the events stay pending for a while: the stream must not pass before the word
  // reaches the value (a window for a wrong pass to show, not a wait for anything).
  auto staysPending = [&](void* e) {
    for (auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20); std::chrono::steady_clock::now() < until;) {
      int done = 1;
      if (d.eventQuery(e, &done) != chorusDevSuccess || done) return false;
      std::this_thread::yield();
    }
    return true;
  };
  EXPECT_TRUE(staysPending(event));
  __atomic_store_n(w, 1, __ATOMIC_RELEASE);  // below the value waited for
  EXPECT_TRUE(staysPending(joined));
  __atomic_store_n(w, 2, __ATOMIC_RELEASE);
  int done = 0;
  ASSERT_EQ(d.eventSynchronize(joined), chorusDevSuccess);
  ASSERT_EQ(d.eventQuery(event, &done), chorusDevSuccess);
  EXPECT_EQ(done, 1);
  d.eventDestroy(event);
  d.eventDestroy(joined);
  d.eventDestroy(reached);
  d.streamDestroy(stream);
  d.streamDestroy(other);
  d.hostFree(word);
}

TEST(EmuDevice, ReductionKernelsMatchTheHostKernelsForEveryTypeAndOp) {
  ScopedEnv delay("CHORUS_EMU_COPY_DELAY_US", "0");
  const chorusDevice_v1_t& d = emu();
  ASSERT_NE(d.reduce, nullptr);
  void *stream = nullptr, *event = nullptr;
  ASSERT_EQ(d.streamCreate(0, &stream), chorusDevSuccess);
  ASSERT_EQ(d.eventCreate(&event), chorusDevSuccess);
  const size_t n = 1001;
  for (int t = 0; t < chorusNumTypes; ++t) {
    const auto type = static_cast<chorusDataType_t>(t);
    const size_t es = dataTypeSize(type);
    for (chorusRedOp_t op : {chorusSum, chorusProd, chorusMax, chorusMin}) {
      std::vector<uint8_t> a(n * es), b(n * es), want(n * es), got(n * es);
      for (size_t i = 0; i < a.size(); ++i) {
        a[i] = static_cast<uint8_t>(i * 7 + t);
        b[i] = static_cast<uint8_t>(i * 13 + 5);
      }
      reduceFunction(type, op)(want.data(), a.data(), b.data(), n);
      void *da = nullptr, *db = nullptr;
      ASSERT_EQ(d.memAlloc(0, a.size(), &da), chorusDevSuccess);
      ASSERT_EQ(d.memAlloc(0, b.size(), &db), chorusDevSuccess);
      d.copyAsync(da, a.data(), a.size(), stream);
      d.copyAsync(db, b.data(), b.size(), stream);
      ASSERT_EQ(d.reduce(da, db, n, t, op, stream), chorusDevSuccess);
      d.copyAsync(got.data(), da, got.size(), stream);
      d.eventRecord(event, stream);
      d.eventSynchronize(event);
      EXPECT_EQ(memcmp(got.data(), want.data(), got.size()), 0) << dataTypeName(type) << " " << redOpName(op);
      d.memFree(da);
      d.memFree(db);
    }
  }
  // Host memory is not the kernel's to touch.
  std::vector<float> host(4);
  void* dev = nullptr;
  ASSERT_EQ(d.memAlloc(0, 16, &dev), chorusDevSuccess);
  EXPECT_EQ(d.reduce(host.data(), dev, 4, chorusFloat32, chorusSum, stream), chorusDevInvalidArgument);
  EXPECT_EQ(d.reduce(dev, dev, 4, chorusFloat32, chorusAvg, stream), chorusDevInvalidUsage);
  d.memFree(dev);
  d.eventDestroy(event);
  d.streamDestroy(stream);
}

TEST(EmuDevice, PointerKindsAndBadArguments) {
  const chorusDevice_v1_t& d = emu();
  void *dev = nullptr, *pinned = nullptr, *stream = nullptr;
  ASSERT_EQ(d.memAlloc(0, 100, &dev), chorusDevSuccess);
  ASSERT_EQ(d.hostAlloc(100, &pinned), chorusDevSuccess);
  ASSERT_EQ(d.streamCreate(0, &stream), chorusDevSuccess);
  chorusDevMemKind_t kind;
  int device = 7;
  ASSERT_EQ(d.pointerQuery(static_cast<char*>(dev) + 99, &kind, &device), chorusDevSuccess);
  EXPECT_EQ(kind, chorusDevMemDevice);
  EXPECT_EQ(device, 0);
  ASSERT_EQ(d.pointerQuery(pinned, &kind, &device), chorusDevSuccess);
  EXPECT_EQ(kind, chorusDevMemPinned);
  int local = 0;
  ASSERT_EQ(d.pointerQuery(&local, &kind, &device), chorusDevSuccess);
  EXPECT_EQ(kind, chorusDevMemHost);
  std::vector<char> buf(200);
  EXPECT_EQ(d.copyAsync(dev, buf.data(), 101, stream), chorusDevInvalidArgument) << "a copy past the allocation's end";
  EXPECT_EQ(d.memAlloc(5, 100, &dev), chorusDevInvalidArgument) << "no device 5";
  EXPECT_EQ(d.memFree(pinned), chorusDevInvalidArgument) << "pinned memory freed as device memory";
  EXPECT_EQ(d.hostFree(dev), chorusDevInvalidArgument) << "device memory freed as pinned memory";
  EXPECT_EQ(d.waitValue(stream, reinterpret_cast<uint64_t*>(static_cast<char*>(pinned) + 4), 1), chorusDevInvalidArgument)
      << "an unaligned word";
  EXPECT_EQ(d.memFree(dev), chorusDevSuccess);
  EXPECT_EQ(d.hostFree(pinned), chorusDevSuccess);
  d.streamDestroy(stream);
}

TEST(DevicePlugin, SelectionAndItsErrors) {
  {
    ScopedEnv none("CHORUS_DEVICE_PLUGIN", "nosuch");
    const chorusDevice_v1_t* p = nullptr;
    EXPECT_EQ(chorusGetDevicePlugin(&p), chorusInvalidUsage);
    EXPECT_NE(std::string(chorusGetLastError(nullptr)).find("libchorus-device-nosuch.so"), std::string::npos)
        << chorusGetLastError(nullptr);
    // The failure sticks: every later use says the same, nothing falls back to host memory.
    chorusStream_t s = nullptr;
    int fake = 0;
    EXPECT_EQ(chorusStreamCreateFromDevice(&s, &fake), chorusInvalidUsage);
  }
}

TEST(DevicePlugin, NoneRefusesADeviceStream) {
  ScopedEnv none("CHORUS_DEVICE_PLUGIN", "none");
  const chorusDevice_v1_t* p = reinterpret_cast<const chorusDevice_v1_t*>(1);
  ASSERT_EQ(chorusGetDevicePlugin(&p), chorusSuccess);
  EXPECT_EQ(p, nullptr);
  chorusStream_t s = nullptr;
  int fake = 0;
  EXPECT_EQ(chorusStreamCreateFromDevice(&s, &fake), chorusInvalidUsage);
  EXPECT_NE(std::string(chorusGetLastError(nullptr)).find("no device plugin"), std::string::npos) << chorusGetLastError(nullptr);
}

TEST(DevicePlugin, CudaWithoutADriverSaysWhy) {
  ScopedEnv cuda("CHORUS_DEVICE_PLUGIN", "cuda");
  const chorusDevice_v1_t* p = nullptr;
  chorusResult_t r = chorusGetDevicePlugin(&p);
  if (r == chorusSuccess) GTEST_SKIP() << "this machine has a CUDA driver and a GPU";
  EXPECT_EQ(r, chorusInvalidUsage);
  const std::string why = chorusGetLastError(nullptr);
  EXPECT_TRUE(why.find("libcuda.so.1") != std::string::npos || why.find("no device") != std::string::npos) << why;
}

TEST(DevicePlugin, ATableWithAHoleIsRefused) {
  chorusDevice_v1_t t = *emuDevicePlugin();
  EXPECT_NO_THROW(checkDeviceTable(&t, "test"));
  t.waitValue = nullptr;
  EXPECT_THROW(checkDeviceTable(&t, "test"), Error);
  t = *emuDevicePlugin();
  t.abiVersion = 2;
  EXPECT_THROW(checkDeviceTable(&t, "test"), Error);
  t = *emuDevicePlugin();
  t.reduce = nullptr;  // optional
  EXPECT_NO_THROW(checkDeviceTable(&t, "test"));
}

TEST(PinnedPool, ReusesBlocksAndEvictsTheOldestPastItsLimit) {
  ScopedEnv limit("CHORUS_DEVICE_POOL", "4M");
  const chorusDevice_v1_t* d = &emu();
  PinnedPool& pool = PinnedPool::instance();
  void* a = pool.acquire(d, 1 << 20);
  void* b = pool.acquire(d, 3 << 20);
  pool.release(d, a, 1 << 20);
  EXPECT_EQ(pool.acquire(d, 1 << 20), a) << "a block of the same size comes back";
  pool.release(d, a, 1 << 20);
  pool.release(d, b, 3 << 20);
  EXPECT_LE(pool.pooledBytes(), size_t{4} << 20);
  void* c = pool.acquire(d, 2 << 20);  // another size: a new block
  pool.release(d, c, 2 << 20);         // evicts the oldest (a) to stay within 4 MiB
  EXPECT_LE(pool.pooledBytes(), size_t{4} << 20);
  EXPECT_EQ(pool.acquire(d, 2 << 20), c) << "the block just returned stays";
  pool.release(d, c, 2 << 20);
  void* huge = pool.acquire(d, 8 << 20);  // larger than the pool: freed when returned
  pool.release(d, huge, 8 << 20);
  EXPECT_LE(pool.pooledBytes(), size_t{4} << 20);
}

TEST(DeviceApi, MemAllocRegisterAndTheirErrors) {
  ScopedEnv plugin("CHORUS_DEVICE_PLUGIN", "emu");
  void* mem = nullptr;
  ASSERT_EQ(chorusMemAlloc(&mem, 1 << 16), chorusSuccess);
  memset(mem, 1, 1 << 16);  // host-accessible
  const chorusDevice_v1_t* d = nullptr;
  ASSERT_EQ(chorusGetDevicePlugin(&d), chorusSuccess);
  ASSERT_NE(d, nullptr);
  chorusDevMemKind_t kind;
  ASSERT_EQ(d->pointerQuery(mem, &kind, nullptr), chorusDevSuccess);
  EXPECT_EQ(kind, chorusDevMemPinned);
  EXPECT_EQ(chorusMemFree(mem), chorusSuccess);
  EXPECT_EQ(chorusMemFree(mem), chorusInvalidArgument) << "a second free";
  int local = 0;
  EXPECT_EQ(chorusMemFree(&local), chorusInvalidArgument);

  chorusComm_t comm = nullptr;
  ASSERT_EQ(chorusCommInitAll(&comm, 1, nullptr), chorusSuccess);
  void* dev = nullptr;
  ASSERT_EQ(d->memAlloc(0, 3 << 20, &dev), chorusDevSuccess);
  const size_t before = PinnedPool::instance().pooledBytes();
  void* handle = nullptr;
  ASSERT_EQ(chorusCommRegister(comm, dev, 3 << 20, &handle), chorusSuccess);
  EXPECT_GE(PinnedPool::instance().pooledBytes(), before + (3 << 20)) << "staging for the buffer set aside";
  EXPECT_EQ(chorusCommDeregister(comm, handle), chorusSuccess);
  EXPECT_EQ(chorusCommDeregister(comm, handle), chorusInvalidArgument) << "a second deregistration";
  EXPECT_EQ(chorusCommRegister(comm, nullptr, 16, &handle), chorusInvalidArgument);
  EXPECT_EQ(chorusCommDestroy(comm), chorusSuccess);
  d->memFree(dev);
}

}  // namespace
}  // namespace chorus::test

// The "cuda" device plugin: NVIDIA GPUs through the CUDA driver API (libcuda.so.1, which every
// driver installs), opened with dlopen on first use. The declarations below are the few this
// file needs, written from the driver API's documented signatures; nothing of the CUDA toolkit
// is needed to build it. Streams are CUstream (the same handles as cudaStream_t), events CUevent.
//
// waitValue uses cuStreamWaitValue64 on the word's device mapping (memory from hostAlloc is
// allocated mapped and portable); where the device does not support stream memory operations it
// falls back to a host function on the stream that polls the word (cuLaunchHostFunc), which
// holds that stream's host-callback thread while it waits.
//
// This plugin has not run on a GPU in the session that wrote it (no GPU was lent): docs/DEVICES.md
// says so, and tools/device_check.sh is the script that checks it where a GPU exists.
#include "device/cuda_device.h"

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace chorus {
namespace {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st*;
using CUstream = struct CUstream_st*;
using CUevent = struct CUevent_st*;
using CUhostFn = void (*)(void*);

constexpr CUresult kSuccess = 0;
constexpr CUresult kNotReady = 600;
constexpr int kPointerMemoryType = 2;     // CU_POINTER_ATTRIBUTE_MEMORY_TYPE
constexpr int kPointerDeviceOrdinal = 9;  // CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
constexpr unsigned kMemoryTypeHost = 1, kMemoryTypeDevice = 2, kMemoryTypeUnified = 4;
constexpr unsigned kHostAllocPortable = 1, kHostAllocDeviceMap = 2;
constexpr unsigned kStreamNonBlocking = 1;
constexpr unsigned kEventDisableTiming = 2;
constexpr unsigned kWaitValueGeq = 0;

struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int*);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuCtxGetCurrent)(CUcontext*);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuPointerGetAttribute)(void*, int, CUdeviceptr);
  CUresult (*cuMemAlloc)(CUdeviceptr*, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemHostAlloc)(void**, size_t, unsigned);
  CUresult (*cuMemFreeHost)(void*);
  CUresult (*cuMemHostGetDevicePointer)(CUdeviceptr*, void*, unsigned);
  CUresult (*cuStreamCreate)(CUstream*, unsigned);
  CUresult (*cuStreamDestroy)(CUstream);
  CUresult (*cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuStreamWaitValue64)(CUstream, CUdeviceptr, unsigned long long, unsigned);  // may be null
  CUresult (*cuLaunchHostFunc)(CUstream, CUhostFn, void*);
  CUresult (*cuEventCreate)(CUevent*, unsigned);
  CUresult (*cuEventDestroy)(CUevent);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventQuery)(CUevent);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned);
  std::vector<CUcontext> contexts;  // primary context per device
  std::atomic<bool> waitValueWorks{true};
};

Driver* gDriver = nullptr;

chorusDevResult_t map(CUresult r) {
  if (r == kSuccess) return chorusDevSuccess;
  if (r == 1 /* CUDA_ERROR_INVALID_VALUE */ || r == 400 /* INVALID_HANDLE */) return chorusDevInvalidArgument;
  return chorusDevSystemError;  // out of memory, driver failures
}

// Every entry point runs with device 0's primary context current unless one is already current
// (driver calls need a context; a stream or pointer carries its own device).
CUresult ensureContext() {
  CUcontext cur = nullptr;
  if (gDriver->cuCtxGetCurrent(&cur) == kSuccess && cur) return kSuccess;
  return gDriver->cuCtxSetCurrent(gDriver->contexts.at(0));
}

// Runs one driver call with a context current, as every entry point below does.
template <typename F>
chorusDevResult_t withContext(F call) {
  CUresult r = ensureContext();
  if (r == kSuccess) r = call();
  return map(r);
}

chorusDevResult_t cuInitPlugin(int* ndevices) {
  static std::once_flag once;
  static CUresult result = kSuccess;
  std::call_once(once, [] {
    result = gDriver->cuInit(0);
    int n = 0;
    if (result == kSuccess) result = gDriver->cuDeviceGetCount(&n);
    for (int d = 0; result == kSuccess && d < n; ++d) {
      CUdevice dev;
      CUcontext ctx = nullptr;
      result = gDriver->cuDeviceGet(&dev, d);
      if (result == kSuccess) result = gDriver->cuDevicePrimaryCtxRetain(&ctx, dev);
      gDriver->contexts.push_back(ctx);
    }
  });
  if (!ndevices) return chorusDevInvalidArgument;
  *ndevices = static_cast<int>(gDriver->contexts.size());
  return map(result);
}

chorusDevResult_t cuPointerQuery(const void* ptr, chorusDevMemKind_t* kind, int* device) {
  if (!kind) return chorusDevInvalidArgument;
  *kind = chorusDevMemHost;
  if (device) *device = -1;
  if (!ptr || gDriver->contexts.empty()) return chorusDevSuccess;
  unsigned type = 0;
  // Memory the driver does not know (plain host memory) is CUDA_ERROR_INVALID_VALUE: host.
  if (gDriver->cuPointerGetAttribute(&type, kPointerMemoryType, reinterpret_cast<CUdeviceptr>(ptr)) != kSuccess)
    return chorusDevSuccess;
  if (type == kMemoryTypeHost) {
    *kind = chorusDevMemPinned;
    return chorusDevSuccess;
  }
  if (type == kMemoryTypeDevice || type == kMemoryTypeUnified) {
    // Managed (unified) memory is reachable from the host, but staging it is always right.
    *kind = chorusDevMemDevice;
    int ordinal = 0;
    if (device && gDriver->cuPointerGetAttribute(&ordinal, kPointerDeviceOrdinal, reinterpret_cast<CUdeviceptr>(ptr)) == kSuccess)
      *device = ordinal;
  }
  return chorusDevSuccess;
}

chorusDevResult_t cuMemAllocPlugin(int device, size_t bytes, void** ptr) {
  if (!ptr || device < 0 || device >= static_cast<int>(gDriver->contexts.size())) return chorusDevInvalidArgument;
  CUresult r = gDriver->cuCtxSetCurrent(gDriver->contexts[device]);
  CUdeviceptr p = 0;
  if (r == kSuccess) r = gDriver->cuMemAlloc(&p, bytes ? bytes : 1);
  *ptr = reinterpret_cast<void*>(p);
  return map(r);
}
chorusDevResult_t cuMemFreePlugin(void* ptr) {
  return withContext([&] { return ptr ? gDriver->cuMemFree(reinterpret_cast<CUdeviceptr>(ptr)) : kSuccess; });
}
chorusDevResult_t cuHostAllocPlugin(size_t bytes, void** ptr) {
  if (!ptr) return chorusDevInvalidArgument;
  return withContext([&] { return gDriver->cuMemHostAlloc(ptr, bytes ? bytes : 1, kHostAllocPortable | kHostAllocDeviceMap); });
}
chorusDevResult_t cuHostFreePlugin(void* ptr) {
  return withContext([&] { return ptr ? gDriver->cuMemFreeHost(ptr) : kSuccess; });
}
chorusDevResult_t cuStreamCreatePlugin(int device, void** stream) {
  if (!stream || device < 0 || device >= static_cast<int>(gDriver->contexts.size())) return chorusDevInvalidArgument;
  CUresult r = gDriver->cuCtxSetCurrent(gDriver->contexts[device]);
  CUstream s = nullptr;
  if (r == kSuccess) r = gDriver->cuStreamCreate(&s, kStreamNonBlocking);
  *stream = s;
  return map(r);
}
chorusDevResult_t cuStreamDestroyPlugin(void* stream) {
  return withContext([&] { return gDriver->cuStreamDestroy(static_cast<CUstream>(stream)); });
}
chorusDevResult_t cuCopyAsyncPlugin(void* dst, const void* src, size_t bytes, void* stream) {
  if (!stream) return chorusDevInvalidArgument;
  if (bytes == 0) return chorusDevSuccess;
  // Unified addressing: the driver tells the directions apart from the pointers.
  return withContext([&] {
    return gDriver->cuMemcpyAsync(reinterpret_cast<CUdeviceptr>(dst), reinterpret_cast<CUdeviceptr>(src), bytes,
                                  static_cast<CUstream>(stream));
  });
}

struct HostWait {
  const volatile uint64_t* word;
  uint64_t value;
};
void pollWord(void* arg) {
  auto* w = static_cast<HostWait*>(arg);
  for (int spins = 0; __atomic_load_n(const_cast<const uint64_t*>(w->word), __ATOMIC_ACQUIRE) < w->value; ++spins)
    std::this_thread::sleep_for(std::chrono::microseconds(spins < 100 ? 2 : 50));
  delete w;
}

chorusDevResult_t cuWaitValuePlugin(void* stream, const volatile uint64_t* word, uint64_t value) {
  if (!stream || !word) return chorusDevInvalidArgument;
  CUresult r = ensureContext();
  if (r != kSuccess) return map(r);
  if (gDriver->cuStreamWaitValue64 && gDriver->waitValueWorks.load()) {
    CUdeviceptr dptr = 0;
    r = gDriver->cuMemHostGetDevicePointer(&dptr, const_cast<uint64_t*>(word), 0);
    if (r == kSuccess) r = gDriver->cuStreamWaitValue64(static_cast<CUstream>(stream), dptr, value, kWaitValueGeq);
    if (r == kSuccess) return chorusDevSuccess;
    gDriver->waitValueWorks.store(false);  // not supported here: host functions from now on
  }
  r = gDriver->cuLaunchHostFunc(static_cast<CUstream>(stream), pollWord, new HostWait{word, value});
  return map(r);
}

chorusDevResult_t cuEventCreatePlugin(void** event) {
  if (!event) return chorusDevInvalidArgument;
  *event = nullptr;
  return withContext([&] { return gDriver->cuEventCreate(reinterpret_cast<CUevent*>(event), kEventDisableTiming); });
}
chorusDevResult_t cuEventDestroyPlugin(void* event) {
  return withContext([&] { return gDriver->cuEventDestroy(static_cast<CUevent>(event)); });
}
chorusDevResult_t cuEventRecordPlugin(void* event, void* stream) {
  return withContext([&] { return gDriver->cuEventRecord(static_cast<CUevent>(event), static_cast<CUstream>(stream)); });
}
chorusDevResult_t cuEventQueryPlugin(void* event, int* done) {
  if (!done) return chorusDevInvalidArgument;
  CUresult r = ensureContext();
  if (r == kSuccess) r = gDriver->cuEventQuery(static_cast<CUevent>(event));
  *done = r == kSuccess;
  return r == kNotReady ? chorusDevSuccess : map(r);
}
chorusDevResult_t cuEventSynchronizePlugin(void* event) {
  return withContext([&] { return gDriver->cuEventSynchronize(static_cast<CUevent>(event)); });
}
chorusDevResult_t cuStreamWaitEventPlugin(void* stream, void* event) {
  return withContext([&] { return gDriver->cuStreamWaitEvent(static_cast<CUstream>(stream), static_cast<CUevent>(event), 0); });
}

const chorusDevice_v1_t kCuda = {
    CHORUS_DEVICE_PLUGIN_ABI_VERSION, "cuda", cuInitPlugin, cuPointerQuery, cuMemAllocPlugin, cuMemFreePlugin,
    cuHostAllocPlugin, cuHostFreePlugin, cuStreamCreatePlugin, cuStreamDestroyPlugin, cuCopyAsyncPlugin, cuWaitValuePlugin,
    cuEventCreatePlugin, cuEventDestroyPlugin, cuEventRecordPlugin, cuEventQueryPlugin, cuEventSynchronizePlugin,
    cuStreamWaitEventPlugin,
    nullptr,  // no device reduction kernels: they need compiled device code, which this build has none of
};

template <typename F>
bool bind(void* lib, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  return *fn != nullptr;
}

}  // namespace

const chorusDevice_v1_t* cudaDevicePlugin(std::string* why) {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      failure = std::string("cannot load libcuda.so.1 (the NVIDIA driver): ") + dlerror();
      return;
    }
    auto* d = new Driver{};
    const char* missing = nullptr;
    auto need = [&](const char* name, auto* fn) {
      if (!bind(lib, name, fn) && !missing) missing = name;
    };
    need("cuInit", &d->cuInit);
    need("cuDeviceGetCount", &d->cuDeviceGetCount);
    need("cuDeviceGet", &d->cuDeviceGet);
    need("cuDevicePrimaryCtxRetain", &d->cuDevicePrimaryCtxRetain);
    need("cuCtxGetCurrent", &d->cuCtxGetCurrent);
    need("cuCtxSetCurrent", &d->cuCtxSetCurrent);
    need("cuPointerGetAttribute", &d->cuPointerGetAttribute);
    need("cuMemAlloc_v2", &d->cuMemAlloc);
    need("cuMemFree_v2", &d->cuMemFree);
    need("cuMemHostAlloc", &d->cuMemHostAlloc);
    need("cuMemFreeHost", &d->cuMemFreeHost);
    need("cuMemHostGetDevicePointer_v2", &d->cuMemHostGetDevicePointer);
    need("cuStreamCreate", &d->cuStreamCreate);
    need("cuStreamDestroy_v2", &d->cuStreamDestroy);
    need("cuMemcpyAsync", &d->cuMemcpyAsync);
    need("cuLaunchHostFunc", &d->cuLaunchHostFunc);
    need("cuEventCreate", &d->cuEventCreate);
    need("cuEventDestroy_v2", &d->cuEventDestroy);
    need("cuEventRecord", &d->cuEventRecord);
    need("cuEventQuery", &d->cuEventQuery);
    need("cuEventSynchronize", &d->cuEventSynchronize);
    need("cuStreamWaitEvent", &d->cuStreamWaitEvent);
    if (!bind(lib, "cuStreamWaitValue64_v2", &d->cuStreamWaitValue64)) bind(lib, "cuStreamWaitValue64", &d->cuStreamWaitValue64);
    if (missing) {
      failure = std::string("libcuda.so.1 lacks ") + missing + " (driver too old?)";
      delete d;
      return;
    }
    gDriver = d;
  });
  if (!gDriver) {
    if (why) *why = failure;
    return nullptr;
  }
  return &kCuda;
}

}  // namespace chorus

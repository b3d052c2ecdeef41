#include "device/device.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>

#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "device/cuda_device.h"
#include "device/emu_device.h"

namespace chorus {
namespace {

std::atomic<const chorusDevice_v1_t*> gActive{nullptr};

const char* resultName(chorusDevResult_t r) {
  switch (r) {
    case chorusDevSuccess: return "success";
    case chorusDevSystemError: return "system error";
    case chorusDevInternalError: return "internal error";
    case chorusDevInvalidArgument: return "invalid argument";
    case chorusDevInvalidUsage: return "invalid usage";
  }
  return "unknown result";
}

// Initialises a table; throws chorusInvalidUsage when that fails or it reports no device.
void initTable(const chorusDevice_v1_t* t, const std::string& where) {
  int n = 0;
  chorusDevResult_t r = t->init(&n);
  if (r != chorusDevSuccess)
    CHORUS_THROW(chorusInvalidUsage, "%s: device plugin %s failed to initialise (%s)", where.c_str(), t->name, resultName(r));
  if (n <= 0) CHORUS_THROW(chorusInvalidUsage, "%s: device plugin %s reports no device", where.c_str(), t->name);
  CHORUS_INFO(kLogInit, "device plugin %s: %d device(s)", t->name, n);
}

const chorusDevice_v1_t* loadFile(const std::string& spec, const std::string& where) {
  std::string file = spec.find('/') == std::string::npos ? "libchorus-device-" + spec + ".so" : spec;
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);  // never closed: plugins keep threads
  if (!handle) CHORUS_THROW(chorusInvalidUsage, "%s: cannot load %s: %s", where.c_str(), file.c_str(), dlerror());
  auto* table = static_cast<const chorusDevice_v1_t*>(dlsym(handle, CHORUS_DEVICE_PLUGIN_SYMBOL));
  if (!table)
    CHORUS_THROW(chorusInvalidUsage, "%s: %s exports no %s (not a Chorus device plugin, or not ABI version 1)", where.c_str(),
                 file.c_str(), CHORUS_DEVICE_PLUGIN_SYMBOL);
  checkDeviceTable(table, where + " (" + file + ")");
  return table;
}

const chorusDevice_v1_t* load() {
  const std::string spec = envString("CHORUS_DEVICE_PLUGIN", "auto");
  const std::string where = "CHORUS_DEVICE_PLUGIN=" + spec;
  if (spec == "none" || spec.empty()) return nullptr;
  if (spec == "auto") {
    std::string why;
    const chorusDevice_v1_t* cuda = cudaDevicePlugin(&why);
    int n = 0;
    if (!cuda || cuda->init(&n) != chorusDevSuccess || n <= 0) {
      CHORUS_INFO(kLogInit, "no device plugin (CHORUS_DEVICE_PLUGIN=auto: %s)", cuda ? "CUDA reports no device" : why.c_str());
      return nullptr;
    }
    CHORUS_INFO(kLogInit, "device plugin cuda: %d device(s)", n);
    return cuda;
  }
  const chorusDevice_v1_t* t = nullptr;
  if (spec == "emu") {
    t = emuDevicePlugin();
  } else if (spec == "cuda") {
    std::string why;
    t = cudaDevicePlugin(&why);
    if (!t) CHORUS_THROW(chorusInvalidUsage, "%s: %s", where.c_str(), why.c_str());
  } else {
    t = loadFile(spec, where);
  }
  initTable(t, where);
  return t;
}

}  // namespace

void checkDeviceTable(const chorusDevice_v1_t* t, const std::string& where) {
  if (t->abiVersion != CHORUS_DEVICE_PLUGIN_ABI_VERSION)
    CHORUS_THROW(chorusInvalidUsage, "%s: device plugin says ABI version %u, this Chorus speaks version %d", where.c_str(),
                 t->abiVersion, CHORUS_DEVICE_PLUGIN_ABI_VERSION);
  bool complete = t->name && t->init && t->pointerQuery && t->memAlloc && t->memFree && t->hostAlloc && t->hostFree &&
                  t->streamCreate && t->streamDestroy && t->copyAsync && t->waitValue && t->eventCreate && t->eventDestroy &&
                  t->eventRecord && t->eventQuery && t->eventSynchronize && t->streamWaitEvent;
  if (!complete) CHORUS_THROW(chorusInvalidUsage, "%s: the device plugin table has a NULL name or mandatory function", where.c_str());
}

const chorusDevice_v1_t* devicePlugin() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    try {
      gActive.store(load(), std::memory_order_release);
    } catch (const Error& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) CHORUS_THROW(chorusInvalidUsage, "%s", failure.c_str());
  return gActive.load(std::memory_order_acquire);
}

bool devicePluginActive() { return gActive.load(std::memory_order_relaxed) != nullptr; }

chorusDevMemKind_t memoryKind(const void* p, int* device) {
  const chorusDevice_v1_t* t = gActive.load(std::memory_order_acquire);
  chorusDevMemKind_t kind = chorusDevMemHost;
  if (device) *device = -1;
  if (t && p) deviceCheck(t->pointerQuery(p, &kind, device), t, "pointerQuery");
  return kind;
}

void deviceCheck(chorusDevResult_t r, const chorusDevice_v1_t* t, const char* what) {
  if (r == chorusDevSuccess) return;
  chorusResult_t code = r == chorusDevInvalidArgument ? chorusInvalidArgument
                        : r == chorusDevInvalidUsage  ? chorusInvalidUsage
                        : r == chorusDevSystemError   ? chorusSystemError
                                                      : chorusInternalError;
  CHORUS_THROW(code, "device plugin %s: %s failed (%s)", t ? t->name : "?", what, resultName(r));
}

}  // namespace chorus

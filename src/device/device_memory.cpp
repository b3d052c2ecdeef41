#include "device/device_memory.h"

#include <cstdlib>
#include <map>
#include <mutex>

#include "base/error.h"
#include "device/device.h"
#include "device/pinned_pool.h"

namespace chorus {
namespace {

struct Registration {
  const void* owner;
  void* buff;
  size_t bytes;
};

std::mutex gMutex;
std::map<void*, bool> gShared;  // chorusMemAlloc's blocks: true if the plugin's
std::map<void*, Registration> gRegistrations;

}  // namespace

void* sharedMemAlloc(size_t bytes) {
  const chorusDevice_v1_t* plugin = devicePlugin();
  void* p = nullptr;
  if (plugin) {
    deviceCheck(plugin->hostAlloc(bytes, &p), plugin, "hostAlloc");
  } else if (posix_memalign(&p, 4096, bytes ? bytes : 1) != 0) {
    CHORUS_THROW(chorusSystemError, "chorusMemAlloc: out of memory (%zu bytes)", bytes);
  }
  std::lock_guard<std::mutex> lock(gMutex);
  gShared[p] = plugin != nullptr;
  return p;
}

void sharedMemFree(void* ptr) {
  if (!ptr) return;
  bool fromPlugin;
  {
    std::lock_guard<std::mutex> lock(gMutex);
    auto it = gShared.find(ptr);
    CHORUS_CHECK_ARG(it != gShared.end(), "chorusMemFree: %p was not allocated by chorusMemAlloc (or was freed already)", ptr);
    fromPlugin = it->second;
    gShared.erase(it);
  }
  if (!fromPlugin) {
    free(ptr);
    return;
  }
  const chorusDevice_v1_t* plugin = devicePlugin();
  deviceCheck(plugin->hostFree(ptr), plugin, "hostFree");
}

void* registerBuffer(const void* owner, void* buff, size_t bytes) {
  CHORUS_CHECK_ARG(buff || bytes == 0, "chorusCommRegister: buff is NULL");
  if (memoryKind(buff) == chorusDevMemDevice) PinnedPool::instance().reserve(devicePlugin(), bytes);
  auto* r = new Registration{owner, buff, bytes};
  std::lock_guard<std::mutex> lock(gMutex);
  gRegistrations[r] = *r;
  return r;
}

void deregisterBuffer(const void* owner, void* handle) {
  std::lock_guard<std::mutex> lock(gMutex);
  auto it = gRegistrations.find(handle);
  CHORUS_CHECK_ARG(it != gRegistrations.end() && it->second.owner == owner,
                   "chorusCommDeregister: %p is not a registration of this communicator (or was deregistered already)", handle);
  gRegistrations.erase(it);
  delete static_cast<Registration*>(handle);
}

}  // namespace chorus

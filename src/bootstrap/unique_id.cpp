// chorusUniqueId <-> UniqueIdData, and the creation of a fresh id with its root service.
#include "bootstrap/unique_id.h"

#include <errno.h>
#include <sys/random.h>

#include <cstring>

#include "bootstrap/root.h"
#include "bootstrap/socket.h"
#include "base/error.h"
#include "base/log.h"

namespace chorus {

void checkUniqueId(const UniqueIdData& d) {
  CHORUS_CHECK_ARG(d.magic == UniqueIdData::kMagic, "unique id is malformed (bad magic 0x%08x): was it produced by chorusGetUniqueId?",
                   d.magic);
  CHORUS_CHECK_ARG(d.version == UniqueIdData::kVersion, "unique id has version %u, this library speaks version %u",
                   d.version, UniqueIdData::kVersion);
  CHORUS_CHECK_ARG(d.root.family == AF_INET || d.root.family == AF_INET6, "unique id holds no root address (family %u)",
                   d.root.family);
  CHORUS_CHECK_ARG(d.root.port != 0, "unique id holds root address %s without a port", addrToString(d.root).c_str());
}

UniqueIdData decodeUniqueId(const chorusUniqueId& id) {
  return decodeUniqueIdBytes(id.internal, sizeof(id.internal));
}

UniqueIdData decodeUniqueIdBytes(const void* bytes, size_t size) {
  CHORUS_CHECK_ARG(bytes != nullptr && size >= sizeof(UniqueIdData) && size <= CHORUS_UNIQUE_ID_BYTES,
                   "unique id of %zu bytes: expected %zu to %d", size, sizeof(UniqueIdData), CHORUS_UNIQUE_ID_BYTES);
  UniqueIdData d;
  memcpy(&d, bytes, sizeof(d));
  checkUniqueId(d);
  return d;
}

chorusUniqueId encodeUniqueId(const UniqueIdData& data) {
  chorusUniqueId id;
  memset(&id, 0, sizeof(id));
  memcpy(id.internal, &data, sizeof(data));
  return id;
}

void fillRandom(void* buf, size_t bytes) {
  auto* p = static_cast<char*>(buf);
  size_t done = 0;
  while (done < bytes) {
    ssize_t n = getrandom(p + done, bytes - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    CHORUS_THROW_ERRNO("getrandom");
  }
}

UniqueIdData createUniqueIdAndRoot(const Config& config) {
  UniqueIdData id;
  fillRandom(id.secret, sizeof(id.secret));
  fillRandom(&id.commId, sizeof(id.commId));
  WireAddr local = chooseLocalAddress(config.socketIfname);
  AuthLimits limits = AuthLimits::fromEnv(config.timeoutSec);
  Fd listener = listenOn(local, &id.root);
  launchRootThread(std::move(listener), id, config.timeoutSec, limits);
  CHORUS_INFO(kLogBootstrap, "unique id: comm %016llx, root rendezvous at %s", static_cast<unsigned long long>(id.commId),
              addrToString(id.root).c_str());
  return id;
}

void startRootService(const UniqueIdData& id, const Config& config) {
  CHORUS_CHECK_ARG(id.root.family == AF_INET || id.root.family == AF_INET6, "root address has unknown family %u",
                   id.root.family);
  AuthLimits limits = AuthLimits::fromEnv(config.timeoutSec);
  Fd listener = listenOn(id.root, nullptr);
  launchRootThread(std::move(listener), id, config.timeoutSec, limits);
  CHORUS_INFO(kLogBootstrap, "root rendezvous for comm %016llx started at %s",
              static_cast<unsigned long long>(id.commId), addrToString(id.root).c_str());
}

}  // namespace chorus

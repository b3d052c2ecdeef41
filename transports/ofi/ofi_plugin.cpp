// Chorus's libfabric network plugin: the chorusNet_v1 function table (include/chorus/net_plugin.h)
// over libfabric RDM endpoints with tagged messages. Uses nothing of Chorus but that header, so
// the same objects make libchorus's built-in "ofi" transport and libchorus-net-ofi.so.
//
// Design, file by file:
//   ofi_discovery.*  fi_getinfo: provider (CHORUS_OFI_PROVIDER / FI_PROVIDER / first), domains
//   ofi_device.*     one device = fabric, domain, AV, tagged CQ, RDM endpoint; properties;
//                    memory registration (regMr, and the cache for posts without an mhandle)
//   ofi_progress.cpp posts, the pending queue (-FI_EAGAIN), completions, request lifetime
//   ofi_control.cpp  connect/accept/close over control messages, keepalive, failures
//   ofi_peer_watch.* shm: is a peer process dead or dying (checked before sending to it)
//   ofi_watchdog.*   a thread that ends the process when a provider call never returns
//   ofi_wire.h       the handle, the control messages and the tag layout
//   ofi_request.h, ofi_pending.h, ofi_mr_cache.h, ofi_log.h
//
// Environment (read once, at init):
//   CHORUS_OFI_PROVIDER          provider name for fi_getinfo ("tcp;ofi_rxm", "shm", "verbs;ofi_rxm",
//                                "efa", "cxi"); unset: FI_PROVIDER, else the first provider listed
//   CHORUS_OFI_DOMAIN            comma-separated domain names to use (default: all, loopback last)
//   CHORUS_OFI_KEEPALIVE_MS      idle time before a comm with requests pending pings its peer
//                                (default 1000; 0: no keepalive)
//   CHORUS_OFI_MR_CACHE_MAX      registrations the cache keeps (default 256; 0: no caching)
//   CHORUS_OFI_MR_CACHE_MAX_BYTES  bytes the cache keeps registered (default 4 GiB)
//   CHORUS_OFI_FORCE_MR_LOCAL    1: register like a provider that needs FI_MR_LOCAL (testing)
// CHORUS_SOCKET_IFNAME also selects the domain of socket providers (ofi_discovery.h), and
// CHORUS_TIMEOUT bounds any one provider call (ofi_watchdog.h).
//
// Provider quirks handled (libfabric 1.17): tcp;ofi_rxm answers -FI_EAGAIN forever to an
// unreachable peer (control messages give up after a keepalive period); shm cannot see a dead
// peer (its process is watched, ofi_peer_watch.h), spins for ever on a region lock a dead process
// held (no send goes to a dead or dying peer; the watchdog ends what cannot be avoided), spins
// inside fi_cq_read on a truncated message sent by cross-memory attach (receives carry an
// overflow sink, ofi_device.h) and reports errors with a negated err (both signs are accepted).
//
// There is no finalize in ABI v1: the devices live until the process exits (never destroyed,
// so no libfabric call runs during static destruction), and so does the watchdog thread.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "chorus/net_plugin.h"
#include "transports/net/builtin_plugins.h"
#include "transports/ofi/ofi_device.h"
#include "transports/ofi/ofi_discovery.h"
#include "transports/ofi/ofi_log.h"

namespace chorus::ofi {

namespace {

struct PluginState {
  std::mutex initMu;
  std::atomic<bool> ready{false};
  std::vector<Device*> devices;  // fixed once ready
};

PluginState& state() {
  static auto* s = new PluginState;  // never destroyed (see above)
  return *s;
}

long long envInt(const char* name, long long fallback) {
  const char* v = getenv(name);
  if (v == nullptr || v[0] == '\0') return fallback;
  char* end = nullptr;
  const long long x = strtoll(v, &end, 10);
  if (end == v || *end != '\0' || x < 0) {
    OFI_LOG(kLogWarn, "ofi: ignoring %s=%s (not a non-negative integer)", name, v);
    return fallback;
  }
  return x;
}

Settings readSettings() {
  Settings s;
  s.keepaliveNs = envInt("CHORUS_OFI_KEEPALIVE_MS", s.keepaliveNs / 1000000) * 1000000;
  s.mrCacheEntries = static_cast<size_t>(envInt("CHORUS_OFI_MR_CACHE_MAX", static_cast<long long>(s.mrCacheEntries)));
  s.mrCacheBytes = static_cast<size_t>(envInt("CHORUS_OFI_MR_CACHE_MAX_BYTES", static_cast<long long>(s.mrCacheBytes)));
  s.forceMrLocal = envInt("CHORUS_OFI_FORCE_MR_LOCAL", 0) != 0;
  return s;
}

Device* deviceAt(int dev) {
  PluginState& s = state();
  if (!s.ready.load(std::memory_order_acquire) || dev < 0 || dev >= static_cast<int>(s.devices.size())) return nullptr;
  return s.devices[dev];
}

bool validTag(int tag) { return tag >= 0 && tag <= CHORUS_NET_MAX_TAG; }

chorusNetResult_t ofiInit(chorusNetLogger_v1_t logger) {
  PluginState& s = state();
  std::lock_guard<std::mutex> guard(s.initMu);
  if (s.ready.load()) return chorusNetSuccess;
  logSink().store(logger, std::memory_order_release);
  const Settings settings = readSettings();
  std::vector<fi_info*> infos = discoverDevices();
  if (infos.empty()) return chorusNetSystemError;
  std::vector<Device*> devices;
  for (size_t i = 0; i < infos.size(); ++i) devices.push_back(new Device(static_cast<int>(i), infos[i], settings));
  chorusNetResult_t rc;
  {
    std::lock_guard<std::mutex> lock(devices[0]->mu);
    rc = devices[0]->ensureOpen();  // the others open on first use
  }
  if (rc != chorusNetSuccess) {
    for (Device* d : devices) delete d;
    return rc;
  }
  s.devices = std::move(devices);
  s.ready.store(true, std::memory_order_release);
  return chorusNetSuccess;
}

chorusNetResult_t ofiDevices(int* ndev) {
  if (ndev == nullptr) return chorusNetInvalidArgument;
  if (!state().ready.load(std::memory_order_acquire)) return chorusNetInvalidUsage;
  *ndev = static_cast<int>(state().devices.size());
  return chorusNetSuccess;
}

chorusNetResult_t ofiGetProperties(int dev, chorusNetProperties_v1_t* props) {
  if (!state().ready.load(std::memory_order_acquire)) return chorusNetInvalidUsage;
  Device* d = deviceAt(dev);
  if (d == nullptr || props == nullptr) return chorusNetInvalidArgument;
  d->properties(props);
  return chorusNetSuccess;
}

chorusNetResult_t ofiListen(int dev, void* handle, void** listenComm) {
  if (!state().ready.load(std::memory_order_acquire)) return chorusNetInvalidUsage;
  Device* d = deviceAt(dev);
  if (d == nullptr || handle == nullptr || listenComm == nullptr) return chorusNetInvalidArgument;
  std::lock_guard<std::mutex> lock(d->mu);
  if (chorusNetResult_t rc = d->ensureOpen(); rc != chorusNetSuccess) return rc;
  WireHandle h;
  Listener* l = nullptr;
  const chorusNetResult_t rc = d->listen(&h, &l);
  if (rc == chorusNetSuccess) {
    memcpy(handle, &h, sizeof(h));
    *listenComm = l;
  }
  return rc;
}

chorusNetResult_t ofiConnect(int dev, const void* handle, void** sendComm) {
  if (!state().ready.load(std::memory_order_acquire)) return chorusNetInvalidUsage;
  Device* d = deviceAt(dev);
  if (d == nullptr || handle == nullptr || sendComm == nullptr) return chorusNetInvalidArgument;
  *sendComm = nullptr;
  WireHandle h;
  memcpy(&h, handle, sizeof(h));
  if (h.magic != kHandleMagic || h.nameLen == 0 || h.nameLen > kMaxNameBytes) return chorusNetInvalidArgument;
  std::lock_guard<std::mutex> lock(d->mu);
  if (chorusNetResult_t rc = d->ensureOpen(); rc != chorusNetSuccess) return rc;
  Comm* c = nullptr;
  const chorusNetResult_t rc = d->connect(h, &c);
  *sendComm = c;
  return rc;
}

chorusNetResult_t ofiAccept(void* listenComm, void** recvComm) {
  if (listenComm == nullptr || recvComm == nullptr) return chorusNetInvalidArgument;
  auto* l = static_cast<Listener*>(listenComm);
  std::lock_guard<std::mutex> lock(l->dev->mu);
  Comm* c = nullptr;
  const chorusNetResult_t rc = l->dev->accept(l, &c);
  *recvComm = c;
  return rc;
}

chorusNetResult_t ofiRegMr(void* comm, void* data, size_t size, int type, void** mhandle) {
  if (comm == nullptr || mhandle == nullptr || (data == nullptr && size > 0)) return chorusNetInvalidArgument;
  if (type != CHORUS_NET_PTR_HOST) return chorusNetInvalidArgument;
  auto* c = static_cast<Comm*>(comm);
  std::lock_guard<std::mutex> lock(c->dev->mu);
  MemHandle* mh = nullptr;
  const chorusNetResult_t rc = c->dev->regMr(data, size, &mh);
  *mhandle = mh;
  return rc;
}

chorusNetResult_t ofiDeregMr(void* comm, void* mhandle) {
  auto* mh = static_cast<MemHandle*>(mhandle);
  if (comm == nullptr || mh == nullptr || mh->magic != kMemHandleMagic) return chorusNetInvalidArgument;
  std::lock_guard<std::mutex> lock(mh->dev->mu);
  return mh->dev->deregMr(mh);
}

chorusNetResult_t post(void* comm, Comm::Kind want, ReqKind kind, void* data, size_t size, int tag, void* mhandle,
                       void** request) {
  if (request == nullptr) return chorusNetInvalidArgument;
  *request = nullptr;
  auto* c = static_cast<Comm*>(comm);
  auto* mh = static_cast<MemHandle*>(mhandle);
  if (c == nullptr || c->kind != want || (data == nullptr && size > 0) || !validTag(tag)) return chorusNetInvalidArgument;
  if (mh != nullptr && (mh->magic != kMemHandleMagic || mh->dev != c->dev)) return chorusNetInvalidArgument;
  std::lock_guard<std::mutex> lock(c->dev->mu);
  Request* r = nullptr;
  const chorusNetResult_t rc = c->dev->postData(c, kind, data, size, tag, mh, &r);
  *request = r;
  return rc;
}

chorusNetResult_t ofiIsend(void* sendComm, const void* data, size_t size, int tag, void* mhandle, void** request) {
  return post(sendComm, Comm::Kind::Send, ReqKind::Send, const_cast<void*>(data), size, tag, mhandle, request);
}

chorusNetResult_t ofiIrecv(void* recvComm, void* data, size_t size, int tag, void* mhandle, void** request) {
  return post(recvComm, Comm::Kind::Recv, ReqKind::Recv, data, size, tag, mhandle, request);
}

// An error finishes (and frees) the request too: *done is then 1 and the result says why.
chorusNetResult_t ofiTest(void* request, int* done, size_t* size) {
  if (request == nullptr || done == nullptr) return chorusNetInvalidArgument;
  auto* r = static_cast<Request*>(request);
  std::lock_guard<std::mutex> lock(r->dev->mu);
  return r->dev->testRequest(r, done, size);
}

chorusNetResult_t closeComm(void* comm, Comm::Kind want) {
  auto* c = static_cast<Comm*>(comm);
  if (c == nullptr || c->kind != want) return chorusNetInvalidArgument;
  std::lock_guard<std::mutex> lock(c->dev->mu);
  c->dev->closeComm(c);
  return chorusNetSuccess;
}

chorusNetResult_t ofiCloseSend(void* sendComm) { return closeComm(sendComm, Comm::Kind::Send); }
chorusNetResult_t ofiCloseRecv(void* recvComm) { return closeComm(recvComm, Comm::Kind::Recv); }

chorusNetResult_t ofiCloseListen(void* listenComm) {
  auto* l = static_cast<Listener*>(listenComm);
  if (l == nullptr) return chorusNetInvalidArgument;
  Device* d = l->dev;
  std::lock_guard<std::mutex> lock(d->mu);
  d->closeListener(l);
  return chorusNetSuccess;
}

}  // namespace

}  // namespace chorus::ofi

namespace chorus {

const chorusNet_v1_t& ofiNetPlugin() {
  static const chorusNet_v1_t table = {
      "ofi",           CHORUS_NET_PLUGIN_ABI_VERSION, ofi::ofiInit,     ofi::ofiDevices,    ofi::ofiGetProperties,
      ofi::ofiListen,  ofi::ofiConnect,               ofi::ofiAccept,   ofi::ofiRegMr,      ofi::ofiDeregMr,
      ofi::ofiIsend,   ofi::ofiIrecv,                 ofi::ofiTest,     ofi::ofiCloseSend,  ofi::ofiCloseRecv,
      ofi::ofiCloseListen};
  return table;
}

}  // namespace chorus

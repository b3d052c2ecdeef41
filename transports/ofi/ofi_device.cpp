// Device of the libfabric plugin: what the provider tells us, opening the endpoint, properties,
// memory registration and the address vector.
#include "transports/ofi/ofi_device.h"

#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "transports/ofi/ofi_log.h"

namespace chorus::ofi {

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

namespace {

// libfabric 1.17's shm provider names its region /dev/shm/<pid>:<n>:<m> after the endpoint and
// unlinks it only when the endpoint is closed, which a process that just exits never does: every
// process would leave 16 MiB behind (and a later process reusing the pid fails fi_enable with
// EBUSY). The endpoint stays open until exit (comms may be used to the end), so the names are
// unlinked by an exit handler instead; mappings already made, ours and the peers', stay valid.
std::mutex gShmNamesMu;
std::vector<std::string> gShmNames;

void unlinkShmRegionsAtExit() {
  std::lock_guard<std::mutex> lock(gShmNamesMu);
  for (const std::string& n : gShmNames) shm_unlink(n.c_str());
  gShmNames.clear();
}

// The /dev/shm name of a shm endpoint ("fi_shm://<pid>:<n>:<m>" -> "<pid>:<n>:<m>"), "" for
// other providers' names.
std::string shmRegionName(const std::vector<unsigned char>& epName) {
  static const char kPrefix[] = "fi_shm://";
  std::string name(epName.begin(), epName.end());
  name = name.c_str();  // the name may carry trailing NULs
  return name.rfind(kPrefix, 0) == 0 ? name.substr(sizeof(kPrefix) - 1) : "";
}

// The endpoint's name into *name; fi_getname's result (0 on success).
int endpointName(fid_ep* ep, std::vector<unsigned char>* name) {
  size_t len = 0;
  int rc = fi_getname(&ep->fid, nullptr, &len);
  if (rc != -FI_ETOOSMALL && rc != 0) return rc;
  name->resize(len);
  if ((rc = fi_getname(&ep->fid, name->data(), &len)) != 0) return rc;
  name->resize(len);
  return 0;
}

void unlinkAtExit(const std::vector<unsigned char>& epName) {
  std::string region = shmRegionName(epName);
  if (region.empty()) return;
  std::lock_guard<std::mutex> lock(gShmNamesMu);
  if (gShmNames.empty()) atexit(unlinkShmRegionsAtExit);
  gShmNames.push_back(region);
}

// fi_enable of a shm endpoint fails with EBUSY when its region's name is taken (and a retry
// fails the same way). The name is given at fi_endpoint and starts with this process's pid, so a
// region of that name before fi_enable is a dead process's: one that had this pid and was killed
// before its exit handler ran (pids are reused: 32768 of them by default). Removes it and says so.
void removeStaleRegion(fid_ep* ep, const std::string& device) {
  std::vector<unsigned char> name;
  if (endpointName(ep, &name) != 0) return;
  const std::string region = shmRegionName(name);
  if (region.rfind(std::to_string(getpid()) + ":", 0) != 0) return;
  if (shm_unlink(region.c_str()) != 0) return;  // none: the usual case
  OFI_LOG(kLogWarn, "ofi %s: removed /dev/shm/%s, a shared-memory region left by a killed process that had this pid", device.c_str(),
          region.c_str());
}

// Usable tag bits from mem_tag_format: everything up to its highest set bit (0: all 64).
int tagBitsOf(uint64_t format) {
  if (format == 0) return 64;
  return 64 - __builtin_clzll(format);
}

// One small message's one-way latency by provider, microseconds: order-of-magnitude estimates
// for the tuner, 0 when unknown. shm and tcp;ofi_rxm: this plugin's loopback ping-pong
// (test_net_ofi's DISABLED_PingPongPerformance: about 1 and 15 us); the fabric providers:
// typical published small-message figures, not measured here.
float latencyEstimateUs(const std::string& prov) {
  struct Known {
    const char* prefix;
    float us;
  };
  static const Known kKnown[] = {{"shm", 1.0f},   {"tcp", 15.0f}, {"sockets", 20.0f}, {"verbs", 2.0f},
                                 {"efa", 15.0f},  {"cxi", 2.5f},  {"psm", 1.5f},     {"opx", 1.5f}};
  for (const Known& k : kKnown) {
    if (prov.compare(0, strlen(k.prefix), k.prefix) == 0) return k.us;
  }
  return 0.0f;
}

}  // namespace

Device::Device(int index, fi_info* info, const Settings& settings) : index_(index), info_(info), settings_(settings) {
  const std::string prov = info->fabric_attr->prov_name ? info->fabric_attr->prov_name : "?";
  const std::string domain = info->domain_attr->name ? info->domain_attr->name : "?";
  name_ = prov + ":" + domain;
  tags_.init(tagBitsOf(info->ep_attr->mem_tag_format));
  directed_ = (info->caps & FI_DIRECTED_RECV) != 0;
  shm_ = prov == "shm";
  const uint64_t mrMode = static_cast<uint64_t>(info->domain_attr->mr_mode);
  mrLocal_ = (mrMode & FI_MR_LOCAL) != 0;
  mrEndpoint_ = (mrMode & FI_MR_ENDPOINT) != 0;
  mrProvKey_ = (mrMode & FI_MR_PROV_KEY) != 0;
  injectSize_ = info->tx_attr->inject_size;
  maxMsg_ = info->ep_attr->max_msg_size;
  hostTag_ = localHostTag();
  // rxm sends messages up to its buffer size (FI_OFI_RXM_BUFFER_SIZE, default 16 KiB, less a
  // header) eagerly and larger ones by segments or rendezvous. Half of it leaves room for the
  // header; other providers: the same conservative bound.
  size_t rxmBuffer = 16384;
  if (const char* v = getenv("FI_OFI_RXM_BUFFER_SIZE"); v != nullptr && v[0] != '\0') {
    char* end = nullptr;
    const unsigned long long x = strtoull(v, &end, 10);
    if (end != v && *end == '\0' && x > 0) rxmBuffer = static_cast<size_t>(x);
  }
  eagerBytes_ = rxmBuffer / 2;
}

Device::~Device() {
  if (cache_) cache_->clear();
  for (fid_mr* mr : slabMrs_) fi_close(&mr->fid);
  if (sinkMr_) fi_close(&sinkMr_->fid);
  if (sink_) munmap(sink_, sinkBytes_);
  if (ep_) fi_close(&ep_->fid);
  if (cq_) fi_close(&cq_->fid);
  if (av_) fi_close(&av_->fid);
  if (domain_) fi_close(&domain_->fid);
  if (fabric_) fi_close(&fabric_->fid);
  fi_freeinfo(info_);
}

void Device::properties(chorusNetProperties_v1_t* p) const {
  memset(p, 0, sizeof(*p));
  snprintf(p->name, sizeof(p->name), "%s", name_.c_str());
  p->numaNode = -1;
  const fid_nic* nic = info_->nic;
  if (nic != nullptr && nic->bus_attr != nullptr && nic->bus_attr->bus_type == FI_BUS_PCI) {
    const fi_pci_attr& pci = nic->bus_attr->attr.pci;
    char dev[96];
    snprintf(dev, sizeof(dev), "/sys/bus/pci/devices/%04x:%02x:%02x.%x", pci.domain_id, pci.bus_id, pci.device_id,
             pci.function_id);
    char real[PATH_MAX];
    if (realpath(dev, real) != nullptr) snprintf(p->pciPath, sizeof(p->pciPath), "%.*s", static_cast<int>(sizeof(p->pciPath) - 1), real);
    std::ifstream numa(std::string(dev) + "/numa_node");
    int node = -1;
    if (numa >> node) p->numaNode = node;
  }
  if (nic != nullptr && nic->link_attr != nullptr && nic->link_attr->speed > 0) {
    const uint64_t mbps = nic->link_attr->speed / 1000000;  // fi_link_attr.speed is bits per second
    p->speedMbps = mbps > INT32_MAX ? INT32_MAX : static_cast<int32_t>(mbps);
  }
  p->latencyUs = latencyEstimateUs(info_->fabric_attr->prov_name ? info_->fabric_attr->prov_name : "");
  p->maxInflight = kMaxInflightPerComm;
  p->maxMessageBytes = maxMsg_;
  p->ptrSupport = CHORUS_NET_PTR_HOST;
  p->regRequired = 0;  // posts without an mhandle register through the cache when the provider needs it
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the device name: stable across runs
  for (char ch : name_) h = (h ^ static_cast<uint8_t>(ch)) * 1099511628211ull;
  p->guid = h;
}

chorusNetResult_t Device::ensureOpen() {
  if (open_) return chorusNetSuccess;
  if (openResult_ != chorusNetSuccess) return openResult_;  // a failed open is not retried
  int rc = 0;
  const char* step = "";
  auto fail = [&]() {
    OFI_LOG(kLogError, "ofi %s: %s failed: %s (%d)", name_.c_str(), step, fi_strerror(-rc), rc);
    openResult_ = chorusNetSystemError;
    return openResult_;
  };
  step = "fi_fabric";
  if ((rc = fi_fabric(info_->fabric_attr, &fabric_, nullptr)) != 0) return fail();
  step = "fi_domain";
  if ((rc = fi_domain(fabric_, info_, &domain_, nullptr)) != 0) return fail();
  fi_av_attr avAttr{};
  avAttr.type = info_->domain_attr->av_type != FI_AV_UNSPEC ? info_->domain_attr->av_type : FI_AV_TABLE;
  avAttr.count = 64;
  step = "fi_av_open";
  if ((rc = fi_av_open(domain_, &avAttr, &av_, nullptr)) != 0) return fail();
  fi_cq_attr cqAttr{};
  cqAttr.format = FI_CQ_FORMAT_TAGGED;
  cqAttr.wait_obj = FI_WAIT_NONE;  // polled only
  cqAttr.size = info_->tx_attr->size + info_->rx_attr->size;
  step = "fi_cq_open";
  if ((rc = fi_cq_open(domain_, &cqAttr, &cq_, nullptr)) != 0) return fail();
  step = "fi_endpoint";
  if ((rc = fi_endpoint(domain_, info_, &ep_, nullptr)) != 0) return fail();
  step = "fi_ep_bind(av)";
  if ((rc = fi_ep_bind(ep_, &av_->fid, 0)) != 0) return fail();
  step = "fi_ep_bind(cq)";
  if ((rc = fi_ep_bind(ep_, &cq_->fid, FI_TRANSMIT | FI_RECV)) != 0) return fail();
  step = "fi_enable";
  if (shm_) removeStaleRegion(ep_, name_);
  if ((rc = fi_enable(ep_)) != 0) return fail();
  step = "fi_getname";
  if ((rc = endpointName(ep_, &epName_)) != 0) return fail();
  const size_t nameLen = epName_.size();
  unlinkAtExit(epName_);
  if (nameLen > kMaxNameBytes) {
    OFI_LOG(kLogError, "ofi %s: endpoint name of %zu bytes does not fit a handle (%zu at most)", name_.c_str(), nameLen,
            kMaxNameBytes);
    openResult_ = chorusNetSystemError;
    return openResult_;
  }
  if (needLocalMr()) {
    pool_.setRegister([this](void* addr, size_t len, void** desc) {
      fid_mr* mr = nullptr;
      if (registerRaw(addr, len, &mr, desc) != 0) return false;
      slabMrs_.push_back(mr);
      return true;
    });
  }
  const long page = sysconf(_SC_PAGESIZE);
  cache_ = std::make_unique<MrCache>(
      [this](void* addr, size_t len, void** handle, void** desc) {
        fid_mr* mr = nullptr;
        const int r = registerRaw(addr, len, &mr, desc);
        *handle = mr;
        return r;
      },
      [](void* handle) { fi_close(&static_cast<fid_mr*>(handle)->fid); }, settings_.mrCacheEntries,
      settings_.mrCacheBytes, page > 0 ? static_cast<size_t>(page) : 4096);
  if (shm_) {
    constexpr size_t kSinkBytes = size_t{64} << 20;
    void* sink = mmap(nullptr, kSinkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (sink == MAP_FAILED) {
      OFI_LOG(kLogWarn, "ofi %s: no overflow sink (mmap failed): a truncated shm message may hang", name_.c_str());
    } else {
      sink_ = sink;
      sinkBytes_ = kSinkBytes;
      if (needLocalMr() && registerRaw(sink_, sinkBytes_, &sinkMr_, &sinkDesc_) != 0) {
        munmap(sink_, sinkBytes_);
        sink_ = nullptr;
        sinkBytes_ = 0;
      }
    }
  }
  open_ = true;
  watchDevice(name_.c_str(), &calls_, shm_);
  postCtrlRecvs();
  OFI_LOG(kLogInfo,
          "ofi device %d: provider %s fabric %s domain %s: %d tag bits, %s receives, mr_mode 0x%llx%s, inject %zu B, "
          "max message %zu B, tx/rx queue %zu/%zu",
          index_, info_->fabric_attr->prov_name, info_->fabric_attr->name, info_->domain_attr->name, tags_.bits,
          directed_ ? "directed" : "wildcard-source", static_cast<unsigned long long>(info_->domain_attr->mr_mode),
          settings_.forceMrLocal && !mrLocal_ ? " (FI_MR_LOCAL forced)" : "", injectSize_, maxMsg_,
          info_->tx_attr->size, info_->rx_attr->size);
  return chorusNetSuccess;
}

int Device::registerRaw(void* addr, size_t len, fid_mr** mr, void** desc) {
  const uint64_t key = mrProvKey_ ? 0 : nextKey_++;
  int rc = fi_mr_reg(domain_, addr, len, FI_SEND | FI_RECV, 0, key, 0, mr, nullptr);
  if (rc == 0 && mrEndpoint_) {
    rc = fi_mr_bind(*mr, &ep_->fid, 0);
    if (rc == 0) rc = fi_mr_enable(*mr);
    if (rc != 0) fi_close(&(*mr)->fid);
  }
  if (rc != 0) {
    OFI_LOG(kLogError, "ofi %s: registering %zu bytes at %p failed: %s (%d)", name_.c_str(), len, addr, fi_strerror(-rc),
            rc);
    *mr = nullptr;
    return rc;
  }
  *desc = fi_mr_desc(*mr);
  return 0;
}

chorusNetResult_t Device::regMr(void* data, size_t size, MemHandle** out) {
  auto* mh = new MemHandle{kMemHandleMagic, this, nullptr, nullptr};
  if (size > 0 && registerRaw(data, size, &mh->mr, &mh->desc) != 0) {
    delete mh;
    return chorusNetSystemError;
  }
  *out = mh;
  return chorusNetSuccess;
}

chorusNetResult_t Device::deregMr(MemHandle* mh) {
  int rc = 0;
  if (mh->mr != nullptr) rc = fi_close(&mh->mr->fid);
  mh->magic = 0;
  delete mh;
  if (rc != 0) {
    OFI_LOG(kLogError, "ofi %s: fi_close(mr) failed: %s (%d)", name_.c_str(), fi_strerror(-rc), rc);
    return chorusNetSystemError;
  }
  return chorusNetSuccess;
}

bool Device::addressOf(const uint8_t* name, size_t len, fi_addr_t* out) {
  std::string key(reinterpret_cast<const char*>(name), len);
  auto it = addrs_.find(key);
  if (it != addrs_.end()) {
    *out = it->second;
    return true;
  }
  fi_addr_t addr = FI_ADDR_NOTAVAIL;
  int n = 0;
  {
    CallScope call(calls_, "fi_av_insert", 0);
    n = fi_av_insert(av_, name, 1, &addr, 0, nullptr);
  }
  if (n != 1) {
    OFI_LOG(kLogError, "ofi %s: fi_av_insert of a %zu-byte peer name failed: %s (%d)", name_.c_str(), len,
            fi_strerror(n < 0 ? -n : FI_EINVAL), n);
    return false;
  }
  addrs_.emplace(std::move(key), addr);
  if (const int pid = peerPidOf(name, len); pid > 0 && peers_.count(addr) == 0) {
    peers_[addr] = std::make_unique<PeerWatch>(pid);
    calls_.addPid(pid);
  }
  *out = addr;
  return true;
}

PeerWatch* Device::watchOf(fi_addr_t addr) {
  if (peers_.empty()) return nullptr;
  auto it = peers_.find(addr);
  return it == peers_.end() ? nullptr : it->second.get();
}

void Device::watchPeer(fi_addr_t addr, int pid) {
  if (pid <= 0 || pid == getpid() || addr == FI_ADDR_UNSPEC || addr == FI_ADDR_NOTAVAIL || peers_.count(addr) != 0) return;
  peers_[addr] = std::make_unique<PeerWatch>(pid);
  // The watchdog's dead-peer rule is about shm's region locks; other providers keep the deadline.
  if (shm_) calls_.addPid(pid);
}

bool Device::recvFromGonePeer(const Request* r) {
  if (shm_ || r->kind != ReqKind::Recv || r->len <= eagerBytes_) return false;
  const Comm* c = r->comm;
  if (c == nullptr || (c->peerClosed && c->peerClosedClean)) return false;
  return peerGone(c->peerAddr, true);
}

bool Device::peerGone(fi_addr_t addr, bool thorough) {
  PeerWatch* w = watchOf(addr);
  return w != nullptr && w->gone(thorough);
}

}  // namespace chorus::ofi

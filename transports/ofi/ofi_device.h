// One device of the libfabric plugin: a provider domain with its fabric, domain, address vector
// (FI_AV_TABLE), tagged completion queue and RDM endpoint, shared by every comm on that device.
//
// Progress is manual and happens inside the plugin's calls: every call that touches a device
// (connect, accept, isend, irecv, test, close) takes the device's lock and runs progress():
// read the completion queue dry (fi_cq_read, errors through fi_cq_readerr), then retry the
// pending queues (each comm's in order), then (every ~100 ms) the keepalive check. The lock makes the endpoint
// single-threaded (FI_THREAD_DOMAIN is all we ask of the provider); comms on different threads
// share it, and whichever thread reads a completion finishes the request it belongs to.
//
// Bounded calls into the provider: every peer we can watch has a PeerWatch (with shm every
// address; with any provider a peer on this host that told us its pid), and no send (data or
// control, the close path included) goes to a peer that is dead or dying, nor (other providers
// than shm) a receive that may start a rendezvous with it (ofi_peer_watch.h); every provider call is marked for the watchdog (ofi_watchdog.h), which ends
// the process with a fatal error if one never returns.
//
// The methods are split by concept: ofi_device.cpp (opening, properties, memory registration,
// addresses), ofi_progress.cpp (posting, the pending queue, completions, request lifetime),
// ofi_control.cpp (connections, control messages, keepalive, failures).
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "chorus/net_plugin.h"
#include "transports/ofi/ofi_mr_cache.h"
#include "transports/ofi/ofi_peer_watch.h"
#include "transports/ofi/ofi_pending.h"
#include "transports/ofi/ofi_request.h"
#include "transports/ofi/ofi_watchdog.h"
#include "transports/ofi/ofi_wire.h"

namespace chorus::ofi {

// Knobs read once at init (getenv; see ofi_plugin.cpp for the list).
struct Settings {
  int64_t keepaliveNs = 1000000000;  // CHORUS_OFI_KEEPALIVE_MS; 0: no keepalive
  size_t mrCacheEntries = 256;       // CHORUS_OFI_MR_CACHE_MAX; 0: no caching
  size_t mrCacheBytes = size_t{4} << 30;  // CHORUS_OFI_MR_CACHE_MAX_BYTES
  bool forceMrLocal = false;         // CHORUS_OFI_FORCE_MR_LOCAL: behave as if FI_MR_LOCAL
};

// User requests in flight per comm (properties.maxInflight). Chorus's network transport keeps 8
// fragments per direction in flight; 64 leaves headroom without letting one comm take most of a
// provider's queue (1024-2048 entries on tcp;ofi_rxm and shm, a few hundred on verbs). More posts
// than the provider takes wait in the comm's pending queue.
constexpr int kMaxInflightPerComm = 64;

// What regMr hands out (and deregMr takes back).
struct MemHandle {
  uint32_t magic;
  Device* dev;
  fid_mr* mr;  // null for a zero-byte registration
  void* desc;
};
constexpr uint32_t kMemHandleMagic = 0x4d524f46;

// A send or receive comm. Send comms are created by connect (ready once the accept reply came);
// receive comms by accept (ready at once).
struct Comm {
  enum class Kind : uint8_t { Send, Recv };
  Kind kind = Kind::Send;
  Device* dev = nullptr;
  uint64_t id = 0;      // this side's id (the data tags of a receive comm carry its low bits)
  uint64_t peerId = 0;  // the other side's id
  fi_addr_t peerAddr = FI_ADDR_UNSPEC;
  bool ready = false;
  bool failed = false;
  int active = 0;       // user requests not yet released (the in-flight limit counts these)
  int outstanding = 0;  // user requests not yet complete (what the keepalive watches)
  Request* live = nullptr;  // list of the user requests not yet released
  uint64_t dataCount = 0;   // send comm: data messages handed to the provider; recv comm: received
  bool peerClosed = false;  // receive comm: the sender closed after posting peerSent messages
  bool peerClosedClean = false;  // ... with every one of them handed over (kClosedClean)
  uint64_t peerSent = 0;
  bool pingInFlight = false;
  int64_t lastActivityNs = 0;
  std::string connectKey;  // send comm while connecting: its key in Device::connecting_
  PendingQueue pending;    // data posts that got -FI_EAGAIN, in posting order
  bool waiting = false;    // in Device::waiting_ (pending is or was recently non-empty)
};

struct Listener {
  struct Incoming {
    std::string name;
    uint64_t srcId;
    int pid;  // the connecting process when it is on this host and pid namespace, else 0
  };
  Device* dev = nullptr;
  uint64_t id = 0;
  std::deque<Incoming> incoming;  // connect requests not yet accepted
};

class Device {
 public:
  // Takes ownership of info (one fi_dupinfo'd entry).
  Device(int index, fi_info* info, const Settings& settings);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  std::mutex mu;  // guards everything below and every fid of the device

  const std::string& name() const { return name_; }
  void properties(chorusNetProperties_v1_t* props) const;
  // Opens fabric, domain, AV, CQ and endpoint on first use and posts the control receives.
  chorusNetResult_t ensureOpen();

  // --- with mu held (ofi_progress.cpp) ---
  void progress();
  // Posts a user send or receive on comm; *out is null when the comm is at its in-flight limit.
  chorusNetResult_t postData(Comm* c, ReqKind kind, void* buf, size_t len, int tag, MemHandle* mh, Request** out);
  // test(): *done = 1 once complete; then the request is released and its result returned.
  chorusNetResult_t testRequest(Request* r, int* done, size_t* size);

  // --- with mu held (ofi_control.cpp) ---
  chorusNetResult_t listen(WireHandle* handle, Listener** out);
  chorusNetResult_t connect(const WireHandle& handle, Comm** out);
  chorusNetResult_t accept(Listener* l, Comm** out);
  void closeComm(Comm* c);
  void closeListener(Listener* l);

  // --- with mu held (ofi_device.cpp) ---
  chorusNetResult_t regMr(void* data, size_t size, MemHandle** out);
  chorusNetResult_t deregMr(MemHandle* mh);

 private:
  // ofi_device.cpp
  int registerRaw(void* addr, size_t len, fid_mr** mr, void** desc);
  bool addressOf(const uint8_t* name, size_t len, fi_addr_t* out);
  bool needLocalMr() const { return mrLocal_ || settings_.forceMrLocal; }
  int peerPidOf(const uint8_t* name, size_t len) const;
  // shm: whether the peer at addr is dead or dying (never for an address without a watch);
  // thorough: see PeerWatch::gone.
  bool peerGone(fi_addr_t addr, bool thorough);
  PeerWatch* watchOf(fi_addr_t addr);
  // Watches the process pid at addr (once per address; pid 0 or this process: nothing).
  void watchPeer(fi_addr_t addr, int pid);
  // A receive that must not be posted: larger than an eager message, from a peer that is gone
  // and did not close cleanly (ofi_peer_watch.h, the tcp;ofi_rxm crash).
  bool recvFromGonePeer(const Request* r);
  // ofi_progress.cpp
  Request* newRequest();
  void submit(Request* r);
  ssize_t post(Request* r);
  void drainPending();
  void drainComm(Comm* c);
  void enqueue(Request* r);
  void dropQueued(Comm* c);
  void onPostError(Request* r, ssize_t rc);
  void readCompletions();
  void onCompletion(Request* r, size_t len);
  void onError(Request* r, const fi_cq_err_entry& e);
  void complete(Request* r, chorusNetResult_t result, size_t size);
  void recycleIfIdle(Request* r);
  void link(Comm* c, Request* r);
  void unlink(Request* r);
  // ofi_control.cpp
  // Returns the message's sequence number (0: no request could be had).
  uint64_t sendCtrl(CtrlType type, fi_addr_t addr, uint64_t dstId, uint64_t srcId, uint64_t value, uint64_t commId,
                    uint8_t flags = 0);
  void postCtrlRecvs();
  void onCtrlMessage(const uint8_t* data, size_t len);
  void onCtrlSent(Request* r, bool ok);
  void failComm(Comm* c, const char* why);
  void failPeer(fi_addr_t addr, const char* why);
  void checkPeerClosed(Comm* c);
  void keepalive(int64_t now);
  uint64_t newId() { return nextId_++; }

  const int index_;
  fi_info* info_;
  const Settings settings_;
  std::string name_;
  TagLayout tags_;
  bool directed_ = false;  // FI_DIRECTED_RECV: data receives name their source
  bool shm_ = false;       // the shm provider: peers are local processes named by pid
  bool mrLocal_ = false, mrEndpoint_ = false, mrProvKey_ = false;
  size_t injectSize_ = 0;
  uint64_t hostTag_ = 0;   // localHostTag(): sent in control messages
  size_t eagerBytes_ = 0;  // receives above this may match a rendezvous request (recvFromGonePeer)
  size_t maxMsg_ = 0;

  bool open_ = false;
  chorusNetResult_t openResult_ = chorusNetSuccess;
  fid_fabric* fabric_ = nullptr;
  fid_domain* domain_ = nullptr;
  fid_av* av_ = nullptr;
  fid_cq* cq_ = nullptr;
  fid_ep* ep_ = nullptr;
  std::vector<uint8_t> epName_;
  std::vector<fid_mr*> slabMrs_;
  // shm only: every data receive gets this reserved (never touched unless written) region as a
  // second iovec, so that a message larger than its receive overflows into it instead of being
  // truncated. libfabric 1.17's shm spins forever inside fi_cq_read on a truncated message sent
  // by cross-memory attach (its CMA loop waits for bytes the short receive iovec cannot take) and
  // never completes one sent by SAR; an overflow is reported instead (chorusNetInternalError).
  // Overflows beyond the sink's size still meet the provider bug.
  void* sink_ = nullptr;
  size_t sinkBytes_ = 0;
  void* sinkDesc_ = nullptr;
  fid_mr* sinkMr_ = nullptr;
  uint64_t nextKey_ = 1;

  RequestPool pool_;
  PendingQueue ctrlPending_;     // control posts that got -FI_EAGAIN
  std::vector<Comm*> waiting_;   // comms whose pending queue may hold posts
  std::unique_ptr<MrCache> cache_;
  std::map<std::string, fi_addr_t> addrs_;
  std::unordered_map<fi_addr_t, std::unique_ptr<PeerWatch>> peers_;  // shm: each peer's process
  CallRecord calls_;  // the provider call in progress, for the watchdog
  std::unordered_map<uint64_t, Comm*> comms_;
  std::unordered_map<uint64_t, Listener*> listeners_;
  std::map<std::string, Comm*> connecting_;
  uint64_t nextId_ = 1;
  int64_t nextKeepaliveNs_ = 0;
  uint64_t ctrlSeq_ = 0;
  std::unordered_set<uint64_t> closedInFlight_;  // kCtrlClosed messages not yet completed (by seq)
  uint64_t eagains_ = 0;  // posts that went through the pending queue
};

int64_t nowNs();

}  // namespace chorus::ofi

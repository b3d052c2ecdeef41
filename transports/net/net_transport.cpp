// A Transport over any network plugin (include/chorus/net_plugin.h): the built-in UCX and OFI
// plugins and those loaded from CHORUS_NET_PLUGIN all come through here.
//
// Setup of a pair (in connect(), collective per pair):
//  1. each rank listens once per transport (at construction) and sends its listen handle to every
//     listed peer out of band (tag kTagNetSetup + slot);
//  2. each rank connects to each peer's handle (non-blocking, polled) and sends a hello on the new
//     sendComm naming itself (commId, rank);
//  3. each rank accepts incoming connections and reads their hellos to learn which peer each is.
//     A connection whose hello names a peer of a later connect() call waits for that call.
// All of it is polled against the deadline and the communicator's abort flag, and same-host
// peers against their pid: one that dies before its connections are made fails the setup at once
// (chorusRemoteError naming it) instead of at the deadline.
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "base/error.h"
#include "base/log.h"
#include "transports/net/net_connection.h"
#include "transports/net/net_plugin_host.h"
#include "transports/transport.h"

namespace chorus {
namespace net {
namespace {

constexpr uint64_t kHelloMagic = 0x43484f52554e4554ull;  // "CHORUNET"

struct Hello {
  uint64_t magic = kHelloMagic;
  uint64_t commId = 0;
  uint64_t secret = 0;
  int32_t rank = -1;
  int32_t pad = 0;
};

struct Handle {
  char bytes[CHORUS_NET_HANDLE_MAXSIZE];
};

class NetTransport final : public Transport {
 public:
  NetTransport(const chorusNet_v1_t& plugin, const TransportContext& ctx, int slot);
  ~NetTransport() override;

  const char* name() const override { return name_.c_str(); }
  bool canReach(int peer) const override { return true; }
  double latencyUs() const override { return latencyUs_; }
  double bandwidthGBps() const override { return bandwidthGBps_; }
  std::vector<std::unique_ptr<Connection>> connect(const std::vector<int>& peers, Deadline deadline) override;

 private:
  // An accepted recvComm whose hello has not been read yet.
  struct Incoming {
    void* recvComm = nullptr;
    void* request = nullptr;
    Hello hello;
  };

  void pollAccepts(bool* moved);
  shm::ProcessWatch watchFor(int peer) const;

  const chorusNet_v1_t& plugin_;
  TransportContext ctx_;
  int slot_;
  int dev_ = 0;
  std::string name_;
  double latencyUs_ = 0;
  double bandwidthGBps_ = 0;
  NetLinkParams params_;
  void* listenComm_ = nullptr;
  Handle handle_{};
  // Accepted, hello pending. Held by pointer: a pending receive writes into its Hello.
  std::vector<std::unique_ptr<Incoming>> incoming_;
  std::multimap<int, void*> identified_;    // accepted and identified, not yet claimed by a connect()
};

NetTransport::NetTransport(const chorusNet_v1_t& plugin, const TransportContext& ctx, int slot) : plugin_(plugin), ctx_(ctx), slot_(slot) {
  CHORUS_ASSERT(slot >= 0 && slot < 8);
  ensureInitialised(plugin);
  int ndev = 0;
  check(plugin.devices(&ndev), plugin, "listing devices");
  if (ndev < 1) CHORUS_THROW(chorusSystemError, "the %s network plugin reports no device", plugin.name);
  // The device closest to this rank: the first one on the NUMA node the rank is bound to.
  chorusNetProperties_v1_t props{};
  int bound = ctx.numaNode;
  for (int d = 0; d < ndev; ++d) {
    chorusNetProperties_v1_t p{};
    check(plugin.getProperties(d, &p), plugin, format("reading the properties of device %d", d));
    if (d == 0 || (bound >= 0 && p.numaNode == bound && props.numaNode != bound)) {
      props = p;
      dev_ = d;
    }
  }
  props.name[sizeof(props.name) - 1] = 0;
  name_ = slot == 2 ? std::string("plugin:") + plugin.name : std::string(plugin.name);
  // The link class declared to the tuner: the plugin's numbers where it has them, else those of a
  // 100 Gb/s RDMA NIC (docs/TUNING.md).
  latencyUs_ = props.latencyUs > 0 ? props.latencyUs : 5.0;
  bandwidthGBps_ = props.speedMbps > 0 ? props.speedMbps / 8000.0 : 12.5;
  params_.chunk = ctx.config ? ctx.config->netChunkBytes : params_.chunk;
  if (props.maxMessageBytes > 0 && params_.chunk > props.maxMessageBytes) params_.chunk = props.maxMessageBytes & ~size_t(63);
  int inflight = ctx.config ? ctx.config->netInflight : params_.inflight;
  params_.inflight = std::max(1, props.maxInflight > 0 ? std::min(inflight, props.maxInflight) : inflight);
  params_.regRequired = props.regRequired != 0;
  check(plugin.listen(dev_, handle_.bytes, &listenComm_), plugin, "opening a listener");
  CHORUS_INFO(kLogTransport, "%s: device %d (%s), %.1f us, %.2f GB/s, %zu-byte fragments, %d in flight%s", name_.c_str(), dev_, props.name,
              latencyUs_, bandwidthGBps_, params_.chunk, params_.inflight, params_.regRequired ? ", registers every buffer" : "");
}

NetTransport::~NetTransport() {
  for (auto& in : incoming_) plugin_.closeRecv(in->recvComm);
  for (auto& [peer, comm] : identified_) plugin_.closeRecv(comm);
  if (listenComm_) plugin_.closeListen(listenComm_);
}

shm::ProcessWatch NetTransport::watchFor(int peer) const {
  // Same host and pid namespace: the peer's pid is meaningful here, and its death is noticed
  // even where the fabric cannot tell (e.g. libfabric's shm provider).
  const PeerCard& me = (*ctx_.cards)[ctx_.rank];
  const PeerCard& other = (*ctx_.cards)[peer];
  if (other.hostHash == me.hostHash && other.pidNamespace == me.pidNamespace) return shm::ProcessWatch(other.pid);
  return shm::ProcessWatch();
}

void NetTransport::pollAccepts(bool* moved) {
  for (;;) {
    void* rc = nullptr;
    check(plugin_.accept(listenComm_, &rc), plugin_, "accepting a connection");
    if (!rc) break;
    *moved = true;
    incoming_.push_back(std::make_unique<Incoming>());
    incoming_.back()->recvComm = rc;
  }
  for (size_t i = 0; i < incoming_.size();) {
    Incoming& in = *incoming_[i];
    if (!in.request) {
      check(plugin_.irecv(in.recvComm, &in.hello, sizeof(Hello), kHelloTag, nullptr, &in.request), plugin_, "receiving a hello");
      if (!in.request) {
        ++i;
        continue;
      }
    }
    int done = 0;
    size_t size = 0;
    chorusNetResult_t r = plugin_.test(in.request, &done, &size);
    if (r != chorusNetSuccess || (done && (size != sizeof(Hello) || in.hello.magic != kHelloMagic || in.hello.commId != ctx_.commId ||
                                           in.hello.secret != ctx_.secret[0] || in.hello.rank < 0 || in.hello.rank >= ctx_.nranks))) {
      // Not one of ours (a stray or failed connection): drop it, the real peer connects anew.
      CHORUS_WARN(kLogTransport, "%s: dropping an incoming connection with a bad hello (result %d, %zu bytes)", name_.c_str(), (int)r, size);
      plugin_.closeRecv(in.recvComm);
      incoming_.erase(incoming_.begin() + i);
      *moved = true;
      continue;
    }
    if (!done) {
      ++i;
      continue;
    }
    *moved = true;
    identified_.emplace(in.hello.rank, in.recvComm);
    incoming_.erase(incoming_.begin() + i);
  }
}

std::vector<std::unique_ptr<Connection>> NetTransport::connect(const std::vector<int>& peers, Deadline deadline) {
  const uint32_t tag = kTagNetSetup + static_cast<uint32_t>(slot_);
  size_t n = peers.size();
  for (int p : peers) ctx_.oob->send(p, tag, &handle_, sizeof(handle_), deadline);
  std::vector<Handle> handles(n);
  for (size_t i = 0; i < n; ++i) ctx_.oob->recv(peers[i], tag, &handles[i], sizeof(Handle), deadline);

  std::vector<void*> sendComms(n, nullptr), recvComms(n, nullptr), helloReqs(n, nullptr);
  std::vector<bool> helloSent(n, false);
  Hello hello;
  hello.commId = ctx_.commId;
  hello.secret = ctx_.secret[0];
  hello.rank = ctx_.rank;
  size_t complete = 0;
  Backoff backoff;
  Clock::time_point nextGoneCheck = Clock::now() + std::chrono::milliseconds(250);
  std::vector<shm::ProcessWatch> watches;
  watches.reserve(n);
  for (int p : peers) watches.push_back(watchFor(p));
  try {
    while (complete < n) {
      bool moved = false;
      for (size_t i = 0; i < n; ++i) {
        try {
          if (!sendComms[i]) {
            check(plugin_.connect(dev_, handles[i].bytes, &sendComms[i]), plugin_, format("connecting to rank %d", peers[i]));
            if (!sendComms[i]) continue;
            moved = true;
          }
          if (!helloSent[i]) {
            if (!helloReqs[i]) {
              check(plugin_.isend(sendComms[i], &hello, sizeof(hello), kHelloTag, nullptr, &helloReqs[i]), plugin_,
                    format("sending a hello to rank %d", peers[i]));
              if (!helloReqs[i]) continue;
            }
            int done = 0;
            check(plugin_.test(helloReqs[i], &done, nullptr), plugin_, format("sending a hello to rank %d", peers[i]));
            if (done) {
              helloReqs[i] = nullptr;
              helloSent[i] = true;
              moved = true;
              if (recvComms[i]) ++complete;
            }
          }
        } catch (Error& e) {
          if (e.peer() < 0) e.setPeer(peers[i]);  // run() then asks that peer where the failure started
          throw;
        }
      }
      pollAccepts(&moved);
      for (size_t i = 0; i < n; ++i) {
        if (recvComms[i]) continue;
        auto it = identified_.find(peers[i]);
        if (it == identified_.end()) continue;
        recvComms[i] = it->second;
        identified_.erase(it);
        moved = true;
        if (helloSent[i]) ++complete;
      }
      if (complete == n) break;
      if (ctx_.abortFlag && ctx_.abortFlag->load(std::memory_order_relaxed))
        CHORUS_THROW(chorusInvalidUsage, "%s: connection setup interrupted by chorusCommAbort", name_.c_str());
      if (!moved && ctx_.peerGone && Clock::now() >= nextGoneCheck) {
        // A peer that died or broke before connecting would be waited for until the deadline.
        nextGoneCheck = Clock::now() + std::chrono::milliseconds(250);
        for (size_t i = 0; i < n; ++i) {
          if ((sendComms[i] && helloSent[i] && recvComms[i]) || !ctx_.peerGone(peers[i])) continue;
          Error gone(chorusRemoteError, format("%s: rank %d will not connect: its process died or its communicator broke", name_.c_str(),
                                               peers[i]));
          gone.setPeer(peers[i]);
          throw gone;
        }
      }
      for (size_t i = 0; !moved && i < n; ++i) {
        if ((!sendComms[i] || !helloSent[i] || !recvComms[i]) && !watches[i].alive())
          CHORUS_THROW(chorusRemoteError, "%s: rank %d (pid %d) died during connection setup", name_.c_str(), peers[i],
                       static_cast<int>(watches[i].pid()));
      }
      if (deadline.expired()) {
        std::string missing;
        for (size_t i = 0; i < n; ++i)
          if (!sendComms[i] || !helloSent[i] || !recvComms[i]) missing += format("%s%d", missing.empty() ? "" : ", ", peers[i]);
        CHORUS_THROW(chorusTimeout, "%s: connection setup with rank(s) %s did not complete before the deadline (CHORUS_TIMEOUT)",
                     name_.c_str(), missing.c_str());
      }
      if (moved)
        backoff.reset();
      else
        backoff.pause();
    }
  } catch (...) {
    for (size_t i = 0; i < n; ++i) {
      if (sendComms[i]) plugin_.closeSend(sendComms[i]);
      if (recvComms[i]) plugin_.closeRecv(recvComms[i]);
    }
    throw;
  }
  std::vector<std::unique_ptr<Connection>> conns;
  for (size_t i = 0; i < n; ++i)
    conns.push_back(std::make_unique<NetConnection>(peers[i], plugin_, name_, sendComms[i], recvComms[i], params_, watchFor(peers[i])));
  return conns;
}

}  // namespace
}  // namespace net

std::unique_ptr<Transport> makeNetTransport(const chorusNet_v1_t& plugin, const TransportContext& ctx, int oobSlot) {
  return std::make_unique<net::NetTransport>(plugin, ctx, oobSlot);
}

}  // namespace chorus

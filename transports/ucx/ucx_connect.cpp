// listen / connect / accept / close of the UCX plugin (design in ucx_comm.h).
//
// Connection setup, never blocking:
//   listener side: ucp_listener_create on ListenAddress (ucx_address.h); its callback only queues
//     the connection request. accept() creates the ep from it, assigns the connection id and
//     posts a stream send of Handshake{magic, id, listener id}; it returns the recvComm once that
//     send has completed (so the peer's connect can finish without more calls on this side).
//   connecting side: the first connect() with a handle creates a client-server ep to the handle's
//     sockaddr and posts a stream receive for the Handshake; later calls with the same handle
//     progress the worker and return the sendComm once the Handshake has arrived and names the
//     listener of the handle (a port reused by another listener is refused, not silently used).
// Closing: pending receives are canceled; a send comm with nothing pending whose peer is alive is
// flushed (bounded); then the ep is force-closed and the worker progressed briefly (drainWorker)
// so that UCX really releases the transport endpoints: the peer's ep then gets its error callback
// (connection reset / endpoint timeout), which fails the peer's requests. A graceful (flush-mode)
// close would need the peer's progress to complete; the force close does not. Every wait is
// bounded by kCloseTimeoutNs; a comm whose ep could not be released in time is left allocated,
// since UCX may still call its error callback.
#include <netinet/in.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "transports/ucx/ucx_address.h"
#include "transports/ucx/ucx_comm.h"
#include "transports/ucx/ucx_state.h"

namespace chorus::ucxnet {

struct ListenComm {
  CommKind kind = CommKind::kListen;
  ucp_listener_h listener = nullptr;
  UcxHandle handle{};
  std::mutex mu;
  std::deque<ucp_conn_request_h> queue;  // connection requests not accepted yet (guarded by mu)
  std::mutex acceptMu;
  std::vector<Comm*> handshaking;  // accepted, handshake send still in flight (guarded by acceptMu)
};

namespace {

// How long a close waits for UCX (flush, then force close, then canceled requests): the peer is
// then told by the transport's own teardown; 1 s is far above a live peer's round trip.
constexpr uint64_t kCloseTimeoutNs = 1000000000ull;

// Connection ids: unique in this process's worker for its lifetime (never reused).
std::atomic<uint32_t> gNextConnId{1};

// Connects in progress, found again by their handle.
std::mutex gPendingMu;
std::vector<Comm*> gPending;

uint64_t newListenerId() {
  static const uint32_t salt = [] {
    uint32_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(v)))
      v = static_cast<uint32_t>(getpid()) ^ static_cast<uint32_t>(nowNs());
    return v;
  }();
  static std::atomic<uint32_t> counter{0};
  return (static_cast<uint64_t>(salt) << 32) | (counter.fetch_add(1) + 1);
}

void onEpError(void* arg, ucp_ep_h ep, ucs_status_t status) {
  Comm* c = static_cast<Comm*>(arg);
  c->failStatus.store(status);
  c->failedAtNs.store(nowNs());
  if (!c->failed.exchange(true))
    UCXNET_INFO("ucx: %s comm %p: peer failed or closed: %s", c->kind == CommKind::kSend ? "send" : "recv", (void*)c,
                ucs_status_string(status));
}

void onConnRequest(ucp_conn_request_h request, void* arg) {
  ListenComm* l = static_cast<ListenComm*>(arg);
  std::lock_guard<std::mutex> lock(l->mu);
  l->queue.push_back(request);
}

void fillEpErrorHandling(ucp_ep_params_t* p, Comm* c) {
  p->field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  p->err_mode = UCP_ERR_HANDLING_MODE_PEER;
  p->err_handler.cb = onEpError;
  p->err_handler.arg = c;
}

// Releases a request once complete or after waiting up to timeoutNs; true when it completed.
bool finishRequest(void*& request, uint64_t timeoutNs) {
  if (request == nullptr) return true;
  const bool done = waitBounded(request, timeoutNs) != UCS_INPROGRESS;
  if (!UCS_PTR_IS_ERR(request)) ucp_request_free(request);  // an incomplete one is released by UCX when it completes
  request = nullptr;
  return done;
}

// A force-closed ep's transport endpoints (its TCP sockets among them) are released by later
// worker progress, and only then does the peer see the connection go. A process that closes a
// comm and then stops calling the plugin (it waits out of band, or aborts) must still tell its
// peers: progress until the worker has been idle a few times in a row and at least kDrainMinNs
// passed, kDrainMaxNs at most (measured: 4 progress calls, ~1 ms on loopback).
constexpr uint64_t kDrainMinNs = 1000000ull;
constexpr uint64_t kDrainMaxNs = 50000000ull;
void drainWorker() {
  const uint64_t t0 = nowNs();
  int idle = 0;
  for (;;) {
    const uint64_t elapsed = nowNs() - t0;
    if (elapsed >= kDrainMaxNs || (idle >= 3 && elapsed >= kDrainMinNs)) return;
    idle = ucp_worker_progress(state().worker) ? 0 : idle + 1;
  }
}

// Tears a comm down (see the file comment). Deletes it unless UCX could not release its ep in time.
void destroyComm(Comm* c) {
  State& s = state();
  const uint64_t deadline = nowNs() + kCloseTimeoutNs;
  auto remaining = [&] {
    const uint64_t now = nowNs();
    return now < deadline ? deadline - now : 0;
  };
  // Abandoned data requests: receives are canceled (UCX does not tie them to the ep); sends are
  // canceled by the force close below.
  uint64_t busy = ~c->freeSlots.load();
  for (int i = 0; i < kMaxInflight; ++i) {
    if (!(busy >> i & 1)) continue;
    const RequestInfo* info = static_cast<RequestInfo*>(c->inflight[i]);
    if (!info->inUcx) {
      busy &= ~(1ull << i);  // completed when posted: nothing of UCX's to release
      continue;
    }
    if (info->isRecv) ucp_request_cancel(s.worker, c->inflight[i]);
  }

  bool clean = true;
  if (c->ep) {
    if (!c->failed.load() && c->kind == CommKind::kSend && busy == 0) {
      // Let sends that completed locally leave this process before the connection goes away.
      // (Not with sends still pending: they are abandoned, and a rendezvous the peer never
      // matches would hold the flush for the whole timeout.)
      ucp_request_param_t fp{};
      void* flush = ucp_ep_flush_nbx(c->ep, &fp);
      finishRequest(flush, remaining());
    }
    ucp_request_param_t cp{};
    cp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    cp.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* close = ucp_ep_close_nbx(c->ep, &cp);
    // The force close itself does not wait for the peer; it gets its own full timeout.
    clean = finishRequest(close, kCloseTimeoutNs);
    c->ep = nullptr;
    drainWorker();
  }
  for (int i = 0; i < kMaxInflight; ++i) {
    if (!(busy >> i & 1)) continue;
    MemRegion* region = static_cast<RequestInfo*>(c->inflight[i])->region;
    // A request UCX did not finish keeps its registration mapped (ucx_comm.h).
    if (finishRequest(c->inflight[i], remaining()) && region) releaseRegion(region);
  }
  finishRequest(c->hsRequest, remaining());
  if (!clean) {
    UCXNET_WARN("ucx: comm %p: its endpoint did not close within %.1f s; leaving it to UCX", (void*)c, kCloseTimeoutNs / 1e9);
    c->kind = CommKind::kDead;
    return;
  }
  c->kind = CommKind::kDead;
  delete c;
}

// Starts a connection to handle h: the ep and the handshake receive.
chorusNetResult_t startConnect(const UcxHandle& h, Comm** out) {
  sockaddr_storage ss;
  socklen_t len = 0;
  char where[64];
  handleToString(h, where, sizeof(where));
  if (!handleToSockaddr(h, &ss, &len)) {
    UCXNET_ERROR("ucx: connect: not a UCX plugin handle (magic %#x version %u)", h.magic, h.version);
    return chorusNetInvalidArgument;
  }
  Comm* c = new Comm();
  c->kind = CommKind::kSend;
  c->handle = h;
  ucp_ep_params_t p{};
  p.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
  p.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  p.sockaddr.addr = reinterpret_cast<const sockaddr*>(&ss);
  p.sockaddr.addrlen = len;
  fillEpErrorHandling(&p, c);
  ucs_status_t st = ucp_ep_create(state().worker, &p, &c->ep);
  if (st != UCS_OK) {
    UCXNET_ERROR("ucx: connect to %s: ucp_ep_create failed: %s", where, ucs_status_string(st));
    delete c;
    return resultOf(st, false);
  }
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  rp.flags = UCP_STREAM_RECV_FLAG_WAITALL;
  size_t got = 0;
  void* r = ucp_stream_recv_nbx(c->ep, &c->hs, sizeof(c->hs), &got, &rp);
  if (UCS_PTR_IS_ERR(r)) {
    UCXNET_ERROR("ucx: connect to %s: handshake receive failed: %s", where, ucs_status_string(UCS_PTR_STATUS(r)));
    destroyComm(c);
    return resultOf(UCS_PTR_STATUS(r), false);
  }
  if (r == nullptr) c->hsDone = true;  // already there (completed in place)
  c->hsRequest = r;
  UCXNET_TRACE("ucx: connecting comm %p to %s", (void*)c, where);
  *out = c;
  return chorusNetSuccess;
}

// One step of a connect in progress: success with *ready set once the handshake is in, an error
// once it cannot complete.
chorusNetResult_t stepConnect(Comm* c, bool* ready) {
  *ready = false;
  char where[64];
  handleToString(c->handle, where, sizeof(where));
  if (c->hsRequest) {
    size_t got = 0;
    ucs_status_t st = ucp_stream_recv_request_test(c->hsRequest, &got);
    if (st == UCS_INPROGRESS && !c->failed.load()) return chorusNetSuccess;
    if (st == UCS_INPROGRESS) st = static_cast<ucs_status_t>(c->failStatus.load());
    if (st != UCS_OK) {
      UCXNET_ERROR("ucx: connect to %s failed: %s", where, ucs_status_string(st));
      return resultOf(st, true);
    }
    ucp_request_free(c->hsRequest);
    c->hsRequest = nullptr;
    c->hsDone = true;
  }
  if (!c->hsDone) return chorusNetSuccess;
  if (c->hs.magic != kHandshakeMagic || c->hs.listenerId != c->handle.listenerId || c->hs.connId == 0) {
    UCXNET_ERROR("ucx: connect to %s: the peer is not the listener of this handle (handshake magic %#x, listener %#llx, expected %#llx)",
                 where, c->hs.magic, (unsigned long long)c->hs.listenerId, (unsigned long long)c->handle.listenerId);
    return chorusNetRemoteError;
  }
  c->tagBase = static_cast<uint64_t>(c->hs.connId) << 32;
  UCXNET_INFO("ucx: send comm %p connected to %s (connection id %u)", (void*)c, where, c->hs.connId);
  *ready = true;
  return chorusNetSuccess;
}

// Creates the ep of an incoming connection, assigns its id and posts the handshake send. NULL when
// the connection cannot be set up (logged; the client's connect fails on its side).
Comm* startAccept(ListenComm* l, ucp_conn_request_h request) {
  Comm* c = new Comm();
  c->kind = CommKind::kRecv;
  ucp_ep_params_t p{};
  p.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST;
  p.conn_request = request;
  fillEpErrorHandling(&p, c);
  ucs_status_t st = ucp_ep_create(state().worker, &p, &c->ep);
  if (st != UCS_OK) {
    UCXNET_WARN("ucx: accept: ucp_ep_create from a connection request failed: %s", ucs_status_string(st));
    delete c;
    return nullptr;
  }
  const uint32_t id = gNextConnId.fetch_add(1);
  c->tagBase = static_cast<uint64_t>(id) << 32;
  c->hs = Handshake{kHandshakeMagic, id, l->handle.listenerId};
  ucp_request_param_t sp{};
  void* r = ucp_stream_send_nbx(c->ep, &c->hs, sizeof(c->hs), &sp);
  if (UCS_PTR_IS_ERR(r)) {
    UCXNET_WARN("ucx: accept: handshake send failed: %s", ucs_status_string(UCS_PTR_STATUS(r)));
    destroyComm(c);
    return nullptr;
  }
  c->hsRequest = r;
  return c;
}

ListenComm* asListen(void* p) {
  ListenComm* l = static_cast<ListenComm*>(p);
  return l && l->kind == CommKind::kListen ? l : nullptr;
}

}  // namespace

Comm* asComm(void* p, CommKind kind) {
  Comm* c = static_cast<Comm*>(p);
  return c && c->kind == kind ? c : nullptr;
}

chorusNetResult_t ucxListen(int dev, void* handle, void** listenComm) {
  if (chorusNetResult_t r = requireReady("listen")) return r;
  if (dev != 0 || handle == nullptr || listenComm == nullptr) return chorusNetInvalidArgument;
  *listenComm = nullptr;
  ListenAddress addr;
  if (chorusNetResult_t r = chooseListenAddress(&addr)) return r;

  ListenComm* l = new ListenComm();
  ucp_listener_params_t p{};
  p.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  p.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr.bind);
  p.sockaddr.addrlen = addr.bindLen;
  p.conn_handler.cb = onConnRequest;
  p.conn_handler.arg = l;
  ucs_status_t st = ucp_listener_create(state().worker, &p, &l->listener);
  if (st != UCS_OK) {
    UCXNET_ERROR("ucx: ucp_listener_create on interface %s failed: %s", addr.ifname, ucs_status_string(st));
    delete l;
    return chorusNetSystemError;
  }
  ucp_listener_attr_t attr{};
  attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  st = ucp_listener_query(l->listener, &attr);
  if (st != UCS_OK) {
    UCXNET_ERROR("ucx: ucp_listener_query failed: %s", ucs_status_string(st));
    ucp_listener_destroy(l->listener);
    delete l;
    return chorusNetSystemError;
  }
  UcxHandle& h = l->handle;
  h.magic = kHandleMagic;
  h.version = kHandleVersion;
  h.family = addr.advertise.ss_family;
  if (h.family == AF_INET)
    memcpy(h.addr, &reinterpret_cast<const sockaddr_in*>(&addr.advertise)->sin_addr, 4);
  else
    memcpy(h.addr, &reinterpret_cast<const sockaddr_in6*>(&addr.advertise)->sin6_addr, 16);
  h.port = attr.sockaddr.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&attr.sockaddr)->sin_port
                                              : reinterpret_cast<const sockaddr_in6*>(&attr.sockaddr)->sin6_port;
  h.listenerId = newListenerId();
  memset(handle, 0, CHORUS_NET_HANDLE_MAXSIZE);
  memcpy(handle, &h, sizeof(h));
  char where[64];
  handleToString(h, where, sizeof(where));
  UCXNET_INFO("ucx: listening on %s (interface %s)", where, addr.ifname);
  *listenComm = l;
  return chorusNetSuccess;
}

chorusNetResult_t ucxConnect(int dev, const void* handle, void** sendComm) {
  if (chorusNetResult_t r = requireReady("connect")) return r;
  if (dev != 0 || handle == nullptr || sendComm == nullptr) return chorusNetInvalidArgument;
  *sendComm = nullptr;
  UcxHandle h;
  memcpy(&h, handle, sizeof(h));

  std::lock_guard<std::mutex> lock(gPendingMu);
  Comm* c = nullptr;
  size_t idx = 0;
  for (; idx < gPending.size(); ++idx)
    if (memcmp(&gPending[idx]->handle, &h, sizeof(h)) == 0) break;
  if (idx < gPending.size()) {
    c = gPending[idx];
  } else {
    if (chorusNetResult_t r = startConnect(h, &c)) return r;
    gPending.push_back(c);
  }
  ucp_worker_progress(state().worker);
  bool ready = false;
  chorusNetResult_t r = stepConnect(c, &ready);
  if (r != chorusNetSuccess || ready) gPending.erase(gPending.begin() + static_cast<std::ptrdiff_t>(idx));
  if (r != chorusNetSuccess) {
    destroyComm(c);
    return r;
  }
  if (ready) *sendComm = c;
  return chorusNetSuccess;
}

chorusNetResult_t ucxAccept(void* listenComm, void** recvComm) {
  if (chorusNetResult_t r = requireReady("accept")) return r;
  ListenComm* l = asListen(listenComm);
  if (l == nullptr || recvComm == nullptr) return chorusNetInvalidArgument;
  *recvComm = nullptr;
  ucp_worker_progress(state().worker);
  std::lock_guard<std::mutex> acceptLock(l->acceptMu);
  for (;;) {
    ucp_conn_request_h request = nullptr;
    {
      std::lock_guard<std::mutex> lock(l->mu);
      if (l->queue.empty()) break;
      request = l->queue.front();
      l->queue.pop_front();
    }
    if (Comm* c = startAccept(l, request)) l->handshaking.push_back(c);
  }
  // Hand out a comm once its handshake has left: the connecting side can then finish its connect
  // even if this process makes no further calls for a while.
  for (size_t i = 0; i < l->handshaking.size();) {
    Comm* c = l->handshaking[i];
    ucs_status_t st = c->hsRequest ? ucp_request_check_status(c->hsRequest) : UCS_OK;
    if (st == UCS_INPROGRESS && !c->failed.load()) {
      ++i;
      continue;
    }
    l->handshaking.erase(l->handshaking.begin() + static_cast<std::ptrdiff_t>(i));
    if (st == UCS_INPROGRESS) st = static_cast<ucs_status_t>(c->failStatus.load());
    if (st != UCS_OK) {
      // That client is gone; the listener is fine, and the client's connect fails on its side.
      UCXNET_WARN("ucx: accept: dropping a connection whose handshake failed: %s", ucs_status_string(st));
      destroyComm(c);
      continue;
    }
    if (c->hsRequest) ucp_request_free(c->hsRequest);
    c->hsRequest = nullptr;
    UCXNET_INFO("ucx: recv comm %p accepted (connection id %u)", (void*)c, c->hs.connId);
    *recvComm = c;
    return chorusNetSuccess;
  }
  return chorusNetSuccess;
}

chorusNetResult_t ucxCloseSend(void* sendComm) {
  if (chorusNetResult_t r = requireReady("closeSend")) return r;
  Comm* c = asComm(sendComm, CommKind::kSend);
  if (c == nullptr) return chorusNetInvalidArgument;
  destroyComm(c);
  return chorusNetSuccess;
}

chorusNetResult_t ucxCloseRecv(void* recvComm) {
  if (chorusNetResult_t r = requireReady("closeRecv")) return r;
  Comm* c = asComm(recvComm, CommKind::kRecv);
  if (c == nullptr) return chorusNetInvalidArgument;
  destroyComm(c);
  return chorusNetSuccess;
}

chorusNetResult_t ucxCloseListen(void* listenComm) {
  if (chorusNetResult_t r = requireReady("closeListen")) return r;
  ListenComm* l = asListen(listenComm);
  if (l == nullptr) return chorusNetInvalidArgument;
  {
    // Connections nobody will accept: their clients' connects fail at once instead of waiting.
    std::lock_guard<std::mutex> lock(l->mu);
    for (ucp_conn_request_h request : l->queue) ucp_listener_reject(l->listener, request);
    l->queue.clear();
  }
  ucp_listener_destroy(l->listener);  // no callback runs after it returns
  if (!l->queue.empty())
    UCXNET_TRACE("ucx: %zu connection request(s) arrived while the listener closed", l->queue.size());
  {
    std::lock_guard<std::mutex> lock(l->acceptMu);
    for (Comm* c : l->handshaking) destroyComm(c);
    l->handshaking.clear();
  }
  l->kind = CommKind::kDead;
  delete l;
  return chorusNetSuccess;
}

}  // namespace chorus::ucxnet

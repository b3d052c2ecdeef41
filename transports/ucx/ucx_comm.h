// The UCX plugin's comms, requests and connection handle, and the plugin functions that use them.
//
// Design (one UCP worker per process, ucx_state.h):
//   - listen: a ucp_listener on a TCP sockaddr. The handle (UcxHandle, 40 bytes, no pointers) is
//     {magic, version, family, port, IP, listener id}.
//   - connect: a client-server ep to that sockaddr (error mode PEER). The accepting side assigns
//     the connection a 32-bit id, unique in its worker for the life of the process, and sends it
//     back over the new ep on a UCP stream together with the listener id; connect() returns the
//     sendComm only once that reply has arrived (and names the listener the handle names).
//   - data: UCP tagged messages. 64-bit UCX tag = (connection id << 32) | user tag (user tags are
//     31-bit), matched with a full 64-bit mask, so tags of different comms never mix: all recv
//     comms of a process share one worker, and each holds its own id. Only the receiving side's
//     worker matches tags, so ids need to be unique only there.
//   - requests: the UCP request itself, our bookkeeping (RequestInfo) living in the space UCX
//     reserves in each request (ucp_params_t::request_size); a send UCX completes on the spot (a
//     short eager one) has no UCP request and gets a record in its comm instead. Nothing is
//     allocated per message by the plugin.
//   - errors: the ep's error callback marks the comm failed; pending sends complete with an error
//     from UCX itself, pending receives (which UCX does not tie to an ep) are canceled by test().
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "chorus/net_plugin.h"

namespace chorus::ucxnet {

// Most requests in flight per comm (reported as properties.maxInflight); a post beyond it returns
// a NULL request ("post again later").
constexpr int kMaxInflight = 64;

// The bytes listen() writes and connect() reads (CHORUS_NET_HANDLE_MAXSIZE at most). Port and
// address are in network byte order, as in a sockaddr.
struct UcxHandle {
  uint32_t magic;       // kHandleMagic
  uint16_t version;     // kHandleVersion
  uint16_t family;      // AF_INET or AF_INET6
  uint16_t port;        // network byte order
  uint16_t reserved;    // 0
  uint8_t addr[16];     // IPv4 in the first 4 bytes, or IPv6
  uint64_t listenerId;  // random per process + counter: checked in the connection handshake
};
static_assert(sizeof(UcxHandle) <= CHORUS_NET_HANDLE_MAXSIZE, "handle too large");
constexpr uint32_t kHandleMagic = 0x58435543u;  // "CUCX"
constexpr uint16_t kHandleVersion = 1;

// What the accepting side sends back over a new ep (a UCP stream message).
struct Handshake {
  uint32_t magic;  // kHandshakeMagic
  uint32_t connId;
  uint64_t listenerId;
};
constexpr uint32_t kHandshakeMagic = 0x48435543u;  // "CUCH"

struct Comm;
struct MemRegion;

// Our part of every data request. It lives inside the UCP request (see above), or, for a send UCX
// completed on the spot (no UCP request), in the comm's `completed` slot: the request pointer
// Chorus gets is then that record.
struct RequestInfo {
  Comm* comm;
  size_t size;  // bytes posted
  int slot;     // index in comm->inflight
  bool isRecv;
  bool inUcx;   // a UCP request (false: completed on the spot, nothing to free)
  MemRegion* region;  // the registration handed to UCX with it (a reference held), or NULL
};

// A registered region (regMr's mhandle): UCX's handle plus the range, so that a post outside it
// does not hand UCX a handle that does not cover its buffer.
//
// Reference counted: regMr holds one reference, and every request UCX was given the handle with
// holds one until UCX is done with that request. deregMr drops the registration's reference; the
// region is unmapped when the last one goes. Chorus releases its registrations before closing
// the comms (net_connection.cpp), and closing progresses the worker while receives into the
// region are still posted: a rendezvous that arrives then makes UCX pack the region's remote key
// for its RTR, and with the handle already unmapped UCX 1.13 died in `proto_am.c:70 ...
// packed_len=-5` (a use after free of the ucp_mem_h). A request UCX never gives back (freed while
// incomplete) keeps its reference: the region then stays mapped for the life of the process.
struct MemRegion {
  ucp_mem_h memh;
  uintptr_t begin;
  uintptr_t end;
  std::atomic<int> refs{1};
};

// Takes a reference on mr for a request; releaseRegion drops one (and unmaps on the last).
void retainRegion(MemRegion* mr);
// Returns the unmap's status when this dropped the last reference, UCS_OK otherwise.
ucs_status_t releaseRegion(MemRegion* mr);

enum class CommKind : uint32_t { kSend = 0x53435543u, kRecv = 0x52435543u, kListen = 0x4c435543u, kDead = 0 };

// A send or recv comm: one UCP ep.
struct Comm {
  CommKind kind;
  ucp_ep_h ep = nullptr;
  uint64_t tagBase = 0;        // connId << 32
  std::atomic<bool> failed{false};
  std::atomic<int> failStatus{UCS_OK};
  std::atomic<uint64_t> failedAtNs{0};  // when the error callback ran (nowNs())
  // Requests in flight: bit i of freeSlots set = inflight[i] is free.
  std::atomic<uint64_t> freeSlots{~0ull};
  void* inflight[kMaxInflight] = {};
  RequestInfo completed[kMaxInflight] = {};  // the records of sends completed on the spot
  // Connect side: the handle it was made from and the handshake being received.
  UcxHandle handle{};
  Handshake hs{};
  void* hsRequest = nullptr;  // stream recv (connect) or stream send (accept) still in flight
  bool hsDone = false;        // connect side: the handshake has arrived
};

// listen()'s comm: the UCP listener and the connection requests its callback queued.
struct ListenComm;

// The plugin functions (the function table is in ucx_plugin.cpp).
chorusNetResult_t ucxDevices(int* ndev);
chorusNetResult_t ucxGetProperties(int dev, chorusNetProperties_v1_t* props);
chorusNetResult_t ucxListen(int dev, void* handle, void** listenComm);
chorusNetResult_t ucxConnect(int dev, const void* handle, void** sendComm);
chorusNetResult_t ucxAccept(void* listenComm, void** recvComm);
chorusNetResult_t ucxRegMr(void* comm, void* data, size_t size, int type, void** mhandle);
chorusNetResult_t ucxDeregMr(void* comm, void* mhandle);
chorusNetResult_t ucxIsend(void* sendComm, const void* data, size_t size, int tag, void* mhandle, void** request);
chorusNetResult_t ucxIrecv(void* recvComm, void* data, size_t size, int tag, void* mhandle, void** request);
chorusNetResult_t ucxTest(void* request, int* done, size_t* size);
chorusNetResult_t ucxCloseSend(void* sendComm);
chorusNetResult_t ucxCloseRecv(void* recvComm);
chorusNetResult_t ucxCloseListen(void* listenComm);

// The comm behind an opaque pointer, or NULL when it is not a live comm of that kind.
Comm* asComm(void* p, CommKind kind);

}  // namespace chorus::ucxnet

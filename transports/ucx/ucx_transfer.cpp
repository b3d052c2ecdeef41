// isend / irecv / test and memory registration of the UCX plugin (design in ucx_comm.h).
//
// Hot path: a post takes a free slot of the comm (a bit in an atomic mask; none free = "post
// again later"), calls ucp_tag_send_nbx / ucp_tag_recv_nbx with UCP_OP_ATTR_FLAG_NO_IMM_CMPL (so
// UCX always hands back a request, taken from its memory pool) and writes our RequestInfo into the
// space UCX reserved in that request. test() progresses the worker once and reads the request's
// status; a finished request is released with ucp_request_free.
#include <cstring>

#include "transports/ucx/ucx_comm.h"
#include "transports/ucx/ucx_state.h"

namespace chorus::ucxnet {

namespace {

// How long test() waits, after the peer failed, for UCX to complete a pending send with its error
// before reporting the error itself (UCX purges a failed ep's sends at once; this is a backstop).
constexpr uint64_t kSendPurgeGraceNs = 200000000ull;

// UCX is given a valid address for zero-byte messages posted with data == NULL.
char gEmpty[1];

int takeSlot(Comm* c) {
  uint64_t free = c->freeSlots.load(std::memory_order_relaxed);
  while (free != 0) {
    const int i = __builtin_ctzll(free);
    if (c->freeSlots.compare_exchange_weak(free, free & ~(1ull << i), std::memory_order_acquire)) return i;
  }
  return -1;
}

void releaseSlot(Comm* c, int i) {
  c->inflight[i] = nullptr;
  c->freeSlots.fetch_or(1ull << i, std::memory_order_release);
}

// The request parameters of a post: the registration when the buffer lies inside it. Returns
// that registration with a reference taken for the request (NULL when none is used).
MemRegion* fillParam(ucp_request_param_t* p, const void* data, size_t size, void* mhandle) {
  p->op_attr_mask = 0;
  MemRegion* mr = static_cast<MemRegion*>(mhandle);
  const uintptr_t b = reinterpret_cast<uintptr_t>(data);
  if (mr && size > 0 && b >= mr->begin && size <= mr->end - b && b <= mr->end) {
    p->op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    p->memh = mr->memh;
    retainRegion(mr);
    return mr;
  }
  return nullptr;
}

chorusNetResult_t checkPost(Comm* c, const void* data, size_t size, int tag, void** request) {
  if (request == nullptr) return chorusNetInvalidArgument;
  *request = nullptr;
  if (c == nullptr || tag < 0 || (data == nullptr && size > 0)) return chorusNetInvalidArgument;
  return chorusNetSuccess;
}

// Records a post (its UCP request r, NULL when UCX completed a send on the spot, or its failure)
// in comm c, slot i. size: bytes posted; region: the registration it was posted with (a reference).
chorusNetResult_t finishPost(Comm* c, int slot, void* r, size_t size, bool isRecv, MemRegion* region, void** request) {
  if (r == nullptr || UCS_PTR_IS_ERR(r)) {
    if (region) releaseRegion(region);  // UCX no longer holds the request
    region = nullptr;
  }
  if (UCS_PTR_IS_ERR(r)) {
    releaseSlot(c, slot);
    const ucs_status_t st = UCS_PTR_STATUS(r);
    const chorusNetResult_t res = resultOf(st, c->failed.load());
    if (res == chorusNetInternalError)
      UCXNET_ERROR("ucx: comm %p: received message larger than its %zu-byte buffer (%s)", (void*)c, size, ucs_status_string(st));
    else
      UCXNET_INFO("ucx: %s on comm %p failed: %s", isRecv ? "irecv" : "isend", (void*)c, ucs_status_string(st));
    return res;
  }
  RequestInfo* info = r ? static_cast<RequestInfo*>(r) : &c->completed[slot];
  info->comm = c;
  info->size = size;
  info->slot = slot;
  info->isRecv = isRecv;
  info->inUcx = r != nullptr;
  info->region = region;
  c->inflight[slot] = info;
  *request = info;
  return chorusNetSuccess;
}

}  // namespace

void retainRegion(MemRegion* mr) { mr->refs.fetch_add(1, std::memory_order_relaxed); }

ucs_status_t releaseRegion(MemRegion* mr) {
  if (mr->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return UCS_OK;
  const ucs_status_t st = ucp_mem_unmap(state().context, mr->memh);
  delete mr;
  if (st != UCS_OK) UCXNET_ERROR("ucx: ucp_mem_unmap failed: %s", ucs_status_string(st));
  return st;
}

chorusNetResult_t ucxRegMr(void* comm, void* data, size_t size, int type, void** mhandle) {
  if (chorusNetResult_t r = requireReady("regMr")) return r;
  if (mhandle == nullptr) return chorusNetInvalidArgument;
  *mhandle = nullptr;
  if ((asComm(comm, CommKind::kSend) == nullptr && asComm(comm, CommKind::kRecv) == nullptr) || data == nullptr || size == 0)
    return chorusNetInvalidArgument;
  if (type != CHORUS_NET_PTR_HOST) return chorusNetInvalidArgument;
  ucp_mem_map_params_t p{};
  p.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  p.address = data;
  p.length = size;
  ucp_mem_h memh = nullptr;
  const ucs_status_t st = ucp_mem_map(state().context, &p, &memh);
  if (st != UCS_OK) {
    UCXNET_ERROR("ucx: ucp_mem_map of %zu bytes failed: %s", size, ucs_status_string(st));
    return chorusNetSystemError;
  }
  const uintptr_t b = reinterpret_cast<uintptr_t>(data);
  *mhandle = new MemRegion{memh, b, b + size};
  return chorusNetSuccess;
}

chorusNetResult_t ucxDeregMr(void* comm, void* mhandle) {
  if (chorusNetResult_t r = requireReady("deregMr")) return r;
  MemRegion* mr = static_cast<MemRegion*>(mhandle);
  if (mr == nullptr) return chorusNetInvalidArgument;
  // Requests still posted with it keep it mapped until UCX is done with them (ucx_comm.h).
  return releaseRegion(mr) == UCS_OK ? chorusNetSuccess : chorusNetSystemError;
}

chorusNetResult_t ucxIsend(void* sendComm, const void* data, size_t size, int tag, void* mhandle, void** request) {
  Comm* c = asComm(sendComm, CommKind::kSend);
  if (chorusNetResult_t r = checkPost(c, data, size, tag, request)) return r;
  if (c->failed.load(std::memory_order_relaxed)) return chorusNetRemoteError;
  const int slot = takeSlot(c);
  if (slot < 0) {
    ucp_worker_progress(state().worker);
    return chorusNetSuccess;  // full: post again later
  }
  ucp_request_param_t p;
  MemRegion* region = fillParam(&p, data, size, mhandle);
  void* r = ucp_tag_send_nbx(c->ep, data ? data : gEmpty, size, c->tagBase | static_cast<uint32_t>(tag), &p);
  return finishPost(c, slot, r, size, false, region, request);
}

chorusNetResult_t ucxIrecv(void* recvComm, void* data, size_t size, int tag, void* mhandle, void** request) {
  Comm* c = asComm(recvComm, CommKind::kRecv);
  if (chorusNetResult_t r = checkPost(c, data, size, tag, request)) return r;
  const int slot = takeSlot(c);
  if (slot < 0) {
    ucp_worker_progress(state().worker);
    return chorusNetSuccess;
  }
  ucp_request_param_t p;
  MemRegion* region = fillParam(&p, data, size, mhandle);
  // Posted even when the peer already failed: a message that arrived before the failure is still
  // delivered (test() completes it); one that can no longer arrive is canceled by test().
  // Always a UCP request: UCX 1.13 does not fill recv_info.tag_info when a receive completes on
  // the spot, and the received length is only known from ucp_tag_recv_request_test then.
  p.op_attr_mask |= UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  void* r = ucp_tag_recv_nbx(state().worker, data ? data : gEmpty, size, c->tagBase | static_cast<uint32_t>(tag), ~0ull, &p);
  return finishPost(c, slot, r, size, true, region, request);
}

chorusNetResult_t ucxTest(void* request, int* done, size_t* size) {
  if (request == nullptr || done == nullptr) return chorusNetInvalidArgument;
  *done = 0;
  State& s = state();
  RequestInfo* info = static_cast<RequestInfo*>(request);
  Comm* c = info->comm;
  if (!info->inUcx) {  // completed when posted
    if (size) *size = info->size;
    *done = 1;
    releaseSlot(c, info->slot);
    return chorusNetSuccess;
  }
  ucp_worker_progress(s.worker);
  size_t bytes = info->size;
  ucs_status_t st;
  if (info->isRecv) {
    ucp_tag_recv_info_t recvInfo{};
    st = ucp_tag_recv_request_test(request, &recvInfo);
    if (st == UCS_OK) bytes = recvInfo.length;
  } else {
    st = ucp_request_check_status(request);
  }
  if (st == UCS_INPROGRESS) {
    if (!c->failed.load(std::memory_order_acquire)) return chorusNetSuccess;
    // The peer is gone. UCX completes the ep's sends with an error itself (it purges them when the
    // ep fails); wait for that a little, so that UCX no longer reads the buffer once we report.
    if (!info->isRecv && nowNs() - c->failedAtNs.load() < kSendPurgeGraceNs) return chorusNetSuccess;
    // Receives are not tied to an ep, so they are canceled here (a receive already matched to a
    // message in flight cannot be canceled: ucp_request_free below lets UCX release it when that
    // message ends).
    if (info->isRecv) {
      ucp_request_cancel(s.worker, request);
      ucp_tag_recv_info_t recvInfo{};
      st = ucp_tag_recv_request_test(request, &recvInfo);
      if (st == UCS_OK) bytes = recvInfo.length;
    }
    if (st == UCS_INPROGRESS) {
      st = static_cast<ucs_status_t>(c->failStatus.load());
      if (st == UCS_OK) st = UCS_ERR_CONNECTION_RESET;
      // UCX still holds the request: its registration must stay mapped (ucx_comm.h).
      info->region = nullptr;
    }
  }
  const bool failed = c->failed.load(std::memory_order_acquire);
  const bool isRecv = info->isRecv;
  const size_t posted = info->size;
  MemRegion* region = info->region;
  releaseSlot(c, info->slot);
  ucp_request_free(request);
  if (region) releaseRegion(region);
  *done = 1;
  if (st == UCS_OK) {
    if (size) *size = bytes;
    return chorusNetSuccess;
  }
  const chorusNetResult_t r = resultOf(st, failed);
  if (r == chorusNetInternalError)
    UCXNET_ERROR("ucx: comm %p: received message larger than its %zu-byte buffer (%s)", (void*)c, posted, ucs_status_string(st));
  else
    UCXNET_INFO("ucx: comm %p: %s failed: %s", (void*)c, isRecv ? "receive" : "send", ucs_status_string(st));
  return r;
}

}  // namespace chorus::ucxnet

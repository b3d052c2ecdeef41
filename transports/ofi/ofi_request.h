// One operation the libfabric plugin hands to the provider, and the pool they come from.
//
// A request is the context object of its fi_tsend / fi_trecv (the fi_context2 the FI_CONTEXT /
// FI_CONTEXT2 mode bits ask for is its first member, so a completion's op_context is the
// request). Its life has two owners: the user (from isend/irecv until test reports it finished,
// or until its comm is closed) and the provider (from the post until its completion). It goes
// back to the pool only when both have let go, so a completion can never land in a recycled
// request, and a user who saw an error can never see the request again.
//
// Requests come in slabs that live as long as the process: no allocation per message. Control
// messages use the buffer inside the request; on providers that need FI_MR_LOCAL each slab is
// registered once and `slabDesc` is that registration's descriptor.
#pragma once

#include <rdma/fabric.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <vector>

#include "chorus/net_plugin.h"
#include "transports/ofi/ofi_mr_cache.h"
#include "transports/ofi/ofi_wire.h"

namespace chorus::ofi {

struct Comm;
class Device;

enum class ReqKind : uint8_t { Send, Recv, CtrlSend, CtrlRecv };

struct Request {
  fi_context2 ctx;  // must stay first: op_context of every post is the request itself
  Device* dev = nullptr;
  Comm* comm = nullptr;           // user requests: their comm until it is closed
  uint64_t commId = 0;            // control sends: the comm they concern (0: none)
  Request* nextPending = nullptr; // pending queue / free list link
  Request* prevInComm = nullptr;  // the comm's list of live user requests
  Request* nextInComm = nullptr;
  ReqKind kind = ReqKind::Send;
  bool queued = false;    // in the device's pending queue (posting got -FI_EAGAIN)
  bool posted = false;    // the provider owns it (posted, no completion yet)
  bool complete = false;  // result and size are final
  bool released = false;  // the user is done with it (tested to the end, or comm closed)
  chorusNetResult_t result = chorusNetSuccess;
  size_t size = 0;  // bytes sent or received
  void* buf = nullptr;
  size_t len = 0;
  void* desc = nullptr;
  fi_addr_t addr = FI_ADDR_UNSPEC;
  uint64_t tag = 0;
  uint64_t ignore = 0;
  int64_t queuedNs = 0;           // when the pending queue took it (-FI_EAGAIN, -FI_ENOMEM)
  bool stuckLogged = false;       // data posts: the "waited long" warning was given
  uint64_t seq = 0;               // control sends: a number no other control send of the device has
  MrCache::Region* mr = nullptr;  // cache region held until the provider completes
  void* slabDesc = nullptr;       // descriptor of the slab's registration (control buffers)
  alignas(8) uint8_t ctrl[kCtrlBytes];
};

class RequestPool {
 public:
  // Registers a slab for control buffers when the provider needs it: returns the descriptor
  // (may be null) and keeps what it must close; a failure returns false.
  using SlabRegisterFn = std::function<bool(void* addr, size_t len, void** desc)>;

  void setRegister(SlabRegisterFn fn) { register_ = std::move(fn); }

  // A fresh request (fields reset), or null when a new slab could not be registered.
  Request* get(Device* dev) {
    if (free_ == nullptr && !grow()) return nullptr;
    Request* r = free_;
    free_ = r->nextPending;
    void* desc = r->slabDesc;
    r->~Request();
    new (r) Request;
    r->dev = dev;
    r->slabDesc = desc;
    return r;
  }
  void put(Request* r) {
    r->nextPending = free_;
    free_ = r;
  }

 private:
  static constexpr size_t kSlab = 64;
  bool grow() {
    auto slab = std::make_unique<Request[]>(kSlab);
    void* desc = nullptr;
    if (register_ && !register_(slab.get(), sizeof(Request) * kSlab, &desc)) return false;
    for (size_t i = 0; i < kSlab; ++i) {
      slab[i].slabDesc = desc;
      put(&slab[i]);
    }
    slabs_.push_back(std::move(slab));
    return true;
  }
  SlabRegisterFn register_;
  Request* free_ = nullptr;
  std::vector<std::unique_ptr<Request[]>> slabs_;
};

}  // namespace chorus::ofi

// Data path of the libfabric plugin: posting (fi_tsend / fi_tinject / fi_trecv), the pending
// queue for -FI_EAGAIN and -FI_ENOMEM, reading the completion queue, and the two-owner lifetime
// of requests (ofi_request.h). Everything here runs with the device's lock held. Every provider
// call is marked for the watchdog (CallScope), and no send goes to a watched peer that is gone,
// nor a receive that may start a rendezvous with one (post(), ofi_peer_watch.h).
//
// -FI_ENOMEM from a post is a provider queue that is full for now, like -FI_EAGAIN (libfabric
// 1.17's shm answered fi_trecvmsg so with no fault at all: campaign finding 6): the post waits
// in the pending queue and is retried after the completion queue is read, and the caller's
// deadline (CHORUS_TIMEOUT) bounds it; one that waits longer than kStuckPostNs is logged.
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>

#include <sys/mman.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstring>

#include "transports/ofi/ofi_device.h"
#include "transports/ofi/ofi_log.h"

namespace chorus::ofi {

namespace {
constexpr int kCqBatch = 16;
constexpr int kCqRounds = 64;            // at most this many batches per progress (others get the lock too)
constexpr int64_t kKeepaliveTickNs = 100000000;  // how often progress looks at idle comms
constexpr int64_t kStuckPostNs = 1000000000;     // a post refused this long is logged (once)

// Answers of a post that mean "not now": the provider's queues are full.
bool isRetryable(ssize_t rc) { return rc == -FI_EAGAIN || rc == -FI_ENOMEM; }

// What post() returns, without calling the provider, for a send to a peer that is gone.
constexpr ssize_t kPeerGone = -FI_ECONNRESET;

bool isPeerFailure(ssize_t rc) {
  switch (-rc) {
    case FI_ECONNREFUSED:
    case FI_ECONNRESET:
    case FI_ECONNABORTED:
    case FI_ENOTCONN:
    case FI_EHOSTUNREACH:
    case FI_ESHUTDOWN:
      return true;
    default:
      return false;
  }
}
}  // namespace

void Device::progress() {
  if (!open_) return;
  readCompletions();
  drainPending();
  if (settings_.keepaliveNs > 0) {
    const int64_t now = nowNs();
    if (now >= nextKeepaliveNs_) {
      nextKeepaliveNs_ = now + kKeepaliveTickNs;
      keepalive(now);
    }
  }
}

Request* Device::newRequest() {
  Request* r = pool_.get(this);
  if (r == nullptr) OFI_LOG(kLogError, "ofi %s: no request (registering a request slab failed)", name_.c_str());
  return r;
}

void Device::link(Comm* c, Request* r) {
  r->comm = c;
  r->prevInComm = nullptr;
  r->nextInComm = c->live;
  if (c->live != nullptr) c->live->prevInComm = r;
  c->live = r;
  ++c->active;
  ++c->outstanding;
}

void Device::unlink(Request* r) {
  Comm* c = r->comm;
  if (c == nullptr) return;
  if (r->prevInComm != nullptr) r->prevInComm->nextInComm = r->nextInComm;
  else c->live = r->nextInComm;
  if (r->nextInComm != nullptr) r->nextInComm->prevInComm = r->prevInComm;
  --c->active;
  if (!r->complete) --c->outstanding;
  r->comm = nullptr;
  r->prevInComm = r->nextInComm = nullptr;
}

void Device::complete(Request* r, chorusNetResult_t result, size_t size) {
  if (r->complete) return;
  r->complete = true;
  r->result = result;
  r->size = size;
  if (r->comm != nullptr) --r->comm->outstanding;
}

void Device::recycleIfIdle(Request* r) {
  if (!r->released || r->posted || r->queued) return;
  if (r->mr != nullptr) {
    cache_->release(r->mr);
    r->mr = nullptr;
  }
  unlink(r);
  pool_.put(r);
}

chorusNetResult_t Device::postData(Comm* c, ReqKind kind, void* buf, size_t len, int tag, MemHandle* mh, Request** out) {
  *out = nullptr;
  progress();
  if (c->failed) return chorusNetRemoteError;
  if (!c->ready) return chorusNetInvalidUsage;
  if (len > maxMsg_) {
    OFI_LOG(kLogError, "ofi %s: message of %zu bytes exceeds the provider's %zu", name_.c_str(), len, maxMsg_);
    return chorusNetInvalidArgument;
  }
  if (c->active >= kMaxInflightPerComm) return chorusNetSuccess;  // full: Chorus posts again later
  Request* r = newRequest();
  if (r == nullptr) return chorusNetSystemError;
  r->kind = kind;
  r->buf = buf;
  r->len = len;
  r->addr = (kind == ReqKind::Recv && !directed_) ? FI_ADDR_UNSPEC : c->peerAddr;
  r->tag = tags_.data(kind == ReqKind::Send ? c->peerId : c->id, tag);
  if (mh != nullptr) {
    r->desc = mh->desc;
  } else if (len > 0 && needLocalMr()) {
    const uint64_t misses = cache_->misses();
    if (cache_->acquire(buf, len, &r->mr) != 0) {
      pool_.put(r);
      return chorusNetSystemError;
    }
    r->desc = r->mr->desc;
    if (cache_->misses() != misses) {
      OFI_LOG(kLogTrace, "ofi %s: registered %zu bytes at %p for a post (%zu regions cached)", name_.c_str(),
              static_cast<size_t>(r->mr->end - r->mr->start), reinterpret_cast<void*>(r->mr->start), cache_->entries());
    }
  }
  link(c, r);
  if (c->outstanding == 1) c->lastActivityNs = nowNs();  // idleness counts from the first post
  submit(r);
  *out = r;
  return chorusNetSuccess;
}

void Device::submit(Request* r) {
  if (r->comm != nullptr && !r->comm->pending.empty()) {  // never overtake an older post of the comm
    enqueue(r);
    return;
  }
  const ssize_t rc = post(r);
  if (isRetryable(rc)) {
    enqueue(r);
    static const char* const kKind[] = {"send", "receive", "control send", "control receive"};
    OFI_LOG(kLogTrace, "ofi %s: %s got %s, queued", name_.c_str(), kKind[static_cast<int>(r->kind)],
            rc == -FI_EAGAIN ? "-FI_EAGAIN" : "-FI_ENOMEM");
  } else if (rc != 0) {
    onPostError(r, rc);
  }
}

void Device::enqueue(Request* r) {
  ++eagains_;
  r->queuedNs = nowNs();
  Comm* c = r->comm;
  if (c == nullptr) {
    ctrlPending_.push(r);
    return;
  }
  c->pending.push(r);
  if (!c->waiting) {
    c->waiting = true;
    waiting_.push_back(c);
  }
}

// The comm's queued posts, never posted: gone with the comm (closed) or failed with it.
void Device::dropQueued(Comm* c) {
  while (!c->pending.empty()) {
    Request* r = c->pending.pop();
    if (!r->complete) complete(r, chorusNetRemoteError, 0);
    recycleIfIdle(r);
  }
}

ssize_t Device::post(Request* r) {
  ssize_t rc = 0;
  int pid = 0;
  if (r->kind == ReqKind::Send || r->kind == ReqKind::CtrlSend) {
    // shm: a send takes the receiver's region lock, which a dead receiver may hold forever;
    // tcp;ofi_rxm: a send to a dead peer reconnects, spinning in fi_cq_read (ofi_peer_watch.h).
    if (PeerWatch* w = watchOf(r->addr)) {
      if (w->gone(r->kind == ReqKind::CtrlSend)) return kPeerGone;
      if (shm_) pid = w->pid();
    }
  } else if (recvFromGonePeer(r)) {
    return kPeerGone;  // tcp;ofi_rxm: it could start a rendezvous read on a closed connection
  }
  switch (r->kind) {
    case ReqKind::Send:
      if (r->len <= injectSize_) {
        // Small sends are injected: the buffer is free at once and no completion comes back.
        {
          CallScope call(calls_, "fi_tinject", pid);
          rc = fi_tinject(ep_, r->buf, r->len, r->addr, r->tag);
        }
        if (rc == 0) {
          if (r->comm != nullptr) ++r->comm->dataCount;
          complete(r, chorusNetSuccess, r->len);
          if (r->mr != nullptr) {
            cache_->release(r->mr);
            r->mr = nullptr;
          }
        }
        return rc;
      }
      {
        CallScope call(calls_, "fi_tsend", pid);
        rc = fi_tsend(ep_, r->buf, r->len, r->desc, r->addr, r->tag, &r->ctx);
      }
      if (rc == 0 && r->comm != nullptr) ++r->comm->dataCount;
      break;
    case ReqKind::Recv:
      if (sink_ != nullptr) {  // shm: the overflow sink follows the buffer (ofi_device.h)
        iovec iov[2];
        void* desc[2];
        size_t n = 0;
        if (r->len > 0) {
          iov[n] = {r->buf, r->len};
          desc[n++] = r->desc;
        }
        iov[n] = {sink_, sinkBytes_};
        desc[n++] = sinkDesc_;
        fi_msg_tagged msg{iov, desc, n, r->addr, r->tag, 0, &r->ctx, 0};
        CallScope call(calls_, "fi_trecvmsg", 0);
        rc = fi_trecvmsg(ep_, &msg, 0);
      } else {
        CallScope call(calls_, "fi_trecv", 0);
        rc = fi_trecv(ep_, r->buf, r->len, r->desc, r->addr, r->tag, 0, &r->ctx);
      }
      break;
    case ReqKind::CtrlSend: {
      CallScope call(calls_, "fi_tsend (control message)", pid);
      rc = fi_tsend(ep_, r->ctrl, r->len, r->slabDesc, r->addr, tags_.ctrlBit, &r->ctx);
      break;
    }
    case ReqKind::CtrlRecv: {
      CallScope call(calls_, "fi_trecv (control messages)", 0);
      rc = fi_trecv(ep_, r->ctrl, kCtrlBytes, r->slabDesc, FI_ADDR_UNSPEC, tags_.ctrlBit, tags_.ctrlIgnore(), &r->ctx);
      break;
    }
  }
  if (rc == 0) r->posted = true;
  return rc;
}

void Device::onPostError(Request* r, ssize_t rc) {
  PeerWatch* w = rc == kPeerGone ? watchOf(r->comm != nullptr ? r->comm->peerAddr : r->addr) : nullptr;
  if (w != nullptr && w->gone(false))
    OFI_LOG(kLogInfo, "ofi %s: not %s process %d: it %s", name_.c_str(),
            r->kind == ReqKind::Recv ? "posting a receive from" : "sending to", static_cast<int>(w->pid()),
            strcmp(w->why(), "killed") == 0 ? "was killed" : strcmp(w->why(), "exiting") == 0 ? "is exiting" : "exited");
  else
    OFI_LOG(kLogWarn, "ofi %s: posting failed: %s (%zd)", name_.c_str(), fi_strerror(static_cast<int>(-rc)), rc);
  switch (r->kind) {
    case ReqKind::Send:
    case ReqKind::Recv: {
      Comm* c = r->comm;
      if (isPeerFailure(rc)) {
        complete(r, chorusNetRemoteError, 0);
        if (c != nullptr) failPeer(c->peerAddr, "posting to it failed");
      } else {
        complete(r, chorusNetSystemError, 0);
      }
      break;
    }
    case ReqKind::CtrlSend:
      onCtrlSent(r, false);
      break;
    case ReqKind::CtrlRecv:
      OFI_LOG(kLogError, "ofi %s: a control receive could not be posted; fewer remain", name_.c_str());
      break;
  }
  recycleIfIdle(r);
}

void Device::drainPending() {
  // Control posts: each retried on its own. A control message that cannot even be posted for a
  // keepalive period means an unreachable peer: tcp;ofi_rxm answers -FI_EAGAIN forever to a
  // peer whose connection broke and cannot be made again (it leaves giving up to us), and shm
  // does when the peer's queue stays full (a peer that stopped receiving). kCtrlConnect is the
  // exception: the listener may not be progressing yet, and Chorus bounds connect() itself.
  const int64_t now = ctrlPending_.empty() ? 0 : nowNs();
  for (size_t n = ctrlPending_.size(); n > 0; --n) {
    Request* r = ctrlPending_.pop();
    const ssize_t rc = post(r);
    if (isRetryable(rc)) {
      const uint8_t type = r->ctrl[offsetof(CtrlMsg, type)];
      if (r->kind == ReqKind::CtrlSend && type != kCtrlConnect && settings_.keepaliveNs > 0 &&
          now - r->queuedNs > settings_.keepaliveNs) {
        OFI_LOG(kLogWarn, "ofi %s: control message %d could not be posted for %.1f s: peer unreachable", name_.c_str(),
                type, (now - r->queuedNs) / 1e9);
        onCtrlSent(r, false);
        recycleIfIdle(r);
      } else {
        ctrlPending_.push(r);
      }
    } else if (rc != 0) {
      onPostError(r, rc);
    }
  }
  // Data posts: per comm, in order.
  for (size_t i = 0; i < waiting_.size();) {
    Comm* c = waiting_[i];
    drainComm(c);
    if (c->pending.empty()) {
      c->waiting = false;
      waiting_[i] = waiting_.back();
      waiting_.pop_back();
    } else {
      ++i;
    }
  }
}

void Device::drainComm(Comm* c) {
  while (!c->pending.empty()) {
    Request* r = c->pending.front();
    const ssize_t rc = post(r);
    if (isRetryable(rc)) {
      if (!r->stuckLogged && r->queuedNs != 0 && nowNs() - r->queuedNs > kStuckPostNs) {
        r->stuckLogged = true;
        OFI_LOG(kLogWarn, "ofi %s: a %s has waited %.1f s for the provider to take it (%s): its queues stay full",
                name_.c_str(), r->kind == ReqKind::Send ? "send" : "receive", (nowNs() - r->queuedNs) / 1e9,
                fi_strerror(static_cast<int>(-rc)));
      }
      return;
    }
    c->pending.pop();
    if (rc != 0) onPostError(r, rc);
  }
}

void Device::readCompletions() {
  fi_cq_tagged_entry entries[kCqBatch];
  for (int round = 0; round < kCqRounds; ++round) {
    ssize_t n = 0;
    {
      // shm: takes this endpoint's own region lock, which a peer killed mid-send to us holds.
      CallScope call(calls_, "fi_cq_read", 0);
      n = fi_cq_read(cq_, entries, kCqBatch);
    }
    if (n > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        if (entries[i].op_context != nullptr) onCompletion(static_cast<Request*>(entries[i].op_context), entries[i].len);
      }
      continue;
    }
    if (n == -FI_EAGAIN) return;
    if (n == -FI_EAVAIL) {
      fi_cq_err_entry err{};
      ssize_t m = 0;
      {
        CallScope call(calls_, "fi_cq_readerr", 0);
        m = fi_cq_readerr(cq_, &err, 0);
      }
      if (m == -FI_EAGAIN) return;
      if (m < 0) {
        OFI_LOG(kLogError, "ofi %s: fi_cq_readerr failed: %s (%zd)", name_.c_str(), fi_strerror(static_cast<int>(-m)), m);
        return;
      }
      if (err.op_context != nullptr) {
        onError(static_cast<Request*>(err.op_context), err);
      } else {
        char buf[128];
        OFI_LOG(kLogWarn, "ofi %s: completion error without a request (an injected send?): %s", name_.c_str(),
                fi_cq_strerror(cq_, err.prov_errno, err.err_data, buf, sizeof(buf)));
      }
      continue;
    }
    OFI_LOG(kLogError, "ofi %s: fi_cq_read failed: %s (%zd)", name_.c_str(), fi_strerror(static_cast<int>(-n)), n);
    return;
  }
}

void Device::onCompletion(Request* r, size_t len) {
  r->posted = false;
  if (r->mr != nullptr) {
    cache_->release(r->mr);
    r->mr = nullptr;
  }
  switch (r->kind) {
    case ReqKind::Send:
    case ReqKind::Recv: {
      Comm* c = r->comm;
      const bool recv = r->kind == ReqKind::Recv;
      if (c != nullptr) {
        c->lastActivityNs = nowNs();
        if (recv) ++c->dataCount;
      }
      if (recv && len > r->len) {  // it ran into the overflow sink: the message did not fit
        OFI_LOG(kLogError, "ofi %s: message truncated: %zu bytes for a %zu-byte receive", name_.c_str(), len, r->len);
        madvise(sink_, sinkBytes_, MADV_DONTNEED);  // give back the pages the overflow touched
        complete(r, chorusNetInternalError, r->len);
      } else {
        complete(r, chorusNetSuccess, recv ? len : r->len);
      }
      if (recv && c != nullptr) checkPeerClosed(c);
      break;
    }
    case ReqKind::CtrlRecv:
      onCtrlMessage(r->ctrl, len);
      submit(r);  // the same request goes back to receiving control messages
      return;
    case ReqKind::CtrlSend:
      onCtrlSent(r, true);
      break;
  }
  recycleIfIdle(r);
}

void Device::onError(Request* r, const fi_cq_err_entry& e) {
  r->posted = false;
  if (r->mr != nullptr) {
    cache_->release(r->mr);
    r->mr = nullptr;
  }
  // Some providers (shm in libfabric 1.17) report err negated: compare magnitudes.
  const int err = e.err < 0 ? -e.err : e.err;
  char buf[128];
  const char* what = err == FI_ECANCELED ? "canceled" : fi_cq_strerror(cq_, e.prov_errno, e.err_data, buf, sizeof(buf));
  switch (r->kind) {
    case ReqKind::Send:
    case ReqKind::Recv: {
      Comm* c = r->comm;
      if (err == FI_ECANCELED) {  // only ever canceled by a failure or a close
        complete(r, chorusNetRemoteError, 0);
      } else if (err == FI_ETRUNC) {
        OFI_LOG(kLogError, "ofi %s: message truncated: larger than its %zu-byte receive (%zu bytes over)", name_.c_str(),
                r->len, e.olen);
        if (c != nullptr) ++c->dataCount;
        complete(r, chorusNetInternalError, e.len);
        if (c != nullptr) checkPeerClosed(c);
      } else {
        OFI_LOG(kLogWarn, "ofi %s: %s failed: %s (err %d, provider %d)", name_.c_str(),
                r->kind == ReqKind::Send ? "send" : "receive", what, e.err, e.prov_errno);
        complete(r, chorusNetRemoteError, 0);
        if (c != nullptr) failPeer(c->peerAddr, "an operation with it failed");
      }
      break;
    }
    case ReqKind::CtrlRecv:
      if (err == FI_ECANCELED) break;
      OFI_LOG(kLogWarn, "ofi %s: control receive failed: %s (err %d)", name_.c_str(), what, e.err);
      submit(r);
      return;
    case ReqKind::CtrlSend:
      OFI_LOG(kLogWarn, "ofi %s: control message failed: %s (err %d, provider %d)", name_.c_str(), what, e.err,
              e.prov_errno);
      onCtrlSent(r, false);
      break;
  }
  recycleIfIdle(r);
}

chorusNetResult_t Device::testRequest(Request* r, int* done, size_t* size) {
  if (!r->complete) progress();
  if (!r->complete) {
    *done = 0;
    return chorusNetSuccess;
  }
  *done = 1;
  if (size != nullptr) *size = r->size;
  const chorusNetResult_t result = r->result;
  unlink(r);
  r->released = true;
  recycleIfIdle(r);
  return result;
}

}  // namespace chorus::ofi

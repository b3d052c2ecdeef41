// Connections of the libfabric plugin over RDM endpoints (there are none in libfabric: these are
// comms agreed on with control messages, ofi_wire.h), closing, keepalive and failures.
//
// Connecting: connect() inserts the listener's endpoint name in the AV and sends kCtrlConnect
// (listener id, its own comm id, its name); the listener's device queues it; accept() takes it,
// inserts the sender, creates the receive comm with a fresh id and answers kCtrlAccept with that
// id; connect() returns the send comm once the answer arrived. Nothing blocks: each call
// progresses and says "not yet".
//
// Failures. A comm fails (every pending and later request: chorusNetRemoteError) when
//   - the peer closes it: kCtrlClosed. A closing sender tells how many data messages it posted;
//     the receive comm fails once it has received that many (messages in flight still arrive);
//   - an operation to or from the peer's address fails (fails every comm to that address);
//   - the listener is gone (kCtrlRefuse) while connecting;
//   - keepalive: a comm with requests outstanding and no completion for CHORUS_OFI_KEEPALIVE_MS
//     (default 1 s) sends kCtrlPing to its peer comm, one at a time. A dead peer makes the ping
//     fail where the provider reports it (tcp;ofi_rxm: the connection is refused or reset and the
//     send completes in error); a live peer that no longer knows the comm answers kCtrlClosed.
//     A receive comm whose sender closed but never delivered the announced count fails after
//     one idle period. A ping (or any control message but kCtrlConnect) that cannot even be
//     posted (-FI_EAGAIN) for a keepalive period means the peer is unreachable
//     (ofi_progress.cpp: tcp;ofi_rxm retries a broken connection forever and leaves giving up to
//     us). Detection therefore takes one to three keepalive periods;
//   - shm: a send to a dead process may complete (it lands in the dead process's queue) or spin
//     forever on a lock the dead process held (ofi_peer_watch.h), and no libfabric operation ever
//     fails. Instead every peer address has a PeerWatch: shm names an endpoint
//     "fi_shm://<pid>:..." (libfabric 1.17; the provider itself relies on that pid for
//     cross-memory attach, so it is in our pid namespace). A send to a peer that is dead or dying
//     is never handed to the provider: it fails every comm to that peer instead
//     (ofi_progress.cpp), and so does the keepalive when it finds the peer gone. Closing a comm
//     sends no kCtrlClosed to a peer that is gone or to a comm that already failed. A name of
//     another shape leaves shm without detection, and Chorus's own deadlines and pid watch are
//     the backstop.
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>

#include <unistd.h>

#include <cstring>

#include "transports/ofi/ofi_device.h"
#include "transports/ofi/ofi_log.h"

namespace chorus::ofi {

namespace {
// Control receives kept posted per endpoint: control traffic is a few messages per connection
// (connect, accept, close) plus one ping per idle comm per second; a burst beyond 16 waits in
// the provider's unexpected queue until a receive is posted again.
constexpr int kCtrlRecvs = 16;
constexpr int64_t kCloseFlushNs = 200000000;    // how long a close waits for its kCtrlClosed to leave

template <typename Map>
typename Map::mapped_type findIn(const Map& m, uint64_t id) {
  auto it = m.find(id);
  return it == m.end() ? nullptr : it->second;
}
}  // namespace

void Device::postCtrlRecvs() {
  for (int i = 0; i < kCtrlRecvs; ++i) {
    Request* r = newRequest();
    if (r == nullptr) return;
    r->kind = ReqKind::CtrlRecv;
    r->released = true;  // owned by the device
    submit(r);
  }
}

uint64_t Device::sendCtrl(CtrlType type, fi_addr_t addr, uint64_t dstId, uint64_t srcId, uint64_t value, uint64_t commId,
                          uint8_t flags) {
  Request* r = newRequest();
  if (r == nullptr) return 0;
  const uint64_t seq = r->seq = ++ctrlSeq_;
  r->kind = ReqKind::CtrlSend;
  r->released = true;
  r->commId = commId;
  r->addr = addr;
  CtrlMsg m{};
  m.magic = kCtrlMagic;
  m.type = type;
  m.flags = flags;
  m.pid = static_cast<int32_t>(getpid());
  m.hostTag = hostTag_;
  m.nameLen = static_cast<uint16_t>(epName_.size());
  m.dstId = dstId;
  m.srcId = srcId;
  m.value = value;
  memcpy(m.name, epName_.data(), epName_.size());
  r->len = kCtrlHeaderBytes + epName_.size();
  memcpy(r->ctrl, &m, r->len);
  if (type == kCtrlClosed) closedInFlight_.insert(seq);
  submit(r);
  return seq;
}

void Device::onCtrlSent(Request* r, bool ok) {
  CtrlMsg m;
  memcpy(&m, r->ctrl, kCtrlHeaderBytes);
  if (m.type == kCtrlClosed) closedInFlight_.erase(r->seq);
  Comm* c = r->commId != 0 ? findIn(comms_, r->commId) : nullptr;
  if (m.type == kCtrlPing && c != nullptr) {
    c->pingInFlight = false;
    if (ok) c->lastActivityNs = nowNs();
  }
  if (!ok) {
    if (c != nullptr) failComm(c, "a control message to its peer failed");
    failPeer(r->addr, "a control message to it failed");
  }
}

void Device::onCtrlMessage(const uint8_t* data, size_t len) {
  CtrlMsg m;
  if (len < kCtrlHeaderBytes) {
    OFI_LOG(kLogWarn, "ofi %s: ignoring a %zu-byte control message", name_.c_str(), len);
    return;
  }
  memcpy(&m, data, len < sizeof(m) ? len : sizeof(m));
  if (m.magic != kCtrlMagic || m.nameLen > kMaxNameBytes || kCtrlHeaderBytes + m.nameLen > len) {
    OFI_LOG(kLogWarn, "ofi %s: ignoring a malformed control message", name_.c_str());
    return;
  }
  OFI_LOG(kLogTrace, "ofi %s: control message %d for %llu from %llu (value %llu)", name_.c_str(), m.type,
          static_cast<unsigned long long>(m.dstId), static_cast<unsigned long long>(m.srcId),
          static_cast<unsigned long long>(m.value));
  fi_addr_t from = FI_ADDR_NOTAVAIL;
  const int samePid = hostTag_ != 0 && m.hostTag == hostTag_ ? m.pid : 0;  // a pid we can watch
  switch (m.type) {
    case kCtrlConnect: {
      Listener* l = findIn(listeners_, m.dstId);
      if (l == nullptr) {
        if (addressOf(m.name, m.nameLen, &from)) sendCtrl(kCtrlRefuse, from, m.srcId, 0, 0, 0);
        return;
      }
      l->incoming.push_back({std::string(reinterpret_cast<const char*>(m.name), m.nameLen), m.srcId, samePid});
      return;
    }
    case kCtrlAccept: {
      Comm* c = findIn(comms_, m.dstId);
      if (c != nullptr && c->kind == Comm::Kind::Send && !c->ready && !c->failed) {
        c->peerId = m.srcId;
        c->ready = true;
        c->lastActivityNs = nowNs();
        watchPeer(c->peerAddr, samePid);
      } else if (addressOf(m.name, m.nameLen, &from)) {
        sendCtrl(kCtrlClosed, from, m.srcId, m.dstId, 0, 0);  // nobody waits for it: let the receive side go
      }
      return;
    }
    case kCtrlRefuse:
      if (Comm* c = findIn(comms_, m.dstId)) failComm(c, "the listener is closed");
      return;
    case kCtrlClosed: {
      Comm* c = findIn(comms_, m.dstId);
      if (c == nullptr) return;
      if (c->kind == Comm::Kind::Send) {
        failComm(c, "the receiver closed the connection");
      } else {
        // An answer to our ping (count unknown) must not shorten a count the sender announced.
        if (m.value != kUnknownCount) {
          c->peerSent = m.value;
          c->peerClosedClean = (m.flags & kClosedClean) != 0;
        } else if (!c->peerClosed) {
          c->peerSent = 0;
        }
        c->peerClosed = true;
        checkPeerClosed(c);
      }
      return;
    }
    case kCtrlPing:
      if (findIn(comms_, m.dstId) == nullptr && addressOf(m.name, m.nameLen, &from)) {
        sendCtrl(kCtrlClosed, from, m.srcId, m.dstId, kUnknownCount, 0);
      }
      return;
    default:
      OFI_LOG(kLogWarn, "ofi %s: ignoring control message of unknown type %d", name_.c_str(), m.type);
  }
}

void Device::checkPeerClosed(Comm* c) {
  if (c->peerClosed && !c->failed && c->dataCount >= c->peerSent) {
    OFI_LOG(kLogTrace, "ofi %s: receive comm %llu got all %llu messages of its closed sender", name_.c_str(),
            static_cast<unsigned long long>(c->id), static_cast<unsigned long long>(c->dataCount));
    failComm(c, "the sender closed the connection");
  }
}

void Device::failComm(Comm* c, const char* why) {
  if (c->failed) return;
  c->failed = true;
  dropQueued(c);
  OFI_LOG(c->peerClosed ? kLogInfo : kLogWarn, "ofi %s: %s comm %llu failed: %s", name_.c_str(),
          c->kind == Comm::Kind::Send ? "send" : "receive", static_cast<unsigned long long>(c->id), why);
  for (Request* r = c->live; r != nullptr; r = r->nextInComm) {
    if (r->complete) continue;
    complete(r, chorusNetRemoteError, 0);
    // A receive the provider still holds is canceled: no data may land in a buffer whose request
    // already ended (a receive already matched mid-message cannot be canceled on every provider).
    if (r->posted && r->kind == ReqKind::Recv) {
      CallScope call(calls_, "fi_cancel", 0);
      fi_cancel(&ep_->fid, &r->ctx);
    }
  }
}

void Device::failPeer(fi_addr_t addr, const char* why) {
  if (addr == FI_ADDR_UNSPEC || addr == FI_ADDR_NOTAVAIL) return;
  for (auto& entry : comms_) {
    if (entry.second->peerAddr == addr) failComm(entry.second, why);
  }
}

// The pid in an shm endpoint name ("fi_shm://<pid>:<index>:..."), 0 when it has another shape.
int Device::peerPidOf(const uint8_t* name, size_t len) const {
  static const char kPrefix[] = "fi_shm://";
  const size_t plen = sizeof(kPrefix) - 1;
  if (!shm_ || len <= plen || memcmp(name, kPrefix, plen) != 0) return 0;
  long pid = 0;
  size_t i = plen;
  for (; i < len && name[i] >= '0' && name[i] <= '9' && pid < (1l << 30); ++i) pid = pid * 10 + (name[i] - '0');
  return i > plen && i < len && name[i] == ':' ? static_cast<int>(pid) : 0;
}

void Device::keepalive(int64_t now) {
  for (auto& entry : comms_) {
    Comm* c = entry.second;
    if (!c->ready || c->failed || c->outstanding == 0) continue;
    if (now - c->lastActivityNs < settings_.keepaliveNs) continue;
    if (peerGone(c->peerAddr, true)) {
      failPeer(c->peerAddr, "the peer process is gone");
      continue;
    }
    if (c->peerClosed) {
      failComm(c, "the sender closed and delivered no more");
      continue;
    }
    if (!c->pingInFlight) {
      c->pingInFlight = true;
      sendCtrl(kCtrlPing, c->peerAddr, c->peerId, c->id, 0, c->id);
    }
  }
}

chorusNetResult_t Device::listen(WireHandle* handle, Listener** out) {
  auto* l = new Listener;
  l->dev = this;
  l->id = newId();
  listeners_[l->id] = l;
  memset(handle, 0, sizeof(*handle));
  handle->magic = kHandleMagic;
  handle->nameLen = static_cast<uint16_t>(epName_.size());
  handle->listenerId = l->id;
  memcpy(handle->name, epName_.data(), epName_.size());
  *out = l;
  return chorusNetSuccess;
}

chorusNetResult_t Device::connect(const WireHandle& h, Comm** out) {
  *out = nullptr;
  progress();
  const std::string key(reinterpret_cast<const char*>(&h), sizeof(h));
  auto it = connecting_.find(key);
  if (it != connecting_.end()) {
    Comm* c = it->second;
    if (c->failed) {
      connecting_.erase(it);
      comms_.erase(c->id);
      delete c;
      return chorusNetRemoteError;
    }
    if (!c->ready) return chorusNetSuccess;
    connecting_.erase(it);
    c->connectKey.clear();
    *out = c;
    return chorusNetSuccess;
  }
  fi_addr_t addr;
  if (!addressOf(h.name, h.nameLen, &addr)) return chorusNetSystemError;
  auto* c = new Comm;
  c->kind = Comm::Kind::Send;
  c->dev = this;
  c->id = newId();
  c->peerAddr = addr;
  c->connectKey = key;
  comms_[c->id] = c;
  connecting_[key] = c;
  if (!sendCtrl(kCtrlConnect, addr, h.listenerId, c->id, 0, c->id)) {
    connecting_.erase(key);
    comms_.erase(c->id);
    delete c;
    return chorusNetSystemError;
  }
  return chorusNetSuccess;
}

chorusNetResult_t Device::accept(Listener* l, Comm** out) {
  *out = nullptr;
  progress();
  if (l->incoming.empty()) return chorusNetSuccess;
  Listener::Incoming in = std::move(l->incoming.front());
  l->incoming.pop_front();
  fi_addr_t addr;
  if (!addressOf(reinterpret_cast<const uint8_t*>(in.name.data()), in.name.size(), &addr)) return chorusNetSystemError;
  watchPeer(addr, in.pid);
  auto* c = new Comm;
  c->kind = Comm::Kind::Recv;
  c->dev = this;
  c->id = newId();
  c->peerId = in.srcId;
  c->peerAddr = addr;
  c->ready = true;
  c->lastActivityNs = nowNs();
  comms_[c->id] = c;
  if (!sendCtrl(kCtrlAccept, addr, in.srcId, c->id, 0, c->id)) {
    comms_.erase(c->id);
    delete c;
    return chorusNetSystemError;
  }
  *out = c;
  return chorusNetSuccess;
}

void Device::closeComm(Comm* c) {
  progress();
  uint64_t closed = 0;
  // Tell the peer, unless the comm already failed (its peer is gone or unreachable, or it closed)
  // or the peer is dead or dying: a send to it could wait forever in the provider (shm).
  // Clean: no send of ours is still in flight, so no message of this comm can wait at the peer
  // for us to hand it over (a rendezvous request): the peer may still receive after we exit.
  if (c->ready && !c->failed && !peerGone(c->peerAddr, true)) {
    const bool clean = c->outstanding == 0 && c->pending.empty();
    closed = sendCtrl(kCtrlClosed, c->peerAddr, c->peerId, c->id, c->kind == Comm::Kind::Send ? c->dataCount : 0, 0,
                      clean ? kClosedClean : 0);
  }
  // Abandon the comm's requests: the provider keeps the ones it holds until their completion
  // (receives are canceled), the others go back to the pool now.
  dropQueued(c);
  if (c->waiting) {
    for (size_t i = 0; i < waiting_.size(); ++i) {
      if (waiting_[i] == c) {
        waiting_[i] = waiting_.back();
        waiting_.pop_back();
        break;
      }
    }
  }
  Request* r = c->live;
  while (r != nullptr) {
    Request* next = r->nextInComm;
    if (r->posted && r->kind == ReqKind::Recv && !r->complete) {
      CallScope call(calls_, "fi_cancel", 0);
      fi_cancel(&ep_->fid, &r->ctx);
    }
    unlink(r);
    r->released = true;
    recycleIfIdle(r);
    r = next;
  }
  if (!c->connectKey.empty()) connecting_.erase(c->connectKey);
  comms_.erase(c->id);
  delete c;
  // Let our kCtrlClosed leave now: the process may stop calling us (or exit) right after. Bounded:
  // a peer that cannot be reached fails it (ofi_progress.cpp), one that does not drain delays it.
  const int64_t deadline = nowNs() + kCloseFlushNs;
  while (closed != 0 && closedInFlight_.count(closed) != 0 && nowNs() < deadline) progress();
}

void Device::closeListener(Listener* l) {
  for (const Listener::Incoming& in : l->incoming) {
    fi_addr_t addr;
    if (addressOf(reinterpret_cast<const uint8_t*>(in.name.data()), in.name.size(), &addr)) {
      sendCtrl(kCtrlRefuse, addr, in.srcId, 0, 0, 0);
    }
  }
  listeners_.erase(l->id);
  delete l;
}

}  // namespace chorus::ofi

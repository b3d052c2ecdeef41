#include "transports/net/net_connection.h"

#include <algorithm>
#include <cstdlib>

#include "base/error.h"
#include "base/log.h"
#include "transports/net/net_plugin_host.h"

namespace chorus::net {

NetConnection::NetConnection(int peer, const chorusNet_v1_t& plugin, const std::string& kind, void* sendComm, void* recvComm,
                             const NetLinkParams& params, shm::ProcessWatch watch)
    : Connection(peer), plugin_(plugin), kind_(kind), sendComm_(sendComm), recvComm_(recvComm), params_(params),
      watch_(std::move(watch)) {}

NetConnection::~NetConnection() { closeComms(); }

void NetConnection::closeComms() noexcept {
  // Registrations first (they belong to the comms), then the comms: the peer's pending requests
  // then fail with chorusNetRemoteError.
  for (auto* list : {&sends_, &recvs_})
    for (Message& m : *list)
      if (m.mhandle) {
        plugin_.deregMr(list == &sends_ ? sendComm_ : recvComm_, m.mhandle);
        m.mhandle = nullptr;
      }
  if (stagingMr_ && recvComm_) plugin_.deregMr(recvComm_, stagingMr_);
  stagingMr_ = nullptr;
  if (sendComm_) plugin_.closeSend(sendComm_);
  if (recvComm_) plugin_.closeRecv(recvComm_);
  sendComm_ = recvComm_ = nullptr;
  sendFrags_.clear();
  recvFrags_.clear();
}

void NetConnection::ensureUsable() const {
  if (failed_) throw Error(static_cast<chorusResult_t>(failCode_), failWhy_);
}

void NetConnection::markFailed(const std::string& why, int code) noexcept {
  failed_ = true;
  failCode_ = code;
  failWhy_ = why;
  closeComms();
}

void NetConnection::fail(const std::string& why, int code) {
  markFailed(why, code);
  throw Error(static_cast<chorusResult_t>(code), why);
}

uint64_t NetConnection::doPostSend(const void* buf, size_t bytes, const CallStamp& stamp) {
  ensureUsable();
  Message m;
  m.send = static_cast<const char*>(buf);
  m.bytes = bytes;
  m.header.bytes = bytes;
  m.header.stamp = stamp;
  m.fragsLeft = 1 + (bytes + params_.chunk - 1) / params_.chunk;
  if (params_.regRequired && bytes > 0)
    check(plugin_.regMr(sendComm_, const_cast<void*>(buf), bytes, CHORUS_NET_PTR_HOST, &m.mhandle), plugin_,
          format("registering a %zu-byte send buffer for rank %d", bytes, peer()));
  sends_.push_back(m);
  uint64_t ticket = sendsPosted_++;
  progress();  // start moving at once: the first fragments go out before the caller's next poll
  return ticket;
}

uint64_t NetConnection::postRecv(const RecvSink& sink) {
  ensureUsable();
  Message m;
  m.sink = sink;
  m.bytes = sink.bytes;
  m.fragsLeft = 1 + (m.bytes + params_.chunk - 1) / params_.chunk;
  if (params_.regRequired && m.bytes > 0 && !sink.reduce)
    check(plugin_.regMr(recvComm_, sink.dst, m.bytes, CHORUS_NET_PTR_HOST, &m.mhandle), plugin_,
          format("registering a %zu-byte receive buffer for rank %d", m.bytes, peer()));
  recvs_.push_back(m);
  uint64_t ticket = recvsPosted_++;
  progress();
  return ticket;
}

// Posts fragments of the oldest messages that are not fully posted, up to `inflight` per
// direction. Returns whether anything was posted.
bool NetConnection::postFragments(bool send) {
  std::deque<Message>& msgs = send ? sends_ : recvs_;
  std::vector<Fragment>& frags = send ? sendFrags_ : recvFrags_;
  uint32_t& tag = send ? sendTag_ : recvTag_;
  bool posted = false;
  for (Message& m : msgs) {
    if ((int)frags.size() >= params_.inflight) break;
    while ((int)frags.size() < params_.inflight && (!m.started || m.posted < m.bytes)) {
      Fragment f;
      f.msg = &m;
      int t = static_cast<int>(tag % static_cast<uint32_t>(kHelloTag));
      if (!m.started) {  // the header
        f.header = true;
        f.bytes = sizeof(m.header);
        void* req = nullptr;
        if (send)
          check(plugin_.isend(sendComm_, &m.header, sizeof(m.header), t, nullptr, &req), plugin_, format("sending to rank %d", peer()));
        else
          check(plugin_.irecv(recvComm_, &m.header, sizeof(m.header), t, nullptr, &req), plugin_, format("receiving from rank %d", peer()));
        if (!req) return posted;
        f.request = req;
        ++tag;
        m.started = true;
        frags.push_back(f);
        posted = true;
        continue;
      }
      f.offset = m.posted;
      f.bytes = std::min(params_.chunk, m.bytes - m.posted);
      void* req = nullptr;
      if (send) {
        check(plugin_.isend(sendComm_, m.send + f.offset, f.bytes, t, m.mhandle, &req), plugin_,
              format("sending %zu bytes to rank %d", f.bytes, peer()));
      } else {
        void* dst = nullptr;
        void* mh = m.mhandle;
        if (m.sink.reduce && f.bytes > 0) {
          if (staging_.empty()) {
            staging_.resize(params_.chunk * params_.inflight);
            for (int i = params_.inflight - 1; i >= 0; --i) freeStaging_.push_back(i);
            chorusNetResult_t r = plugin_.regMr(recvComm_, staging_.data(), staging_.size(), CHORUS_NET_PTR_HOST, &stagingMr_);
            if (r != chorusNetSuccess) {
              stagingMr_ = nullptr;
              if (params_.regRequired) check(r, plugin_, format("registering staging buffers for rank %d", peer()));
            }
          }
          if (freeStaging_.empty()) return posted;
          f.staging = freeStaging_.back();
          dst = staging_.data() + static_cast<size_t>(f.staging) * params_.chunk;
          mh = stagingMr_;
        } else if (f.bytes > 0) {
          dst = static_cast<char*>(m.sink.dst) + f.offset;
        }
        check(plugin_.irecv(recvComm_, dst, f.bytes, t, mh, &req), plugin_, format("receiving %zu bytes from rank %d", f.bytes, peer()));
        if (req && f.staging >= 0) freeStaging_.pop_back();
      }
      if (!req) return posted;  // the plugin's queue is full: try again on the next progress
      f.request = req;
      ++tag;
      m.posted += f.bytes;
      frags.push_back(f);
      posted = true;
    }
  }
  return posted;
}

// Tests every posted fragment; completed ones are accounted to their message. Returns whether
// any completed.
void NetConnection::checkHeader(const Message& m, size_t size) {
  if (size != sizeof(m.header))
    fail(format("rank %d sent a %zu-byte message header where %zu bytes were expected (another protocol version?)", peer(), size,
                sizeof(m.header)),
         chorusInternalError);
  if (!stampsMatch(m.header.stamp, m.sink.stamp)) {
    std::string text = rawMismatchText(peer(), m.header.stamp, m.sink.stamp);
    markFailed(text, chorusInvalidUsage);
    throw CallMismatch(peer(), m.header.stamp, m.sink.stamp, text);
  }
  if (m.header.bytes != m.bytes)
    fail(format("rank %d sent a message of %llu bytes where a receive of %zu bytes was posted (sizes of matching send and receive "
                "differ)",
                peer(), static_cast<unsigned long long>(m.header.bytes), m.bytes),
         chorusInvalidUsage);
}

bool NetConnection::testFragments(bool send) {
  std::vector<Fragment>& frags = send ? sendFrags_ : recvFrags_;
  bool moved = false;
  for (Fragment& f : frags) {
    int done = 0;
    size_t size = 0;
    chorusNetResult_t r = plugin_.test(f.request, &done, &size);
    if (r != chorusNetSuccess) {
      f.request = nullptr;  // an error frees the request
      try {
        check(r, plugin_, format("%s rank %d over %s", send ? "sending to" : "receiving from", peer(), kind_.c_str()));
      } catch (const Error& e) {
        fail(e.what(), e.code());
      }
    }
    if (!done) continue;
    f.request = nullptr;
    moved = true;
    if (!send && f.header) checkHeader(*f.msg, size);
    if (!send && size != f.bytes)
      fail(format("rank %d sent a message that does not match the receive posted for it: a %zu-byte fragment arrived where %zu "
                  "bytes were expected at offset %zu of a %zu-byte receive (sizes of matching send and receive differ)",
                  peer(), size, f.bytes, f.offset, f.msg->bytes),
           chorusInternalError);
    if (f.staging >= 0) {
      f.msg->sink.deliver(f.offset, staging_.data() + static_cast<size_t>(f.staging) * params_.chunk, f.bytes);
      freeStaging_.push_back(f.staging);
    }
    --f.msg->fragsLeft;
  }
  if (moved) frags.erase(std::remove_if(frags.begin(), frags.end(), [](const Fragment& f) { return !f.request; }), frags.end());
  return moved;
}

// Completes messages in ticket order.
void NetConnection::retire(bool send) {
  std::deque<Message>& msgs = send ? sends_ : recvs_;
  uint64_t& done = send ? sendsDone_ : recvsDone_;
  while (!msgs.empty() && msgs.front().started && msgs.front().posted == msgs.front().bytes && msgs.front().fragsLeft == 0) {
    if (msgs.front().mhandle) plugin_.deregMr(send ? sendComm_ : recvComm_, msgs.front().mhandle);
    msgs.pop_front();
    ++done;
  }
}

bool NetConnection::progress() {
  ensureUsable();
  bool moved = testFragments(true);
  moved |= testFragments(false);
  retire(true);
  retire(false);
  moved |= postFragments(true);
  moved |= postFragments(false);
  return moved;
}

void NetConnection::checkAlive() {
  ensureUsable();
  if (watch_.alive()) return;
  // The peer is gone, but what it sent before it exited may still be waiting here (a peer that
  // finished its part exits at once): take it first, and fail only work that can no longer end.
  while (progress()) {
  }
  if (sends_.empty() && recvs_.empty()) return;
  fail(format("rank %d (pid %d) died: its %s connection is gone", peer(), watch_.pid(), kind_.c_str()), chorusRemoteError);
}

void NetConnection::abort() noexcept {
  if (!failed_) {
    failed_ = true;
    failCode_ = chorusRemoteError;
    failWhy_ = format("the connection to rank %d was aborted", peer());
  }
  closeComms();
}

}  // namespace chorus::net

// Private to src/bootstrap: authenticated out-of-band messages between the ranks of one
// communicator, over one TCP connection per direction and peer pair (the transport under the
// Bootstrap's Oob; the join, all-gather and barrier logic is in bootstrap.cpp).
//
// Wire: the sender opens the connection on its first message to a peer and writes an Auth
// {magic, secret, comm id, from, to}, then framed messages {tag, bytes} + payload (wire.h).
// The receiver accepts on its listener, checks the Auth (a wrong secret is logged as a WARN and
// closed; serving goes on) and files every arriving message in a stash keyed by (peer, tag), so
// recv(peer, tag) finds it whatever arrived before. The bytes of each accepted connection are
// read by an OobInbound (below), a pure state machine that the fuzz target drives too.
//
// Strangers: connections without a valid Auth are held to the limits of auth_gate.h (closed
// after CHORUS_AUTH_TIMEOUT, at most CHORUS_AUTH_MAX_PENDING at once; closings logged at WARN,
// rate-limited), and accept() running out of descriptors closes the oldest stranger or pauses
// the listener for a moment instead of failing the call. So however many strangers connect, a
// rank holds at most that many descriptors for them.
//
// Progress: every wait is one poll() over the wake eventfd, the listener, the accepted
// connections and (while a send is incomplete) the outgoing socket, with a timeout from the
// Deadline. While waiting for anything, the rank keeps reading every peer into the stash and
// keeps writing its own pending message, so "everybody sends, then everybody receives" cannot
// deadlock even for messages larger than the socket buffers.
//
// Threads: one caller at a time (the Bootstrap serializes them), except abort(), which may be
// called from any thread: it shuts down every socket (tracked in a registry under its own small
// lock) and writes the wake eventfd, so a call blocked in poll() returns with an error; the
// descriptors are closed when the object is destroyed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bootstrap/auth_gate.h"
#include "bootstrap/socket.h"
#include "bootstrap/traffic.h"
#include "bootstrap/unique_id.h"
#include "bootstrap/wire.h"
#include "base/config.h"
#include "base/deadline.h"
#include "bootstrap/peer_card.h"

namespace chorus {

// Every socket an OobSockets owns, so that abort() can shut them down from another thread
// without racing with their close (close happens under the same lock, so a number is never
// shut down after it was reused by someone else).
class FdRegistry {
 public:
  int add(Fd&& fd);
  void close(int fd);
  void shutdownAll() noexcept;

 private:
  std::mutex mu_;
  std::set<int> fds_;
};

// A descriptor registered in a FdRegistry; closes through it.
class TrackedFd {
 public:
  TrackedFd(FdRegistry& reg, Fd&& fd) : reg_(reg), fd_(reg.add(std::move(fd))) {}
  ~TrackedFd() { reg_.close(fd_); }
  TrackedFd(const TrackedFd&) = delete;
  TrackedFd& operator=(const TrackedFd&) = delete;
  int get() const { return fd_; }

 private:
  FdRegistry& reg_;
  int fd_;
};

// The receiving end of one Oob connection, as a pure state machine over its bytes: an Auth
// record, then frames (FrameHeader + payload). The caller writes incoming bytes into space()
// and reports them with received().
class OobInbound {
 public:
  enum class Event {
    None,           // nothing completed yet
    Authenticated,  // the Auth was valid: peer() is known
    Message,        // a whole message arrived: tag() and takeBody()
    Rejected,       // bad Auth or corrupt frame: why(); close the connection
  };
  // Payload memory grows with the bytes that arrived, at most this far ahead of them, so that
  // a header announcing kMaxMessageBytes costs nothing until the bytes come.
  static constexpr size_t kBodyStep = 1 << 20;

  OobInbound(const UniqueIdData& id, int rank, int nranks) : id_(id), rank_(rank), nranks_(nranks) {}
  // Where the next bytes go; empty once Rejected.
  std::pair<char*, size_t> space();
  // n bytes (at most space().second) were written at space(): what they completed.
  Event received(size_t n);
  int peer() const { return peer_; }  // -1 until authenticated
  bool rejected() const { return phase_ == kDead; }
  const std::string& why() const { return why_; }
  size_t authBytes() const { return phase_ == kAuth ? got_ : sizeof(auth_); }
  // Some bytes of a frame arrived, not all of it.
  bool midMessage() const { return phase_ == kBody || (phase_ == kHeader && got_ != 0); }
  uint32_t tag() const { return header_.tag; }
  std::vector<char> takeBody() { return std::move(body_); }

 private:
  enum Phase { kAuth, kHeader, kBody, kDead };
  Event reject(std::string why);
  Event onAuth();
  Event onHeader();

  UniqueIdData id_;
  int rank_;
  int nranks_;
  int peer_ = -1;
  Phase phase_ = kAuth;
  size_t got_ = 0;  // bytes of the current record (Auth, header or payload)
  wire::Auth auth_;
  wire::FrameHeader header_;
  std::vector<char> body_;
  std::string why_;
};

class OobSockets {
 public:
  // Opens the listener on the interface the config chooses (and the wake eventfd).
  OobSockets(const UniqueIdData& id, int rank, int nranks, const Config& config);
  OobSockets(const OobSockets&) = delete;
  OobSockets& operator=(const OobSockets&) = delete;

  const WireAddr& listenAddress() const { return listenAddr_; }
  // Where peers listen: learned one at a time (from the root) until useCards() is called, then
  // read from the cards (which must outlive this object).
  void learnAddress(int peer, const WireAddr& addr) { rootAddrs_[peer] = addr; }
  void useCards(const std::vector<PeerCard>* cards) {
    cards_ = cards;
    rootAddrs_.clear();
  }

  void send(int peer, uint32_t tag, const void* data, size_t bytes, Deadline deadline);
  void recv(int peer, uint32_t tag, void* data, size_t bytes, Deadline deadline);
  // Sends to `to` and receives from `from` at the same time (one round of a collective).
  void exchange(int to, uint32_t tag, const void* sbuf, size_t sbytes, int from, void* rbuf, size_t rbytes,
                Deadline deadline);
  // Any thread; never throws. Calls in progress and later ones fail with chorusInvalidUsage.
  void abort() noexcept;
  // Messages and bytes so far (any thread; a snapshot of counters the one caller updates).
  BootstrapTraffic traffic() const;

 private:
  // An accepted connection: Auth first, then frames.
  struct Conn {
    Conn(FdRegistry& reg, Fd&& f, std::string r, const OobInbound& i)
        : fd(reg, std::move(f)), remote(std::move(r)), in(i), since(Clock::now()) {}
    TrackedFd fd;
    std::string remote;
    OobInbound in;
    Clock::time_point since;  // accepted at
    bool dead = false;
  };

  // One message being written: [Auth] FrameHeader payload.
  struct Outgoing {
    int peer = -1;
    uint32_t tag = 0;
    int fd = -1;
    std::vector<char> head;
    const char* data = nullptr;
    size_t bytes = 0;
    size_t done = 0;
    size_t total() const { return head.size() + bytes; }
    bool finished() const { return done == total(); }
  };

  void checkPeer(int peer, const char* what) const;
  void checkAborted() const;
  WireAddr addressOf(int peer) const;
  int sendSocket(int peer, bool* fresh, Deadline deadline);
  Outgoing startSend(int peer, uint32_t tag, const void* data, size_t bytes, Deadline deadline);
  bool trySend(Outgoing& out);
  void pump(Outgoing* out, int wantPeer, uint32_t wantTag, Deadline deadline);
  void acceptAll();
  void admit(Fd fd);
  void settle();
  void readConn(Conn& c);
  void onClosed(Conn& c, const std::string& why);
  bool stashed(int peer, uint32_t tag) const {
    auto it = stash_.find({peer, tag});
    return it != stash_.end() && !it->second.empty();
  }
  void take(int peer, uint32_t tag, void* data, size_t bytes);

  FdRegistry registry_;  // first: destroyed after every TrackedFd below
  UniqueIdData id_;
  int rank_;
  int nranks_;
  std::atomic<bool> aborted_{false};
  std::unique_ptr<TrackedFd> wakeFd_;
  int wake_ = -1;
  std::unique_ptr<TrackedFd> listener_;
  WireAddr listenAddr_;
  const std::vector<PeerCard>* cards_ = nullptr;
  std::unordered_map<int, WireAddr> rootAddrs_;  // from the root, until the cards are known
  std::unordered_map<int, std::unique_ptr<TrackedFd>> sendFds_;
  std::unique_ptr<AuthGate> gate_;
  std::vector<std::unique_ptr<Conn>> conns_;     // authenticated
  std::deque<std::unique_ptr<Conn>> strangers_;  // not yet authenticated, oldest first
  Clock::time_point acceptPausedUntil_{};         // out of descriptors: the listener rests
  std::map<std::pair<int, uint32_t>, std::deque<std::vector<char>>> stash_;
  std::unordered_map<int, std::string> closedPeers_;  // peer -> how its connection ended
  std::set<int> connectedPeers_;                       // peers that have authenticated to us
  // traffic(): written by the one caller, read from any thread.
  std::atomic<uint64_t> msgsSent_{0}, msgsRecv_{0}, bytesSent_{0}, bytesRecv_{0}, connsOpened_{0}, connsAccepted_{0};
};

}  // namespace chorus

// The root rendezvous service: the one place every rank of a new communicator can find before
// it knows anybody else.
//
// Protocol (records in wire.h):
//   rank  -> root : Hello {magic, version, secret, commId, rank, nranks, listenAddr}
//   root  -> rank : Reply {code = success, count = ceil(log2 p)} + count PeerAddr records,
//                   or Reply {code = error, textLen} + the error text.
// A connection whose magic, version, secret or comm id is wrong is closed without an answer
// (and logged as a WARN with its address): the service never trusts anyone without the secret.
// Inconsistent check-ins (two ranks disagree on nranks, a rank outside [0, nranks), the same
// rank twice) are usage errors: every rank that checked in, and every rank that checks in
// later, gets an error reply with the explanation.
//
// When all p ranks have checked in, rank r is sent only the listener addresses of the ranks
// (r - 2^k) mod p, k = 0 .. ceil(log2 p) - 1: the ranks it sends to during Bruck's all-gather
// of the PeerCards (bootstrap.cpp), which then teaches everyone every address.
//
// Cost: the root accepts p connections, reads p * 64 bytes and writes p * (16 + 28 ceil(log2 p))
// bytes; each rank exchanges one Hello and O(log p) addresses with it. The root holds one socket
// per checked-in rank until all have arrived (O(p) descriptors, on one process only).
//
// Strangers: a connection that has not sent a complete check-in is held to the limits of
// auth_gate.h (closed after CHORUS_AUTH_TIMEOUT, at most CHORUS_AUTH_MAX_PENDING at once, each
// closing logged at WARN, rate-limited), so idle or garbage connections cannot use up the
// root's descriptors or hold up the ranks.
//
// Structure: RootRendezvous (root.h) holds the bookkeeping and decides every answer; RootService
// below owns the sockets, reads the check-ins and sends the answers.
//
// Lifetime: a detached thread serves exactly one rendezvous and exits. At its deadline
// (CHORUS_TIMEOUT after it started) it tells every waiting rank which ranks never checked in
// (chorusTimeout), closes everything and exits. All waits are poll() with a timeout.
#include "bootstrap/root.h"

#include <errno.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bootstrap/wire.h"
#include "base/error.h"
#include "base/log.h"

namespace chorus {
namespace {

// "3, 5-7, 12" from [first, last] ranges (at most kMaxRanges of them, then "...").
std::string describeRanges(const std::vector<std::pair<int, int>>& ranges) {
  constexpr size_t kMaxRanges = 32;
  std::string out;
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (i == kMaxRanges) {
      out += ", ...";
      break;
    }
    if (!out.empty()) out += ", ";
    auto [first, last] = ranges[i];
    out += first == last ? std::to_string(first) : format("%d-%d", first, last);
  }
  return out;
}

std::string bytesOf(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// RootRendezvous: the bookkeeping
// ---------------------------------------------------------------------------------------------

const char* RootRendezvous::refusal(const wire::Hello& h, const UniqueIdData& id) {
  if (h.magic != wire::kHelloMagic) return "not a Chorus check-in";
  if (h.version != wire::kVersion) return "other protocol version";
  if (h.secret[0] != id.secret[0] || h.secret[1] != id.secret[1] || h.commId != id.commId)
    return "wrong secret or communicator id";
  return nullptr;
}

bool RootRendezvous::onCheckIn(int conn, const std::string& remote, const wire::Hello& h) {
  maxNranks_ = std::max(maxNranks_, std::min(std::max(h.nranks, 1), kMaxRanks));
  if (failed_) {
    answerFailure(conn, remote, h.rank);
    return false;
  }
  CHORUS_TRACE(kLogBootstrap, "root: rank %d of %d checked in from %s (listener %s)", h.rank, h.nranks, remote.c_str(),
               addrToString(h.listenAddr).c_str());
  if (nranks_ == 0) {
    if (h.nranks < 1 || h.nranks > kMaxRanks)
      return failWith(conn, remote, h.rank, chorusInvalidUsage,
                      format("rank %d checked in with nranks=%d, outside [1, %d]", h.rank, h.nranks, kMaxRanks));
    nranks_ = h.nranks;
    firstRank_ = h.rank;
  }
  if (h.nranks != nranks_)
    return failWith(conn, remote, h.rank, chorusInvalidUsage,
                    format("rank %d checked in with nranks=%d but rank %d with nranks=%d: every rank must pass the "
                           "same nranks",
                           h.rank, h.nranks, firstRank_, nranks_));
  if (h.rank < 0 || h.rank >= nranks_)
    return failWith(conn, remote, h.rank, chorusInvalidUsage,
                    format("a rank checked in as rank %d, outside [0, %d)", h.rank, nranks_));
  if (auto it = ranks_.find(h.rank); it != ranks_.end())
    return failWith(conn, remote, h.rank, chorusInvalidUsage,
                    format("rank %d checked in twice (from %s and from %s): every rank must pass a distinct rank",
                           h.rank, it->second.remote.c_str(), remote.c_str()));
  if (h.listenAddr.family != AF_INET && h.listenAddr.family != AF_INET6)
    return failWith(conn, remote, h.rank, chorusInternalError,
                    format("rank %d sent a listener address of unknown family %u", h.rank, h.listenAddr.family));
  ranks_[h.rank] = Arrived{conn, remote, h.listenAddr};
  ++arrived_;
  return true;
}

// Enters the failed state because of conn's check-in, and answers conn too.
bool RootRendezvous::failWith(int conn, const std::string& remote, int rank, chorusResult_t code, std::string text) {
  fail(code, std::move(text));
  answerFailure(conn, remote, rank);
  return false;
}

void RootRendezvous::fail(chorusResult_t code, std::string text) {
  if (failed_) return;
  CHORUS_WARN(kLogBootstrap, "root %s: %s", addrToString(id_.root).c_str(), text.c_str());
  failed_ = true;
  failCode_ = code;
  failText_ = std::move(text);
  std::map<int, Arrived> waiting;
  waiting.swap(ranks_);
  for (const auto& [rank, a] : waiting) answerFailure(a.conn, a.remote, rank);
}

void RootRendezvous::answerFailure(int conn, const std::string& remote, int rank) {
  wire::Reply reply;
  reply.code = failCode_;
  reply.textLen = static_cast<uint32_t>(failText_.size());
  answer_(conn, remote, rank, bytesOf(&reply, sizeof(reply)) + failText_);
  ++answered_;
}

void RootRendezvous::finish() {
  CHORUS_ASSERT(complete());
  const int p = nranks_;
  const int rounds = wire::log2Ceil(p);
  for (const auto& [r, a] : ranks_) {
    wire::Reply reply;
    reply.code = chorusSuccess;
    reply.count = static_cast<uint32_t>(rounds);
    std::string msg = bytesOf(&reply, sizeof(reply));
    for (int k = 0; k < rounds; ++k) {
      wire::PeerAddr pa;
      pa.rank = wire::bruckSendPeer(r, p, 1 << k);
      pa.addr = ranks_.at(pa.rank).listenAddr;
      msg += bytesOf(&pa, sizeof(pa));
    }
    answer_(a.conn, a.remote, r, msg);
  }
  ranks_.clear();
}

void RootRendezvous::onDeadline(double timeoutSec) {
  if (failed_) return;
  if (nranks_ == 0) {
    CHORUS_WARN(kLogBootstrap, "root %s: no rank checked in within %.1f s; giving up", addrToString(id_.root).c_str(),
                timeoutSec);
    return;
  }
  // The gaps between the ranks that checked in (a walk over those, not over nranks).
  std::vector<std::pair<int, int>> missing;
  int next = 0;
  for (const auto& [r, a] : ranks_) {
    if (r > next) missing.push_back({next, r - 1});
    next = r + 1;
  }
  if (next < nranks_) missing.push_back({next, nranks_ - 1});
  fail(chorusTimeout, format("root rendezvous timed out after %.1f s: %d of %d ranks checked in; rank(s) %s never "
                             "checked in (CHORUS_TIMEOUT)",
                             timeoutSec, arrived_, nranks_, describeRanges(missing).c_str()));
}

// ---------------------------------------------------------------------------------------------
// RootService: the sockets
// ---------------------------------------------------------------------------------------------

namespace {

class RootService {
 public:
  RootService(Fd listener, const UniqueIdData& id, double timeoutSec, const AuthLimits& limits)
      : listener_(std::move(listener)), id_(id), timeoutSec_(timeoutSec), start_(Clock::now()),
        deadline_(Deadline::after(timeoutSec)), gate_(format("root %s", addrToString(id.root).c_str()), kLogBootstrap, limits),
        state_(id, [this](int conn, const std::string& remote, int rank, const std::string& bytes) {
          answer(conn, remote, rank, bytes);
        }) {}

  void run() noexcept {
    try {
      serve();
    } catch (const std::exception& e) {
      CHORUS_WARN(kLogBootstrap, "root %s: rendezvous failed: %s", addrToString(id_.root).c_str(), e.what());
      try {
        state_.fail(chorusInternalError, format("root rendezvous failed: %s", e.what()));
      } catch (...) {
      }
    }
  }

 private:
  // A connection whose check-in is not complete yet (in accept order).
  struct Pending {
    Fd fd;
    std::string remote;
    wire::Hello hello;
    size_t got = 0;
    Clock::time_point since;
  };

  void serve() {
    std::vector<pollfd> fds;
    for (;;) {
      if (state_.complete()) {
        state_.finish();
        CHORUS_INFO(kLogBootstrap, "root %s: all %d ranks checked in after %.1f ms; sent %d addresses to each",
                    addrToString(id_.root).c_str(), state_.nranks(), elapsedMs(), wire::log2Ceil(state_.nranks()));
        return;
      }
      if (state_.finished() || stopped_) return;
      if (deadline_.expired()) return state_.onDeadline(timeoutSec_);
      auto now = Clock::now();
      while (!pending_.empty() && gate_.expired(pending_.front().since, now)) {
        gate_.rejected(pending_.front().remote, format("no complete check-in within %.1f s (%zu of %zu bytes)",
                                                       gate_.limits().timeoutSec, pending_.front().got,
                                                       sizeof(wire::Hello)));
        pending_.pop_front();
      }
      bool acceptPaused = now < acceptPausedUntil_;
      fds.clear();
      fds.push_back({listener_.get(), static_cast<short>(acceptPaused ? 0 : POLLIN), 0});
      for (auto& p : pending_) fds.push_back({p.fd.get(), POLLIN, 0});
      // Wake for the deadline, the oldest stranger's expiry and the end of an accept pause.
      Clock::time_point wake = deadline_.at();
      if (!pending_.empty()) wake = std::min(wake, gate_.expiry(pending_.front().since));
      if (acceptPaused) wake = std::min(wake, acceptPausedUntil_);
      int n = poll(fds.data(), fds.size(), Deadline(wake).millisLeft());
      if (n < 0 && errno != EINTR) CHORUS_THROW_ERRNO("poll");
      if (n <= 0) continue;
      // Read the pending connections first (their indices match fds[1..]), then accept.
      std::deque<Pending> still;
      for (size_t i = 0; i < pending_.size(); ++i) {
        Pending& p = pending_[i];
        if (fds[i + 1].revents && !readHello(p)) continue;  // dropped or done
        still.push_back(std::move(p));
      }
      pending_ = std::move(still);
      if (fds[0].revents) acceptAll();
    }
  }

  void acceptAll() {
    for (;;) {
      int c = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0) {
        admit(Fd(c));
        continue;
      }
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        if (raiseFileLimit()) continue;
        // Strangers give way to whoever is next in the accept queue.
        if (!pending_.empty()) {
          gate_.rejected(pending_.front().remote, "closed to free a descriptor (this process has no more)");
          pending_.pop_front();
          continue;
        }
        // Only checked-in ranks hold descriptors: the limit is too small for this communicator.
        if (state_.nranks() > 0 && state_.arrived() > 0) {
          state_.fail(chorusSystemError,
                      format("root rendezvous cannot accept more connections after %d ranks (%s); raise the open-file "
                             "limit (ulimit -n)",
                             state_.arrived(), strerror(err)));
          stopped_ = true;  // without descriptors the listener would stay readable forever
          return;
        }
        // Nobody to blame yet: stop accepting for a moment (the queue keeps the connections).
        gate_.rejected("(not accepted)", format("cannot accept: %s", strerror(err)));
        acceptPausedUntil_ = Clock::now() + std::chrono::milliseconds(50);
        return;
      }
      state_.fail(chorusSystemError, format("root rendezvous cannot accept connections: %s", strerror(err)));
      stopped_ = true;
      return;
    }
  }

  // A new connection: its check-in is usually there already; otherwise it waits, within the
  // gate's limits.
  void admit(Fd fd) {
    Pending p;
    p.remote = peerAddressOf(fd.get());
    p.fd = std::move(fd);
    p.since = Clock::now();
    CHORUS_TRACE(kLogBootstrap, "root: connection from %s", p.remote.c_str());
    if (!readHello(p)) return;
    if (pending_.size() >= static_cast<size_t>(gate_.limits().maxPending)) {
      gate_.rejected(pending_.front().remote,
                     format("no check-in yet; closed to make room (at most %d connections wait for their check-in)",
                            gate_.limits().maxPending));
      pending_.pop_front();
    }
    pending_.push_back(std::move(p));
  }

  // The root keeps one descriptor per checked-in rank: lift the soft limit to the hard one once.
  bool raiseFileLimit() {
    if (raisedLimit_) return false;
    raisedLimit_ = true;
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return false;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
    CHORUS_INFO(kLogBootstrap, "root: raised the open-file limit to %llu", static_cast<unsigned long long>(rl.rlim_cur));
    return true;
  }

  // Reads what is available of p's Hello. Returns false when p is finished with (checked in,
  // answered, or dropped): its fd has then been moved out or closed.
  bool readHello(Pending& p) {
    auto* buf = reinterpret_cast<char*>(&p.hello);
    while (p.got < sizeof(p.hello)) {
      ssize_t n = ::recv(p.fd.get(), buf + p.got, sizeof(p.hello) - p.got, MSG_DONTWAIT);
      if (n > 0) {
        p.got += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      std::string how = n == 0 ? "closed" : strerror(errno);
      if (p.got > 0)
        gate_.rejected(p.remote, format("left after %zu of %zu bytes of a check-in (%s)", p.got, sizeof(p.hello),
                                        how.c_str()));
      else
        CHORUS_TRACE(kLogBootstrap, "root: %s left before checking in (%s)", p.remote.c_str(), how.c_str());
      p.fd.reset();
      return false;
    }
    if (const char* why = RootRendezvous::refusal(p.hello, id_)) {
      gate_.rejected(p.remote, why);
      return false;  // p.fd closes with p
    }
    int conn = p.fd.get();
    if (state_.onCheckIn(conn, p.remote, p.hello)) checkedIn_.emplace(conn, std::move(p.fd));
    return false;
  }

  // Sends an answer and closes the connection.
  void answer(int conn, const std::string& remote, int rank, const std::string& bytes) {
    // Answers are small (well under the socket buffer), so this does not wait for the rank.
    try {
      sendAll(conn, bytes.data(), bytes.size(), Deadline::after(5.0));
    } catch (const Error& e) {
      CHORUS_WARN(kLogBootstrap, "root: could not answer rank %d at %s: %s", rank, remote.c_str(), e.what());
    }
    checkedIn_.erase(conn);  // closes it (a connection answered at once is closed by its caller)
  }

  double elapsedMs() const { return std::chrono::duration<double, std::milli>(Clock::now() - start_).count(); }

  Fd listener_;
  UniqueIdData id_;
  double timeoutSec_;
  Clock::time_point start_;
  Deadline deadline_;
  AuthGate gate_;
  RootRendezvous state_;
  std::deque<Pending> pending_;                 // connected, check-in not complete, oldest first
  std::unordered_map<int, Fd> checkedIn_;       // by descriptor: checked in, not answered yet
  Clock::time_point acceptPausedUntil_{};       // out of descriptors: the listener rests
  bool stopped_ = false;
  bool raisedLimit_ = false;
};

}  // namespace

void launchRootThread(Fd listener, const UniqueIdData& id, double timeoutSec, const AuthLimits& limits) {
  auto service = std::make_shared<RootService>(std::move(listener), id, timeoutSec, limits);
  std::thread([service] { service->run(); }).detach();
}

}  // namespace chorus

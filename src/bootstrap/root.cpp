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
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/wire.h"
#include "core/error.h"
#include "core/log.h"

namespace chorus {
namespace {

// Largest communicator the root accepts; a bigger nranks is taken for garbage.
constexpr int kMaxRanks = 1 << 24;

// "3, 5-7, 12" (at most kMaxRanges ranges, then "...").
std::string describeRanks(const std::vector<int>& ranks) {
  constexpr int kMaxRanges = 32;
  std::string out;
  int ranges = 0;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (ranges == kMaxRanges) {
      out += ", ...";
      break;
    }
    if (!out.empty()) out += ", ";
    out += (j == i) ? std::to_string(ranks[i]) : format("%d-%d", ranks[i], ranks[j]);
    ++ranges;
    i = j + 1;
  }
  return out;
}

class RootService {
 public:
  RootService(Fd listener, const UniqueIdData& id, double timeoutSec)
      : listener_(std::move(listener)), id_(id), timeoutSec_(timeoutSec), start_(Clock::now()),
        deadline_(Deadline::after(timeoutSec)) {}

  void run() noexcept {
    try {
      serve();
    } catch (const std::exception& e) {
      CHORUS_WARN(kLogBootstrap, "root %s: rendezvous failed: %s", addrToString(id_.root).c_str(), e.what());
      try {
        if (!failed_) fail(chorusInternalError, format("root rendezvous failed: %s", e.what()));
      } catch (...) {
      }
    }
  }

 private:
  struct Pending {
    Fd fd;
    std::string remote;
    wire::Hello hello;
    size_t got = 0;
  };
  struct Arrived {
    Fd fd;
    std::string remote;
    WireAddr listenAddr;
  };

  void serve() {
    std::vector<pollfd> fds;
    for (;;) {
      if (!failed_ && nranks_ > 0 && arrived_ == nranks_) return finish();
      if (failed_ && answered_ >= maxNranks_) return;
      if (deadline_.expired()) return onDeadline();
      fds.clear();
      fds.push_back({listener_.get(), POLLIN, 0});
      for (auto& p : pending_) fds.push_back({p.fd.get(), POLLIN, 0});
      int n = poll(fds.data(), fds.size(), deadline_.millisLeft());
      if (n < 0 && errno != EINTR) CHORUS_THROW_ERRNO("poll");
      if (n <= 0) continue;
      // Read the pending connections first (their indices match fds[1..]), then accept.
      std::vector<Pending> still;
      for (size_t i = 0; i < pending_.size(); ++i) {
        Pending& p = pending_[i];
        if (fds[i + 1].revents && !readHello(p)) continue;  // dropped or done
        if (p.fd) still.push_back(std::move(p));
      }
      pending_ = std::move(still);
      if (fds[0].revents) acceptAll();
    }
  }

  void acceptAll() {
    for (;;) {
      int c = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0) {
        Pending p;
        p.fd = Fd(c);
        p.remote = peerAddressOf(c);
        CHORUS_TRACE(kLogBootstrap, "root: connection from %s", p.remote.c_str());
        pending_.push_back(std::move(p));
        continue;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if ((errno == EMFILE || errno == ENFILE) && raiseFileLimit()) continue;
      int err = errno;
      fail(chorusSystemError, format("root rendezvous cannot accept more connections after %d ranks (%s); raise "
                                     "the open-file limit (ulimit -n)",
                                     arrived_, strerror(err)));
      // Without descriptors the listener would stay readable forever: stop serving.
      answered_ = maxNranks_;
      return;
    }
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
      CHORUS_TRACE(kLogBootstrap, "root: %s left before checking in (%s)", p.remote.c_str(),
                   n == 0 ? "closed" : strerror(errno));
      p.fd.reset();
      return false;
    }
    onHello(std::move(p));
    return false;
  }

  void onHello(Pending&& p) {
    const wire::Hello& h = p.hello;
    if (h.magic != wire::kHelloMagic || h.version != wire::kVersion || h.secret[0] != id_.secret[0] ||
        h.secret[1] != id_.secret[1] || h.commId != id_.commId) {
      CHORUS_WARN(kLogBootstrap, "root %s: rejected a connection from %s: %s", addrToString(id_.root).c_str(),
                  p.remote.c_str(),
                  h.magic != wire::kHelloMagic ? "not a Chorus check-in"
                  : h.version != wire::kVersion ? "other protocol version"
                                                : "wrong secret or communicator id");
      return;  // p.fd closes here
    }
    maxNranks_ = std::max(maxNranks_, std::min(std::max(h.nranks, 1), kMaxRanks));
    if (failed_) return answer(p.fd, p.remote, h.rank);
    CHORUS_TRACE(kLogBootstrap, "root: rank %d of %d checked in from %s (listener %s)", h.rank, h.nranks,
                 p.remote.c_str(), addrToString(h.listenAddr).c_str());
    if (nranks_ == 0) {
      if (h.nranks < 1 || h.nranks > kMaxRanks)
        return failWith(std::move(p), chorusInvalidUsage,
                        format("rank %d checked in with nranks=%d, outside [1, %d]", h.rank, h.nranks, kMaxRanks));
      nranks_ = h.nranks;
      firstRank_ = h.rank;
      ranks_.resize(static_cast<size_t>(nranks_));
    }
    if (h.nranks != nranks_)
      return failWith(std::move(p), chorusInvalidUsage,
                      format("rank %d checked in with nranks=%d but rank %d with nranks=%d: every rank must pass the "
                             "same nranks",
                             h.rank, h.nranks, firstRank_, nranks_));
    if (h.rank < 0 || h.rank >= nranks_)
      return failWith(std::move(p), chorusInvalidUsage,
                      format("a rank checked in as rank %d, outside [0, %d)", h.rank, nranks_));
    Arrived& slot = ranks_[static_cast<size_t>(h.rank)];
    if (slot.fd)
      return failWith(std::move(p), chorusInvalidUsage,
                      format("rank %d checked in twice (from %s and from %s): every rank must pass a distinct rank",
                             h.rank, slot.remote.c_str(), p.remote.c_str()));
    if (h.listenAddr.family != AF_INET && h.listenAddr.family != AF_INET6)
      return failWith(std::move(p), chorusInternalError,
                      format("rank %d sent a listener address of unknown family %u", h.rank, h.listenAddr.family));
    slot.fd = std::move(p.fd);
    slot.remote = std::move(p.remote);
    slot.listenAddr = h.listenAddr;
    ++arrived_;
  }

  // Enters the failed state because of p's check-in, and answers p too.
  void failWith(Pending&& p, chorusResult_t code, std::string text) {
    fail(code, std::move(text));
    answer(p.fd, p.remote, p.hello.rank);
  }

  // From now on every rank, checked in or still to come, gets this error.
  void fail(chorusResult_t code, std::string text) {
    CHORUS_WARN(kLogBootstrap, "root %s: %s", addrToString(id_.root).c_str(), text.c_str());
    failed_ = true;
    failCode_ = code;
    failText_ = std::move(text);
    for (size_t r = 0; r < ranks_.size(); ++r)
      if (ranks_[r].fd) answer(ranks_[r].fd, ranks_[r].remote, static_cast<int>(r));
  }

  // Sends the failure to one rank and closes its connection.
  void answer(Fd& fd, const std::string& remote, int rank) {
    wire::Reply reply;
    reply.code = failCode_;
    reply.textLen = static_cast<uint32_t>(failText_.size());
    std::string msg(reinterpret_cast<const char*>(&reply), sizeof(reply));
    msg += failText_;
    send(fd, remote, rank, msg);
    ++answered_;
  }

  void send(Fd& fd, const std::string& remote, int rank, const std::string& msg) {
    // Replies are small (well under the socket buffer), so this does not wait for the rank.
    try {
      sendAll(fd.get(), msg.data(), msg.size(), Deadline::after(5.0));
    } catch (const Error& e) {
      CHORUS_WARN(kLogBootstrap, "root: could not answer rank %d at %s: %s", rank, remote.c_str(), e.what());
    }
    fd.reset();
  }

  void finish() {
    const int p = nranks_;
    const int rounds = wire::log2Ceil(p);
    for (int r = 0; r < p; ++r) {
      wire::Reply reply;
      reply.code = chorusSuccess;
      reply.count = static_cast<uint32_t>(rounds);
      std::string msg(reinterpret_cast<const char*>(&reply), sizeof(reply));
      for (int k = 0; k < rounds; ++k) {
        wire::PeerAddr pa;
        pa.rank = wire::bruckSendPeer(r, p, 1 << k);
        pa.addr = ranks_[static_cast<size_t>(pa.rank)].listenAddr;
        msg.append(reinterpret_cast<const char*>(&pa), sizeof(pa));
      }
      send(ranks_[static_cast<size_t>(r)].fd, ranks_[static_cast<size_t>(r)].remote, r, msg);
    }
    CHORUS_INFO(kLogBootstrap, "root %s: all %d ranks checked in after %.1f ms; sent %d addresses to each",
                addrToString(id_.root).c_str(), p, elapsedMs(), rounds);
  }

  void onDeadline() {
    if (failed_) return;
    if (nranks_ == 0) {
      CHORUS_WARN(kLogBootstrap, "root %s: no rank checked in within %.1f s; giving up", addrToString(id_.root).c_str(),
                  timeoutSec_);
      return;
    }
    std::vector<int> missing;
    for (int r = 0; r < nranks_; ++r)
      if (!ranks_[static_cast<size_t>(r)].fd) missing.push_back(r);
    fail(chorusTimeout, format("root rendezvous timed out after %.1f s: %d of %d ranks checked in; rank(s) %s never "
                               "checked in (CHORUS_TIMEOUT)",
                               timeoutSec_, arrived_, nranks_, describeRanks(missing).c_str()));
  }

  double elapsedMs() const { return std::chrono::duration<double, std::milli>(Clock::now() - start_).count(); }

  Fd listener_;
  UniqueIdData id_;
  double timeoutSec_;
  Clock::time_point start_;
  Deadline deadline_;
  std::vector<Pending> pending_;   // connected, Hello not read yet
  std::vector<Arrived> ranks_;     // by rank; fd set once checked in (until answered)
  int nranks_ = 0;                 // 0 until the first valid Hello
  int firstRank_ = -1;             // the rank whose Hello set nranks_
  int arrived_ = 0;
  bool failed_ = false;
  chorusResult_t failCode_ = chorusSuccess;
  std::string failText_;
  int answered_ = 0;    // error replies sent (failed state)
  int maxNranks_ = 0;   // largest nranks any rank claimed: the failed state serves that many
  bool raisedLimit_ = false;
};

}  // namespace

void launchRootThread(Fd listener, const UniqueIdData& id, double timeoutSec) {
  auto service = std::make_shared<RootService>(std::move(listener), id, timeoutSec);
  std::thread([service] { service->run(); }).detach();
}

}  // namespace chorus

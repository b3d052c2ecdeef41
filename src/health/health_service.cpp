#include "health/health_service.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <future>
#include <system_error>

#include "bootstrap/auth_gate.h"
#include "base/error.h"
#include "base/log.h"
#include "health/shrink.h"

namespace chorus {
namespace {

// CHORUS_DIAG_SIGNAL: the handler writes to the signal eventfd of every live service.
constexpr int kSignalSlots = 64;
std::atomic<int> g_signalFds[kSignalSlots];
std::once_flag g_signalSlotsInit, g_signalInstall;

void onDiagSignal(int) {
  for (auto& slot : g_signalFds) {
    int fd = slot.load(std::memory_order_relaxed);
    uint64_t one = 1;
    if (fd >= 0) (void)!write(fd, &one, sizeof one);
  }
}

int claimSignalSlot(int fd) {
  std::call_once(g_signalSlotsInit, [] {
    for (auto& s : g_signalFds) s.store(-1);
  });
  for (int i = 0; i < kSignalSlots; ++i) {
    int expected = -1;
    if (g_signalFds[i].compare_exchange_strong(expected, fd)) return i;
  }
  return -1;
}

Fd makeEventFd() {
  Fd fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd) CHORUS_THROW_ERRNO("eventfd for the health service");
  return fd;
}

// The binomial tree over ranks relative to the root: node `rel` has children rel + m for every
// power of two m below its lowest set bit (the root: below p), each heading the subtree
// [rel + m, rel + 2m).
std::vector<int> treeChildren(int rel, int n) {
  std::vector<int> out;
  int low = rel == 0 ? n : (rel & -rel);
  for (int m = 1; m < low && rel + m < n; m <<= 1) out.push_back(rel + m);
  return out;
}

double secondsLeft(Deadline d) {
  if (d.infinite()) return 3600;
  return std::chrono::duration<double>(d.at() - Clock::now()).count();
}

// A child gets most of the time left, so that when it does not answer, its parent still has
// some to ask the child's own children directly.
Deadline childDeadline(Deadline d) { return Deadline::after(std::max(0.05, secondsLeft(d) * 0.7 - 0.05)); }

}  // namespace

struct HealthService::State {
  HealthIdentity id;
  std::vector<PeerCard> cards;
  std::mutex hookMu;
  bool alive = true;
  HealthHooks hooks;
  std::atomic<int> handlers{0};
  std::shared_ptr<ShrinkCoordinator> shrink;

  // The coordinator's report: one gather serves every request of a burst.
  std::mutex reportMu;
  std::condition_variable reportCv;
  bool reportRunning = false;
  Clock::time_point reportAt{};
  HangReport cached;

  RankStatus ownStatus() {
    std::lock_guard<std::mutex> g(hookMu);
    if (!alive || !hooks.status) {
      // Closed, not Broken: a rank that finished its last call and destroys its communicator
      // may still answer a question asked a moment before (a send-only peer checking that its
      // data was taken); that is no failure.
      RankStatus s;
      s.rank = id.rank;
      s.state = RankState::Closed;
      return s;
    }
    return hooks.status();
  }
};

// A connection whose request has not arrived whole yet: a stranger until it has.
struct HealthService::Pending {
  Fd fd;
  std::string remote;
  Clock::time_point since;
  HealthRequest req;
  size_t got = 0;  // bytes of req, then of the payload
  std::vector<uint8_t> payload;
};

struct HealthService::Admission {
  AuthGate gate;
  std::deque<Pending> pending;  // in accept order, so the oldest is in front

  Admission(std::string listener, AuthLimits limits) : gate(std::move(listener), kLogInit, limits) {}
  bool closeOldest(const std::string& why) {
    if (pending.empty()) return false;
    gate.rejected(pending.front().remote, why);
    pending.pop_front();
    return true;
  }
};

HealthService::HealthService(const HealthIdentity& id, const WireAddr& bindAddr, int diagSignal, double commTimeoutSec)
    : state_(std::make_shared<State>()), shrink_(std::make_shared<ShrinkCoordinator>()) {
  state_->id = id;
  state_->shrink = shrink_;
  WireAddr bind = bindAddr;
  bind.port = 0;
  AuthLimits limits = AuthLimits::fromEnv(commTimeoutSec);
  listener_ = listenOn(bind, &addr_);
  admission_ = std::make_unique<Admission>(format("rank %d: health listener %s", id.rank, addrToString(addr_).c_str()), limits);
  CHORUS_INFO(kLogInit, "rank %d: health service listening on %s", id.rank, addrToString(addr_).c_str());
  stopFd_ = makeEventFd();
  signalFd_ = makeEventFd();
  if (diagSignal > 0) {
    signalSlot_ = claimSignalSlot(signalFd_.get());
    std::call_once(g_signalInstall, [diagSignal] {
      struct sigaction sa {};
      sa.sa_handler = onDiagSignal;
      sa.sa_flags = SA_RESTART;
      sigemptyset(&sa.sa_mask);
      if (sigaction(diagSignal, &sa, nullptr) != 0) CHORUS_WARN(kLogInit, "CHORUS_DIAG_SIGNAL %d: sigaction failed: %s", diagSignal, strerror(errno));
    });
  }
}

HealthService::~HealthService() {
  close();
  if (signalSlot_ >= 0) g_signalFds[signalSlot_].store(-1);
  uint64_t one = 1;
  (void)!write(stopFd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void HealthService::close() {
  std::lock_guard<std::mutex> g(state_->hookMu);
  state_->alive = false;
  state_->hooks = HealthHooks{};
}

void HealthService::start(const std::vector<PeerCard>& cards, HealthHooks hooks) {
  {
    std::lock_guard<std::mutex> g(state_->hookMu);
    state_->cards = cards;
    state_->hooks = std::move(hooks);
  }
  thread_ = std::thread([this] { loop(); });
}

void HealthService::loop() {
  logSetThreadRank(state_->id.rank);
  Admission& a = *admission_;
  std::vector<pollfd> fds;
  for (;;) {
    auto now = Clock::now();
    while (!a.pending.empty() && a.gate.expired(a.pending.front().since, now))
      a.closeOldest(format("no whole request within %.1f s (%zu bytes)", a.gate.limits().timeoutSec, a.pending.front().got));
    // Out of descriptors, the listener rests (it stays readable: polling it would spin).
    bool resting = a.gate.resting(now);
    fds.clear();
    fds.push_back({listener_.get(), static_cast<short>(resting ? 0 : POLLIN), 0});
    fds.push_back({stopFd_.get(), POLLIN, 0});
    fds.push_back({signalFd_.get(), POLLIN, 0});
    for (const Pending& p : a.pending) fds.push_back({p.fd.get(), POLLIN, 0});
    // Wake for the oldest pending connection's expiry and the end of a rest.
    Clock::time_point wake = Clock::time_point::max();
    if (!a.pending.empty()) wake = a.gate.expiry(a.pending.front().since);
    if (resting) wake = std::min(wake, a.gate.restsUntil());
    int r = ::poll(fds.data(), fds.size(), wake == Clock::time_point::max() ? -1 : Deadline(wake).millisLeft());
    if (r < 0) {
      if (errno == EINTR) continue;
      CHORUS_WARN(kLogInit, "health service of rank %d stops: poll failed: %s", state_->id.rank, strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (fds[2].revents) {
      uint64_t n;
      (void)!read(signalFd_.get(), &n, sizeof n);
      // Off the accept loop, so that other ranks' questions are answered meanwhile.
      std::thread([st = state_] {
        logSetThreadRank(st->id.rank);
        HangReport rep = reportVia(*st, Deadline::after(5));
        CHORUS_WARN(kLogColl, "hang report (CHORUS_DIAG_SIGNAL): %s", rep.summary.c_str());
        for (const std::string& line : rep.lines) CHORUS_WARN(kLogColl, "  %s", line.c_str());
      }).detach();
    }
    // The pending connections first (their indices match fds[3..]), then the new ones.
    std::deque<Pending> still;
    for (size_t i = 0; i < a.pending.size(); ++i)
      if (!fds[i + 3].revents || readRequest(a.pending[i])) still.push_back(std::move(a.pending[i]));
    a.pending = std::move(still);
    if (fds[0].revents) {
      try {
        acceptQueued();
      } catch (const Error& e) {
        CHORUS_WARN(kLogInit, "health service of rank %d stops: %s", state_->id.rank, e.what());
        return;
      }
    }
  }
}

// Accepts what is queued, up to a bound per pass so that a flood does not keep the service
// thread from its other work (the listener stays readable for the next pass).
void HealthService::acceptQueued() {
  Admission& a = *admission_;
  for (int i = 0; i < 4 * kMaxHandlers; ++i) {
    Fd conn = a.gate.accept(listener_.get(), [&a] { return a.closeOldest("closed to free a descriptor (this process has no more)"); });
    if (!conn) return;
    admit(std::move(conn));
  }
}

// A new connection: a rank's request is usually there already and goes to a handler at once;
// otherwise it waits within the gate's limits, the oldest waiting one making room (read once
// more first: a rank's request that arrived since is served, not closed).
void HealthService::admit(Fd fd) {
  Admission& a = *admission_;
  Pending p;
  p.remote = peerAddressOf(fd.get());
  p.fd = std::move(fd);
  p.since = Clock::now();
  if (!readRequest(p)) return;
  if (a.pending.size() >= static_cast<size_t>(a.gate.limits().maxPending)) {
    if (readRequest(a.pending.front()))
      a.closeOldest(format("no whole request yet; closed to make room (at most %d connections wait for theirs)",
                           a.gate.limits().maxPending));
    else
      a.pending.pop_front();
  }
  a.pending.push_back(std::move(p));
}

namespace {

// Why a request's header does not belong to this communicator ("" when it does).
std::string refusal(const HealthRequest& req, const HealthIdentity& id) {
  if (req.magic != kHealthMagic) return "not a health request";
  if (req.secret[0] != id.secret[0] || req.secret[1] != id.secret[1] || req.commId != id.commId)
    return "a request for another communicator (or a wrong secret)";
  if (req.from < 0 || req.from >= id.nranks) return format("a request from rank %d of %d", req.from, id.nranks);
  const size_t maxPayload = static_cast<size_t>(id.nranks) * sizeof(int32_t) + 64;
  if (req.payloadBytes > maxPayload) return format("a request announcing %u payload bytes (at most %zu)", req.payloadBytes, maxPayload);
  return "";
}

}  // namespace

// Reads what has arrived of p's request, without blocking. Returns true while p still waits;
// false once it is done with: dispatched to a handler, or closed (a stranger, logged).
bool HealthService::readRequest(Pending& p) {
  Admission& a = *admission_;
  const size_t header = sizeof p.req;
  for (;;) {
    if (p.got >= header && p.got == header + p.payload.size()) {
      dispatch(p);
      return false;
    }
    char* dst = p.got < header ? reinterpret_cast<char*>(&p.req) + p.got : reinterpret_cast<char*>(p.payload.data()) + (p.got - header);
    size_t want = p.got < header ? header - p.got : header + p.payload.size() - p.got;
    ssize_t n = ::recv(p.fd.get(), dst, want, MSG_DONTWAIT);
    if (n > 0) {
      p.got += static_cast<size_t>(n);
      if (p.got == header) {
        std::string why = refusal(p.req, state_->id);
        if (!why.empty()) {
          a.gate.rejected(p.remote, why);
          return false;
        }
        p.payload.resize(p.req.payloadBytes);
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    std::string how = n == 0 ? "closed" : strerror(errno);
    if (p.got > 0)
      a.gate.rejected(p.remote, format("left after %zu bytes of a request (%s)", p.got, how.c_str()));
    else
      CHORUS_TRACE(kLogInit, "health service of rank %d: %s left before asking (%s)", state_->id.rank, p.remote.c_str(), how.c_str());
    return false;
  }
}

// A whole, authenticated request: to a handler thread, or "busy" when there are too many.
void HealthService::dispatch(Pending& p) {
  if (state_->handlers.fetch_add(1) < kMaxHandlers) {
    try {
      std::thread(&HealthService::handle, state_, std::move(p.fd), p.req, std::move(p.payload)).detach();
      return;
    } catch (const std::system_error& e) {
      CHORUS_INFO(kLogInit, "health service of rank %d: no thread for a request: %s", state_->id.rank, e.what());
    }
  }
  state_->handlers.fetch_sub(1);
  // Too many at once (a burst of reports at scale): "busy", and the asker comes back. The
  // request has been read whole, so closing does not reset the connection (and the reply).
  HealthReply busy{static_cast<uint32_t>(HealthStatusCode::Busy), 0};
  (void)!::send(p.fd.get(), &busy, sizeof busy, MSG_DONTWAIT | MSG_NOSIGNAL);
}

// Serves one authenticated request (read whole by the service thread).
void HealthService::handle(const std::shared_ptr<State>& st, Fd fd, HealthRequest req, std::vector<uint8_t> payload) {
  struct Release {
    State& s;
    ~Release() { s.handlers.fetch_sub(1); }
  } release{*st};
  logSetThreadRank(st->id.rank);
  try {
    const HealthIdentity& id = st->id;
    Deadline deadline = Deadline::after(std::min(req.millisLeft, 60000u) / 1e3);
    HealthAnswer answer;
    switch (static_cast<HealthOp>(req.op)) {
      case HealthOp::Ping: {
        // One byte: whether this rank's communicator is broken or closed (a peer waiting for
        // it to connect stops waiting).
        std::shared_ptr<CauseBoard> board;
        bool alive;
        {
          std::lock_guard<std::mutex> g(st->hookMu);
          alive = st->alive;
          if (alive) board = st->hooks.cause;
        }
        answer.payload.push_back(!alive || (board && board->broken()) ? 1 : 0);
        break;
      }
      case HealthOp::Status: {
        RankStatus s = st->ownStatus();
        answer.payload.assign(reinterpret_cast<uint8_t*>(&s), reinterpret_cast<uint8_t*>(&s) + sizeof s);
        break;
      }
      case HealthOp::Cause: {
        CauseWire cause;
        std::string text;
        std::shared_ptr<CauseBoard> board;
        {
          std::lock_guard<std::mutex> g(st->hookMu);
          if (st->alive) board = st->hooks.cause;
        }
        // Waits (up to the asker's deadline, less a margin for the reply) for the answer to settle.
        Deadline answerBy = Deadline::after(std::max(0.0, std::min(req.millisLeft, 60000u) / 1e3 - 0.1));
        if (board && board->read(req.from, answerBy, &cause, &text) && !text.empty()) {
          answer.payload.resize(sizeof cause + text.size());
          memcpy(answer.payload.data(), &cause, sizeof cause);
          memcpy(answer.payload.data() + sizeof cause, text.data(), text.size());
        }
        break;
      }
      case HealthOp::Gather:
      case HealthOp::Report:
      case HealthOp::ShrinkJoin:
      case HealthOp::ShrinkPoll: {
        {
          std::lock_guard<std::mutex> g(st->hookMu);
          if (!st->alive) {
            answer.code = HealthStatusCode::Refused;
            break;
          }
        }
        // The state keeps alive what a handler uses; the cards are immutable after start().
        if (static_cast<HealthOp>(req.op) == HealthOp::Gather) {
          int root = req.arg;
          if (root < 0 || root >= id.nranks) return;
          std::vector<RankStatus> all;
          HealthService::collectSubtree(*st, (id.rank - root + id.nranks) % id.nranks, root, deadline, /*self=*/true, &all);
          answer.payload.assign(reinterpret_cast<uint8_t*>(all.data()), reinterpret_cast<uint8_t*>(all.data() + all.size()));
        } else if (static_cast<HealthOp>(req.op) == HealthOp::Report) {
          std::string text = encodeReport(HealthService::coordinatorReport(*st, deadline));
          answer.payload.assign(text.begin(), text.end());
        } else {
          std::vector<int> ranks(payload.size() / sizeof(int32_t));
          if (!ranks.empty()) memcpy(ranks.data(), payload.data(), ranks.size() * sizeof(int32_t));  // empty: data() may be null
          auto alive = [st](int rank, Deadline by) {
            try {
              callRank(*st, rank, HealthOp::Ping, 0, 0, nullptr, 0, by);
              return true;
            } catch (const Error& e) {
              return e.code() != chorusRemoteError;  // refused or reset: dead; silent: maybe stopped
            }
          };
          answer = static_cast<HealthOp>(req.op) == HealthOp::ShrinkJoin
                       ? st->shrink->join(id.nranks, alive, req.from, req.epoch, ranks)
                       : st->shrink->poll(req.from, req.epoch);
        }
        break;
      }
      default:
        return;
    }
    HealthReply reply{static_cast<uint32_t>(answer.code), static_cast<uint32_t>(answer.payload.size())};
    Deadline writeBy = Deadline::after(kRequestSeconds);
    sendAll(fd.get(), &reply, sizeof reply, writeBy);
    if (!answer.payload.empty()) sendAll(fd.get(), answer.payload.data(), answer.payload.size(), writeBy);
  } catch (const Error& e) {
    CHORUS_INFO(kLogInit, "health service of rank %d: a request failed: %s", st->id.rank, e.what());
  }
}

const HealthIdentity& HealthService::identity() const { return state_->id; }
const std::vector<PeerCard>& HealthService::cards() const { return state_->cards; }

HealthAnswer HealthService::callRank(const State& st, int peer, HealthOp op, uint32_t epoch, int32_t arg, const void* payload,
                                     size_t bytes, Deadline deadline) {
  HealthRequest req;
  req.secret[0] = st.id.secret[0];
  req.secret[1] = st.id.secret[1];
  req.commId = st.id.commId;
  req.from = st.id.rank;
  req.op = static_cast<uint32_t>(op);
  req.epoch = epoch;
  req.arg = arg;
  req.millisLeft = static_cast<uint32_t>(std::clamp(secondsLeft(deadline), 0.0, 60.0) * 1e3);
  return healthCall(st.cards[peer].healthAddr, req, payload, bytes, deadline);
}

HealthAnswer HealthService::call(int peer, HealthOp op, uint32_t epoch, int32_t arg, const void* payload, size_t bytes,
                                 Deadline deadline) const {
  return callRank(*state_, peer, op, epoch, arg, payload, bytes, deadline);
}

bool HealthService::askCause(int peer, Deadline deadline, CauseWire* cause, std::string* text) const {
  // A peer that is itself still asking its own failed peer answers "not settled": ask again
  // (each hop of a cascade settles in one round trip), and take what it has at the deadline.
  bool answered = false;
  for (;;) {
    try {
      HealthAnswer a = call(peer, HealthOp::Cause, 0, 0, nullptr, 0, deadline);
      answered = true;
      text->clear();
      if (a.payload.size() < sizeof(CauseWire)) return true;  // healthy
      memcpy(cause, a.payload.data(), sizeof(CauseWire));
      text->assign(reinterpret_cast<const char*>(a.payload.data()) + sizeof(CauseWire), a.payload.size() - sizeof(CauseWire));
      if (cause->settled) return true;  // else the peer's own deadline passed first: ask again
    } catch (const Error& e) {
      CHORUS_INFO(kLogColl, "asking rank %d where its failure started: %s", peer, e.what());
      return answered;
    }
    if (deadline.expired()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool HealthService::ping(int peer, Deadline deadline) const {
  try {
    call(peer, HealthOp::Ping, 0, 0, nullptr, 0, deadline);
    return true;
  } catch (const Error&) {
    return false;
  }
}

bool HealthService::gone(int peer, Deadline deadline) const {
  if (!thread_.joinable()) return false;  // not serving yet: nothing is known
  try {
    HealthAnswer a = call(peer, HealthOp::Ping, 0, 0, nullptr, 0, deadline);
    return !a.payload.empty() && a.payload[0] == 1;  // alive, but its communicator is broken
  } catch (const Error& e) {
    return e.code() == chorusRemoteError;
  }
}

HealthService::Reach HealthService::status(int peer, Deadline deadline, RankStatus* out) const {
  if (!thread_.joinable()) return Reach::Silent;  // not serving yet: nothing is known
  try {
    HealthAnswer a = call(peer, HealthOp::Status, 0, 0, nullptr, 0, deadline);
    if (a.payload.size() != sizeof(RankStatus)) return Reach::Silent;
    memcpy(out, a.payload.data(), sizeof(RankStatus));
    return out->state == RankState::Closed ? Reach::Gone : Reach::Answered;
  } catch (const Error& e) {
    return e.code() == chorusRemoteError ? Reach::Gone : Reach::Silent;
  }
}

void HealthService::collectSubtree(State& st, int rel, int root, Deadline deadline, bool self, std::vector<RankStatus>* out) {
  const int n = st.id.nranks;
  const int rank = (rel + root) % n;
  if (!self) {
    try {
      HealthAnswer a = callRank(st, rank, HealthOp::Gather, 0, root, nullptr, 0, deadline);
      size_t k = a.payload.size() / sizeof(RankStatus);
      size_t at = out->size();
      out->resize(at + k);
      if (k) memcpy(out->data() + at, a.payload.data(), k * sizeof(RankStatus));
      return;
    } catch (const Error&) {
      RankStatus gone;
      gone.rank = rank;
      gone.state = RankState::Unreachable;
      out->push_back(gone);
    }
  } else {
    out->push_back(st.ownStatus());
  }
  // The children, in parallel; each falls back to its own children where it does not answer.
  std::vector<int> children = treeChildren(rel, n);
  std::vector<std::future<std::vector<RankStatus>>> parts;
  Deadline sub = childDeadline(deadline);
  for (int c : children)
    parts.push_back(std::async(std::launch::async, [&st, c, root, sub] {
      std::vector<RankStatus> part;
      collectSubtree(st, c, root, sub, false, &part);
      return part;
    }));
  for (auto& f : parts) {
    std::vector<RankStatus> part = f.get();
    out->insert(out->end(), part.begin(), part.end());
  }
}

std::vector<RankStatus> HealthService::gather(Deadline deadline) const { return gatherVia(*state_, deadline); }

std::vector<RankStatus> HealthService::gatherVia(State& st, Deadline deadline) {
  const int n = st.id.nranks;
  std::vector<RankStatus> got;
  collectSubtree(st, 0, st.id.rank, deadline, true, &got);
  std::vector<RankStatus> all(n);
  for (int r = 0; r < n; ++r) all[r].rank = r;  // Unreachable unless someone answered for it
  for (const RankStatus& s : got)
    if (s.rank >= 0 && s.rank < n) all[s.rank] = s;
  return all;
}

HangReport HealthService::coordinatorReport(State& st, Deadline deadline) {
  std::unique_lock<std::mutex> g(st.reportMu);
  // Requests of one burst (every rank of a hung collective times out at about the same time)
  // share one gather: a report younger than a second is served as is.
  if (!st.reportCv.wait_until(g, deadline.infinite() ? Clock::now() + std::chrono::hours(1) : deadline.at(),
                             [&] { return !st.reportRunning; })) {
    HangReport late;
    late.summary = "the coordinator's gather did not finish in time";
    return late;
  }
  if (st.reportAt != Clock::time_point{} && Clock::now() - st.reportAt < std::chrono::seconds(1)) return st.cached;
  st.reportRunning = true;
  g.unlock();
  std::vector<RankStatus> got;
  collectSubtree(st, 0, st.id.rank, deadline, true, &got);
  std::vector<RankStatus> all(st.id.nranks);
  for (int r = 0; r < st.id.nranks; ++r) all[r].rank = r;
  for (const RankStatus& s : got)
    if (s.rank >= 0 && s.rank < st.id.nranks) all[s.rank] = s;
  HangReport rep = summarizeStatuses(all, st.cards);
  g.lock();
  st.cached = rep;
  st.reportAt = Clock::now();
  st.reportRunning = false;
  st.reportCv.notify_all();
  return rep;
}

HangReport HealthService::report(Deadline deadline) const { return reportVia(*state_, deadline); }

HangReport HealthService::reportVia(State& st, Deadline deadline) {
  const int coordinator = 0;
  if (st.id.rank != coordinator) {
    try {
      HealthAnswer a;
      // A busy coordinator is answering a burst: come back after a short, spread-out pause.
      for (int attempt = 0;; ++attempt) {
        a = callRank(st, coordinator, HealthOp::Report, 0, 0, nullptr, 0, deadline);
        if (a.code != HealthStatusCode::Busy || deadline.expired()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5 + (st.id.rank * 7 + attempt * 13) % 50));
      }
      if (a.code == HealthStatusCode::Ok) return decodeReport(std::string(a.payload.begin(), a.payload.end()));
    } catch (const Error& e) {
      CHORUS_INFO(kLogColl, "hang report: the coordinator (rank %d) did not answer (%s); gathering from here", coordinator, e.what());
    }
    return summarizeStatuses(gatherVia(st, deadline), st.cards);
  }
  return coordinatorReport(st, deadline);
}

}  // namespace chorus

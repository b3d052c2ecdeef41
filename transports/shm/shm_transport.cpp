// The shared-memory transport: connects ranks of one host with two shm FIFOs per pair (one per
// direction) and, where the kernel allows it, single-copy transfers of large messages.
//
// Connect protocol between ranks a and b, run for every listed peer at once:
//   1. each rank creates the segment its peer will send into (it is that direction's receiver)
//      and sends {name, nonce, pid, probe address and value} on kTagShmSetup - to ALL peers
//      before receiving anything, so that rings of connects cannot deadlock;
//   2. each rank receives each peer's setup message, opens and verifies the peer's segment
//      (secret, nonce, rank pair), tries to read the peer's probe word with process_vm_readv,
//      and answers on kTagShmReady {ok, "I can read your memory"};
//   3. each rank receives the answers and unlinks the segments it created at once: from then
//      on the only references are the two mappings, so no /dev/shm file outlives a crash.
// A failure in step 2 still answers every peer not yet answered (ok = 0, with the reason),
// so they fail promptly with chorusRemoteError instead of waiting for their deadline.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <set>

#include "base/error.h"
#include "base/log.h"
#include "transports/shm/process_watch.h"
#include "transports/shm/shm_connection.h"
#include "transports/shm/shm_segment.h"
#include "transports/transport.h"

namespace chorus {
namespace shm {
namespace {

constexpr uint64_t kSetupMagic = 0x5055544553485343ull;  // "CSHSETUP"
constexpr uint64_t kReadyMagic = 0x5944414552485343ull;  // "CSHREADY"

struct SetupMsg {
  uint64_t magic;
  uint64_t nonce;       // also in the segment header: proves the segment is the one announced
  uint64_t probeAddr;   // a word of the creator's memory the opener reads to test single copy
  uint64_t probeValue;  // what it holds
  int32_t pid;
  int32_t from;  // the rank that will send into the segment
  int32_t to;    // the creator, which receives from it
  uint32_t singleCopy;  // the creator allows single-copy reads (CHORUS_SHM_CMA)
  char name[64];
};

struct ReadyMsg {
  uint64_t magic;
  int32_t ok;           // the segment is mapped and verified
  int32_t canReadYou;   // single-copy reads of the recipient's memory work
  char why[192];        // when !ok: the reason
};

uint64_t random64() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

std::atomic<bool> gWarnedSingleCopy{false};

class ShmTransport final : public Transport {
 public:
  explicit ShmTransport(const TransportContext& ctx) : ctx_(ctx), probeValue_(random64() | 1) {
    CHORUS_CHECK_ARG(ctx.config != nullptr && ctx.oob != nullptr, "shm transport needs a config and an oob");
  }

  const char* name() const override { return "shm"; }
  double latencyUs() const override { return 0.4; }
  double bandwidthGBps() const override { return 9.0; }

  bool canReach(int peer) const override {
    if (ctx_.cards == nullptr) return false;
    const auto& cards = *ctx_.cards;
    if (peer < 0 || static_cast<size_t>(peer) >= cards.size() || static_cast<size_t>(ctx_.rank) >= cards.size()) return false;
    return cards[peer].hostHash == cards[ctx_.rank].hostHash;
  }

  std::vector<std::unique_ptr<Connection>> connect(const std::vector<int>& peers, Deadline deadline) override;

 private:
  struct Pending {
    int peer = -1;
    std::unique_ptr<Segment> in;   // created here: peer -> us
    std::unique_ptr<Segment> out;  // the peer's: us -> peer
    bool peerCanReadUs = false;
  };

  void announce(Pending& pe, int p, uint32_t gen, Deadline deadline);
  bool probeSingleCopy(int peer, const SetupMsg& m) const;
  bool samePidNamespace(int peer) const;
  void sendReady(int peer, bool ok, bool canReadYou, const char* why, Deadline deadline);
  static void markAborted(std::vector<Pending>& pend);

  TransportContext ctx_;
  uint32_t connectCalls_ = 0;
  // Read by peers (process_vm_readv) during connect to prove single copy works end to end.
  alignas(64) volatile uint64_t probeValue_;
};

bool ShmTransport::samePidNamespace(int peer) const {
  const auto& cards = *ctx_.cards;
  return cards[peer].pidNamespace == cards[ctx_.rank].pidNamespace;
}

bool ShmTransport::probeSingleCopy(int peer, const SetupMsg& m) const {
  if (!ctx_.config->shmCmaAllowed() || !m.singleCopy) return false;  // chosen off: no probe, no warning
  pid_t pid = (*ctx_.cards)[peer].pid;
  std::string why;
  if (!samePidNamespace(peer)) {
    why = "it runs in another pid namespace, where its pid names a different process";
  } else {
    uint64_t v = 0;
    int err = cmaRead(pid, &v, m.probeAddr, sizeof(v));
    if (err == 0 && v == m.probeValue) return true;
    why = err ? format("process_vm_readv: %s", strerror(err)) : std::string("process_vm_readv read the wrong value");
  }
  if (!gWarnedSingleCopy.exchange(true))
    CHORUS_WARN(kLogTransport,
                "shm: single-copy transfers (CMA) are disabled: rank %d cannot read the memory of rank %d (pid %d): %s; "
                "large messages go through the shm FIFO instead (two copies). To enable single copy allow ptrace "
                "between the ranks (e.g. docker --cap-add SYS_PTRACE, kernel.yama.ptrace_scope=0); CHORUS_SHM_CMA=0 "
                "chooses the FIFO explicitly and silences this warning.",
                ctx_.rank, peer, static_cast<int>(pid), why.c_str());
  else
    CHORUS_INFO(kLogTransport, "shm: no single copy from rank %d to rank %d: %s", peer, ctx_.rank, why.c_str());
  return false;
}

void ShmTransport::sendReady(int peer, bool ok, bool canReadYou, const char* why, Deadline deadline) {
  ReadyMsg r{};
  r.magic = kReadyMagic;
  r.ok = ok ? 1 : 0;
  r.canReadYou = canReadYou ? 1 : 0;
  snprintf(r.why, sizeof(r.why), "%s", why ? why : "");
  ctx_.oob->send(peer, kTagShmReady, &r, sizeof(r), deadline);
}

// Tells peers that already hold one of our segments that this side gave up.
void ShmTransport::markAborted(std::vector<Pending>& pend) {
  for (auto& p : pend) {
    if (p.in) p.in->header()->receiverFlags.fetch_or(kFlagAborted, std::memory_order_release);
    if (p.out) p.out->header()->senderFlags.fetch_or(kFlagAborted, std::memory_order_release);
  }
}

// Creates the segment peer p will send into and sends it its name.
void ShmTransport::announce(Pending& pe, int p, uint32_t gen, Deadline deadline) {
  pe.peer = p;
  SegmentIdentity id;
  id.commId = ctx_.commId;
  id.secret[0] = ctx_.secret[0];
  id.secret[1] = ctx_.secret[1];
  id.nonce = random64();
  id.from = p;
  id.to = ctx_.rank;
  std::string name = format("/chorus-%016llx-%d-%d-%u", static_cast<unsigned long long>(ctx_.commId), p, ctx_.rank, gen);
  pe.in = Segment::create(name, id, ctx_.config->shmSlotBytes, static_cast<uint32_t>(ctx_.config->shmNumSlots), ctx_.config->shmFifoBytes);
  SetupMsg m{};
  m.magic = kSetupMagic;
  m.nonce = id.nonce;
  m.probeAddr = reinterpret_cast<uintptr_t>(&probeValue_);
  m.probeValue = probeValue_;
  m.pid = getpid();
  m.from = p;
  m.to = ctx_.rank;
  m.singleCopy = ctx_.config->shmCmaAllowed() ? 1 : 0;
  snprintf(m.name, sizeof(m.name), "%s", name.c_str());
  ctx_.oob->send(p, kTagShmSetup, &m, sizeof(m), deadline);
}

std::vector<std::unique_ptr<Connection>> ShmTransport::connect(const std::vector<int>& peers, Deadline deadline) {
  CHORUS_CHECK_ARG(ctx_.cards != nullptr, "shm connect: the cards are not known yet");
  const Config& cfg = *ctx_.config;
  const auto& cards = *ctx_.cards;
  std::set<int> seen;
  for (int p : peers) {
    CHORUS_CHECK_ARG(p >= 0 && p < ctx_.nranks && p != ctx_.rank, "shm connect: rank %d cannot connect to rank %d", ctx_.rank, p);
    CHORUS_CHECK_ARG(canReach(p), "shm connect: rank %d is on another host than rank %d", p, ctx_.rank);
    CHORUS_CHECK_ARG(seen.insert(p).second, "shm connect: rank %d listed twice", p);
  }
  const uint32_t gen = connectCalls_++;
  const size_t n = peers.size();
  std::vector<Pending> pend(n);

  // 1. Create the segment each peer sends into and announce it. If creating one fails, the
  //    peers not announced yet get an empty name, so that they fail now rather than time out.
  //    (Segments already created are unlinked by their destructors.)
  size_t announced = 0;
  try {
    for (; announced < n; ++announced) announce(pend[announced], peers[announced], gen, deadline);
  } catch (const std::exception& e) {
    // Peers that got a name will wait for our confirmation: tell them we gave up.
    markAborted(pend);
    std::string why = format("rank %d failed to set up shm: %s", ctx_.rank, e.what());
    for (size_t j = 0; j < announced; ++j) {
      try {
        sendReady(peers[j], false, false, why.c_str(), deadline);
      } catch (...) {
      }
    }
    for (size_t j = announced; j < n; ++j) {
      try {
        SetupMsg m{};
        m.magic = kSetupMagic;
        m.from = peers[j];
        m.to = ctx_.rank;
        ctx_.oob->send(peers[j], kTagShmSetup, &m, sizeof(m), deadline);
      } catch (...) {  // best effort: the original error is the one to report
      }
    }
    throw;
  }

  // 2. Open and verify each peer's segment, probe single copy, confirm.
  size_t answered = 0;
  try {
    for (; answered < n; ++answered) {
      int p = peers[answered];
      SetupMsg m{};
      ctx_.oob->recv(p, kTagShmSetup, &m, sizeof(m), deadline);
      if (m.magic != kSetupMagic || m.from != ctx_.rank || m.to != p || memchr(m.name, '\0', sizeof(m.name)) == nullptr)
        CHORUS_THROW(chorusInternalError, "shm connect: malformed setup message from rank %d", p);
      if (m.name[0] == '\0')
        CHORUS_THROW(chorusRemoteError, "shm connect: rank %d could not create its shm segment (see its log)", p);
      SegmentIdentity id;
      id.commId = ctx_.commId;
      id.secret[0] = ctx_.secret[0];
      id.secret[1] = ctx_.secret[1];
      id.nonce = m.nonce;
      id.from = ctx_.rank;
      id.to = p;
      // A segment gone (its creator, p, gave up or died) throws chorusRemoteError naming p; the
      // catch below makes p the error's peer, which is then asked where the failure started.
      pend[answered].out = Segment::open(m.name, id);
      bool canRead = probeSingleCopy(p, m);
      sendReady(p, true, canRead, nullptr, deadline);
    }
  } catch (std::exception& e) {
    markAborted(pend);
    // Every error of this step concerns the peer being answered: it is the one to ask.
    if (auto* err = dynamic_cast<Error*>(&e); err != nullptr && err->peer() < 0 && answered < n) err->setPeer(peers[answered]);
    std::string why = format("rank %d failed to set up shm: %s", ctx_.rank, e.what());
    for (size_t j = answered; j < n; ++j) {
      try {
        sendReady(peers[j], false, false, why.c_str(), deadline);
      } catch (...) {  // best effort: the original error is the one to report
      }
    }
    throw;
  }

  // 3. Collect the confirmations; unlink our segments as soon as the peer holds its mapping.
  size_t confirmed = 0;
  try {
    for (; confirmed < n; ++confirmed) {
      Pending& pe = pend[confirmed];
      ReadyMsg r{};
      ctx_.oob->recv(pe.peer, kTagShmReady, &r, sizeof(r), deadline);
      pe.in->unlink();
      if (r.magic != kReadyMagic) CHORUS_THROW(chorusInternalError, "shm connect: malformed ready message from rank %d", pe.peer);
      r.why[sizeof(r.why) - 1] = '\0';
      if (!r.ok) CHORUS_THROW(chorusRemoteError, "shm connect: rank %d could not connect: %s", pe.peer, r.why);
      pe.peerCanReadUs = r.canReadYou != 0;
    }
  } catch (Error& e) {
    markAborted(pend);
    if (e.peer() < 0 && confirmed < n) e.setPeer(pend[confirmed].peer);
    throw;
  } catch (...) {
    markAborted(pend);
    throw;
  }

  std::vector<std::unique_ptr<Connection>> conns;
  conns.reserve(n);
  for (auto& pe : pend) {
    ShmConnectionOptions opts;
    opts.rank = ctx_.rank;
    // Across pid namespaces the peer's pid means nothing here: no process watch then; its
    // death shows as its abort flag or, if it dies abruptly, as the deadline.
    opts.peerPid = samePidNamespace(pe.peer) ? cards[pe.peer].pid : 0;
    if (!opts.peerPid)
      CHORUS_INFO(kLogTransport, "shm: rank %d is in another pid namespace: no liveness watch, the deadline covers it", pe.peer);
    opts.singleCopySend = cfg.shmCmaAllowed() && pe.peerCanReadUs;
    opts.singleCopyThreshold = cfg.shmUseCma ? cfg.shmCmaThreshold : SIZE_MAX;
    opts.copyOnlyThreshold = std::min(cfg.shmCmaCopies ? cfg.shmCmaCopyThreshold : SIZE_MAX, opts.singleCopyThreshold);
    CHORUS_INFO(kLogTransport,
                "shm: rank %d -> rank %d connected: %u slots, fragments up to %zu bytes in a %zu-byte ring, single copy %s "
                "(any message: %s; messages of copy-only calls: %s)",
                ctx_.rank, pe.peer, pe.out->numSlots(), pe.out->maxFragment(), pe.out->ringBytes(), opts.singleCopySend ? "on" : "off",
                cfg.shmUseCma ? ("from " + std::to_string(cfg.shmCmaThreshold) + " bytes").c_str() : "never",
                cfg.shmCmaCopies ? ("from " + std::to_string(cfg.shmCmaCopyThreshold) + " bytes").c_str() : "never");
    conns.push_back(std::make_unique<ShmConnection>(pe.peer, std::move(pe.in), std::move(pe.out), opts));
  }
  return conns;
}

}  // namespace
}  // namespace shm

std::unique_ptr<Transport> makeShmTransport(const TransportContext& ctx) { return std::make_unique<shm::ShmTransport>(ctx); }

}  // namespace chorus

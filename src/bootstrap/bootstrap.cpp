// Bootstrap over TCP sockets: rendezvous at the root, Bruck all-gather of the PeerCards, then
// authenticated out-of-band (Oob) messages between any two ranks (carried by OobSockets).
//
// Message pattern, p ranks, L = ceil(log2 p):
//   1. Check-in (root.cpp). Each rank opens its own listener on the chosen interface, connects
//      to the root and sends Hello {magic, secret, comm id, rank, nranks, listener address}.
//      The root answers rank r with the listener addresses of (r - 2^k) mod p, k < L.
//   2. Card all-gather (Bruck). Round k = 0 .. L-1, distance d = 2^k: rank r holds the cards of
//      ranks r .. r+d-1 (mod p) and sends min(d, p-d) of them to r - d, receiving as many from
//      r + d; afterwards tmp[i] is the card of rank r+i. The first round already carries full
//      cards, whose bootstrapAddr then tells every rank every listener address.
//   3. Oob send/recv: authenticated, framed messages over one TCP connection per direction and
//      peer pair, opened on first use (oob_sockets.h: wire format, progress, threads).
//
// Cost per rank: check-in = 1 connection, 64 bytes out, 16 + 28 L bytes in. Card all-gather =
// L messages out and L in, (p-1) * sizeof(PeerCard) bytes each way, L outgoing connections and
// L accepted ones. allgather(b bytes) = L messages, (p-1) * b bytes each way; barrier =
// L messages of 8 bytes (dissemination: send to r - 2^k, receive from r + 2^k, over the card
// all-gather's connections). Sockets held:
// O(L) plus the peers later Oob users talk to; the p cards are the only O(p) state. p = 1 talks
// to the root only. traffic() counts all of it (traffic.h); tests/unit/test_bootstrap*.cpp
// check these figures exactly, up to 1,024 ranks.
//
// Threads: Oob calls on one Bootstrap are serialized by a mutex (a second caller waits);
// abort() does not take it (OobSockets::abort may be called from any thread).
#include "bootstrap/bootstrap.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bootstrap/oob_sockets.h"
#include "bootstrap/socket.h"
#include "bootstrap/wire.h"
#include "base/error.h"
#include "base/log.h"
#include "topology/topo_card.h"

namespace chorus {
namespace {

double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

class SocketBootstrap final : public Bootstrap {
 public:
  SocketBootstrap(const UniqueIdData& id, int rank, int nranks, const Config& config)
      : id_(id), rank_(rank), nranks_(nranks), config_(config),
        oob_(std::make_unique<OobSockets>(id, rank, nranks, config)) {}

  void init(PeerCard card, Deadline deadline);

  void send(int peer, uint32_t tag, const void* data, size_t bytes, Deadline deadline) override {
    std::lock_guard<std::mutex> g(opMu_);
    oob_->send(peer, tag, data, bytes, deadline);
  }

  void recv(int peer, uint32_t tag, void* data, size_t bytes, Deadline deadline) override {
    std::lock_guard<std::mutex> g(opMu_);
    oob_->recv(peer, tag, data, bytes, deadline);
  }

  const std::vector<PeerCard>& cards() const override { return cards_; }

  void allgather(void* buf, size_t bytes, Deadline deadline) override {
    CHORUS_CHECK_ARG(buf || bytes == 0, "bootstrap allgather: NULL buffer");
    std::lock_guard<std::mutex> g(opMu_);
    auto t0 = Clock::now();
    bruck(buf, bytes, kTagAllgather, deadline);
    CHORUS_TRACE(kLogBootstrap, "rank %d: allgather of %zu bytes per rank took %.2f ms", rank_, bytes, msSince(t0));
  }

  void barrier(Deadline deadline) override {
    std::lock_guard<std::mutex> g(opMu_);
    if (nranks_ == 1) return;
    const uint32_t seq = ++barrierSeq_;
    uint32_t round = 0;
    for (int d = 1; d < nranks_; d <<= 1, ++round) {
      uint32_t token[2] = {seq, round};
      uint32_t got[2] = {0, 0};
      // Sends to r - d and hears from r + d, as the card all-gather does: no new connections.
      int from = wire::bruckRecvPeer(rank_, nranks_, d);  // r + d
      oob_->exchange(wire::bruckSendPeer(rank_, nranks_, d), kTagBarrier, token, sizeof(token), from, got,
                     sizeof(got), deadline);
      if (got[0] != seq || got[1] != round)
        CHORUS_THROW(chorusInvalidUsage,
                     "rank %d: barrier mismatch: rank %d is in barrier #%u round %u while this rank is in barrier #%u "
                     "round %u (ranks called barrier a different number of times)",
                     rank_, from, got[0], got[1], seq, round);
    }
  }

  void abort() noexcept override { oob_->abort(); }

  BootstrapTraffic traffic() const override {
    BootstrapTraffic t = oob_->traffic();
    t.msgsSent += checkIn_.msgsSent;
    t.msgsRecv += checkIn_.msgsRecv;
    t.bytesSent += checkIn_.bytesSent;
    t.bytesRecv += checkIn_.bytesRecv;
    t.connsOpened += checkIn_.connsOpened;
    return t;
  }

 private:
  void checkIn(Deadline deadline);
  void bruck(void* buf, size_t bytes, uint32_t tag, Deadline deadline);

  UniqueIdData id_;
  int rank_;
  int nranks_;
  Config config_;
  std::mutex opMu_;
  std::vector<PeerCard> cards_;  // declared before oob_, which reads them: destroyed after it
  std::unique_ptr<OobSockets> oob_;  // set at construction: abort() may come from any thread
  uint32_t barrierSeq_ = 0;
  BootstrapTraffic checkIn_;  // the root's part, set before join() returns
};

void SocketBootstrap::init(PeerCard card, Deadline deadline) {
  auto t0 = Clock::now();
  const WireAddr listenAddr = oob_->listenAddress();
  card.rank = rank_;
  card.bootstrapAddr = listenAddr;

  checkIn(deadline);
  auto t1 = Clock::now();

  cards_.assign(static_cast<size_t>(nranks_), PeerCard{});
  cards_[static_cast<size_t>(rank_)] = card;
  bruck(cards_.data(), sizeof(PeerCard), kTagBootstrapCards, deadline);
  checkPeerCards(cards_, rank_);
  oob_->useCards(&cards_);
  CHORUS_INFO(kLogBootstrap, "rank %d/%d: bootstrap done in %.2f ms (root check-in %.2f ms, card all-gather %.2f ms in "
              "%d rounds), listening at %s; %s",
              rank_, nranks_, msSince(t0), std::chrono::duration<double, std::milli>(t1 - t0).count(), msSince(t1),
              wire::log2Ceil(nranks_), addrToString(listenAddr).c_str(), describeTraffic(traffic()).c_str());
}

void SocketBootstrap::checkIn(Deadline deadline) {
  const std::string root = addrToString(id_.root);
  wire::Hello hello;
  hello.secret[0] = id_.secret[0];
  hello.secret[1] = id_.secret[1];
  hello.commId = id_.commId;
  hello.rank = rank_;
  hello.nranks = nranks_;
  hello.listenAddr = oob_->listenAddress();
  wire::Reply reply;
  std::vector<char> body;
  try {
    Fd sock = connectTo(id_.root, deadline);
    checkIn_.connsOpened = 1;
    sendAll(sock.get(), &hello, sizeof(hello), deadline);
    checkIn_.msgsSent = 1;
    checkIn_.bytesSent = sizeof(hello);
    recvAll(sock.get(), &reply, sizeof(reply), deadline);
    body.resize(rootAnswerBodyBytes(reply, nranks_));
    recvAll(sock.get(), body.data(), body.size(), deadline);
    checkIn_.msgsRecv = 1;
    checkIn_.bytesRecv = sizeof(reply) + body.size();
  } catch (const Error& e) {
    if (e.code() == chorusRemoteError)
      CHORUS_THROW(chorusRemoteError,
                   "rank %d: the root rendezvous at %s closed the connection without answering (wrong unique id "
                   "or secret, or the root is gone): %s",
                   rank_, root.c_str(), e.what());
    if (e.code() == chorusTimeout)
      CHORUS_THROW(chorusTimeout, "rank %d of %d: no answer from the root rendezvous at %s before the deadline: %s",
                   rank_, nranks_, root.c_str(), e.what());
    CHORUS_THROW(e.code(), "rank %d: check-in at the root rendezvous %s failed: %s", rank_, root.c_str(), e.what());
  }
  std::vector<wire::PeerAddr> addrs;
  try {
    addrs = parseRootAnswer(reply, body.data(), body.size(), rank_, nranks_);
  } catch (const Error& e) {
    CHORUS_THROW(e.code(), "rank %d: rendezvous at %s failed: %s", rank_, root.c_str(), e.what());
  }
  for (const auto& pa : addrs) oob_->learnAddress(pa.rank, pa.addr);
}

// Bruck's all-gather over Oob (see the top of this file). buf holds nranks records of `bytes`.
void SocketBootstrap::bruck(void* buf, size_t bytes, uint32_t tag, Deadline deadline) {
  const int p = nranks_;
  if (p == 1 || bytes == 0) return;
  CHORUS_CHECK_ARG(bytes <= SIZE_MAX / static_cast<size_t>(p), "bootstrap allgather: %zu bytes x %d ranks overflows",
                   bytes, p);
  auto* out = static_cast<char*>(buf);
  std::vector<char> tmp(bytes * static_cast<size_t>(p));
  memcpy(tmp.data(), out + static_cast<size_t>(rank_) * bytes, bytes);
  for (int d = 1; d < p; d <<= 1) {
    // Holding ranks r .. r+d-1: send the first n of them to r-d, receive r+d .. r+d+n-1 from r+d.
    size_t n = static_cast<size_t>(std::min(d, p - d)) * bytes;
    oob_->exchange(wire::bruckSendPeer(rank_, p, d), tag, tmp.data(), n, wire::bruckRecvPeer(rank_, p, d),
                   tmp.data() + static_cast<size_t>(d) * bytes, n, deadline);
  }
  for (int i = 0; i < p; ++i)
    memcpy(out + static_cast<size_t>((rank_ + i) % p) * bytes, tmp.data() + static_cast<size_t>(i) * bytes, bytes);
}

bool knownFamily(const WireAddr& a) { return a.family == AF_INET || a.family == AF_INET6; }

template <size_t N>
void terminate(char (&s)[N]) {
  s[N - 1] = '\0';
}

}  // namespace

std::string describeTraffic(const BootstrapTraffic& t) {
  return format("messages %llu out / %llu in, bytes %llu / %llu, connections %llu opened / %llu accepted",
                static_cast<unsigned long long>(t.msgsSent), static_cast<unsigned long long>(t.msgsRecv),
                static_cast<unsigned long long>(t.bytesSent), static_cast<unsigned long long>(t.bytesRecv),
                static_cast<unsigned long long>(t.connsOpened), static_cast<unsigned long long>(t.connsAccepted));
}

// Largest error text a rank reads from the root; the rest is left unread.
constexpr uint32_t kMaxRootTextBytes = 1u << 16;

size_t rootAnswerBodyBytes(const wire::Reply& reply, int nranks) {
  if (reply.magic != wire::kReplyMagic)
    CHORUS_THROW(chorusInternalError, "malformed answer (magic 0x%08x)", reply.magic);
  if (reply.code != chorusSuccess) return std::min(reply.textLen, kMaxRootTextBytes);
  if (static_cast<int64_t>(reply.count) != wire::log2Ceil(nranks))
    CHORUS_THROW(chorusInternalError, "answer holds %u addresses, expected %d", reply.count, wire::log2Ceil(nranks));
  return reply.count * sizeof(wire::PeerAddr);
}

std::vector<wire::PeerAddr> parseRootAnswer(const wire::Reply& reply, const char* body, size_t bytes, int rank,
                                            int nranks) {
  CHORUS_ASSERT(nranks >= 1 && rank >= 0 && rank < nranks);
  size_t want = rootAnswerBodyBytes(reply, nranks);
  if (bytes != want) CHORUS_THROW(chorusInternalError, "answer body has %zu bytes, expected %zu", bytes, want);
  if (reply.code != chorusSuccess) {
    auto code = (reply.code > chorusSuccess && reply.code < chorusNumResults) ? static_cast<chorusResult_t>(reply.code)
                                                                               : chorusInternalError;
    std::string text(body, bytes);
    for (char& c : text)
      if (static_cast<unsigned char>(c) < ' ' || static_cast<unsigned char>(c) > '~') c = '?';
    CHORUS_THROW(code, "%s", text.c_str());
  }
  std::vector<wire::PeerAddr> addrs(reply.count);
  if (bytes) memcpy(addrs.data(), body, bytes);
  for (size_t k = 0; k < addrs.size(); ++k) {
    const wire::PeerAddr& pa = addrs[k];
    int expect = wire::bruckSendPeer(rank, nranks, 1 << k);
    if (pa.rank != expect)
      CHORUS_THROW(chorusInternalError, "answer names rank %d as peer %zu, expected rank %d", pa.rank, k, expect);
    if (!knownFamily(pa.addr))
      CHORUS_THROW(chorusInternalError, "answer holds an address of unknown family %u for rank %d", pa.addr.family,
                   pa.rank);
  }
  return addrs;
}

void checkPeerCards(std::vector<PeerCard>& cards, int rank) {
  for (size_t r = 0; r < cards.size(); ++r) {
    PeerCard& c = cards[r];
    if (c.rank != static_cast<int>(r) || !knownFamily(c.bootstrapAddr))
      CHORUS_THROW(chorusInternalError,
                   "rank %d: card %zu after the all-gather is malformed (rank field %d, bootstrap address family %u)",
                   rank, r, c.rank, c.bootstrapAddr.family);
    terminate(c.hostname);
    if (!knownFamily(c.tcpAddr)) c.tcpAddr = WireAddr{};
    if (!knownFamily(c.healthAddr)) c.healthAddr = WireAddr{};
    sanitizeTopoCard(c.topo);
  }
}

std::unique_ptr<Bootstrap> Bootstrap::join(const UniqueIdData& id, int rank, int nranks, PeerCard card,
                                           const Config& config, Deadline deadline) {
  CHORUS_CHECK_ARG(nranks >= 1, "nranks must be at least 1 (got %d)", nranks);
  CHORUS_CHECK_ARG(rank >= 0 && rank < nranks, "rank %d is outside [0, %d)", rank, nranks);
  checkUniqueId(id);  // also when it did not come through decodeUniqueId (a split sends it)
  auto bs = std::make_unique<SocketBootstrap>(id, rank, nranks, config);
  bs->init(std::move(card), deadline);
  return bs;
}

}  // namespace chorus

// The transport interface: how bytes move between two ranks. Executors and algorithms only see
// Connection; each transport (shm, tcp, later ucx/ofi/plugins) lives in its own folder.
//
// Contract of a Connection (one per peer pair, used by one thread at a time):
//  * Messages, not streams: postSend(buf, n) on one side matches the next postRecv of exactly n
//    bytes on the other. Messages in each direction are delivered in the order posted.
//  * Every message carries the CallStamp of its call (exec/call_stamp.h) in its header; the
//    receiver checks it against the stamp of its posted recv before delivering any byte, and a
//    difference is a CallMismatch (chorusInvalidUsage). Zero-byte messages may carry nothing.
//  * Post calls never block and return a ticket: 0, 1, 2, ... separately for sends and recvs.
//    Sends (and recvs) complete in ticket order; sendsCompleted() is how many have completed,
//    so ticket t is done when sendsCompleted() > t.
//  * A send buffer must stay unchanged, and a receive sink's buffers untouched, until the
//    operation completes. A completed send means its buffer may be reused.
//  * progress() moves bytes without blocking and says whether anything moved. The caller
//    drives it; nothing happens between calls (no hidden progress threads).
//  * Failure is an exception (chorus::Error): chorusRemoteError when the peer died, closed or
//    aborted; chorusInternalError on a protocol violation (e.g. size mismatch). After a
//    failure the connection is unusable.
//  * checkAlive() is a cheaper-than-free liveness probe for the idle path (a waiting executor
//    calls it every few milliseconds): it throws chorusRemoteError when the peer is known dead.
//  * abort() marks the connection failed so that the peer notices soon; it never throws.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/config.h"
#include "base/deadline.h"
#include "base/oob.h"
#include "bootstrap/peer_card.h"
#include "chorus/net_plugin.h"
#include "exec/call_stamp.h"
#include "exec/reduce.h"

namespace chorus {

// Where the bytes of one received message go. With reduce == nullptr they are copied into
// dst; otherwise dst[i] = reduce(local[i], incoming[i]) element-wise (local may equal dst).
struct RecvSink {
  void* dst = nullptr;
  const void* local = nullptr;
  size_t bytes = 0;
  ReduceFn reduce = nullptr;
  size_t elemSize = 1;
  CallStamp stamp;  // the call this receive belongs to: the message must carry the same

  // Deliver bytes [offset, offset + n) of the message. When reducing, offset and n must be
  // multiples of elemSize (transports deliver whole elements: their fragment sizes are
  // multiples of 64 and only the message's last fragment may be shorter).
  void deliver(size_t offset, const void* data, size_t n) const;
};

class Connection {
 public:
  Connection(int peer) : peer_(peer) {}
  virtual ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  uint64_t postSend(const void* buf, size_t bytes, const CallStamp& stamp = CallStamp{}) { return doPostSend(buf, bytes, stamp); }
  virtual uint64_t postRecv(const RecvSink& sink) = 0;
  virtual bool progress() = 0;
  virtual uint64_t sendsCompleted() const = 0;
  virtual uint64_t recvsCompleted() const = 0;
  virtual void checkAlive() = 0;
  virtual void abort() noexcept = 0;
  // Short name of the transport ("shm", "tcp") for logs and errors.
  virtual const char* kind() const = 0;

  int peer() const { return peer_; }

 protected:
  virtual uint64_t doPostSend(const void* buf, size_t bytes, const CallStamp& stamp) = 0;

 private:
  int peer_;
};

// What a transport is given to set up connections.
struct TransportContext {
  int rank = 0;
  int nranks = 0;
  uint64_t commId = 0;                  // random per communicator; part of shm names, TCP hellos
  uint64_t secret[2] = {0, 0};          // shared by the communicator's ranks only
  const std::vector<PeerCard>* cards = nullptr;  // every rank's card, indexed by rank
  Oob* oob = nullptr;
  const Config* config = nullptr;
  // Set by chorusCommAbort; long waits in connect() give up with chorusInvalidUsage when it is set.
  const std::atomic<bool>* abortFlag = nullptr;
  // Whether a peer is known to be gone (its process no longer answers at all: the health service
  // refuses connections). Transports waiting for a peer during connection setup ask it now and
  // then, so that a peer that died before connecting fails the setup at once, not at the
  // deadline. Unset: nobody knows.
  std::function<bool(int peer)> peerGone;
  // The NUMA node this rank is bound to (-1: none or unknown); network transports prefer a device
  // on it.
  int numaNode = -1;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  // Whether this transport can reach peer at all (shm: same host).
  virtual bool canReach(int peer) const = 0;
  // Collective between each pair: rank a lists b iff b lists a, in the same call ordinal.
  // Returns one connection per listed peer, in the same order. Sends all setup messages before
  // waiting on any, so that rings of connects cannot deadlock.
  virtual std::vector<std::unique_ptr<Connection>> connect(const std::vector<int>& peers, Deadline deadline) = 0;
  // The link class this transport declares for the tuner's alpha-beta model: one message's
  // fixed cost and the sustained bandwidth of one pair (docs/TUNING.md says where each
  // transport's numbers come from).
  virtual double latencyUs() const = 0;
  virtual double bandwidthGBps() const = 0;
  // Fields this transport publishes in the rank's card before the cards are all-gathered (TCP:
  // its listen address). Most transports exchange what they need in connect() instead.
  virtual void fillCard(PeerCard& /*card*/) const {}
};

// The transports a communicator can use, by the names CHORUS_TRANSPORT and CHORUS_TRANSPORT_MAP
// take. Each has a bit in PeerCard::transports (1 << id) saying the rank has it.
enum class TransportId : uint8_t { Shm = 0, Tcp = 1, Ucx = 2, Ofi = 3, Plugin = 4, Count = 5 };
const char* transportIdName(TransportId id);
// "shm", "tcp", "ucx", "ofi", "plugin"; false for any other name.
bool parseTransportId(const std::string& name, TransportId* id);
// Makes one transport. shm and tcp always exist; ucx and ofi exist when built in (else
// chorusInvalidUsage says so); plugin loads ctx.config->netPlugin (CHORUS_NET_PLUGIN). Failures
// (a fabric library that does not initialise, a plugin that does not load) throw chorus::Error
// with the reason.
std::unique_ptr<Transport> makeTransport(TransportId id, const TransportContext& ctx);

// Factories, one per transport folder.
std::unique_ptr<Transport> makeShmTransport(const TransportContext& ctx);
// The TCP transport opens its data listener at construction; its address goes in the card
// (listenAddress) before the cards are all-gathered. The context's cards are read only from
// the first connect() on, by which time the communicator has filled them in.
class TcpTransportBase : public Transport {
 public:
  virtual WireAddr listenAddress() const = 0;
};
std::unique_ptr<TcpTransportBase> makeTcpTransport(const TransportContext& ctx);
// A transport over a network plugin (transports/net): the built-in UCX or OFI plugin, or one
// loaded by loadNetPlugin. oobSlot (0..7) keeps the setup messages of several plugin transports
// in one communicator apart.
std::unique_ptr<Transport> makeNetTransport(const chorusNet_v1_t& plugin, const TransportContext& ctx, int oobSlot);
// dlopen a network plugin: a path (contains '/') or a name X meaning libchorus-net-X.so, looked
// for next to libchorus first, then on the library path. Checks the ABI version; the plugin
// stays loaded for the life of the process. Errors start with `whose` (default
// "CHORUS_NET_PLUGIN=<spec>").
const chorusNet_v1_t& loadNetPlugin(const std::string& spec, const std::string& whose = "");

}  // namespace chorus

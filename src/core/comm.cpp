#include "core/comm.h"

#include <unistd.h>

#include <chrono>

#include "collectives/collective.h"
#include "core/error.h"
#include "core/host_identity.h"
#include "core/log.h"
#include "exec/executor.h"
#include "exec/reduce.h"

namespace chorus {
namespace {

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

Communicator::Communicator(int rank, int nranks, const Config& config)
    : rank_(rank), nranks_(nranks), config_(config), cards_(nranks), connections_(nranks), connectionPtrs_(nranks, nullptr) {
  ctx_.rank = rank;
  ctx_.nranks = nranks;
  ctx_.cards = &cards_;
  ctx_.oob = &oob_;
  ctx_.config = &config_;
  ctx_.abortFlag = &aborted_;
}

Communicator::~Communicator() {
  // Connections first (they may reference transport state), then transports, then bootstrap.
  connections_.clear();
  shm_.reset();
  tcp_.reset();
  bootstrap_.reset();
}

std::unique_ptr<Communicator> Communicator::create(const UniqueIdData& id, int nranks, int rank) {
  return create(id, nranks, rank, Config::fromEnv());
}

std::unique_ptr<Communicator> Communicator::create(const UniqueIdData& id, int nranks, int rank, const Config& config) {
  CHORUS_CHECK_ARG(nranks >= 1, "nranks must be >= 1 (got %d)", nranks);
  CHORUS_CHECK_ARG(rank >= 0 && rank < nranks, "rank %d is out of range [0, %d)", rank, nranks);
  std::unique_ptr<Communicator> comm(new Communicator(rank, nranks, config));
  comm->init(id);
  return comm;
}

void Communicator::init(const UniqueIdData& id) {
  logSetThreadRank(rank_);
  auto t0 = Clock::now();
  Deadline deadline = Deadline::after(config_.timeoutSec);
  ctx_.commId = id.commId;
  ctx_.secret[0] = id.secret[0];
  ctx_.secret[1] = id.secret[1];

  PeerCard card;
  card.rank = rank_;
  card.pid = getpid();
  card.hostHash = hostHash(config_.hostId);
  card.pidNamespace = pidNamespaceId();
  std::string host = hostName();
  snprintf(card.hostname, sizeof(card.hostname), "%s", host.c_str());
  if (config_.transport != "shm") {
    tcp_ = makeTcpTransport(ctx_);
    card.tcpAddr = tcp_->listenAddress();
  }
  auto t1 = Clock::now();
  bootstrap_ = Bootstrap::join(id, rank_, nranks_, card, config_, deadline);
  oob_.target = bootstrap_.get();
  cards_ = bootstrap_->cards();
  auto t2 = Clock::now();
  shm_ = makeShmTransport(ctx_);
  int localRanks = 0;
  for (const PeerCard& c : cards_) localRanks += c.hostHash == card.hostHash;
  CHORUS_INFO(kLogInit, "init rank %d/%d on %s (pid %d, %d ranks on this host): transports %.3f ms, bootstrap %.3f ms, total %.3f ms",
              rank_, nranks_, card.hostname, card.pid, localRanks, std::chrono::duration<double, std::milli>(t1 - t0).count(),
              std::chrono::duration<double, std::milli>(t2 - t1).count(), secondsSince(t0) * 1e3);
}

Transport* Communicator::transportFor(int peer) {
  const std::string& forced = config_.transport;
  bool sameHost = cards_[peer].hostHash == cards_[rank_].hostHash;
  if (forced == "tcp" || (forced.empty() && !sameHost)) {
    if (!tcp_) CHORUS_THROW(chorusInvalidUsage, "no TCP transport (CHORUS_TRANSPORT=%s) to reach rank %d", forced.c_str(), peer);
    return tcp_.get();
  }
  if (!shm_->canReach(peer))
    CHORUS_THROW(chorusInvalidUsage, "CHORUS_TRANSPORT=shm, but rank %d is on another host (%s); shared memory cannot reach it", peer,
                 cards_[peer].hostname);
  return shm_.get();
}

void Communicator::ensureConnected(const std::vector<int>& peers) {
  std::vector<int> shmPeers, tcpPeers;
  for (int peer : peers) {
    if (connections_[peer]) continue;
    Transport* t = transportFor(peer);
    (t == shm_.get() ? shmPeers : tcpPeers).push_back(peer);
  }
  if (shmPeers.empty() && tcpPeers.empty()) return;
  auto t0 = Clock::now();
  Deadline deadline = Deadline::after(config_.timeoutSec);
  for (auto [transport, list] : {std::pair<Transport*, std::vector<int>*>{shm_.get(), &shmPeers}, {tcp_.get(), &tcpPeers}}) {
    if (list->empty()) continue;
    auto conns = transport->connect(*list, deadline);
    CHORUS_ASSERT(conns.size() == list->size());
    for (size_t i = 0; i < list->size(); ++i) {
      int peer = (*list)[i];
      connectionPtrs_[peer] = conns[i].get();
      connections_[peer] = std::move(conns[i]);
      CHORUS_INFO(kLogTransport, "connected to rank %d (%s) via %s", peer, cards_[peer].hostname, transport->name());
    }
  }
  CHORUS_INFO(kLogInit, "connected %zu peer(s) in %.3f ms", shmPeers.size() + tcpPeers.size(), secondsSince(t0) * 1e3);
}

Communicator::CachedSchedule& Communicator::allReduceSchedule(size_t count, size_t elemSize, bool inPlace, bool average,
                                                              bool* fresh) {
  auto key = std::make_tuple(count, elemSize, inPlace, average);
  auto it = scheduleCache_.find(key);
  *fresh = it == scheduleCache_.end();
  if (!*fresh) return it->second;
  if (scheduleCache_.size() >= 256) scheduleCache_.clear();  // bounded memory for sweeps over many sizes
  CollArgs prm;
  prm.rank = rank_;
  prm.nranks = nranks_;
  prm.count = count;
  prm.elemSize = elemSize;
  prm.sliceBytes = config_.sliceBytes;
  prm.inPlace = inPlace;
  prm.average = average;
  CachedSchedule& entry = scheduleCache_[key];
  entry.schedule = buildSchedule(Algo::Ring, prm);
  entry.plan = std::make_unique<ExecPlan>(entry.schedule);
  return entry;
}

void Communicator::validateAllReduce(const void* sendbuf, const void* recvbuf, size_t count, chorusDataType_t dtype,
                                     chorusRedOp_t op) {
  size_t elemSize = dataTypeSize(dtype);
  CHORUS_CHECK_ARG(elemSize != 0, "unknown datatype %d", static_cast<int>(dtype));
  reduceFunction(dtype, op);  // throws chorusInvalidArgument for an unknown op
  CHORUS_CHECK_ARG(count <= SIZE_MAX / elemSize, "count %zu x %zu-byte %s overflows size_t", count, elemSize, dataTypeName(dtype));
  CHORUS_CHECK_ARG(count == 0 || (sendbuf && recvbuf), "NULL %s with count %zu > 0", sendbuf ? "recvbuf" : "sendbuf", count);
  if (sendbuf != recvbuf && count > 0) {
    const char* s = static_cast<const char*>(sendbuf);
    const char* r = static_cast<const char*>(recvbuf);
    size_t bytes = count * elemSize;
    CHORUS_CHECK_ARG(s + bytes <= r || r + bytes <= s, "sendbuf and recvbuf overlap without being equal (in place needs sendbuf == recvbuf)");
  }
}

void Communicator::allReduce(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t dtype, chorusRedOp_t op) {
  // The arguments were checked by validateAllReduce before the call was run or queued.
  size_t elemSize = dataTypeSize(dtype);
  ReduceFn reduce = reduceFunction(dtype, op);

  std::lock_guard<std::mutex> guard(execMutex_);
  logSetThreadRank(rank_);  // streams run calls on their own threads
  if (aborted_.load()) CHORUS_THROW(chorusInvalidUsage, "communicator was aborted");
  if (asyncError_.load() != chorusSuccess)
    CHORUS_THROW(chorusInvalidUsage, "communicator is broken by an earlier error: %s", lastError().c_str());
  uint64_t seq = ++seq_;
  bool inPlace = sendbuf == recvbuf;
  bool fresh = false;
  CachedSchedule& cached = allReduceSchedule(count, elemSize, inPlace, op == chorusAvg, &fresh);
  const RankSchedule& sched = cached.schedule;
  ExecArgs args;
  args.call.collective = "chorusAllReduce";
  args.call.seq = seq;
  args.call.count = count;
  args.call.dtype = dtype;
  args.call.op = op;
  args.call.rank = rank_;
  args.call.nranks = nranks_;
  args.call.algorithm = sched.algorithm.c_str();
  try {
    if (fresh) {
      std::vector<int> peers = sched.peers();
      ensureConnected(peers);
      if (logEnabled(LogLevel::Info, kLogColl)) {
        std::string via;
        for (int p : peers) via += format(" %d:%s", p, connectionPtrs_[p]->kind());
        CHORUS_INFO(kLogColl, "AllReduce %zu x %s %s%s: algorithm %s, %zu steps, peers%s", count, dataTypeName(dtype), redOpName(op),
                    inPlace ? " in place" : "", sched.algorithm.c_str(), sched.steps.size(), via.empty() ? " none" : via.c_str());
      }
    }
    args.plan = cached.plan.get();
    ExecBuffer bufs[2];
    bufs[0] = {const_cast<void*>(sendbuf), elemSize, dtype, reduce};
    bufs[1] = {recvbuf, elemSize, dtype, reduce};
    args.buffers = bufs;
    args.numBuffers = 2;
    args.connections = &connectionPtrs_;
    args.timeoutSec = config_.timeoutSec;
    args.abortFlag = &aborted_;
    execute(args);
  } catch (const Error& e) {
    // Errors from transports do not know which call they broke: name it.
    std::string what = describeCall(args.call);
    std::string text = e.what();
    if (text.find(what) == std::string::npos) text = what + ": " + text;
    recordError(e.code(), text);
    // Tell the peers at once, so that they fail now rather than at their deadline.
    for (auto& c : connections_)
      if (c) c->abort();
    throw Error(e.code(), text);
  }
}

void Communicator::abort() noexcept {
  aborted_.store(true);
  if (asyncError_.load() == chorusSuccess) recordError(chorusInvalidUsage, "communicator was aborted");
  // The bootstrap's abort is thread-safe: it wakes a collective blocked in connection setup
  // (out-of-band waits); the TCP connect loop watches the flag itself. A running collective
  // sees the flag and aborts its connections; when none runs, abort them here so the peers
  // learn now (connections are not thread-safe, hence the try_lock).
  if (bootstrap_) bootstrap_->abort();
  std::unique_lock<std::mutex> lock(execMutex_, std::try_to_lock);
  if (lock.owns_lock()) {
    for (auto& c : connections_)
      if (c) c->abort();
  }
}

void Communicator::recordError(chorusResult_t code, const std::string& text) {
  std::lock_guard<std::mutex> g(errorMutex_);
  chorusResult_t expected = chorusSuccess;
  if (asyncError_.compare_exchange_strong(expected, code) || lastError_.empty()) lastError_ = text;
  CHORUS_WARN(kLogColl, "%s", text.c_str());
}

std::string Communicator::lastError() const {
  std::lock_guard<std::mutex> g(errorMutex_);
  return lastError_;
}

}  // namespace chorus

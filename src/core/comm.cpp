#include "core/comm.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>

#include "bootstrap/socket.h"
#include "collectives/collective.h"
#include "core/call_stamps.h"
#include "core/knob_agreement.h"
#include "base/deadline.h"
#include "base/error.h"
#include "core/validate.h"
#include "device/device.h"
#include "base/host_identity.h"
#include "base/log.h"
#include "exec/executor.h"
#include "exec/reduce.h"
#include "health/health_service.h"
#include "health/shrink.h"
#include "topology/node_topology.h"

namespace chorus {
namespace {

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

Communicator::Communicator(int rank, int nranks, const Config& config)
    : rank_(rank), nranks_(nranks), config_(config), cards_(nranks), connections_(nranks), connectionPtrs_(nranks, nullptr),
      cause_(std::make_shared<CauseBoard>()) {
  ctx_.rank = rank;
  ctx_.nranks = nranks;
  ctx_.cards = &cards_;
  ctx_.oob = &oob_;
  ctx_.config = &config_;
  ctx_.abortFlag = &aborted_;
}

Communicator::~Communicator() {
  // The health service first (its hooks read this object), then connections (they may
  // reference transport state), then transports, then bootstrap.
  health_.reset();
  run_.staged.clear();
  if (deviceIn_) devicePlugin_->streamDestroy(deviceIn_);
  if (deviceOut_) devicePlugin_->streamDestroy(deviceOut_);
  connections_.clear();
  for (auto& t : transports_) t.reset();
  bootstrap_.reset();
}

void Communicator::OobForwarder::send(int peer, uint32_t tag, const void* d, size_t n, Deadline dl) {
  try {
    target->send(peer, tag, d, n, dl);
  } catch (Error& e) {
    if (e.peer() < 0) e.setPeer(peer);
    throw;
  }
}

void Communicator::OobForwarder::recv(int peer, uint32_t tag, void* d, size_t n, Deadline dl) {
  for (;;) {
    Deadline slice = Deadline::after(0.25);
    bool last = !dl.infinite() && dl.at() <= slice.at();
    try {
      target->recv(peer, tag, d, n, last ? dl : slice);
      return;
    } catch (Error& e) {
      if (e.peer() < 0) e.setPeer(peer);
      if (e.code() != chorusTimeout || last) throw;
    }
    if (peerGone && peerGone(peer)) {
      Error gone(chorusRemoteError, format("rank %d is gone (its process died, or it destroyed its communicator) while this rank "
                                           "waited for its connection-setup message (tag %u)",
                                           peer, tag));
      gone.setPeer(peer);
      throw gone;
    }
  }
}

std::unique_ptr<Communicator> Communicator::create(const UniqueIdData& id, int nranks, int rank) {
  return create(id, nranks, rank, Config::fromEnv());
}

std::unique_ptr<Communicator> Communicator::create(const UniqueIdData& id, int nranks, int rank, const Config& config,
                                                   double initTimeoutSec) {
  CHORUS_CHECK_ARG(nranks >= 1, "nranks must be >= 1 (got %d)", nranks);
  CHORUS_CHECK_ARG(rank >= 0 && rank < nranks, "rank %d is out of range [0, %d)", rank, nranks);
  std::unique_ptr<Communicator> comm(new Communicator(rank, nranks, config));
  comm->init(id, initTimeoutSec > 0 ? initTimeoutSec : config.timeoutSec);
  return comm;
}

void Communicator::init(const UniqueIdData& id, double timeoutSec) {
  logSetThreadRank(rank_);
  auto t0 = Clock::now();
  Deadline deadline = Deadline::after(timeoutSec);
  ctx_.commId = id.commId;
  ctx_.secret[0] = id.secret[0];
  ctx_.secret[1] = id.secret[1];
  parseTuneString(config_.algoTune);  // a bad CHORUS_ALGO fails here, before any rank waits on us
  // So do a bad cluster file and an unreadable CHORUS_TOPO_FILE.
  if (!config_.clusterFile.empty()) clusterFile_ = std::make_unique<ClusterFile>(loadClusterFile(config_.clusterFile));
  // And a device plugin that CHORUS_DEVICE_PLUGIN names but that cannot be loaded. Loaded here,
  // so that every call can ask whether a buffer is device memory without loading anything.
  devicePlugin();
  const NodeTopology& node = localTopology();
  auto tLocal = Clock::now();

  PeerCard card;
  card.rank = rank_;
  card.pid = getpid();
  card.hostHash = hostHash(config_.hostId);
  card.pidNamespace = pidNamespaceId();
  // CHORUS_HOSTID also names the host (topology dumps, cluster-file patterns).
  std::string host = config_.hostId.empty() ? hostName() : config_.hostId;
  snprintf(card.hostname, sizeof(card.hostname), "%s", host.c_str());
  card.topo = makeTopoCard(node);
  ctx_.numaNode = card.topo.boundNuma;
  fillKnobHashes(config_, &card);
  HealthIdentity hid{id.commId, {id.secret[0], id.secret[1]}, rank_, nranks_};
  health_ = std::make_unique<HealthService>(hid, chooseLocalAddress(config_.socketIfname), config_.diagSignal, config_.timeoutSec);
  card.healthAddr = health_->address();
  probeSeconds_ = config_.probeSeconds();
  runAhead_ = std::make_unique<RunAheadWatch>(nranks_, config_.timeoutSec, probeSeconds_, &aborted_);
  stallProbe_ = [this](int peer) { probePeer(peer, 0.25, "a wait that made no progress"); };
  statusProbe_ = [this](int peer, Deadline dl) { return askStatus(peer, dl); };
  // Transports copy the context when they are made (below): the hook goes in first.
  // A peer that is gone or broken ends the wait as chorusRemoteError (the transports' own
  // message); one waiting in this collective with another stamp, as a mismatch (thrown here).
  ctx_.peerGone = [this](int peer) {
    PeerProbe p = askStatus(peer, Deadline::after(0.5));
    if (p.reach == HealthService::Reach::Gone || (p.reach == HealthService::Reach::Answered && p.status.state == RankState::Broken))
      return true;
    // A peer past this collective has done its part without connecting to this rank (once
    // what it sent is surely here: a dialer finishes before the listener has accepted).
    throwIfPeerWillNotCome(peer, p, runStamp_, "connection setup", stillPast(peer, p));
    return false;
  };
  oob_.peerGone = ctx_.peerGone;
  // Transports: every one the policy may use for some pair, made before the bootstrap so that
  // each rank's card says which it has (pairs choose among those both ranks have).
  policy_ = TransportPolicy::fromConfig(config_);
  uint32_t wanted = policy_.wanted();
  std::string failures;
  for (TransportId id : {TransportId::Tcp, TransportId::Ucx, TransportId::Ofi, TransportId::Plugin}) {
    uint32_t bit = 1u << static_cast<unsigned>(id);
    if (!(wanted & bit)) continue;
    try {
      auto t = makeTransport(id, ctx_);
      t->fillCard(card);
      transports_[static_cast<int>(id)] = std::move(t);
      card.transports |= bit;
    } catch (const Error& e) {
      CHORUS_WARN(kLogTransport, "rank %d: the %s transport is not available: %s", rank_, transportIdName(id), e.what());
      failures += format("%s%s: %s", failures.empty() ? "" : "; ", transportIdName(id), e.what());
    }
  }
  // Shared memory is made after the bootstrap (it needs the cards) and cannot fail to exist.
  card.transports |= 1u << static_cast<unsigned>(TransportId::Shm);
  policy_.checkUsable(card.transports, failures);
  auto t1 = Clock::now();
  bootstrap_ = Bootstrap::join(id, rank_, nranks_, card, config_, deadline);
  const BootstrapTraffic joined = bootstrap_->traffic();
  auto t2 = Clock::now();
  oob_.target = bootstrap_.get();
  cards_ = bootstrap_->cards();
  checkKnobAgreement(config_, cards_, rank_);
  health_->shrinkCoordinator().configure(config_, config_.shrinkTimeoutSec);
  health_->start(cards_, HealthHooks{[this] { return healthStatus(); }, cause_});
  auto t3 = Clock::now();
  transports_[static_cast<int>(TransportId::Shm)] = makeShmTransport(ctx_);
  // The cluster view's link classes, one per pair class (rack pairs exist only with cluster-file groups).
  topology_ = ClusterTopology::build(cards_, clusterFile_.get(),
                                     {declaredClass(PairClass::Local), declaredClass(PairClass::Network), declaredClass(PairClass::Rack)});
  if (rank_ == 0 && logEnabled(LogLevel::Info, kLogTopo)) CHORUS_INFO(kLogTopo, "%s", topology_->describe().c_str());
  if (rank_ == 0) CHORUS_INFO(kLogTransport, "transport policy: %s", policy_.describe().c_str());
  oversubscribed_ = someHostOversubscribed(cards_);
  tuner_ = std::make_unique<Tuner>(config_.algoTune, linkModel(), config_.sliceBytes, topoModel());
  int localRanks = 0;
  for (const PeerCard& c : cards_) localRanks += c.hostHash == card.hostHash;
  // More ranks here than CPUs: a spinning waiter takes the CPU from the peer it waits for.
  const bool oversubscribed = node.pus > 0 && localRanks > node.pus;
  const bool spin = config_.spin == "1" || (config_.spin == "auto" && !oversubscribed);
  if (spin != Backoff::spins())
    CHORUS_INFO(kLogInit, "rank %d: waits %s (%d ranks of this communicator on this host's %d CPUs; CHORUS_SPIN=%s)", rank_,
                spin ? "spin ~2 us before they yield" : "yield at once instead of spinning", localRanks, node.pus, config_.spin.c_str());
  Backoff::setSpin(spin);
  auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  CHORUS_INFO(kLogInit,
              "init rank %d/%d on %s (pid %d, %d ranks on this host): device and topology %.3f ms, transports %.3f ms, "
              "bootstrap %.3f ms, health %.3f ms, cluster view %.3f ms, total %.3f ms; bootstrap %s",
              rank_, nranks_, card.hostname, card.pid, localRanks, ms(t0, tLocal), ms(tLocal, t1), ms(t1, t2), ms(t2, t3),
              ms(t3, Clock::now()), secondsSince(t0) * 1e3, describeTraffic(joined).c_str());
}

bool Communicator::commonTransport(PairClass c, TransportId* id) const {
  std::vector<uint32_t> bits;
  for (const PeerCard& card : cards_) bits.push_back(card.transports);
  return policy_.common(c, bits, id);
}

LinkClass Communicator::declaredClass(PairClass c) const {
  TransportId id;
  if (commonTransport(c, &id) && transports_[static_cast<int>(id)]) {
    const Transport& t = *transports_[static_cast<int>(id)];
    return LinkClass{t.name(), t.latencyUs(), t.bandwidthGBps(), format("declared by the %s transport", t.name())};
  }
  // Ranks differ in what they have: every rank must still declare the same class, so it is a
  // fixed, deliberately modest one (docs/TRANSPORTS.md).
  return LinkClass{"mixed", 20.0, 1.0, format("%s pairs use different transports on different ranks: a modest class is declared", pairClassName(c))};
}

PairClass Communicator::pairClass(int peer) const {
  if (cards_[peer].hostHash == cards_[rank_].hostHash) return PairClass::Local;
  const HostInfo& a = topology_->hosts()[topology_->hostOf(rank_)];
  const HostInfo& b = topology_->hosts()[topology_->hostOf(peer)];
  return !a.group.empty() && a.group == b.group ? PairClass::Rack : PairClass::Network;
}

TransportId Communicator::transportFor(int peer) const {
  PairClass c = pairClass(peer);
  TransportId id = policy_.choose(c, cards_[rank_].transports, cards_[peer].transports, rank_, peer);
  if (id == TransportId::Shm && !transports_[static_cast<int>(id)]->canReach(peer))
    CHORUS_THROW(chorusInvalidUsage, "the %s pair with rank %d (%s) must use shm (%s), but shared memory cannot reach another host", pairClassName(c),
                 peer, cards_[peer].hostname, policy_.describe().c_str());
  return id;
}

void Communicator::ensureConnected(const std::vector<int>& peers) {
  constexpr int kCount = static_cast<int>(TransportId::Count);
  std::vector<int> byTransport[kCount];
  size_t total = 0;
  for (int peer : peers) {
    if (connections_[peer]) continue;
    byTransport[static_cast<int>(transportFor(peer))].push_back(peer);
    ++total;
  }
  if (total == 0) return;
  auto t0 = Clock::now();
  const BootstrapTraffic before = bootstrap_->traffic();
  Deadline deadline = Deadline::after(config_.timeoutSec);
  // Transports in a fixed order: both ranks of a pair reach its connect() in the same ordinal.
  for (int k = 0; k < kCount; ++k) {
    const std::vector<int>& list = byTransport[k];
    if (list.empty()) continue;
    Transport* transport = transports_[k].get();
    CHORUS_ASSERT(transport != nullptr);
    auto conns = transport->connect(list, deadline);
    CHORUS_ASSERT(conns.size() == list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      int peer = list[i];
      connectionPtrs_[peer] = conns[i].get();
      connections_[peer] = std::move(conns[i]);
      ++connectedPeers_;
      CHORUS_INFO(kLogTransport, "connected to rank %d (%s, %s pair) via %s", peer, cards_[peer].hostname, pairClassName(pairClass(peer)),
                  transport->name());
    }
  }
  CHORUS_INFO(kLogInit, "connected %zu peer(s) in %.3f ms, %d connected in all; setup over the bootstrap %s", total,
              secondsSince(t0) * 1e3, connectedPeers_, describeTraffic(bootstrap_->traffic() - before).c_str());
}

size_t Communicator::fragmentBytes(TransportId id) const {
  switch (id) {
    case TransportId::Shm: return config_.shmSlotBytes;
    case TransportId::Tcp: return config_.tcpChunkBytes;
    default: return config_.netChunkBytes;
  }
}

LinkModel Communicator::linkModelOf(const LinkClass& c, size_t fragmentBytes) const {
  LinkModel m;
  m.latencyUs = c.latencyUs;
  m.bandwidthGBps = c.bandwidthGBps;
  m.fragmentBytes = fragmentBytes;
  m = effectiveLink({m}, config_.tuneLatencyUs, config_.tuneBandwidthGBps);
  if (oversubscribed_) m.roundUs = kOversubscribedRoundUs;
  return m;
}

LinkModel Communicator::localLinkModel() const {
  // link(0, 0): the class of ranks on one host.
  TransportId id = TransportId::Shm;
  commonTransport(PairClass::Local, &id);
  return linkModelOf(topology_->link(0, 0), fragmentBytes(id));
}

LinkModel Communicator::linkModel() const {
  // The slowest link class any pair of this communicator uses decides the flat algorithms'
  // model: every rank computes the same answer from the same cards, so every rank's tuner
  // makes the same choices.
  if (const LinkClass* slowest = topology_->slowestNetworkClass()) {
    TransportId id = TransportId::Tcp;
    commonTransport(PairClass::Network, &id);
    return linkModelOf(*slowest, fragmentBytes(id));
  }
  return localLinkModel();
}

TopoModel Communicator::topoModel() const { return topology_->tuneModel(localLinkModel(), linkModel()); }

namespace {

// nccl-tests' S for a call: the larger of one rank's send and receive buffers.
size_t callBytes(const CollArgs& a) {
  size_t most = 0;
  for (int r : {a.rank, a.root}) most = std::max({most, inputElems(a, r), outputElems(a, r)});
  return most * a.elemSize;
}

// In a group, the k-th send to itself is the k-th receive from itself: a local copy.
void addSelfCopies(std::span<const CollCall> calls, int rank, RankSchedule* merged) {
  std::vector<size_t> sends, recvs;
  for (size_t k = 0; k < calls.size(); ++k) {
    const CollCall& c = calls[k];
    if (c.kind == CallKind::Collective || c.peer != rank || c.count == 0) continue;
    (c.kind == CallKind::Send ? sends : recvs).push_back(k);
  }
  if (sends.size() != recvs.size())
    CHORUS_THROW(chorusInvalidUsage, "group on rank %d has %zu send(s) to itself but %zu receive(s) from itself", rank, sends.size(),
                 recvs.size());
  for (size_t i = 0; i < sends.size(); ++i) {
    const CollCall& s = calls[sends[i]];
    const CollCall& r = calls[recvs[i]];
    if (s.count * dataTypeSize(s.dtype) != r.count * dataTypeSize(r.dtype) || s.dtype != r.dtype)
      CHORUS_THROW(chorusInvalidUsage, "rank %d: send to itself of %zu x %s does not match the receive of %zu x %s", rank, s.count,
                   dataTypeName(s.dtype), r.count, dataTypeName(r.dtype));
    merged->add({StepKind::Copy, -1, 1, {bufferOfCall(static_cast<int>(sends[i]), BufferId::Input), 0, s.count},
                 {bufferOfCall(static_cast<int>(recvs[i]), BufferId::Output), 0, r.count}});
  }
}

RankSchedule pointToPoint(const CollCall& c, int rank, int nranks) {
  RankSchedule s;
  s.algorithm = c.kind == CallKind::Send ? "send" : "recv";
  s.rank = rank;
  s.nranks = nranks;
  if (c.count == 0 || c.peer == rank) return s;  // a self send/recv becomes a copy in its group
  if (c.kind == CallKind::Send)
    s.add({StepKind::Send, c.peer, 1, {BufferId::Input, 0, c.count}, {}});
  else
    s.add({StepKind::Recv, c.peer, 1, {}, {BufferId::Output, 0, c.count}});
  return s;
}

}  // namespace

void Communicator::validate(CollCall& call) const { validateCall(call, rank_, nranks_, preMulOps_); }

Communicator::CachedSchedule& Communicator::scheduleFor(const CollCall& call, std::deque<CachedSchedule>& temps, bool* fresh) {
  *fresh = true;
  if (call.kind != CallKind::Collective) {
    CachedSchedule& temp = temps.emplace_back();
    temp.schedule = pointToPoint(call, rank_, nranks_);
    temp.plan = std::make_unique<ExecPlan>(temp.schedule);
    return temp;
  }
  bool vector = call.coll == Coll::AllGatherV || call.coll == Coll::ReduceScatterV || call.coll == Coll::AlltoAllV;
  CachedSchedule* entry = nullptr;
  if (vector) {
    entry = &temps.emplace_back();
  } else {
    // The key is made from the call directly: a cache hit builds no CollArgs.
    bool average = call.op == chorusAvg && isReduction(call.coll);
    ScheduleKey key(static_cast<int>(call.coll), call.count, dataTypeSize(call.dtype), call.inPlace, average, call.root);
    if (lastEntry_ && key == lastKey_) {
      *fresh = false;
      return *lastEntry_;
    }
    auto it = scheduleCache_.find(key);
    lastKey_ = key;
    if (it != scheduleCache_.end()) {
      *fresh = false;
      lastEntry_ = &it->second;
      return it->second;
    }
    entry = &scheduleCache_[key];
    lastEntry_ = entry;
  }
  CollArgs args = collArgsFor(call, rank_, nranks_);
  args.layout = topology_->layout();
  TuneChoice choice = tuner_->choose(call.coll, callBytes(args), nranks_);
  args.sliceBytes = choice.sliceBytes;
  entry->forced = choice.forced;
  entry->algo = choice.algo;
  entry->schedule = buildSchedule(choice.algo, args);
  entry->plan = std::make_unique<ExecPlan>(entry->schedule);
  entry->scratch.assign(entry->schedule.scratchElems * args.elemSize, 0);
  return *entry;
}

void Communicator::run(std::span<CollCall> calls) {
  CHORUS_ASSERT(!calls.empty());
  std::lock_guard<std::mutex> guard(execMutex_);
  logSetThreadRank(rank_);  // streams run calls on their own threads
  if (aborted_.load()) CHORUS_THROW(chorusInvalidUsage, "communicator was aborted");
  if (asyncError_.load() != chorusSuccess)
    CHORUS_THROW(chorusInvalidUsage, "communicator is broken by an earlier error: %s", lastError().c_str());
  const CollCall& first = calls[0];
  if (calls.size() == 1 && first.kind != CallKind::Collective && first.peer == rank_ && first.count > 0)
    CHORUS_THROW(chorusInvalidUsage, "%s to itself (rank %d) needs the matching %s in the same group", first.apiName, rank_,
                 first.kind == CallKind::Send ? "chorusRecv" : "chorusSend");
  if (calls.size() > 1) {
    // A group's collectives go first, then its sends and receives, each in call order: per peer
    // both sides then agree on the order of messages wherever the point-to-point calls sat
    // among the collectives (a send's matching receive may be the peer's last call).
    std::stable_partition(calls.begin(), calls.end(), [](const CollCall& c) { return c.kind == CallKind::Collective; });
  }
  ExecArgs args;
  // What the hang report sees: the call entered (a collective's ordinal, or a send/recv group).
  const bool p2pOnly = first.kind != CallKind::Collective;
  lastPointToPoint_.store(p2pOnly, std::memory_order_relaxed);
  if (!p2pOnly) {
    lastColl_.store(static_cast<uint8_t>(first.coll), std::memory_order_relaxed);
    startedSeq_.store(static_cast<uint32_t>(collSeq_ + 1), std::memory_order_relaxed);
  }
  waitingOn_.store(-1, std::memory_order_relaxed);
  state_.store(static_cast<uint8_t>(RankState::InCall), std::memory_order_release);
  args.call.collective = calls.size() == 1 ? first.apiName : "chorusGroupEnd";
  args.call.seq = collSeq_ + 1;  // the first collective's ordinal (send/recv: the next one's)
  args.call.pointToPoint = first.kind != CallKind::Collective;
  args.call.count = first.count;
  args.call.dtype = first.dtype;
  args.call.op = first.op;
  args.call.hasOp = first.kind == CallKind::Collective && isReduction(first.coll);
  args.call.rank = rank_;
  args.call.nranks = nranks_;
  args.call.algorithm = "choosing";  // until the schedules are known
  std::string algorithms;
  try {
    // Per-run scratch containers are members, reused: a small call allocates nothing here.
    RunState& st = run_;
    // Bounded memory for sweeps over many sizes; trimmed only here, before this run holds entries.
    if (scheduleCache_.size() >= 256) {
      scheduleCache_.clear();
      lastEntry_ = nullptr;
    }
    if (!st.temps.empty()) st.temps.clear();
    st.buffers.resize(calls.size() * kBuffersPerCall);  // every entry is written below
    st.entries.clear();
    st.parts.clear();
    st.scaled.clear();
    st.extraScratch.clear();
    if (st.stamps.size() < calls.size()) st.stamps.resize(calls.size());  // each is written below
    st.staged.clear();
    st.gate.clear();
    bool anyFresh = false;
    for (size_t k = 0; k < calls.size(); ++k) {
      CollCall& c = calls[k];
      size_t es = dataTypeSize(c.dtype);
      if (!c.staged && devicePluginActive()) c.staged = stage(c, nullptr);
      StagedCall* staged = c.staged.get();
      if (staged) {
        st.staged.push_back(std::move(c.staged));
        st.gate.add(staged);
      }
      const void* input = staged ? staged->hostInput() : c.sendbuf;
      void* output = staged ? staged->hostOutput() : c.recvbuf;
      ReduceFn reduce = nullptr;
      PreMulSum pm;
      if (c.kind == CallKind::Collective && isReduction(c.coll)) {
        if (static_cast<int>(c.op) >= chorusNumOps && preMulOps_.lookup(c.op, &pm)) {
          // Scale the input into a temporary, then sum; the call is no longer in place.
          CollArgs a = collArgsFor(c, rank_, nranks_);
          size_t n = inputElems(a, rank_);
          st.scaled.emplace_back(n * es);
          if (staged) staged->waitInput(config_.timeoutSec);
          scaleInto(st.scaled.back().data(), input, n, pm);
          input = st.scaled.back().data();
          c.inPlace = false;
          reduce = reduceFunction(c.dtype, chorusSum);
        } else {
          reduce = reduceFunction(c.dtype, c.op);
        }
      }
      bool fresh = false;
      CachedSchedule& entry = scheduleFor(c, st.temps, &fresh);
      anyFresh |= fresh;
      void* scratch = entry.scratch.data();
      // The same cached shape twice in one group: the second call needs scratch of its own.
      if (!entry.scratch.empty() && std::find(st.entries.begin(), st.entries.end(), &entry) != st.entries.end())
        scratch = st.extraScratch.emplace_back(entry.scratch.size()).data();
      st.entries.push_back(&entry);
      st.parts.push_back(&entry.schedule);
      stampCall(&st.stamps[k], c, c.kind == CallKind::Collective ? ++collSeq_ : 0, entry.algo);
      if (calls.size() > 1) algorithms += (k ? "+" : "") + entry.schedule.algorithm;
      st.buffers[k * kBuffersPerCall + 0] = {const_cast<void*>(input), es, c.dtype, reduce};
      st.buffers[k * kBuffersPerCall + 1] = {output, es, c.dtype, reduce};
      st.buffers[k * kBuffersPerCall + 2] = {scratch, es, c.dtype, reduce};
      if (fresh && logEnabled(LogLevel::Info, kLogColl))
        CHORUS_INFO(kLogColl, "%s %zu x %s%s%s: algorithm %s%s, %zu steps", c.apiName, c.count, dataTypeName(c.dtype),
                    c.kind == CallKind::Collective && isReduction(c.coll) ? " " : "",
                    c.kind == CallKind::Collective && isReduction(c.coll) ? redOpName(c.op) : "", entry.schedule.algorithm.c_str(),
                    entry.forced ? " (CHORUS_ALGO)" : "", entry.schedule.steps.size());
    }
    args.call.algorithm = calls.size() > 1 ? algorithms.c_str() : st.entries[0]->schedule.algorithm.c_str();
    ExecPlan* plan = st.entries[0]->plan.get();
    std::unique_ptr<RankSchedule> merged;  // a group's: built only then (a single call's path allocates nothing)
    std::unique_ptr<ExecPlan> mergedPlan;
    if (calls.size() > 1) {
      merged = std::make_unique<RankSchedule>(mergeSchedules(st.parts));
      addSelfCopies(calls, rank_, merged.get());
      mergedPlan = std::make_unique<ExecPlan>(*merged);
      plan = mergedPlan.get();
      anyFresh = true;
    }
    if (!p2pOnly) {
      runStamp_ = st.stamps[0];  // the group's first collective (collectives go first)
      publishedStamp_.store(runStamp_);
    }
    if (anyFresh) ensureConnected(plan->schedule.peers());
    args.plan = plan;
    args.buffers = st.buffers.data();
    args.numBuffers = st.buffers.size();
    args.connections = &connectionPtrs_;
    args.timeoutSec = config_.timeoutSec;
    args.abortFlag = &aborted_;
    args.stamps = st.stamps.data();
    args.numStamps = calls.size();
    args.waitingOn = &waitingOn_;
    args.probe = &stallProbe_;
    args.probeAfterSec = probeSeconds_;
    args.gate = st.gate.empty() ? nullptr : &st.gate;
    execute(args);
    // Device buffers: done once the device stream has copied the last slice back.
    for (const std::shared_ptr<StagedCall>& sc : st.staged) sc->finish(config_.timeoutSec, &aborted_);
    st.staged.clear();
    st.gate.clear();
    if (!p2pOnly) {
      runAhead_->afterRun(*plan, static_cast<uint32_t>(args.call.seq), static_cast<uint32_t>(collSeq_), runStamp_, statusProbe_);
    }
  } catch (const Error& e) {
    runStamp_ = CallStamp{};
    run_.gate.clear();
    run_.staged.clear();  // abandons them: the device streams go on, with undefined results
    failRun(args.call, e);
  }
  runStamp_ = CallStamp{};
  finishedSeq_.store(static_cast<uint32_t>(collSeq_), std::memory_order_relaxed);
  state_.store(static_cast<uint8_t>(RankState::Idle), std::memory_order_release);
}

std::shared_ptr<StagedCall> Communicator::stage(const CollCall& c, void* deviceStream) {
  const chorusDevice_v1_t* plugin = devicePlugin();
  if (!plugin) return nullptr;
  StagedCall::Layout l;
  const size_t es = dataTypeSize(c.dtype);
  int inDev = -1, outDev = -1;
  l.in = c.sendbuf;
  l.out = c.recvbuf;
  l.inDevice = memoryKind(c.sendbuf, &inDev) == chorusDevMemDevice;
  l.outDevice = memoryKind(c.recvbuf, &outDev) == chorusDevMemDevice;
  if (!l.inDevice && !l.outDevice) return nullptr;
  if (c.kind == CallKind::Send) {
    l.inBytes = c.count * es;
  } else if (c.kind == CallKind::Recv) {
    l.outBytes = c.count * es;
  } else {
    CollArgs a = collArgsFor(c, rank_, nranks_);
    l.inBytes = inputElems(a, rank_) * es;
    l.outBytes = outputElems(a, rank_) * es;
    size_t offset = 0;
    l.inPlace = c.inPlace && inPlaceAlias(a, rank_, &l.outputInsideInput, &offset);
    l.aliasOffset = offset * es;
    l.prefillOutput = c.coll == Coll::AllGatherV || c.coll == Coll::ReduceScatterV || c.coll == Coll::AlltoAllV;
  }
  {
    std::lock_guard<std::mutex> lock(deviceMutex_);  // streams may stage calls while a call runs
    if (!deviceOut_) {
      const int device = std::max(l.inDevice ? inDev : outDev, 0);
      deviceCheck(plugin->streamCreate(device, &deviceIn_), plugin, "streamCreate");
      devicePlugin_ = plugin;
      deviceCheck(plugin->streamCreate(device, &deviceOut_), plugin, "streamCreate");
    }
  }
  const bool bound = deviceStream != nullptr;
  return std::make_shared<StagedCall>(plugin, l, bound ? deviceStream : deviceIn_, bound, deviceOut_, config_.deviceSliceBytes);
}

void Communicator::failRun(const CallInfo& call, const Error& e) {
  // Errors from transports do not know which call they broke: name it.
  const std::string what = describeCall(call);
  chorusResult_t code = e.code();
  std::string text = e.what();
  if (const auto* m = dynamic_cast<const CallMismatch*>(&e)) text = mismatchText(*m, rank_);
  if (text.find(what) == std::string::npos) text = what + ": " + text;
  // Record first, then tell the peers at once (they fail now rather than at their deadline, and
  // find this cause when they ask); a dead or failed peer is the provisional origin.
  const int peer = e.peer();
  const bool willAsk = (code == chorusRemoteError && peer >= 0) || code == chorusTimeout;
  // Provisional while this rank still asks (askers wait for what it learns next).
  recordError(code, text, code == chorusRemoteError && peer >= 0 ? peer : rank_, text, !willAsk);
  for (auto& c : connections_)
    if (c) c->abort();
  // A cascade settles hop by hop, each after its own question (or a hang report): twice the
  // report's deadline covers both.
  const Deadline diag = Deadline::after(2 * config_.diagSeconds());
  if (code == chorusRemoteError && peer >= 0) {
    // Where did it start? The peer knows, or does not answer because it is the one that died.
    CauseWire cause;
    std::string root;
    cause_->setAsking(peer);
    bool answered = health_->askCause(peer, diag, &cause, &root);
    cause_->setAsking(-1);
    if (!answered) {
      text += format(" [rank %d does not answer: its process died, exited, stopped, or is cut off]", peer);
      refineError(code, text, peer, text);
    } else if (!root.empty() && cause.origin >= 0) {
      if (cause.code == chorusInvalidUsage) code = chorusInvalidUsage;  // a mismatch upstream is still misuse
      text += format(" [first failure, at rank %d: %s]", cause.origin, root.c_str());
      refineError(code, text, cause.origin, root);
    } else {
      refineError(code, text, peer, text);
    }
  } else if (code == chorusTimeout) {
    HangReport rep = health_->report(Deadline::after(config_.diagSeconds()));
    for (const std::string& line : rep.lines) CHORUS_WARN(kLogColl, "hang report: %s", line.c_str());
    if (rep.mismatch) code = chorusInvalidUsage;  // the wait was the ranks' disagreement, misuse
    text += " [hang report: " + rep.summary + "]";
    refineError(code, text, rep.culprits.empty() ? rank_ : rep.culprits[0], text);
  }
  throw Error(code, text);
}

RankStatus Communicator::healthStatus() const {
  RankStatus s;
  s.rank = rank_;
  s.state = asyncError_.load() != chorusSuccess ? RankState::Broken : static_cast<RankState>(state_.load(std::memory_order_acquire));
  s.pointToPoint = lastPointToPoint_.load(std::memory_order_relaxed);
  s.coll = lastColl_.load(std::memory_order_relaxed);
  s.startedSeq = startedSeq_.load(std::memory_order_relaxed);
  s.finishedSeq = finishedSeq_.load(std::memory_order_relaxed);
  s.waitingOn = waitingOn_.load(std::memory_order_relaxed);
  s.call = publishedStamp_.load();
  if (s.state == RankState::Broken) s.causeOrigin = cause_->origin();
  return s;
}

PeerProbe Communicator::askStatus(int peer, Deadline deadline) const {
  PeerProbe p;
  p.reach = health_->status(peer, deadline, &p.status);
  return p;
}

bool Communicator::stillPast(int peer, const PeerProbe& p) {
  // A peer can finish a collective a little before this rank has what it sent (a dialed
  // connection not yet accepted, a message in flight): only a peer seen past this collective
  // for half a second while this rank still waits on it has really left it out.
  if (peerPast_.empty()) peerPast_.resize(static_cast<size_t>(nranks_));
  PeerPast& past = peerPast_[peer];
  if (!peerFinished(p, runStamp_)) {
    past.seq = 0;
    return false;
  }
  const Clock::time_point now = Clock::now();
  if (past.seq != runStamp_.seq) {
    past.seq = runStamp_.seq;
    past.since = now;
  }
  return now - past.since >= std::chrono::milliseconds(500);
}

void Communicator::probePeer(int peer, double seconds, const char* during) {
  // A stalled wait does not count a peer past this collective as a disagreement: the wait may
  // be on another peer first (a receive from this one not yet posted behind it), or on a send
  // completion that comes late (some providers report one only after the receiver has moved
  // on). Connection setup does (ctx_.peerGone).
  throwIfPeerWillNotCome(peer, askStatus(peer, Deadline::after(seconds)), runStamp_, during);
}

HangReport Communicator::diagnose() {
  HangReport rep = health_->report(Deadline::after(config_.diagSeconds()));
  CHORUS_WARN(kLogColl, "hang report (rank %d): %s", rank_, rep.summary.c_str());
  for (const std::string& line : rep.lines) CHORUS_WARN(kLogColl, "  %s", line.c_str());
  return rep;
}

std::unique_ptr<Communicator> Communicator::shrink(const std::vector<int>& excluded) {
  for (int r : excluded)
    CHORUS_CHECK_ARG(r >= 0 && r < nranks_, "chorusCommShrink: excluded rank %d is out of range [0, %d)", r, nranks_);
  CHORUS_CHECK_ARG(std::find(excluded.begin(), excluded.end(), rank_) == excluded.end(),
                   "chorusCommShrink: rank %d excludes itself (a rank that leaves does not call chorusCommShrink)", rank_);
  std::vector<int> leaveOut = excluded;
  std::string failures;
  // A round fails when a survivor dies between the decision and the new communicator's init:
  // the next round leaves it out.
  for (int attempt = 0; attempt < 3; ++attempt) {
    uint32_t epoch = ++shrinkEpoch_;
    ShrinkOutcome out = shrinkRound(*health_, epoch, leaveOut, config_.shrinkTimeoutSec);
    int newRank = static_cast<int>(std::find(out.survivors.begin(), out.survivors.end(), rank_) - out.survivors.begin());
    CHORUS_ASSERT(newRank < static_cast<int>(out.survivors.size()) && out.uniqueId.size() == sizeof(UniqueIdData));
    UniqueIdData id;
    memcpy(&id, out.uniqueId.data(), sizeof id);
    CHORUS_WARN(kLogInit, "chorusCommShrink round %u: rank %d becomes rank %d of %zu (survivors: %s)", epoch, rank_, newRank,
                out.survivors.size(), rankRanges(out.survivors).c_str());
    try {
      // The new rendezvous may lack a survivor that died after the decision: bounded by the round.
      return create(id, static_cast<int>(out.survivors.size()), newRank, config_,
                    std::min(config_.timeoutSec, config_.shrinkTimeoutSec + 5));
    } catch (const Error& e) {
      if (e.code() == chorusInvalidArgument || e.code() == chorusInvalidUsage) throw;
      failures += format("%sround %u: %s", failures.empty() ? "" : "; ", epoch, e.what());
      CHORUS_WARN(kLogInit, "chorusCommShrink round %u failed (%s); retrying without the ranks that are gone", epoch, e.what());
    }
  }
  CHORUS_THROW(chorusRemoteError, "chorusCommShrink: three rounds failed: %s", failures.c_str());
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  CHORUS_CHECK_ARG(color >= 0 || color == CHORUS_SPLIT_NOCOLOR, "color must be >= 0 or CHORUS_SPLIT_NOCOLOR (got %d)", color);
  std::lock_guard<std::mutex> guard(execMutex_);  // the bootstrap's messages stay in call order
  if (aborted_.load()) CHORUS_THROW(chorusInvalidUsage, "communicator was aborted");
  Deadline deadline = Deadline::after(config_.timeoutSec);
  struct Entry {
    int32_t color, key;
  };
  std::vector<Entry> all(nranks_);
  all[rank_] = {color, key};
  bootstrap_->allgather(all.data(), sizeof(Entry), deadline);
  ++splitCount_;
  if (color == CHORUS_SPLIT_NOCOLOR) return nullptr;
  std::vector<int> members;
  for (int r = 0; r < nranks_; ++r)
    if (all[r].color == color) members.push_back(r);
  std::stable_sort(members.begin(), members.end(), [&](int a, int b) { return all[a].key < all[b].key; });
  int newRank = static_cast<int>(std::find(members.begin(), members.end(), rank_) - members.begin());
  // The first member of the new order hosts the new communicator's rendezvous and sends its id.
  UniqueIdData id;
  if (newRank == 0) {
    id = createUniqueIdAndRoot(config_);
    for (size_t i = 1; i < members.size(); ++i) bootstrap_->send(members[i], kTagSplit, &id, sizeof id, deadline);
  } else {
    bootstrap_->recv(members[0], kTagSplit, &id, sizeof id, deadline);
  }
  CHORUS_INFO(kLogInit, "split #%u: color %d key %d -> rank %d of %zu", splitCount_, color, key, newRank, members.size());
  return create(id, static_cast<int>(members.size()), newRank, config_);
}

void Communicator::abort() noexcept {
  aborted_.store(true);
  if (asyncError_.load() == chorusSuccess) recordError(chorusInvalidUsage, format("rank %d called chorusCommAbort", rank_));
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

void Communicator::recordError(chorusResult_t code, const std::string& text) { recordError(code, text, rank_, text, true); }

void Communicator::recordError(chorusResult_t code, const std::string& text, int origin, const std::string& rootText, bool settled) {
  std::lock_guard<std::mutex> g(errorMutex_);
  chorusResult_t expected = chorusSuccess;
  if (asyncError_.compare_exchange_strong(expected, code) || lastError_.empty()) {
    lastError_ = text;
    cause_->record(origin, code, rootText, settled);
  }
  CHORUS_WARN(kLogColl, "%s", text.c_str());
}

void Communicator::refineError(chorusResult_t code, const std::string& text, int origin, const std::string& rootText) {
  std::lock_guard<std::mutex> g(errorMutex_);
  asyncError_.store(code);
  lastError_ = text;
  cause_->record(origin, code, rootText, true);
  CHORUS_WARN(kLogColl, "%s", text.c_str());
}

std::string Communicator::lastError() const {
  std::lock_guard<std::mutex> g(errorMutex_);
  return lastError_;
}

}  // namespace chorus

// The communicator: one rank's view of a group. Owns the bootstrap, the transports, the
// connections made so far (lazily: only to the peers an algorithm uses), the cache of
// schedules, and the error state. Collectives on one communicator are serialized.
#pragma once

#include <chorus/chorus.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/unique_id.h"
#include "core/coll_call.h"
#include "base/config.h"
#include "core/peer_probe.h"
#include "core/premul.h"
#include "core/published_stamp.h"
#include "core/run_ahead.h"
#include "core/transport_select.h"
#include "device/staging.h"
#include "exec/executor.h"
#include "exec/schedule.h"
#include "health/hang_report.h"
#include "health/health_wire.h"
#include "topology/cluster_topology.h"
#include "transports/transport.h"
#include "tune/tuner.h"

namespace chorus {

class HealthService;
class CauseBoard;

class Communicator {
 public:
  // Joins the communicator (collective over nranks). Throws chorus::Error.
  static std::unique_ptr<Communicator> create(const UniqueIdData& id, int nranks, int rank);
  // initTimeoutSec > 0 bounds the join instead of config.timeoutSec (a shrink's new communicator).
  static std::unique_ptr<Communicator> create(const UniqueIdData& id, int nranks, int rank, const Config& config,
                                              double initTimeoutSec = 0);
  ~Communicator();

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  const Config& config() const { return config_; }

  // Checks a call's arguments (chorusInvalidArgument), without communicating; sets inPlace.
  void validate(CollCall& call) const;
  // Runs calls to completion on the calling thread: one call, or the calls a group made on
  // this communicator, issued together (their messages to one peer in call order). Every call
  // passed validate() first (the C API checks each once, before running or queuing it).
  void run(std::span<CollCall> calls);
  // The host staging of a call with device buffers, its copies enqueued on deviceStream (null:
  // this communicator's own stream of the buffers' device); null for a call on host memory only.
  std::shared_ptr<StagedCall> stage(const CollCall& call, void* deviceStream);

  // Collective over this communicator: the ranks with the same color (>= 0) form a new one,
  // ranked by (key, rank). Returns null for CHORUS_SPLIT_NOCOLOR.
  std::unique_ptr<Communicator> split(int color, int key);

  PreMulSumOps& preMulSumOps() { return preMulOps_; }
  // The cluster as gathered at init (hosts, link classes, ring order; chorus-topo prints it).
  const ClusterTopology& cluster() const { return *topology_; }
  // The kind of the connection to peer ("shm", "tcp", "ucx", "plugin:ucx"...), or nullptr while
  // it is not connected (connections are made on first use).
  const char* connectionKind(int peer) const { return connectionPtrs_[peer] ? connectionPtrs_[peer]->kind() : nullptr; }
  // Transport connections open now: one per peer some schedule run so far has used.
  int connectedPeers() const { return connectedPeers_; }
  // What this rank's bootstrap has sent and received so far: the join, then out-of-band
  // messages (connection setup, split).
  BootstrapTraffic bootstrapTraffic() const { return bootstrap_->traffic(); }
  const Tuner& tuner() const { return *tuner_; }

  // Makes every pending and future call fail promptly and tells the peers (never throws).
  void abort() noexcept;

  // The cluster-wide hang report (src/health/hang_report.h), gathered now within
  // CHORUS_DIAG_TIMEOUT; also printed at WARN.
  HangReport diagnose();
  // chorusCommShrink: with the other survivors, agrees on the ranks that are gone (plus
  // `excluded`) and joins a communicator of the survivors (src/health/shrink.h).
  std::unique_ptr<Communicator> shrink(const std::vector<int>& excluded);

  // Error state: the first failure breaks the communicator (later calls fail at once).
  chorusResult_t asyncError() const { return asyncError_.load(); }
  void recordError(chorusResult_t code, const std::string& text);
  // The same, naming the rank where the failure started and its description (the "root cause"
  // that other ranks adopt when they ask this one).
  void recordError(chorusResult_t code, const std::string& text, int origin, const std::string& rootText, bool settled);
  // Replaces the record of the failure with what was learned since (run()'s error path).
  void refineError(chorusResult_t code, const std::string& text, int origin, const std::string& rootText);
  std::string lastError() const;

 private:
  Communicator(int rank, int nranks, const Config& config);
  void init(const UniqueIdData& id, double timeoutSec);
  // run()'s error path: names the call, asks a failed peer where the failure started (or, on a
  // timeout, gathers the hang report), records the cause, tells the peers; then throws.
  [[noreturn]] void failRun(const CallInfo& call, const Error& e);
  // What the health service reports about this rank.
  RankStatus healthStatus() const;
  // Asks peer's health service, from the thread running a call, and throws when waiting for it
  // is pointless (core/peer_probe.h); `during` names the wait in the error.
  void probePeer(int peer, double seconds, const char* during);
  PeerProbe askStatus(int peer, Deadline deadline) const;
  // Whether the probe shows peer past the current collective, as it already did half a second
  // ago (connection setup's test of a peer that went on without connecting to this rank).
  bool stillPast(int peer, const PeerProbe& probe);
  // Connects (once) to every peer in `peers`, choosing the transport per pair.
  void ensureConnected(const std::vector<int>& peers);
  // The pair's class and its transport (src/core/transport_select.h).
  PairClass pairClass(int peer) const;
  TransportId transportFor(int peer) const;
  // The first transport of class c's list that every rank has (false: ranks differ).
  bool commonTransport(PairClass c, TransportId* id) const;
  // The link class the cluster view declares for pairs of class c (same on every rank).
  LinkClass declaredClass(PairClass c) const;
  size_t fragmentBytes(TransportId id) const;
  // A built schedule, its executor plan (which refers to it: entries never move) and scratch.
  struct CachedSchedule {
    RankSchedule schedule;
    std::unique_ptr<ExecPlan> plan;
    std::vector<uint8_t> scratch;
    bool forced = false;  // algorithm chosen by CHORUS_ALGO rather than the model
    Algo algo = Algo::Direct;  // the family that built it (for the messages' call stamps)
  };
  // The schedule of one call: cached by shape for the fixed-size collectives (*fresh = true on
  // first use), built into `temp` for the V forms and point-to-point halves.
  CachedSchedule& scheduleFor(const CollCall& call, std::deque<CachedSchedule>& temps, bool* fresh);
  // Containers one run() needs, kept between runs so that a small call allocates nothing.
  struct RunState {
    std::deque<CachedSchedule> temps;  // schedules built for this run only (V forms, send/recv)
    std::vector<ExecBuffer> buffers;
    std::vector<CachedSchedule*> entries;
    std::vector<const RankSchedule*> parts;
    std::vector<std::vector<uint8_t>> scaled;        // PreMulSum inputs
    std::vector<std::vector<uint8_t>> extraScratch;  // a shape used twice in one group
    std::vector<CallStamp> stamps;                   // per call, carried by its messages
    std::vector<std::shared_ptr<StagedCall>> staged;  // the calls on device buffers
    StagingGate gate;                                 // over staged
  };
  RunState run_;
  // The tuner's link classes from the topology (overridden by CHORUS_TUNE_*).
  LinkModel linkModelOf(const LinkClass& c, size_t fragmentBytes) const;
  LinkModel localLinkModel() const;  // ranks on one host
  LinkModel linkModel() const;       // the flat algorithms' model: the slowest class in use
  TopoModel topoModel() const;

  // Forwards Oob calls to the bootstrap, which exists only after the TCP listener does. Errors
  // name the peer (so that run() asks it where a failure started), and a wait for a peer that
  // is gone - dead before it ever connected to this rank - ends at once instead of at the
  // deadline (peerGone is asked every 250 ms).
  struct OobForwarder : Oob {
    Bootstrap* target = nullptr;
    std::function<bool(int peer)> peerGone;
    void send(int peer, uint32_t tag, const void* d, size_t n, Deadline dl) override;
    void recv(int peer, uint32_t tag, void* d, size_t n, Deadline dl) override;
  };

  const int rank_;
  const int nranks_;
  const Config config_;
  std::vector<PeerCard> cards_;
  OobForwarder oob_;
  TransportContext ctx_;
  std::unique_ptr<Bootstrap> bootstrap_;
  TransportPolicy policy_;
  std::unique_ptr<Transport> transports_[static_cast<int>(TransportId::Count)];  // indexed by TransportId
  std::vector<std::unique_ptr<Connection>> connections_;  // indexed by peer
  std::vector<Connection*> connectionPtrs_;
  int connectedPeers_ = 0;  // non-null entries of connections_

  std::mutex execMutex_;  // one collective at a time
  // Collectives issued so far: every rank counts the same, so a collective's ordinal names it
  // across ranks (errors, call stamps). Sends and receives do not count.
  uint64_t collSeq_ = 0;
  // Key: collective, count, element size, in place, average, root.
  using ScheduleKey = std::tuple<int, size_t, size_t, bool, bool, int>;
  std::map<ScheduleKey, CachedSchedule> scheduleCache_;
  // The entry the last lookup found (null after the cache is cleared): a loop that repeats one
  // shape skips the map.
  ScheduleKey lastKey_{};
  CachedSchedule* lastEntry_ = nullptr;
  std::unique_ptr<Tuner> tuner_;
  // The plugin's streams for staging (stage()): copies in for calls not bound to a device
  // stream, copies out for all. Created on first use.
  std::mutex deviceMutex_;
  void* deviceIn_ = nullptr;
  void* deviceOut_ = nullptr;
  const chorusDevice_v1_t* devicePlugin_ = nullptr;
  // Some host has more ranks of this communicator than CPUs (from the cards, so every rank
  // agrees): the tuner then charges each dependent round a scheduler hand-off.
  bool oversubscribed_ = false;
  std::unique_ptr<ClusterFile> clusterFile_;  // CHORUS_CLUSTER_FILE, read before the bootstrap
  std::shared_ptr<const ClusterTopology> topology_;
  PreMulSumOps preMulOps_;
  uint32_t splitCount_ = 0;  // tags of successive splits

  // The health service (src/health): answers other ranks' questions while this rank is busy.
  std::unique_ptr<HealthService> health_;
  uint32_t shrinkEpoch_ = 0;
  // What this rank is doing, for the hang report (relaxed atomics written by run()).
  std::atomic<uint8_t> state_{0};  // RankState
  std::atomic<uint32_t> startedSeq_{0}, finishedSeq_{0};
  std::atomic<uint8_t> lastColl_{0}, lastPointToPoint_{0};
  std::atomic<int> waitingOn_{-1};
  PublishedStamp publishedStamp_;  // collective #startedSeq_'s stamp
  // The stamp of the collective run() is in (kind Unchecked outside one); run()'s thread only.
  CallStamp runStamp_;
  std::unique_ptr<RunAheadWatch> runAhead_;
  double probeSeconds_ = 1.0;  // config_.probeSeconds(), once
  std::function<void(int peer)> stallProbe_;  // ExecArgs::probe: probePeer
  // Per peer: since when it has been seen past the current collective (seq 0: it was not).
  struct PeerPast {
    uint32_t seq = 0;
    Clock::time_point since;
  };
  std::vector<PeerPast> peerPast_;
  RunAheadWatch::Prober statusProbe_;         // askStatus
  // Where the failure started, as the health service tells other ranks (src/health/cause_board.h).
  std::shared_ptr<CauseBoard> cause_;

  std::atomic<bool> aborted_{false};
  std::atomic<chorusResult_t> asyncError_{chorusSuccess};
  mutable std::mutex errorMutex_;
  std::string lastError_;
};

}  // namespace chorus

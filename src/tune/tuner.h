// The tuner: per call, which algorithm and pipelining slice to use. An alpha-beta cost model
// (latency alpha per message, seconds per byte beta, of the communicator's link class) is
// evaluated for every algorithm that serves the collective; the cheapest wins. A tune string
// (CHORUS_ALGO) overrides the model for the sizes it names. docs/TUNING.md documents the
// model, its constants and where each came from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "collectives/collective.h"

namespace chorus {

// A link class as the transports declare it (transports/transport.h), possibly overridden by
// CHORUS_TUNE_LATENCY_US / CHORUS_TUNE_BANDWIDTH_GBPS.
struct LinkModel {
  double latencyUs = 1.0;      // alpha: one message's fixed cost
  double bandwidthGBps = 5.0;  // 1 / beta: bytes per nanosecond
  // The transport's unit of transfer (a shm FIFO slot, a TCP stripe chunk): a message pays
  // alpha once per started fragment, so cutting a message into slices no smaller than this
  // costs no more than sending it whole.
  size_t fragmentBytes = 256 * 1024;
  // What each dependent round (a step that waits for a message before it can go on) costs on
  // top of its messages: 0, except where some host has more ranks than CPUs. There the rank a
  // step waits for is often not running, and the wait ends only when the scheduler runs it.
  double roundUs = 0;
};

// A dependent round's cost on an oversubscribed host: a yield hand-off between processes on
// this VM (an 8-byte all-reduce at np 4 on 2 cores, 2 rounds: 4.8-5.5 us).
constexpr double kOversubscribedRoundUs = 2.0;

// The link class a communicator's model uses: the slowest of the classes its peers are reached
// by (the largest latency, the smallest bandwidth: a collective waits for its slowest link),
// then the overrides (> 0) replace either number; the fragment is the smallest declared. No
// declared class (a single rank) leaves the LinkModel defaults. Throws chorusInvalidArgument
// for a declared value <= 0 or a negative override.
LinkModel effectiveLink(const std::vector<LinkModel>& declared, double latencyOverrideUs, double bandwidthOverrideGBps);

// What the topology-aware all-reduces' costs depend on (src/topology/cluster_topology.cpp
// fills it in from the cluster topology; identical on every rank). One host: hosts == 1 and
// only `intra` matters.
struct TopoModel {
  int hosts = 1;
  int maxRanksPerHost = 1;  // L: ranks sharing one host's uplink
  LinkModel intra;          // between ranks of one host
  LinkModel inter;          // the slowest link between hosts
  // The weighted all-reduce's link-bound time per byte (us), from its weights (weights.h).
  double weightedUsPerByte = 0;
};

struct TuneChoice {
  Algo algo = Algo::Ring;
  size_t sliceBytes = 256 * 1024;
  bool forced = false;     // chosen by the tune string, not the model
  double predictedUs = 0;  // the model's estimate (also for forced choices)
};

// One rule of a tune string: for `coll`, messages of [minBytes, maxBytes) use `algo`.
struct TuneRule {
  Coll coll = Coll::AllReduce;
  size_t minBytes = 0;
  size_t maxBytes = SIZE_MAX;
  Algo algo = Algo::Ring;
};

// Parses "allreduce:0-64K:tree,64K-inf:ring;allgather:bruck" (grammar in tune_string.cpp and
// docs/TUNING.md). Throws chorusInvalidArgument with the offending text for a syntax error, an
// unknown collective or algorithm, an empty or overlapping range, or an algorithm that cannot
// serve the collective (naming the ones that can).
std::vector<TuneRule> parseTuneString(const std::string& text);

// The cost model (cost_model.cpp): predicted microseconds of one call of `coll` over `bytes`
// (nccl-tests' S, see Tuner::choose) on `nranks` ranks with `algo` cutting its pipelined
// messages into slices of about `sliceBytes`; infinity if `algo` does not serve `coll`.
double predictCostUs(Algo algo, Coll coll, size_t bytes, int nranks, size_t sliceBytes, const LinkModel& link);
// The same on a cluster: on more than one host the flat algorithms run on `link` (the slowest
// class) with each rank's share of its host's uplink, and hierarchical and weighted use the
// levels of `topo` (formulas: cost_model.cpp, docs/TUNING.md).
double predictCostUs(Algo algo, Coll coll, size_t bytes, int nranks, size_t sliceBytes, const LinkModel& link, const TopoModel& topo);
// Whether `algo` cuts its messages into slices for `coll` (the slice then changes its cost).
bool algoPipelines(Algo algo, Coll coll);

class Tuner {
 public:
  // tuneString: CHORUS_ALGO ("" = the model everywhere). sliceBytes: CHORUS_SLICE_BYTES, the
  // largest slice the tuner hands out. Throws chorusInvalidArgument for a bad tune string.
  Tuner(const std::string& tuneString, LinkModel link, size_t sliceBytes, TopoModel topo = {});

  // bytes: the call's size as nccl-tests counts it (S: the larger of the send and receive
  // buffer of one rank). The first tune-string rule covering (coll, bytes) decides; otherwise
  // the model's cheapest algorithm among those that serve coll. Logs the choice under
  // CHORUS_DEBUG_SUBSYS=TUNING.
  TuneChoice choose(Coll coll, size_t bytes, int nranks) const;
  // The model's estimate for one algorithm (microseconds) with the slice choose() would give
  // it; infinity if it cannot serve.
  double predictUs(Algo algo, Coll coll, size_t bytes, int nranks) const;
  // The slice choose() gives `algo`: for the pipelined algorithms the model's best among the
  // configured slice and its halvings down to 4 KiB, else the configured slice.
  size_t sliceFor(Algo algo, Coll coll, size_t bytes, int nranks) const;

  const LinkModel& link() const { return link_; }
  const TopoModel& topo() const { return topo_; }
  const std::vector<TuneRule>& rules() const { return rules_; }

 private:
  std::vector<TuneRule> rules_;
  LinkModel link_;
  size_t sliceBytes_;
  TopoModel topo_;
};

}  // namespace chorus

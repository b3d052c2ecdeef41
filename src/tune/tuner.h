// The tuner: per call, which algorithm and pipelining slice to use. An alpha-beta cost model
// (latency alpha per message, seconds per byte beta, of the communicator's link class) is
// evaluated for every algorithm that serves the collective; the cheapest wins. A tune string
// (CHORUS_ALGO) overrides the model for the sizes it names. docs/TUNING.md documents the
// model, its constants and where each came from.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "collectives/collective.h"

namespace chorus {

// A link class as the transports declare it (transports/transport.h), possibly overridden by
// CHORUS_TUNE_LATENCY_US / CHORUS_TUNE_BANDWIDTH_GBPS.
struct LinkModel {
  double latencyUs = 1.0;      // alpha: one message's fixed cost
  double bandwidthGBps = 5.0;  // 1 / beta: bytes per nanosecond
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

// Parses "allreduce:0-64K:tree,64K-inf:ring;allgather:bruck". Throws chorusInvalidArgument with
// the offending text for a syntax error, an unknown collective or algorithm, or an algorithm
// that cannot serve the collective (naming the ones that can).
std::vector<TuneRule> parseTuneString(const std::string& text);

class Tuner {
 public:
  // tuneString: CHORUS_ALGO ("" = the model everywhere). sliceBytes: CHORUS_SLICE_BYTES.
  Tuner(const std::string& tuneString, LinkModel link, size_t sliceBytes);

  // bytes: the call's size as nccl-tests counts it (S: the larger of the send and receive
  // buffer of one rank). Logs the choice under CHORUS_DEBUG_SUBSYS=TUNING.
  TuneChoice choose(Coll coll, size_t bytes, int nranks) const;
  // The model's estimate for one algorithm (microseconds); infinity if it cannot serve.
  double predictUs(Algo algo, Coll coll, size_t bytes, int nranks) const;

  const LinkModel& link() const { return link_; }

 private:
  std::vector<TuneRule> rules_;
  LinkModel link_;
  size_t sliceBytes_;
};

}  // namespace chorus

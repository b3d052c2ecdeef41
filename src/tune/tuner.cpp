// The tuner: the tune string's rules first, then the cost model (cost_model.cpp).
//
// Ties: the model cannot tell apart predictions within kTieFraction of each other (its
// constants are single numbers for a link whose speed drifts by more than that), so among the
// algorithms within that band of the cheapest, the one that talks to the fewest distinct peers
// wins (each peer is a connection to set up and a FIFO or socket buffer to keep warm), then
// the earlier in Algo order. Without this, which of ring, hd and direct runs a large all-reduce
// would turn on rounding: the model gives them the same bytes and about the same fixed costs,
// and only direct connects every pair.
#include "tune/tuner.h"

#include <cmath>
#include <limits>

#include "base/error.h"
#include "base/log.h"

namespace chorus {
namespace {

constexpr double kTieFraction = 0.05;
// The smallest slice the tuner hands out: CHORUS_SLICE_BYTES's floor (base/config.cpp).
constexpr size_t kMinSlice = 4096;

// Distinct peers one rank of `algo` exchanges data with (the tie-break above).
double peersTouched(Algo algo, int p) {
  double lg = std::ceil(std::log2(std::max(1, p)));
  switch (algo) {
    case Algo::Ring: return std::min(2, p - 1);
    case Algo::Tree: return std::min(3, p - 1);
    case Algo::HalvingDoubling:
    case Algo::RecursiveDoubling: return lg + 1;  // a partner per round, and a fold partner
    case Algo::Bruck: return 2 * lg;              // a sender and a receiver per round
    case Algo::Hierarchical: return std::min(2, p - 1) + 2;  // ring neighbours in the host and across hosts
    case Algo::Pairwise:
    case Algo::Direct:
    case Algo::Weighted:
    case Algo::kCount: break;
  }
  return p - 1;
}

const char* kindName(const TuneChoice& c) { return c.forced ? "forced by CHORUS_ALGO" : "model"; }

}  // namespace

LinkModel effectiveLink(const std::vector<LinkModel>& declared, double latencyOverrideUs, double bandwidthOverrideGBps) {
  LinkModel link;
  for (size_t i = 0; i < declared.size(); ++i) {
    const LinkModel& d = declared[i];
    CHORUS_CHECK_ARG(d.latencyUs > 0 && d.bandwidthGBps > 0 && std::isfinite(d.latencyUs) && std::isfinite(d.bandwidthGBps),
                     "link class %zu declares latency %g us, bandwidth %g GB/s; both must be positive", i, d.latencyUs,
                     d.bandwidthGBps);
    link.latencyUs = i == 0 ? d.latencyUs : std::max(link.latencyUs, d.latencyUs);
    link.bandwidthGBps = i == 0 ? d.bandwidthGBps : std::min(link.bandwidthGBps, d.bandwidthGBps);
  }
  CHORUS_CHECK_ARG(latencyOverrideUs >= 0 && bandwidthOverrideGBps >= 0,
                   "CHORUS_TUNE_LATENCY_US (%g) and CHORUS_TUNE_BANDWIDTH_GBPS (%g) must be >= 0", latencyOverrideUs,
                   bandwidthOverrideGBps);
  if (latencyOverrideUs > 0) link.latencyUs = latencyOverrideUs;
  if (bandwidthOverrideGBps > 0) link.bandwidthGBps = bandwidthOverrideGBps;
  return link;
}

Tuner::Tuner(const std::string& tuneString, LinkModel link, size_t sliceBytes, TopoModel topo)
    : rules_(parseTuneString(tuneString)), link_(link), sliceBytes_(sliceBytes), topo_(topo) {
  if (topo_.hosts <= 1) topo_.intra = topo_.inter = link_;
  CHORUS_CHECK_ARG(link.latencyUs > 0 && link.bandwidthGBps > 0, "tuner link model needs latency > 0 and bandwidth > 0 (got %g us, %g GB/s)",
                   link.latencyUs, link.bandwidthGBps);
  CHORUS_CHECK_ARG(sliceBytes > 0, "tuner slice must be > 0 bytes");
}

size_t Tuner::sliceFor(Algo algo, Coll coll, size_t bytes, int nranks) const {
  if (!algoPipelines(algo, coll)) return sliceBytes_;
  // Halvings of the configured slice, rounded to 64 bytes, down to the floor; the cheapest
  // wins, the larger on a tie (fewer steps in the schedule; ties as in the file comment).
  size_t best = sliceBytes_;
  double bestUs = predictCostUs(algo, coll, bytes, nranks, best, link_, topo_);
  for (size_t s = sliceBytes_ / 2 / 64 * 64; s >= kMinSlice; s = s / 2 / 64 * 64) {
    if (s >= bytes) continue;  // a message smaller than the slice is one piece either way
    double us = predictCostUs(algo, coll, bytes, nranks, s, link_, topo_);
    if (us < bestUs * (1 - kTieFraction)) bestUs = us, best = s;
  }
  return best;
}

double Tuner::predictUs(Algo algo, Coll coll, size_t bytes, int nranks) const {
  return predictCostUs(algo, coll, bytes, nranks, sliceFor(algo, coll, bytes, nranks), link_, topo_);
}

TuneChoice Tuner::choose(Coll coll, size_t bytes, int nranks) const {
  CHORUS_ASSERT(coll < Coll::kCount);
  constexpr int kAlgos = static_cast<int>(Algo::kCount);
  double us[kAlgos];
  for (int i = 0; i < kAlgos; ++i) us[i] = predictUs(static_cast<Algo>(i), coll, bytes, nranks);

  TuneChoice choice;
  const TuneRule* rule = nullptr;
  for (const TuneRule& r : rules_)
    if (r.coll == coll && bytes >= r.minBytes && bytes < r.maxBytes) rule = &r;
  if (rule) {
    choice.algo = rule->algo;
    choice.forced = true;
  } else if (coll == Coll::AlltoAllV) {
    // Every rank must run the same algorithm, but each has its own S: a choice by size could
    // split them. Pairwise, the exchange for uneven blocks (pairwise.cpp), whatever the size.
    choice.algo = Algo::Pairwise;
  } else {
    double cheapest = std::numeric_limits<double>::infinity();
    for (double u : us) cheapest = std::min(cheapest, u);
    int best = -1;
    for (int i = 0; i < kAlgos; ++i) {
      if (!algoServes(static_cast<Algo>(i), coll) || us[i] > cheapest * (1 + kTieFraction)) continue;
      if (best < 0 || peersTouched(static_cast<Algo>(i), nranks) < peersTouched(static_cast<Algo>(best), nranks)) best = i;
    }
    CHORUS_ASSERT(best >= 0);  // direct serves every collective
    choice.algo = static_cast<Algo>(best);
  }
  choice.sliceBytes = sliceFor(choice.algo, coll, bytes, nranks);
  choice.predictedUs = us[static_cast<int>(choice.algo)];

  if (logEnabled(LogLevel::Info, kLogTuning)) {
    std::string others;
    for (int i = 0; i < kAlgos; ++i)
      if (algoServes(static_cast<Algo>(i), coll) && i != static_cast<int>(choice.algo))
        others += format("%s%s %.5g us", others.empty() ? "" : ", ", algoName(static_cast<Algo>(i)), us[i]);
    CHORUS_INFO(kLogTuning, "%s %zu B on %d ranks: %s (%s), slice %zu B, predicted %.5g us; others: %s", collName(coll), bytes, nranks,
                algoName(choice.algo), kindName(choice), choice.sliceBytes, choice.predictedUs, others.empty() ? "none" : others.c_str());
  }
  return choice;
}

}  // namespace chorus

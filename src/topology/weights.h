// The bandwidth-weighted all-reduce's split of the data (collectives/weighted.cpp): how much
// of the vector each host reduces and redistributes, so that hosts behind slow links carry less
// and every host's link is busy for about the same time. The model below is that of a direct
// reduce-scatter + all-gather among p ranks grouped on hosts; the weighted all-reduce reduces
// inside each host first, so the cluster topology calls it with one "rank" per host (L_h = 1,
// p = H: T_h = n [1 + (H - 2) W_h] / B_h).
#pragma once

#include <vector>

namespace chorus {

// The model: rank r owns a block of weight w_r of the n bytes; host h (L_h of the p ranks,
// uplink bandwidth B_h, total weight W_h = sum of its ranks' w) sends over its link, in the
// reduce-scatter, every off-host rank's block of each of its L_h ranks, L_h (1 - W_h) n, and
// the p - L_h off-host ranks' pieces of its own blocks, (p - L_h) W_h n; the all-gather moves
// the same amounts the other way. Its link is therefore busy for
//   T_h = n [L_h + (p - 2 L_h) W_h] / B_h        (each direction; links are full duplex)
// and the call takes max_h T_h. hostWeights minimizes that maximum subject to W_h >= 0 and
// sum W_h = 1 (a small linear program solved by bisection on T); each host's weight is then
// split evenly over its ranks. bandwidth[h] <= 0 means unknown: such a host is taken to be as
// fast as the fastest known one (all unknown: every rank gets 1/p).
struct HostWeights {
  std::vector<double> perRank;   // indexed by rank; sums to 1
  std::vector<double> perHost;   // W_h
  double usPerByte = 0;          // max_h T_h / n with B in GB/s: the link-bound time per byte (us)
};
HostWeights hostWeights(const std::vector<std::vector<int>>& hosts, const std::vector<double>& bandwidthGBps, int nranks);

}  // namespace chorus

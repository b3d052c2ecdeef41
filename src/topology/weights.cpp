// Solves the weighted all-reduce's split (model and formula: weights.h).
//
// For a trial time T (per byte), host h's constraint (L_h + c_h W_h) / B_h <= T with
// c_h = p - 2 L_h bounds W_h from above when c_h > 0 (the host's link gets busier the more it
// owns), from below when c_h < 0 (a host holding more than half the ranks gets busier the less
// it owns), and not at all when c_h = 0 (then L_h / B_h <= T must hold by itself). T is
// feasible when every host's bounds meet within [0, 1] and the lower bounds sum to <= 1 <= the
// upper bounds' sum; the smallest feasible T is found by bisection, and the weights are the
// lower bounds plus the remaining 1 - sum(lo) shared in proportion to each host's slack.
#include "topology/weights.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace chorus {
namespace {

struct Bounds {
  std::vector<double> lo, hi;
  bool feasible = false;
};

Bounds boundsAt(double T, const std::vector<double>& L, const std::vector<double>& c, const std::vector<double>& B) {
  Bounds b;
  size_t H = L.size();
  b.lo.assign(H, 0);
  b.hi.assign(H, 1);
  double sumLo = 0, sumHi = 0;
  for (size_t h = 0; h < H; ++h) {
    double budget = T * B[h] - L[h];  // what c_h W_h may add
    if (c[h] > 0) {
      b.hi[h] = std::min(1.0, budget / c[h]);
    } else if (c[h] < 0) {
      b.lo[h] = std::max(0.0, budget / c[h]);  // budget / c: c < 0, so W >= -budget / -c
    } else if (budget < 0) {
      return b;
    }
    if (b.lo[h] > b.hi[h] + 1e-12) return b;
    sumLo += b.lo[h];
    sumHi += b.hi[h];
  }
  b.feasible = sumLo <= 1 + 1e-12 && sumHi >= 1 - 1e-12;
  return b;
}

}  // namespace

HostWeights hostWeights(const std::vector<std::vector<int>>& hosts, const std::vector<double>& bandwidthGBps, int nranks) {
  CHORUS_ASSERT(hosts.size() == bandwidthGBps.size() && nranks >= 1);
  const size_t H = hosts.size();
  const double p = nranks;
  HostWeights w;
  w.perRank.assign(nranks, 1.0 / p);
  w.perHost.assign(H, 0);
  double fastest = 0;
  for (double b : bandwidthGBps) fastest = std::max(fastest, b);
  std::vector<double> L(H), c(H), B(H);
  for (size_t h = 0; h < H; ++h) {
    L[h] = static_cast<double>(hosts[h].size());
    c[h] = p - 2 * L[h];
    B[h] = (bandwidthGBps[h] > 0 ? bandwidthGBps[h] : fastest > 0 ? fastest : 1.0) * 1e3;  // bytes per us
    w.perHost[h] = L[h] / p;
  }
  auto timeOf = [&](const std::vector<double>& W) {
    double t = 0;
    for (size_t h = 0; h < H; ++h) t = std::max(t, (L[h] + c[h] * W[h]) / B[h]);
    return t;
  };
  if (H <= 1 || fastest <= 0) {
    w.usPerByte = H <= 1 ? 0 : timeOf(w.perHost);
    return w;
  }
  // Even weights are feasible at their own time: the bisection's upper end.
  double hi = timeOf(w.perHost), lo = 0;
  for (int it = 0; it < 200 && hi - lo > 1e-12 * hi; ++it) {
    double mid = (lo + hi) / 2;
    (boundsAt(mid, L, c, B).feasible ? hi : lo) = mid;
  }
  Bounds b = boundsAt(hi, L, c, B);
  CHORUS_ASSERT(b.feasible);
  double sumLo = 0, slack = 0;
  for (size_t h = 0; h < H; ++h) {
    sumLo += b.lo[h];
    slack += b.hi[h] - b.lo[h];
  }
  double total = 0;
  for (size_t h = 0; h < H; ++h) {
    double share = slack > 0 ? (b.hi[h] - b.lo[h]) / slack : 1.0 / H;
    w.perHost[h] = std::max(0.0, b.lo[h] + (1 - sumLo) * share);  // rounding may leave -1e-17
    total += w.perHost[h];
  }
  for (double& x : w.perHost) x /= total;
  for (size_t h = 0; h < H; ++h)
    for (int r : hosts[h]) w.perRank[r] = w.perHost[h] / L[h];
  w.usPerByte = timeOf(w.perHost);
  return w;
}

}  // namespace chorus

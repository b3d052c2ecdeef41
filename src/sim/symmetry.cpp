#include "sim/symmetry.h"

#include <algorithm>
#include <unordered_map>

#include "base/error.h"

namespace chorus::sim {

namespace {

int offset(int peer, int rank, int p) { return ((peer - rank) % p + p) % p; }

// A step's queue in what the simulator sees (the executor's order): sends to, or receives from,
// the peer at this distance; local steps in one queue of their own.
uint64_t queueKey(const Step& st, int rank, int p) {
  if (st.peer < 0) return 0;
  return (static_cast<uint64_t>(offset(st.peer, rank, p)) + 1) << 1 | (st.kind == StepKind::Send ? 1 : 0);
}

}  // namespace

bool sameUpToShift(const RankSchedule& a, const RankSchedule& b, std::string* why, bool relaxed) {
  const int p = a.nranks;
  auto fail = [&](const std::string& what) {
    if (why) *why = format("rank %d's schedule is not rank %d's moved by %d ranks: %s", b.rank, a.rank, b.rank - a.rank, what.c_str());
    return false;
  };
  if (b.nranks != p) return fail(format("%d ranks against %d", b.nranks, p));
  if (a.steps.size() != b.steps.size()) return fail(format("%zu steps against %zu", b.steps.size(), a.steps.size()));
  auto differ = [&](const Step& x, const Step& y) {
    const bool samePeer = (x.peer < 0 && y.peer < 0) || (x.peer >= 0 && y.peer >= 0 && offset(x.peer, a.rank, p) == offset(y.peer, b.rank, p));
    return x.kind != y.kind || x.divisor != y.divisor || x.src.count != y.src.count || x.dst.count != y.dst.count ||
           (!relaxed && x.depCount != y.depCount) || !samePeer;
  };
  auto describeDiff = [&](size_t i, const Step& x, const Step& y) {
    return format("step %zu is %s with peer %d of %zu/%zu elements, against %s with peer %d of %zu/%zu", i, stepKindName(y.kind),
                  y.peer, y.src.count, y.dst.count, stepKindName(x.kind), x.peer, x.src.count, x.dst.count);
  };
  // Most builders emit every rank's steps in the same order: compare step by step.
  bool inOrder = relaxed || a.deps == b.deps;
  for (size_t i = 0; inOrder && i < a.steps.size(); ++i)
    inOrder = !differ(a.steps[i], b.steps[i]) && (relaxed || a.steps[i].depBegin == b.steps[i].depBegin);
  if (inOrder) return true;
  // Others emit them in an order that depends on the rank (hierarchical follows one global
  // order of events): then b's step i stands for the step of a with the same place in the same
  // queue, and the two must match with their dependencies mapped the same way.
  std::unordered_map<uint64_t, std::vector<uint32_t>> queuesOfA;
  for (uint32_t i = 0; i < a.steps.size(); ++i) queuesOfA[queueKey(a.steps[i], a.rank, p)].push_back(i);
  std::unordered_map<uint64_t, uint32_t> taken;
  std::vector<uint32_t> toA(b.steps.size());
  for (uint32_t i = 0; i < b.steps.size(); ++i) {
    const uint64_t k = queueKey(b.steps[i], b.rank, p);
    auto it = queuesOfA.find(k);
    uint32_t& n = taken[k];
    if (it == queuesOfA.end() || n >= it->second.size()) return fail(format("step %u has no counterpart", i));
    toA[i] = it->second[n++];
    if (differ(a.steps[toA[i]], b.steps[i])) return fail(describeDiff(i, a.steps[toA[i]], b.steps[i]));
  }
  if (relaxed) return true;
  std::vector<uint32_t> mine, theirs;
  for (uint32_t i = 0; i < b.steps.size(); ++i) {
    const Step& y = b.steps[i];
    const Step& x = a.steps[toA[i]];
    mine.assign(b.deps.begin() + y.depBegin, b.deps.begin() + y.depBegin + y.depCount);
    for (uint32_t& d : mine) d = toA[d];
    theirs.assign(a.deps.begin() + x.depBegin, a.deps.begin() + x.depBegin + x.depCount);
    std::sort(mine.begin(), mine.end());
    std::sort(theirs.begin(), theirs.end());
    if (mine != theirs) return fail(format("step %u's dependencies differ", i));
  }
  return true;
}

namespace {

// Keeps a running count of the steps held, and refuses past the budget: as soon as one rank's
// schedule shows that the ranks to keep would exceed it (expect), or once they do (add).
class StepBudget {
 public:
  StepBudget(size_t max, int ranks, const std::string& notFolded) : max_(max), ranks_(ranks), notFolded_(notFolded) {}
  void expect(const RankSchedule& one, int keep) {
    const size_t estimate = one.steps.size() * static_cast<size_t>(keep);
    if (estimate > max_) refuse(format("%d ranks' schedules would hold about %zu steps (rank %d has %zu)", keep, estimate, one.rank,
                                       one.steps.size()));
  }
  void add(const RankSchedule& s, int built) {
    held_ += s.steps.size();
    if (held_ > max_) refuse(format("the schedules of %d of %d ranks already hold %zu steps", built, ranks_, held_));
  }

 private:
  void refuse(const std::string& what) const {
    CHORUS_THROW(chorusInvalidArgument,
                 "%s, more than the simulator keeps (%zu): use a larger slice (--slice: fewer, bigger steps; docs/SIMULATOR.md "
                 "states its effect on the prediction) or --max-steps%s%s",
                 what.c_str(), max_, notFolded_.empty() ? "" : "; not folded: ", notFolded_.c_str());
  }

  size_t max_, held_ = 0;
  int ranks_;
  const std::string& notFolded_;
};

// The ranks past the first period that FoldCheck::Sampled builds: the second period, the last
// one, and 64 spread over the rest.
std::vector<int> sampleRanks(int p, int period) {
  std::vector<int> r;
  for (int i = period; i < std::min(p, 2 * period); ++i) r.push_back(i);
  for (int i = std::max(2 * period, p - period); i < p; ++i) r.push_back(i);
  const int middle = p - 3 * period;
  if (middle > 0) {
    uint64_t x = 0x9e3779b97f4a7c15ull;  // a fixed sequence, so two runs check the same ranks
    for (int k = 0; k < 64; ++k) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      r.push_back(2 * period + static_cast<int>(x % static_cast<uint64_t>(middle)));
    }
  }
  std::sort(r.begin(), r.end());
  r.erase(std::unique(r.begin(), r.end()), r.end());
  return r;
}

}  // namespace

FoldedSchedules buildForSimulation(const Fabric& fabric, const std::function<RankSchedule(int rank)>& build, bool fold,
                                   FoldCheck check, size_t maxSteps) {
  const int p = fabric.ranks();
  FoldedSchedules out;
  out.period = fold ? fabric.period() : p;
  if (!fold) out.why = "folding is off";
  else if (out.period == p && p > 1) out.why = "the fabric does not repeat (" + fabric.describe() + ")";
  StepBudget budget(maxSteps, p, out.why);
  for (int r = 0; r < out.period; ++r) {
    out.schedules.push_back(build(r));
    if (r == 0) budget.expect(out.schedules.back(), out.period);
    budget.add(out.schedules.back(), r + 1);
  }
  if (out.period == p) return out;
  std::vector<int> others;
  if (check != FoldCheck::Every) {
    others = sampleRanks(p, out.period);
  } else {
    for (int r = out.period; r < p; ++r) others.push_back(r);
  }
  for (int r : others) {
    const RankSchedule s = build(r);
    ++out.checked;
    if (sameUpToShift(out.schedules[r % out.period], s, &out.why, check == FoldCheck::Relaxed)) continue;
    if (check != FoldCheck::Relaxed && sameUpToShift(out.schedules[r % out.period], s, nullptr, true))
      out.why += " (only dependencies differ: --fold relaxed folds anyway, an approximation)";
    // Not alike: build and simulate every rank.
    budget.expect(s, p);
    for (int q = out.period; q < p; ++q) {
      out.schedules.push_back(q == r ? s : build(q));
      budget.add(out.schedules.back(), q + 1);
    }
    out.period = p;
    return out;
  }
  return out;
}

}  // namespace chorus::sim

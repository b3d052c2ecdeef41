#include "trial_plan.h"

#include <algorithm>
#include <cstdio>

#include "rng.h"
#include "typed_values.h"

namespace chorus::campaign {
namespace {

const std::vector<int> kRankCounts = {2, 3, 4, 5, 8};
const std::vector<Collective> kCollectives = {Collective::AllReduce, Collective::Broadcast,     Collective::Reduce,
                                              Collective::AllGather, Collective::ReduceScatter, Collective::AlltoAll};
const std::vector<chorusDataType_t> kTypes = {chorusInt8,    chorusUint8,    chorusInt32,      chorusUint32,
                                              chorusInt64,   chorusUint64,   chorusFloat16,    chorusFloat32,
                                              chorusFloat64, chorusBfloat16, chorusFloat8e4m3, chorusFloat8e5m2};
const std::vector<chorusRedOp_t> kOps = {chorusSum, chorusProd, chorusMax, chorusMin, chorusAvg};

// docs/TUNING.md's table (collectives/collective.cpp's algoServes) for the six collectives.
std::vector<std::string> algorithmsFor(Collective c) {
  switch (c) {
    case Collective::AllReduce:
      return {"ring", "tree", "hd", "rd", "direct", "hierarchical", "weighted"};
    case Collective::Broadcast:
    case Collective::Reduce:
      return {"ring", "tree", "direct"};
    case Collective::AllGather:
      return {"ring", "rd", "bruck", "direct"};
    case Collective::ReduceScatter:
      return {"ring", "hd", "direct"};
    case Collective::AlltoAll:
      return {"bruck", "pairwise", "direct"};
  }
  return {};
}

bool isPrime(size_t n) {
  if (n < 2) return false;
  for (size_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

size_t primeAtMost(size_t n) {
  while (n > 2 && !isPrime(n)) --n;
  return std::max<size_t>(n, 2);
}

// 0, 1, or a prime (uneven blocks everywhere) from tens of bytes up to a few MiB per buffer:
// the largest of the rank's two buffers is at most 3 MiB.
size_t drawCount(Rng& rng, Collective c, chorusDataType_t t, int p) {
  const size_t blocks = c == Collective::AllGather || c == Collective::ReduceScatter || c == Collective::AlltoAll ? p : 1;
  // (At most 1 Mi elements: every element is checked on every rank, on a machine shared by up to 8.)
  const size_t maxCount = std::min((size_t{3} << 20) / typeSize(t), size_t{1} << 20) / blocks;
  const double u = rng.unit();
  if (u < 0.05) return 0;
  if (u < 0.15) return 1;
  if (u < 0.35) return primeAtMost(rng.range(2, 97));
  if (u < 0.67) return primeAtMost(rng.range(100, std::min<size_t>(20000, maxCount)));
  return primeAtMost(rng.range(std::min<size_t>(20000, maxCount), maxCount));
}

chorusDataType_t otherType(Rng& rng, chorusDataType_t t) {
  std::vector<chorusDataType_t> same, any;
  for (chorusDataType_t u : kTypes) {
    if (u == t) continue;
    any.push_back(u);
    if (typeSize(u) == typeSize(t)) same.push_back(u);
  }
  // Half the time the same bytes read as another type: the case nothing but a check can see.
  return !same.empty() && rng.chance(0.5) ? rng.pick(same) : rng.pick(any);
}

void drawSkew(Rng& rng, TrialPlan* plan) {
  const CallArgs base = plan->argsFor(static_cast<uint64_t>(plan->faultCall));
  std::vector<Skew> kinds = {Skew::Dtype, Skew::Count};
  if (reduces(plan->coll)) kinds.push_back(Skew::Op);
  if (rooted(plan->coll)) kinds.push_back(Skew::Root);
  // Another dtype, op or root on a zero-count call moves no data on any rank: nothing to
  // detect and nothing to get wrong. There the culprit changes the count.
  if (base.count == 0) kinds = {Skew::Count};
  plan->skew = rng.pick(kinds);
  plan->skewed = base;
  switch (plan->skew) {
    case Skew::Dtype:
      plan->skewed.dtype = otherType(rng, base.dtype);
      break;
    case Skew::Op: {
      std::vector<chorusRedOp_t> others;
      for (chorusRedOp_t o : kOps)
        if (o != base.op) others.push_back(o);
      plan->skewed.op = rng.pick(others);
      break;
    }
    case Skew::Count: {
      const size_t n = base.count;
      std::vector<size_t> options = {n + 1, n + 7, 2 * n + 1};
      if (n > 0) options.push_back(n - 1);
      plan->skewed.count = rng.pick(options);
      break;
    }
    case Skew::Root:
      plan->skewed.root = (base.root + static_cast<int>(rng.range(1, plan->nranks - 1))) % plan->nranks;
      break;
    case Skew::None:
      break;
  }
}

std::string describeArgs(Collective c, const CallArgs& a) {
  std::string s = std::to_string(a.count) + " x " + typeName(a.dtype);
  if (reduces(c)) s += std::string(" ") + opName(a.op);
  if (rooted(c)) s += ", root " + std::to_string(a.root);
  return s;
}

}  // namespace

const char* collectiveApiName(Collective c) {
  switch (c) {
    case Collective::AllReduce:
      return "chorusAllReduce";
    case Collective::Broadcast:
      return "chorusBroadcast";
    case Collective::Reduce:
      return "chorusReduce";
    case Collective::AllGather:
      return "chorusAllGather";
    case Collective::ReduceScatter:
      return "chorusReduceScatter";
    case Collective::AlltoAll:
      return "chorusAlltoAll";
  }
  return "?";
}

const char* collectiveTuneName(Collective c) {
  switch (c) {
    case Collective::AllReduce:
      return "allreduce";
    case Collective::Broadcast:
      return "broadcast";
    case Collective::Reduce:
      return "reduce";
    case Collective::AllGather:
      return "allgather";
    case Collective::ReduceScatter:
      return "reducescatter";
    case Collective::AlltoAll:
      return "alltoall";
  }
  return "?";
}

const char* faultName(FaultKind f) {
  switch (f) {
    case FaultKind::Kill:
      return "kill";
    case FaultKind::Stop:
      return "stop";
    case FaultKind::Mismatch:
      return "mismatch";
  }
  return "?";
}

const char* skewName(Skew s) {
  switch (s) {
    case Skew::Dtype:
      return "dtype";
    case Skew::Op:
      return "op";
    case Skew::Count:
      return "count";
    case Skew::Root:
      return "root";
    case Skew::None:
      break;
  }
  return "none";
}

bool reduces(Collective c) {
  return c == Collective::AllReduce || c == Collective::Reduce || c == Collective::ReduceScatter;
}
bool rooted(Collective c) {
  return c == Collective::Broadcast || c == Collective::Reduce;
}

size_t TrialPlan::sendElems(Collective c, const CallArgs& a, int nranks) {
  return c == Collective::ReduceScatter || c == Collective::AlltoAll ? a.count * nranks : a.count;
}

size_t TrialPlan::recvElems(Collective c, const CallArgs& a, int nranks) {
  return c == Collective::AllGather || c == Collective::AlltoAll ? a.count * nranks : a.count;
}

CallArgs TrialPlan::argsFor(uint64_t call) const {
  CallArgs a = args;
  if (a.count == 0 && call % 2 == 1) a.count = 1;
  return a;
}

std::string TrialPlan::tuneString() const {
  return algo.empty() ? "" : std::string(collectiveTuneName(coll)) + ":" + algo;
}

std::string TrialPlan::describe() const {
  char seedText[32];
  snprintf(seedText, sizeof seedText, "%016llx", static_cast<unsigned long long>(seed));
  std::string s = std::string("seed ") + seedText + ": np " + std::to_string(nranks) + " " + transport.label + " " +
                  collectiveApiName(coll) + " " + (algo.empty() ? "(default algo)" : algo) + " " + describeArgs(coll, args) +
                  (args.count == 0 ? " (odd calls: 1)" : "") + " | ";
  const std::string callNo = "#" + std::to_string(faultCall + 1);  // Chorus numbers calls from 1
  if (fault == FaultKind::Mismatch) {
    s += "mismatch: rank " + std::to_string(victim) + " calls " + callNo + " with another " + skewName(skew) + " (" +
         describeArgs(coll, skewed) + ")";
  } else {
    s += std::string(faultName(fault)) + " rank " + std::to_string(victim);
    if (moment == Moment::AfterCalls) {
      s += " before " + callNo;
    } else {
      char frac[32];
      snprintf(frac, sizeof frac, "%.2f", delayFraction);
      s += " during " + callNo + " (+" + frac + " of a call)";
    }
  }
  return s;
}

std::string variantSpec(const TransportVariant& v) {
  std::string s = v.label;
  std::replace(s.begin(), s.end(), '/', ':');
  return s;
}

TrialPlan drawTrial(uint64_t seed, const PlanChoices& choices, int transportEntry) {
  Rng rng(seed);
  TrialPlan plan;
  plan.seed = seed;
  plan.timeoutSec = choices.timeoutSec;
  std::vector<int> sizes;
  for (int p : kRankCounts)
    if (p <= choices.maxRanks) sizes.push_back(p);
  plan.nranks = rng.pick(sizes);
  const TransportChoice& drawn = rng.pick(choices.transports);
  const TransportChoice& entry = transportEntry >= 0 ? choices.transports[transportEntry % choices.transports.size()] : drawn;
  plan.transport = rng.pick(entry.variants);
  plan.coll = rng.pick(kCollectives);
  if (rng.chance(0.6)) plan.algo = rng.pick(algorithmsFor(plan.coll));
  plan.args.dtype = rng.pick(kTypes);
  plan.args.op = reduces(plan.coll) ? rng.pick(kOps) : chorusSum;
  plan.args.count = drawCount(rng, plan.coll, plan.args.dtype, plan.nranks);
  plan.args.root = rooted(plan.coll) ? static_cast<int>(rng.range(0, plan.nranks - 1)) : 0;
  plan.fault = rng.pick(choices.faults);
  plan.victim = static_cast<int>(rng.range(0, plan.nranks - 1));
  if (plan.fault == FaultKind::Mismatch) {
    plan.faultCall = static_cast<int>(rng.range(0, 4));
    drawSkew(rng, &plan);
  } else {
    plan.moment = rng.chance(0.5) ? Moment::AfterCalls : Moment::MidCall;
    plan.faultCall = static_cast<int>(plan.moment == Moment::AfterCalls ? rng.range(0, 4) : rng.range(1, 4));
    plan.delayFraction = rng.unit() * 1.5;
  }
  return plan;
}

}  // namespace chorus::campaign

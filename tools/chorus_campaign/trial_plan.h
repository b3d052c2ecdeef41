// One trial's parameters, drawn from its seed: ranks, transport, collective, algorithm, size,
// type and op, the victim, the moment and the fault. A plan is a pure function of the seed and
// the campaign's choices (transports, faults, largest rank count), so `--replay SEED` with the
// same choices runs the same trial again; only the timing of a mid-call signal varies.
#pragma once

#include <chorus/chorus.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "transports.h"

namespace chorus::campaign {

enum class Collective { AllReduce, Broadcast, Reduce, AllGather, ReduceScatter, AlltoAll };
enum class FaultKind { Kill, Stop, Mismatch };
// Kill and stop: the victim signals itself right before call k (AfterCalls), or the parent
// signals it a random fraction of its mean call time after it entered call k (MidCall).
enum class Moment { AfterCalls, MidCall };
// What the mismatch culprit changes at call k.
enum class Skew { None, Dtype, Op, Count, Root };

const char* collectiveApiName(Collective c);   // "chorusAllReduce"
const char* collectiveTuneName(Collective c);  // "allreduce" (the tune string's name)
const char* faultName(FaultKind f);            // "kill", "stop", "mismatch"
const char* skewName(Skew s);
bool reduces(Collective c);
bool rooted(Collective c);

// The choices a campaign draws from (its flags).
struct PlanChoices {
  std::vector<TransportChoice> transports;
  std::vector<FaultKind> faults;
  int maxRanks = 8;
  double timeoutSec = 10;
};

// One call's arguments, as one rank makes it.
struct CallArgs {
  size_t count = 0;
  chorusDataType_t dtype = chorusFloat32;
  chorusRedOp_t op = chorusSum;
  int root = 0;
};

struct TrialPlan {
  uint64_t seed = 0;
  int nranks = 2;
  TransportVariant transport;
  Collective coll = Collective::AllReduce;
  std::string algo;  // "" = the tuner's choice, else forced with CHORUS_ALGO
  // The collective's arguments. With count 0 the ranks alternate zero-count calls (even calls)
  // with one-element calls (odd ones): a zero-count call moves nothing, so a loop of them alone
  // could never see a failure; the mix checks that zero-count calls keep the ranks in step.
  CallArgs args;
  int victim = 0;  // the rank killed or stopped, or the mismatch culprit
  FaultKind fault = FaultKind::Kill;
  Moment moment = Moment::AfterCalls;
  int faultCall = 0;         // k (0-based): the fault comes before / during call k
  double delayFraction = 0;  // MidCall: of the victim's mean call time
  Skew skew = Skew::None;
  CallArgs skewed;  // the culprit's call k (Mismatch): argsFor(k) with one field changed
  double timeoutSec = 10;

  CallArgs argsFor(uint64_t call) const;  // args, or count 1 on odd calls when args.count == 0
  std::string tuneString() const;         // CHORUS_ALGO's value, "" for the default
  std::string describe() const;           // one line: every parameter
  // Elements of one rank's send and receive buffers for args (the layouts of chorus.h).
  static size_t sendElems(Collective c, const CallArgs& a, int nranks);
  static size_t recvElems(Collective c, const CallArgs& a, int nranks);
};

// transportEntry >= 0 takes that entry of choices.transports instead of drawing one (--cycle-
// transports); the draw is made anyway, so every other parameter is the same as with a list of
// that one entry (how a failing trial's replay line pins its transport).
TrialPlan drawTrial(uint64_t seed, const PlanChoices& choices, int transportEntry = -1);

// The --transports spelling of a variant: "ofi:shm" for "ofi/shm".
std::string variantSpec(const TransportVariant& v);

}  // namespace chorus::campaign

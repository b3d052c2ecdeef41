// PLACEHOLDER while the tuner is being written (replaced in this same change): ring for
// all-reduce, direct for everything else, tune strings unparsed.
#include "tune/tuner.h"

#include <limits>

#include "core/error.h"

namespace chorus {

std::vector<TuneRule> parseTuneString(const std::string& text) {
  std::vector<TuneRule> rules;
  if (!text.empty()) CHORUS_THROW(chorusInvalidArgument, "CHORUS_ALGO is not parsed yet");
  return rules;
}

Tuner::Tuner(const std::string& tuneString, LinkModel link, size_t sliceBytes)
    : rules_(parseTuneString(tuneString)), link_(link), sliceBytes_(sliceBytes) {}

TuneChoice Tuner::choose(Coll coll, size_t bytes, int nranks) const {
  TuneChoice c;
  c.algo = coll == Coll::AllReduce ? Algo::Ring : Algo::Direct;
  c.sliceBytes = sliceBytes_;
  return c;
}

double Tuner::predictUs(Algo, Coll, size_t, int) const { return std::numeric_limits<double>::infinity(); }

}  // namespace chorus

// Tune strings (CHORUS_ALGO, src/tune/tune_string.cpp). Checks: a parsed string gives rules with
// non-empty ranges whose algorithm serves their collective, no two rules of a collective
// overlap, and anything else is chorusInvalidArgument.
//
// Input: the string.
#include "collectives/collective.h"
#include "base/error.h"
#include "fuzz_util.h"
#include "tune/tuner.h"

using namespace chorus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<TuneRule> rules;
  try {
    rules = parseTuneString(text);
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == chorusInvalidArgument);
    return 0;
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    const TuneRule& r = rules[i];
    FUZZ_CHECK(r.minBytes < r.maxBytes);
    FUZZ_CHECK(algoServes(r.algo, r.coll));
    for (size_t j = 0; j < i; ++j)
      if (rules[j].coll == r.coll) FUZZ_CHECK(rules[j].maxBytes <= r.minBytes || r.maxBytes <= rules[j].minBytes);
  }
  return 0;
}

// The perf tools' command line (parseArgs in perf/perf_common.cpp, nccl-tests' flags): never
// exits or prints, gives either options that make a sweep of sizes, help, or an error text.
// Checks: accepted options are in range (sizes ordered as the sweep needs them, counts >= 0),
// the sweep they describe (sizeLadder) is ascending and within -b..-e, errors name something.
//
// Input: the arguments, separated by NUL bytes (argv[0] is added).
#include <vector>

#include "fuzz_util.h"
#include "perf_common.h"

using namespace chorus::perf;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args{"all_reduce_perf"};
  std::string cur;
  for (size_t i = 0; i < size && args.size() < 64; ++i) {
    if (data[i] == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += static_cast<char>(data[i]);
    }
  }
  if (!cur.empty() && args.size() < 64) args.push_back(cur);
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  ParseOutcome out = parseArgs(static_cast<int>(args.size()), argv.data());
  if (!out.ok) {
    FUZZ_CHECK(!out.error.empty());
    return 0;
  }
  if (out.help) return 0;
  const Options& o = out.opts;
  FUZZ_CHECK(o.iters >= 1 && o.warmup >= 0 && o.aggIters >= 1 && o.check >= 0);
  FUZZ_CHECK(o.average >= 0 && o.average <= 3 && (o.blocking == 0 || o.blocking == 1));
  FUZZ_CHECK(o.root >= -1 && o.np >= 0 && !o.types.empty() && !o.ops.empty());
  FUZZ_CHECK(o.stepFactor == 0 || o.stepFactor >= 2);
  std::vector<size_t> ladder = sizeLadder(o);
  for (size_t i = 0; i < ladder.size(); ++i) {
    FUZZ_CHECK(ladder[i] >= o.minBytes && ladder[i] <= o.maxBytes);
    if (i) FUZZ_CHECK(ladder[i] > ladder[i - 1]);
  }
  usage(args[0].c_str(), PerfColl::AllReduce);
  return 0;
}

// The perf tools' shared driver (coll_perf.cpp): one sweep for every collective, told which by
// a PerfColl. Each tool's main (perf_main.cpp, built once per tool) only calls collPerfMain.
#pragma once

#include "perf_common.h"

namespace chorus::perf {

/** Runs the tool for `coll` with nccl-tests' command line; returns the process exit code. */
int collPerfMain(PerfColl coll, int argc, char** argv);

}  // namespace chorus::perf

// main() of every perf tool: perf/CMakeLists.txt compiles this file once per tool, with
// CHORUS_PERF_COLL naming the tool's PerfColl (AllReduce, AllGather, ...).
#include "coll_perf.h"

#ifndef CHORUS_PERF_COLL
#error "CHORUS_PERF_COLL must name a chorus::perf::PerfColl"
#endif

int main(int argc, char** argv) { return chorus::perf::collPerfMain(chorus::perf::PerfColl::CHORUS_PERF_COLL, argc, argv); }

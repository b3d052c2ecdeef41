#!/usr/bin/env bash
# The sanitizer stage of tools/test.sh (docs/RELIABILITY.md, "Sanitizers"): builds test suites
# with ASan+UBSan (`address`, the default) or TSan (`thread`) and runs them so that any report
# fails the test.
#
#   tools/sanitizers/run.sh [address|thread] [extra ctest arguments]
#
#   SAN_SUITES     suites to build and run, by ctest label (default "unit multiprocess"; also
#                  "fault", "transport"): target chorus_<label>_tests, tests labelled <label>
#   SAN_BUILD_DIR  build directory (default ${BUILD_DIR:-build-test}-asan or -tsan)
#   SAN_OPT        optimization and debug flags (default "-O1 -g1": a third of -O2's compile
#                  time, line numbers in reports)
#   TEST_JOBS, JOBS  ctest and build parallelism (default 2)
#   CHORUS_TEST_SWEEP  default "short" here: the schedule-verifier sweeps check fewer rank
#                  counts (tests/fixtures/sweep.h); "full" runs them all
#   ASAN_OPTIONS, LSAN_OPTIONS, UBSAN_OPTIONS, TSAN_OPTIONS  appended to the options below
#                  (a later option wins), e.g. ASAN_OPTIONS=detect_leaks=0
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SUPP=$ROOT/tools/sanitizers
kind=${1:-address}
[ $# -gt 0 ] && shift
case "$kind" in
  address) tag=asan ;;
  thread) tag=tsan ;;
  *) echo "usage: $0 [address|thread] [ctest arguments]" >&2; exit 2 ;;
esac
SAN_BUILD_DIR=${SAN_BUILD_DIR:-${BUILD_DIR:-$ROOT/build-test}-$tag}
read -r -a suites <<< "${SAN_SUITES:-unit multiprocess}"
targets=()
for s in "${suites[@]}"; do targets+=("chorus_${s}_tests"); done
labels="^($(IFS='|'; echo "${suites[*]}"))\$"

# Only what the suites need: no perf tools, no PyTorch backend (skipped in sanitizer builds
# anyway). The network plugin modules come with the suites (tests/CMakeLists.txt). The suites
# compile a few files per translation unit (CHORUS_UNITY_TESTS): GoogleTest's headers, parsed
# once per file, were half of this stage's build time.
cmake -S "$ROOT" -B "$SAN_BUILD_DIR" -G Ninja -DCHORUS_SANITIZE="$kind" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="${SAN_OPT:--O1 -g1}" -DCMAKE_C_FLAGS_DEBUG="${SAN_OPT:--O1 -g1}" \
  -DCHORUS_BUILD_PERF=OFF -DCHORUS_WITH_TORCH=OFF -DCHORUS_UNITY_TESTS=ON >/dev/null
cmake --build "$SAN_BUILD_DIR" -j "${JOBS:-2}" --target "${targets[@]}"

# Every report fails its test. halt_on_error + abort_on_error matter for the ranks the tests
# fork: they leave by _exit(), so a sanitizer that only reported and went on (UBSan's and
# TSan's default) or changed the exit status at exit would pass unnoticed. LeakSanitizer runs
# at the exit of each test process and, in forked ranks, from tests/fixtures/ranks.cpp.
# CMakePresets.json's asan and tsan test presets carry the same options: keep them in step.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:report_error_type=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
export CHORUS_TEST_SWEEP=${CHORUS_TEST_SWEEP:-short}
if [ "$kind" = thread ]; then
  # UCX's memory hooks (libucm) intercept madvise, which glibc calls on a thread's stack as the
  # thread exits, after TSan has torn down its state for that thread: every process that had
  # initialized UCX died with SIGSEGV in ucm_event_enter at its first thread exit. With memory
  # events off UCX installs no hooks (and works without its registration cache, which only
  # saves re-registering buffers).
  export UCX_MEM_EVENTS=${UCX_MEM_EVENTS:-no}
fi

cd "$SAN_BUILD_DIR"
echo "sanitizer stage ($kind): ctest -L '$labels' in $SAN_BUILD_DIR"
ctest --output-on-failure -j "${TEST_JOBS:-2}" --timeout 600 -L "$labels" "$@"

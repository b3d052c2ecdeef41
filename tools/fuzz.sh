#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) in their own build
# directory and runs each one for FUZZ_SECONDS seconds on its corpus (docs/RELIABILITY.md,
# "Fuzzing").
#
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_TARGETS    which targets, e.g. "tune_string perf_args" (default: all of them)
#   FUZZ_BUILD_DIR  the clang build (default build-fuzz)
#   FUZZ_MERGE      1 (default): inputs that add coverage are merged into
#                   tests/fuzz/corpus/<name>/, and a crashing input is copied there as
#                   crash-<sha1> (a regression input: the corpus replay in ctest fails until the
#                   bug is fixed). 0: the source tree is left alone (CI).
#   FUZZ_MINIMIZE   1: before fuzzing, shrink each corpus to the inputs that add coverage to the
#                   hand-made seeds (seed-*) and regression inputs (crash-*, timeout-*, oom-*,
#                   leak-*), which are always kept (default 0)
#   FUZZ_JOBS       build parallelism (default 2)
#   FUZZ_ARGS       extra libFuzzer flags for every run
#
# Prints one line per target (executions, coverage, corpus size) and exits 1 if any target
# crashed, leaked, hit undefined behaviour or timed out; its log is under the build directory.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER=${FUZZ_SECONDS:-20}
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
MERGE=${FUZZ_MERGE:-1}
CORPUS=$ROOT/tests/fuzz/corpus
ALL="root_checkin root_answer oob_stream peer_cards tcp_hello unique_id tune_string cluster_file topo_card perf_args"
TARGETS=${FUZZ_TARGETS:-$ALL}

pick() { for c in "$@"; do if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return; fi; done; }
CXX_BIN=${FUZZ_CXX:-$(pick clang++-14 clang++)}
CC_BIN=${FUZZ_CC:-$(pick clang-14 clang)}
if [[ -z "$CXX_BIN" || -z "$CC_BIN" ]]; then
  echo "fuzz.sh: clang is needed (Debian: apt-get install clang)" >&2
  exit 2
fi

t0=$(date +%s)
if [[ ! -f "$BUILD/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN" \
    -DCHORUS_FUZZ=ON -DCHORUS_BUILD_TESTS=OFF -DCHORUS_BUILD_PERF=OFF -DCHORUS_WITH_TORCH=OFF >/dev/null
fi
targets=()
for t in $TARGETS; do targets+=("fuzz_$t"); done
nice cmake --build "$BUILD" -j "${FUZZ_JOBS:-2}" --target "${targets[@]}" >"$BUILD/fuzz-build.log" 2>&1 ||
  { tail -40 "$BUILD/fuzz-build.log"; echo "fuzz.sh: build failed ($BUILD/fuzz-build.log)" >&2; exit 2; }
echo "fuzz.sh: built ${#targets[@]} target(s) in $(( $(date +%s) - t0 )) s; ${SECONDS_PER} s each"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
for t in $TARGETS; do
  bin=$BUILD/tests/fuzz/fuzz_$t
  seed=$CORPUS/$t
  work=$BUILD/fuzz-work/$t
  art=$BUILD/fuzz-artifacts/$t
  log=$BUILD/fuzz-logs/$t.log
  mkdir -p "$seed" "$work" "$art" "$(dirname "$log")"
  if [[ "${FUZZ_MINIMIZE:-0}" == 1 ]]; then
    keep=$(mktemp -d)
    find "$seed" -maxdepth 1 -type f \( -name 'seed-*' -o -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \
      -o -name 'leak-*' \) -exec cp {} "$keep/" \;
    if ! nice "$bin" -merge=1 -max_len=8192 "$keep" "$seed" >"$log.minimize" 2>&1; then
      echo "  $t: FAILED to minimize its corpus; log $log.minimize"
      rm -rf "$keep"
      failed=1
      continue
    fi
    echo "  $t: corpus minimized from $(find "$seed" -type f | wc -l) to $(find "$keep" -type f | wc -l) file(s)"
    find "$seed" -maxdepth 1 -type f -delete
    find "$keep" -maxdepth 1 -type f -exec cp {} "$seed/" \;
    rm -rf "$keep"
    find "$work" -maxdepth 1 -type f -delete  # or the merge below would bring them back
  fi
  find "$art" -maxdepth 1 -type f -delete  # only this run's findings are reported
  dict=()
  [[ -f "$ROOT/tests/fuzz/$t.dict" ]] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
  # New inputs go to the work directory (first corpus argument); the seed corpus is only read.
  rc=0
  nice "$bin" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$art/" "${dict[@]}" ${FUZZ_ARGS:-} "$work" "$seed" >"$log" 2>&1 || rc=$?
  stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  [[ -z "$stats" ]] && stats=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -1 || true)
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$stats")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$stats")
  if [[ $rc -ne 0 ]]; then
    failed=1
    echo "  $t: FAILED (exit $rc) after ${execs:-?} runs; log $log"
    { grep -E 'ERROR: |runtime error|fuzz check failed|SUMMARY|error in line' "$log" || true; } | head -5 | sed 's/^/      /'
    for a in "$art"/*; do
      [[ -f "$a" ]] || continue
      echo "      input: $a"
      if [[ "$MERGE" == 1 ]]; then cp "$a" "$seed/$(basename "$a")"; echo "      kept as $seed/$(basename "$a")"; fi
    done
    continue
  fi
  added=0
  if [[ "$MERGE" == 1 ]]; then
    before=$(find "$seed" -type f | wc -l)
    nice "$bin" -merge=1 -max_len=8192 "$seed" "$work" >"$log.merge" 2>&1 || true
    added=$(( $(find "$seed" -type f | wc -l) - before ))
  fi
  echo "  $t: ok, ${execs:-?} runs, cov ${cov:-?}, ft ${ft:-?}, corpus $(find "$seed" -type f | wc -l) file(s) (+$added)"
done
echo "fuzz.sh: done in $(( $(date +%s) - t0 )) s"
exit $failed

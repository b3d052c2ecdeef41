#!/usr/bin/env bash
# Chorus's PyTorch process-group backend ("chorus", package chorus_torch) against Gloo (PyTorch's
# own CPU backend), side by side in one run, on one host (127.0.0.1):
#   1. torch.distributed.all_reduce throughput from Python, 4 KiB .. 256 MiB (perf/torch/allreduce_bench.py)
#   2. a DDP training step of a 25.1M-parameter model, with and without communication
#      (perf/torch/ddp_bench.py: the no-comm step uses a no-op DDP communication hook)
#   3. the binding's overhead: an 8-byte all_reduce through torch + chorus against the C library
#      alone (build/perf/all_reduce_perf, in place, blocking) at np 1 and 2, with torch + gloo
#      for reference.
# Builds nothing: needs BUILD_DIR/python/chorus_torch (and BUILD_DIR/perf/all_reduce_perf for 3).
#
# These 2-core machines drift (see docs/PERFORMANCE.md), so the two backends alternate within
# every round (gloo first in odd rounds, chorus first in even ones), ROUNDS times; every cell of
# the tables is the median over the rounds and every ratio a ratio of medians. Each run is a
# fresh set of processes. Never run two benchmarks at once.
# Default run: about 12-15 minutes on an idle 2-core machine. QUICK=1: 3 sizes, 3 DDP steps, one
# round, np 2 and 4 (under 2 minutes), to check that everything works: its numbers are not
# results (one round, few samples).
#
# Env (defaults in brackets):
#   BUILD_DIR       Chorus build directory (CHORUS_BUILD is read too)   [<repo>/build]
#   PYTHON          the interpreter that has torch                     [/usr/bin/python3]
#   CHORUS_BACKEND  backend name of the chorus side; `gloo` runs the whole script gloo against
#                   gloo (no chorus needed: to test the script itself)  [chorus]
#   NPS             world sizes                                        ["2 4"]
#   ROUNDS          rounds of (gloo, chorus)                           [3; QUICK: 1]
#   SIZES           all-reduce sizes, K/M/G = 1024-based               [4K,16K,64K,256K,1M,4M,16M,64M,256M;
#                                                                       QUICK: 4K,1M,16M]
#   ITER_BYTES / MIN_ITERS / MAX_ITERS  calls per size = clamp(ITER_BYTES/size, MIN, MAX)
#                                                                      [256M / 3 / 1000; QUICK: 64M / 3 / 200]
#   AR_ARGS         extra allreduce_bench.py flags                     [""]
#   DDP             1 = run the DDP step                               [1]
#   DDP_STEPS / DDP_WARMUP / DDP_BLOCKS  timed steps per mode, untimed steps per mode, blocks
#                   the modes alternate in                             [10 / 2 / 2; QUICK: 3 / 1 / 1]
#   DDP_ARGS        extra ddp_bench.py flags (e.g. "--batch 32")        [""]
#   BIND            1 = measure the binding overhead                   [1]
#   BIND_NPS        world sizes for it                                 ["1 2"; QUICK: "2"]
#   BIND_ITERS      8-byte calls per run                               [2000; QUICK: 1000]
#   THREADS         torch threads per rank                             [1]
#   RUN_TIMEOUT     seconds before one run counts as hung              [600]
#   LOAD_MAX        first wait until the 1-minute load is below this (unset: do not wait)
#   LOAD_DEADLINE   stop waiting then, `date -d` syntax ["+20 min"]; LOAD_STEP [60] s
#   BASELINES_BUILD peer baselines (pingpong, membw for the `# probe` lines; optional)
#                                                                      [/tmp/chorus-baselines/build]
#   OUT             raw outputs                                        [a new /tmp/chorus-torch.XXXXXX]
# Output: a header (`#` lines: setup, machine probe and load before/after), then markdown
# tables (perf/torch/summarize.py) on stdout; progress on stderr. Raw per-run JSON lines, each
# run's stderr and the ranks' logs stay in OUT.
# Exit status: 0 when every run succeeded and every check passed, 1 otherwise (the tables still
# show what ran), 2 on bad setup.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/bench_lib.sh
source "$ROOT/tools/bench_lib.sh"

QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
  q_rounds=1 q_sizes=4K,1M,16M q_iter=64M q_max=200 q_steps=3 q_warm=1 q_blocks=1 q_bnps="2" q_biters=1000
else
  q_rounds=3 q_sizes=4K,16K,64K,256K,1M,4M,16M,64M,256M q_iter=256M q_max=1000 q_steps=10 q_warm=2
  q_blocks=2 q_bnps="1 2" q_biters=2000
fi
BUILD_DIR="${BUILD_DIR:-${CHORUS_BUILD:-$ROOT/build}}"
PYTHON="${PYTHON:-/usr/bin/python3}"
CHORUS_BACKEND="${CHORUS_BACKEND:-chorus}"
NPS="${NPS:-2 4}"
ROUNDS="${ROUNDS:-$q_rounds}"
SIZES="${SIZES:-$q_sizes}"
ITER_BYTES="${ITER_BYTES:-$q_iter}"
MIN_ITERS="${MIN_ITERS:-3}"
MAX_ITERS="${MAX_ITERS:-$q_max}"
AR_ARGS="${AR_ARGS:-}"
DDP="${DDP:-1}"
DDP_STEPS="${DDP_STEPS:-$q_steps}"
DDP_WARMUP="${DDP_WARMUP:-$q_warm}"
DDP_BLOCKS="${DDP_BLOCKS:-$q_blocks}"
DDP_ARGS="${DDP_ARGS:-}"
BIND="${BIND:-1}"
BIND_NPS="${BIND_NPS:-$q_bnps}"
BIND_ITERS="${BIND_ITERS:-$q_biters}"
THREADS="${THREADS:-1}"
RUN_TIMEOUT="${RUN_TIMEOUT:-600}"
LOAD_MAX="${LOAD_MAX:-}"
LOAD_DEADLINE="${LOAD_DEADLINE:-+20 min}"
LOAD_STEP="${LOAD_STEP:-60}"
BASELINES_BUILD="${BASELINES_BUILD:-/tmp/chorus-baselines/build}"
OUT="${OUT:-$(mktemp -d /tmp/chorus-torch.XXXXXX)}"

TORCH_DIR="$ROOT/perf/torch"
AR_PERF="$BUILD_DIR/perf/all_reduce_perf"
export MASTER_ADDR=127.0.0.1 CHORUS_SOCKET_IFNAME=lo GLOO_SOCKET_IFNAME=lo OMP_NUM_THREADS="$THREADS"
export PYTHONPATH="$BUILD_DIR/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

# ------------------------------------------------------------------ checks
[[ -x "$PYTHON" ]] || bench_die "no $PYTHON (set PYTHON to an interpreter with torch)"
"$PYTHON" -c 'import torch.distributed as d; assert d.is_available() and d.is_gloo_available()' 2>/dev/null ||
  bench_die "$PYTHON cannot import torch.distributed with Gloo (Debian: apt-get install python3-torch)"
for f in allreduce_bench.py ddp_bench.py bench_common.py summarize.py; do
  [[ -f "$TORCH_DIR/$f" ]] || bench_die "missing $TORCH_DIR/$f"
done
chorus_so=""
if [[ "$CHORUS_BACKEND" == chorus ]]; then
  [[ -d "$BUILD_DIR/python/chorus_torch" ]] ||
    bench_die "no chorus_torch package in $BUILD_DIR/python (build the python bindings into BUILD_DIR first, or set BUILD_DIR; CHORUS_BACKEND=gloo tests this script without Chorus)"
  if ! err=$("$PYTHON" -c 'import torch, chorus_torch' 2>&1); then
    bench_die "cannot import chorus_torch from $BUILD_DIR/python: $(echo "$err" | tail -3)"
  fi
  for f in "$BUILD_DIR"/python/chorus_torch/_C*.so; do [[ -f "$f" ]] && chorus_so=$f; done
fi
have_c=0
if [[ "$BIND" == 1 ]]; then
  if [[ -x "$AR_PERF" ]]; then have_c=1; else bench_log "no $AR_PERF: binding overhead shows torch figures only"; fi
fi
for n in $NPS $BIND_NPS; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || bench_die "bad world size '$n'"; done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || bench_die "bad ROUNDS '$ROUNDS'"
sizes_b=$(bench_size_list "$SIZES") || exit 2
[[ -n "$sizes_b" ]] || bench_die "SIZES is empty"
SIZES_ARG=$(echo "$sizes_b" | tr ' ' ',')
mkdir -p "$OUT" || bench_die "cannot create $OUT"

# ------------------------------------------------------------------ runs
failures=0
# run NAME CMD...: one run under the timeout; stdout -> OUT/NAME.jsonl, stderr -> OUT/NAME.err
run() {
  local name=$1 rc
  shift
  bench_run_timeout "$RUN_TIMEOUT" "$@" >"$OUT/$name.jsonl" 2>"$OUT/$name.err"
  rc=$?
  if ((rc != 0)); then
    ((rc == 124 || rc == 137)) && echo "timed out after $RUN_TIMEOUT s (rc $rc)" >>"$OUT/$name.err"
    bench_log "FAILED (rc $rc): $name: $(grep -m1 -iE 'error|failed|timed out|wrong|exited|differ' "$OUT/$name.err" | cut -c1-240)"
    failures=$((failures + 1))
  fi
  return 0
}

backend_of() { [[ $1 == chorus ]] && echo "$CHORUS_BACKEND" || echo "$1"; }

run_ar() {  # side np round
  local side=$1 np=$2 r=$3
  # shellcheck disable=SC2086
  run "ar_${side}_np${np}_r${r}" "$PYTHON" "$TORCH_DIR/allreduce_bench.py" --backend "$(backend_of "$side")" \
    --np "$np" --threads "$THREADS" --sizes "$SIZES_ARG" --iter-bytes "$ITER_BYTES" --min-iters "$MIN_ITERS" \
    --max-iters "$MAX_ITERS" --timeout "$((RUN_TIMEOUT - 10))" --log-dir "$OUT/logs/ar_${side}_np${np}_r${r}" $AR_ARGS
}

run_ddp() {  # side np round
  local side=$1 np=$2 r=$3
  # shellcheck disable=SC2086
  run "ddp_${side}_np${np}_r${r}" "$PYTHON" "$TORCH_DIR/ddp_bench.py" --backend "$(backend_of "$side")" \
    --np "$np" --threads "$THREADS" --steps "$DDP_STEPS" --warmup "$DDP_WARMUP" --blocks "$DDP_BLOCKS" \
    --timeout "$((RUN_TIMEOUT - 10))" --log-dir "$OUT/logs/ddp_${side}_np${np}_r${r}" $DDP_ARGS
}

run_bind() {  # side np round   (side c: the C library's all_reduce_perf)
  local side=$1 np=$2 r=$3 name="bind_${1}_np${2}_r${3}" rc
  if [[ $side == c ]]; then
    bench_run_timeout "$RUN_TIMEOUT" "$AR_PERF" -np "$np" -b 8 -e 8 -n "$BIND_ITERS" -w 200 -z 1 -c 1 -a 3 \
      -J "$OUT/$name.json" >"$OUT/$name.txt" 2>"$OUT/$name.err"
    rc=$?
    if ((rc != 0)); then
      bench_log "FAILED (rc $rc): $name: $(grep -m1 -iE 'error|failed|wrong' "$OUT/$name.err" "$OUT/$name.txt" | cut -c1-240)"
      failures=$((failures + 1))
    fi
    return 0
  fi
  run "$name" "$PYTHON" "$TORCH_DIR/allreduce_bench.py" --backend "$(backend_of "$side")" --np "$np" \
    --threads "$THREADS" --sizes 8 --iters "$BIND_ITERS" --warmup 200 --blocks 10 \
    --timeout "$((RUN_TIMEOUT - 10))" --log-dir "$OUT/logs/$name"
}

if [[ -n "$LOAD_MAX" ]]; then
  deadline=$(date -d "$LOAD_DEADLINE" +%s) || bench_die "bad LOAD_DEADLINE '$LOAD_DEADLINE'"
  bench_wait_quiet "$LOAD_MAX" "$deadline" "$LOAD_STEP" ||
    bench_log "load still >= $LOAD_MAX at the deadline: running anyway"
fi

probe() {
  if [[ -x "$BASELINES_BUILD/pingpong" && -x "$BASELINES_BUILD/membw" ]]; then
    bench_probe "$1" "$BASELINES_BUILD"
  else
    echo "# probe ($1): skipped (no $BASELINES_BUILD/pingpong, membw: /work/shared/baselines/scripts/build.sh)"
  fi
}

start=$(date +%s)
{
  echo "# compare_torch: gloo vs $CHORUS_BACKEND (chorus side) from PyTorch; NPS=\"$NPS\" ROUNDS=$ROUNDS QUICK=$QUICK"
  echo "# $("$PYTHON" -c 'import torch, sys; print("torch", torch.__version__, "python", sys.version.split()[0])' 2>&1),"\
    "$THREADS thread(s) per rank, $(getconf _NPROCESSORS_ONLN) cores; env MASTER_ADDR=127.0.0.1 CHORUS_SOCKET_IFNAME=lo GLOO_SOCKET_IFNAME=lo OMP_NUM_THREADS=$THREADS"
  [[ "$CHORUS_BACKEND" != chorus ]] && echo "# NOTE: CHORUS_BACKEND=$CHORUS_BACKEND: the 'chorus' columns are $CHORUS_BACKEND (a test of this script, not a measurement of Chorus)"
  [[ -n "$chorus_so" ]] && bench_build_line "$chorus_so" "$ROOT"
  ((have_c)) && bench_build_line "$AR_PERF" "$ROOT"
  echo "# all_reduce: allreduce_bench.py --sizes $SIZES --iter-bytes $ITER_BYTES --min-iters $MIN_ITERS --max-iters $MAX_ITERS $AR_ARGS"
  ((DDP)) && echo "# ddp: ddp_bench.py --steps $DDP_STEPS --warmup $DDP_WARMUP --blocks $DDP_BLOCKS $DDP_ARGS"
  ((BIND)) && echo "# binding: allreduce_bench.py --sizes 8 --iters $BIND_ITERS --warmup 200 vs $AR_PERF -np N -b 8 -e 8 -n $BIND_ITERS -w 200 -z 1 -c 1 -a 3; NPS \"$BIND_NPS\""
  echo "# raw outputs: $OUT"
  probe before
  bench_load before
} | tee "$OUT/header.txt"

for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then sides="gloo chorus"; else sides="chorus gloo"; fi
  for np in $NPS; do
    for s in $sides; do
      bench_log "round $round/$ROUNDS np=$np: all_reduce, $s"
      run_ar "$s" "$np" "$round"
    done
    if ((DDP)); then
      for s in $sides; do
        bench_log "round $round/$ROUNDS np=$np: DDP step, $s"
        run_ddp "$s" "$np" "$round"
      done
    fi
    bench_load "after round $round np=$np" >>"$OUT/header.txt"
  done
  if ((BIND)); then
    bsides="$sides"
    ((have_c)) && { if ((round % 2)); then bsides="gloo chorus c"; else bsides="c chorus gloo"; fi; }
    for np in $BIND_NPS; do
      for s in $bsides; do
        bench_log "round $round/$ROUNDS np=$np: 8-byte all_reduce, $s"
        run_bind "$s" "$np" "$round"
      done
    done
  fi
done

{
  probe after
  bench_load after
  echo "# took $(($(date +%s) - start)) s; $failures failed run(s)"
} | tee -a "$OUT/header.txt"
grep -h "^# load (after round" "$OUT/header.txt"
echo

label=chorus
[[ "$CHORUS_BACKEND" != chorus ]] && label="chorus($CHORUS_BACKEND)"
"$PYTHON" "$TORCH_DIR/summarize.py" "$OUT" --chorus-label "$label" || failures=$((failures + 1))
((failures == 0)) || { bench_log "$failures failure(s); raw outputs in $OUT"; exit 1; }
exit 0

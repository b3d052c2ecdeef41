#!/usr/bin/env bash
# Side-by-side all-reduce benchmark: Chorus (perf/all_reduce_perf -np N) against Open MPI's
# MPI_Allreduce over shared memory (and, with GLOO=1, Gloo over TCP loopback), float32 sum.
#
# Builds nothing. Needs a Chorus build (CHORUS_BUILD/perf/all_reduce_perf) and the peer
# baselines built by /work/shared/baselines/scripts/build.sh (Debian packages: libopenmpi-dev
# openmpi-bin libgloo-dev).
#
# These machines drift (the two vCPUs move; shared-memory figures move 2-3x for minutes), so the
# systems run alternately, A B A B ..., ROUNDS times; the table shows the median per size and
# the ratio of medians. A `# probe:` line of the machine state is printed before and after.
# The default run (np 2 and 4, 7 sizes up to 256M, 3 rounds) takes about 3-4 minutes on an idle
# 2-core machine, mostly at 256M; SIZES=8,1K,64K,1M,16M takes well under a minute.
#
# Env (defaults in brackets):
#   CHORUS_BUILD     Chorus build directory                 [<repo>/build]
#   BASELINES_BUILD  peer baselines build directory         [/tmp/chorus-baselines/build]
#   NPS              rank counts                            ["2 4"]
#   SIZES            bytes per rank, K/M/G = 1024-based     [8,1K,64K,1M,16M,64M,256M]
#   ROUNDS           A B rounds                             [3]
#   GLOO             1 = also run Gloo (GLOO_ALGOS)         [0]
#   GLOO_ALGOS       Gloo algorithms; the best one is shown [ring,halving_doubling]
#   ITER_BYTES       Chorus -n = clamp(ITER_BYTES / size, MIN_ITERS, MAX_ITERS)  [256M, 3, 1000];
#                    -w = clamp(n / 10, 1, 20)
#   CHORUS_ARGS      extra all_reduce_perf flags            ["-z 1 -c 1"] (-z 1: blocking
#                    calls, as MPI_Allreduce is)
#   MPI_TRIALS / MPI_TRIAL_MS / MPI_WARMUP   the MPI/Gloo benchmarks' BENCH_TRIALS /
#                    BENCH_TRIAL_MS / BENCH_WARMUP [3 / 30 / 1]
#   OUT              directory for the raw outputs          [a new /tmp/chorus-compare.XXXXXX]
# Exit status: 0 when every run succeeded, 1 otherwise (the table still shows what ran).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHORUS_BUILD="${CHORUS_BUILD:-$ROOT/build}"
BASELINES_BUILD="${BASELINES_BUILD:-/tmp/chorus-baselines/build}"
BASELINES_SRC="${BASELINES_SRC:-$ROOT/../shared/baselines}"
NPS="${NPS:-2 4}"
SIZES="${SIZES:-8,1K,64K,1M,16M,64M,256M}"
ROUNDS="${ROUNDS:-3}"
GLOO="${GLOO:-0}"
GLOO_ALGOS="${GLOO_ALGOS:-ring,halving_doubling}"
ITER_BYTES="${ITER_BYTES:-256M}"
MIN_ITERS="${MIN_ITERS:-3}"
MAX_ITERS="${MAX_ITERS:-1000}"
CHORUS_ARGS="${CHORUS_ARGS:--z 1 -c 1}"
MPI_TRIALS="${MPI_TRIALS:-3}"
MPI_WARMUP="${MPI_WARMUP:-1}"
MPI_TRIAL_MS="${MPI_TRIAL_MS:-30}"
OUT="${OUT:-$(mktemp -d /tmp/chorus-compare.XXXXXX)}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

AR="$CHORUS_BUILD/perf/all_reduce_perf"
MPIB="$BASELINES_BUILD/mpi_allreduce_bench"
GLOOB="$BASELINES_BUILD/gloo_allreduce_bench"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { echo "compare_allreduce.sh: $*" >&2; exit 2; }

[[ -x "$AR" ]] || die "no $AR (set CHORUS_BUILD to a Chorus build directory)"
[[ -x "$MPIB" ]] || die "no $MPIB (run $BASELINES_SRC/scripts/build.sh, or set BASELINES_BUILD)"
command -v mpirun >/dev/null || die "mpirun not found (apt-get install openmpi-bin)"
if [[ "$GLOO" == 1 ]]; then
  [[ -x "$GLOOB" ]] || die "no $GLOOB (GLOO=1 needs libgloo-dev and the baselines build)"
  [[ -x "$BASELINES_SRC/scripts/launch.sh" ]] || die "no $BASELINES_SRC/scripts/launch.sh"
fi
mkdir -p "$OUT" || die "cannot create $OUT"

# "64K" -> 65536
to_bytes() {
  local s=$1 n mult=1
  n=${s%%[KkMmGg]*}
  case "${s:${#n}}" in
    "") ;;
    K|k) mult=1024 ;;
    M|m) mult=$((1024 * 1024)) ;;
    G|g) mult=$((1024 * 1024 * 1024)) ;;
    *) die "bad size '$s' in SIZES" ;;
  esac
  [[ "$n" =~ ^[0-9]+$ ]] || die "bad size '$s' in SIZES"
  echo $((n * mult))
}
SIZE_LIST=()
IFS=',' read -r -a _sizes <<<"$SIZES"
for s in "${_sizes[@]}"; do SIZE_LIST+=("$(to_bytes "$s")"); done
SIZES_BYTES=$(IFS=,; echo "${SIZE_LIST[*]}")
ITER_BYTES_B=$(to_bytes "$ITER_BYTES")

probe() {
  local p m
  p=$("$BASELINES_BUILD/pingpong" --probe 2>/dev/null) || p="pingpong probe failed"
  m=$("$BASELINES_BUILD/membw" --probe 2>/dev/null) || m="membw probe failed"
  echo "# probe ($1): $p $m"
}

failures=0
run_chorus() {  # np round
  local np=$1 round=$2 size iters warm out
  for size in "${SIZE_LIST[@]}"; do
    iters=$((ITER_BYTES_B / size))
    ((iters < MIN_ITERS)) && iters=$MIN_ITERS
    ((iters > MAX_ITERS)) && iters=$MAX_ITERS
    warm=$((iters / 10))
    ((warm < 1)) && warm=1
    ((warm > 20)) && warm=20
    out="$OUT/chorus_np${np}_r${round}_${size}"
    # shellcheck disable=SC2086
    if ! "$AR" -np "$np" -b "$size" -e "$size" -n "$iters" -w "$warm" $CHORUS_ARGS \
        -J "$out.json" >"$out.txt" 2>"$out.err"; then
      log "FAILED: chorus np=$np size=$size (see $out.err)"
      failures=$((failures + 1))
    fi
  done
}

run_mpi() {  # np round
  local np=$1 round=$2 out="$OUT/mpi_np$1_r$2.txt"
  if ! BENCH_SIZES="$SIZES_BYTES" BENCH_TRIALS="$MPI_TRIALS" BENCH_TRIAL_MS="$MPI_TRIAL_MS" \
      BENCH_WARMUP="$MPI_WARMUP" BENCH_PEROP_MAX=0 mpirun -np "$np" --oversubscribe --bind-to none \
      --mca pml ob1 --mca btl self,vader \
      -x BENCH_SIZES -x BENCH_TRIALS -x BENCH_TRIAL_MS -x BENCH_WARMUP -x BENCH_PEROP_MAX \
      "$MPIB" --label "mpi-vader-np$np" >"$out" 2>"$OUT/mpi_np${np}_r${round}.err"; then
    log "FAILED: Open MPI np=$np (see $OUT/mpi_np${np}_r${round}.err)"
    failures=$((failures + 1))
  fi
}

run_gloo() {  # np round
  local np=$1 round=$2 out="$OUT/gloo_np$1_r$2.txt"
  if ! BENCH_SIZES="$SIZES_BYTES" BENCH_TRIALS="$MPI_TRIALS" BENCH_TRIAL_MS="$MPI_TRIAL_MS" \
      BENCH_WARMUP="$MPI_WARMUP" BENCH_PEROP_MAX=0 "$BASELINES_SRC/scripts/launch.sh" "$np" "$GLOOB" \
      --algos "$GLOO_ALGOS" >"$out" 2>"$OUT/gloo_np${np}_r${round}.err"; then
    log "FAILED: Gloo np=$np (see $OUT/gloo_np${np}_r${round}.err)"
    failures=$((failures + 1))
  fi
}

start=$(date +%s)
echo "# compare_allreduce: float32 sum; NPS=\"$NPS\" SIZES=$SIZES ROUNDS=$ROUNDS GLOO=$GLOO"
echo "# chorus: $AR -np N -b S -e S -n clamp($ITER_BYTES/S,$MIN_ITERS,$MAX_ITERS) $CHORUS_ARGS"
echo "# open mpi: mpirun -np N --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader $MPIB (BENCH_TRIALS=$MPI_TRIALS BENCH_TRIAL_MS=$MPI_TRIAL_MS BENCH_WARMUP=$MPI_WARMUP)"
[[ "$GLOO" == 1 ]] && echo "# gloo: launch.sh N $GLOOB --algos $GLOO_ALGOS (best algorithm per size)"
echo "# raw outputs: $OUT"
probe before
for ((round = 1; round <= ROUNDS; round++)); do
  for np in $NPS; do
    log "round $round/$ROUNDS np=$np: chorus"
    run_chorus "$np" "$round"
    log "round $round/$ROUNDS np=$np: open mpi"
    run_mpi "$np" "$round"
    if [[ "$GLOO" == 1 ]]; then
      log "round $round/$ROUNDS np=$np: gloo"
      run_gloo "$np" "$round"
    fi
  done
done
probe after
echo "# took $(($(date +%s) - start)) s"
echo
python3 "$ROOT/tools/summarize_compare.py" "$OUT" --nps "$NPS" --sizes "$SIZES_BYTES" \
  --gloo "$GLOO" || failures=$((failures + 1))
((failures == 0)) || { log "$failures run(s) failed; see $OUT"; exit 1; }
exit 0

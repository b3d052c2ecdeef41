#!/usr/bin/env bash
# All-reduce over every Chorus transport side by side in one run, next to Open MPI's
# MPI_Allreduce over UCX (the collective reference for the UCX fabric) and over its own shared
# memory path (vader), float32 sum, on one host (loopback / shared memory only).
#
# Builds nothing. Needs a Chorus build (CHORUS_BUILD: perf/all_reduce_perf and, for the plugin
# variant, libchorus-net-ucx.so) and the peer baselines built by
# ../shared/baselines/scripts/build.sh (mpi_allreduce_bench, pingpong, membw; BASELINES_SRC).
#
# Variants (VARIANTS picks and orders them; every round runs all of them in this order, so the
# machine's drift hits each alike: A B C ... A B C ...):
#   shm          CHORUS_TRANSPORT=shm
#   tcp          CHORUS_TRANSPORT=tcp            (CHORUS_TCP_NSOCKS streams per pair, default 2)
#   ucx-tcp      CHORUS_TRANSPORT=ucx  UCX_TLS=tcp     UCX_NET_DEVICES=lo
#   ucx-sm       CHORUS_TRANSPORT=ucx  UCX_TLS=sm,tcp  UCX_NET_DEVICES=lo
#   ofi-tcp      CHORUS_TRANSPORT=ofi  CHORUS_OFI_PROVIDER="tcp;ofi_rxm"
#   ofi-shm      CHORUS_TRANSPORT=ofi  CHORUS_OFI_PROVIDER=shm
#   plugin-ucx   CHORUS_TRANSPORT=plugin CHORUS_NET_PLUGIN=$PLUGIN UCX_TLS=$PLUGIN_UCX_TLS
#   mpi-ucx-sm   mpirun --mca pml ucx, UCX_TLS=sm,tcp (+ pml_ucx_tls/devices any, as the
#                baselines' run_mpi.sh does: without them Open MPI 4.1 refuses UCX on a host
#                without an RDMA device)
#   mpi-ucx-tcp  mpirun --mca pml ucx, UCX_TLS=tcp
#   mpi-vader    mpirun --mca pml ob1 --mca btl self,vader (Open MPI's shared memory path, as in
#                tools/compare_allreduce.sh)
# Every variant also gets CHORUS_SOCKET_IFNAME=lo (bootstrap and sockets on loopback) and
# UCX_NET_DEVICES=lo (UCX would otherwise also stripe over eth0's address).
#
# Chorus: one all_reduce_perf -np N per size, -n clamp(ITER_BYTES/size, MIN_ITERS, MAX_ITERS),
# time = out-of-place, max over ranks of the per-rank mean (-a 3), which is what
# mpi_allreduce_bench reports (its time: median over BENCH_TRIALS trials of that).
# Tables: median over rounds of the time per size; ratio = variant time / reference time (above 1:
# the variant is slower); spread = max/min over rounds.
#
# Env (defaults in brackets):
#   CHORUS_BUILD     Chorus build directory                     [<repo>/build]
#   BASELINES_BUILD  peer baselines build directory             [/tmp/chorus-baselines/build]
#   VARIANTS         see above                                  [all ten, in the order above]
#   NPS              rank counts                                ["4 2"]
#   SIZES            bytes per rank, K/M/G = 1024-based         [8,1K,64K,1M,16M]
#   ROUNDS           rounds of all variants                     [3]
#   ITER_BYTES / MIN_ITERS / MAX_ITERS   Chorus -n clamp        [128M / 3 / 500]; -w = clamp(n/10,1,20)
#   CHORUS_ARGS      extra all_reduce_perf flags                ["-z 1 -c 1 -a 3"] (-c 1: every
#                    size checked in a separate iteration)
#   PLUGIN           plugin shared object                       [$CHORUS_BUILD/libchorus-net-ucx.so]
#   PLUGIN_UCX_TLS   UCX_TLS of the plugin variant              [tcp]
#   MPI_TRIALS / MPI_TRIAL_MS / MPI_WARMUP   mpi_allreduce_bench BENCH_*  [3 / 30 / 1]
#   RUN_TIMEOUT      seconds before one launch counts as hung   [120]
#   LOAD_MAX         wait for the 1-min load to drop below this first (unset: do not wait)
#   LOAD_DEADLINE    stop waiting at this time, `date -d` syntax ["+20 min"]; LOAD_STEP [120] s
#   OUT              directory for the raw outputs              [a new /tmp/chorus-transports.XXXXXX]
# Exit status: 0 when every run succeeded and every check passed, 1 otherwise (the tables still
# show what ran), 2 on bad setup.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/bench_lib.sh
source "$ROOT/tools/bench_lib.sh"

CHORUS_BUILD="${CHORUS_BUILD:-$ROOT/build}"
BASELINES_BUILD="${BASELINES_BUILD:-/tmp/chorus-baselines/build}"
BASELINES_SRC="${BASELINES_SRC:-$ROOT/../shared/baselines}"
VARIANTS="${VARIANTS:-shm tcp ucx-tcp ucx-sm ofi-tcp ofi-shm plugin-ucx mpi-ucx-sm mpi-ucx-tcp mpi-vader}"
NPS="${NPS:-4 2}"
SIZES="${SIZES:-8,1K,64K,1M,16M}"
ROUNDS="${ROUNDS:-3}"
ITER_BYTES="${ITER_BYTES:-128M}"
MIN_ITERS="${MIN_ITERS:-3}"
MAX_ITERS="${MAX_ITERS:-500}"
CHORUS_ARGS="${CHORUS_ARGS:--z 1 -c 1 -a 3}"
PLUGIN="${PLUGIN:-$CHORUS_BUILD/libchorus-net-ucx.so}"
PLUGIN_UCX_TLS="${PLUGIN_UCX_TLS:-tcp}"
MPI_TRIALS="${MPI_TRIALS:-3}"
MPI_WARMUP="${MPI_WARMUP:-1}"
MPI_TRIAL_MS="${MPI_TRIAL_MS:-30}"
RUN_TIMEOUT="${RUN_TIMEOUT:-120}"
LOAD_MAX="${LOAD_MAX:-}"
LOAD_DEADLINE="${LOAD_DEADLINE:-+20 min}"
LOAD_STEP="${LOAD_STEP:-120}"
OUT="${OUT:-$(mktemp -d /tmp/chorus-transports.XXXXXX)}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export CHORUS_SOCKET_IFNAME=lo UCX_NET_DEVICES=lo

AR="$CHORUS_BUILD/perf/all_reduce_perf"
MPIB="$BASELINES_BUILD/mpi_allreduce_bench"

# variant NAME: sets KIND (chorus|mpi), MEDIUM (sm|tcp), VENV (env assignments) and, for MPI,
# VMCA (mpirun arguments). Returns 1 for an unknown name. Chorus variants: bench_lib.sh.
variant() {
  VMCA=()
  KIND=chorus
  bench_chorus_variant "$1" && return 0
  KIND=mpi
  case "$1" in
    mpi-ucx-sm | mpi-ucx-tcp)
      MEDIUM=${1#mpi-ucx-}
      local tls=tcp
      [[ $MEDIUM == sm ]] && tls=sm,tcp
      VENV=("UCX_TLS=$tls")
      VMCA=(--mca pml ucx --mca pml_ucx_tls any --mca pml_ucx_devices any -x UCX_TLS -x UCX_NET_DEVICES) ;;
    mpi-vader) MEDIUM=sm VENV=() VMCA=(--mca pml ob1 --mca btl "self,vader") ;;
    *) return 1 ;;
  esac
  return 0
}

[[ -x "$AR" ]] || bench_die "no $AR (set CHORUS_BUILD to a Chorus build directory)"
[[ -x "$MPIB" ]] || bench_die "no $MPIB (run $BASELINES_SRC/scripts/build.sh, or set BASELINES_BUILD)"
command -v mpirun >/dev/null || bench_die "mpirun not found (apt-get install openmpi-bin)"
for v in $VARIANTS; do
  variant "$v" || bench_die "unknown variant '$v' in VARIANTS"
  [[ $v == plugin-ucx && ! -f "$PLUGIN" ]] && bench_die "no $PLUGIN (build target chorus-net-ucx, or set PLUGIN)"
done
sizes_b=$(bench_size_list "$SIZES") || exit 2
read -r -a SIZE_LIST <<<"$sizes_b"
((${#SIZE_LIST[@]})) || bench_die "SIZES is empty"
SIZES_BYTES=$(IFS=,; echo "${SIZE_LIST[*]}")
ITER_BYTES_B=$(bench_to_bytes "$ITER_BYTES") || exit 2
mkdir -p "$OUT" || bench_die "cannot create $OUT"

failures=0
run_chorus() {  # variant np round
  local v=$1 np=$2 round=$3 size iters warm out rc
  variant "$v"
  for size in "${SIZE_LIST[@]}"; do
    iters=$(bench_iters "$size" "$ITER_BYTES_B" "$MIN_ITERS" "$MAX_ITERS")
    warm=$(bench_warmup "$iters")
    out="$OUT/${v}_np${np}_r${round}_${size}"
    # shellcheck disable=SC2086
    env "${VENV[@]}" timeout -k 5 "$RUN_TIMEOUT" "$AR" -np "$np" -b "$size" -e "$size" -n "$iters" \
      -w "$warm" $CHORUS_ARGS -J "$out.json" >"$out.txt" 2>"$out.err"
    rc=$?
    if ((rc != 0)); then
      ((rc == 124 || rc == 137)) && echo "timed out after ${RUN_TIMEOUT} s (rc $rc)" >>"$out.err"
      bench_log "FAILED (rc $rc): $v np=$np size=$size: $(grep -m1 -E 'failed|error|timed out' "$out.err" | cut -c1-200)"
      failures=$((failures + 1))
    fi
  done
}

run_mpi() {  # variant np round
  local v=$1 np=$2 round=$3 out="$OUT/${1}_np${2}_r${3}" rc
  variant "$v"
  env "${VENV[@]}" BENCH_SIZES="$SIZES_BYTES" BENCH_TRIALS="$MPI_TRIALS" BENCH_TRIAL_MS="$MPI_TRIAL_MS" \
    BENCH_WARMUP="$MPI_WARMUP" BENCH_PEROP_MAX=0 timeout -k 5 "$RUN_TIMEOUT" \
    mpirun -np "$np" --oversubscribe --bind-to none "${VMCA[@]}" \
    -x BENCH_SIZES -x BENCH_TRIALS -x BENCH_TRIAL_MS -x BENCH_WARMUP -x BENCH_PEROP_MAX \
    "$MPIB" --label "$v-np$np" >"$out.txt" 2>"$out.err"
  rc=$?
  if ((rc != 0)); then
    ((rc == 124 || rc == 137)) && echo "timed out after ${RUN_TIMEOUT} s (rc $rc)" >>"$out.err"
    bench_log "FAILED (rc $rc): $v np=$np (see $out.err)"
    failures=$((failures + 1))
  fi
}

if [[ -n "$LOAD_MAX" ]]; then
  deadline=$(date -d "$LOAD_DEADLINE" +%s) || bench_die "bad LOAD_DEADLINE '$LOAD_DEADLINE'"
  bench_wait_quiet "$LOAD_MAX" "$deadline" "$LOAD_STEP" ||
    bench_log "load still >= $LOAD_MAX at the deadline: running anyway"
fi

start=$(date +%s)
{
  echo "# compare_transports: all-reduce float32 sum; VARIANTS=\"$VARIANTS\" NPS=\"$NPS\" SIZES=$SIZES ROUNDS=$ROUNDS"
  echo "# chorus: <variant env> $AR -np N -b S -e S -n clamp($ITER_BYTES/S,$MIN_ITERS,$MAX_ITERS) -w clamp(n/10,1,20) $CHORUS_ARGS"
  echo "# open mpi: <variant env> mpirun -np N --oversubscribe --bind-to none <variant mca> $MPIB (BENCH_TRIALS=$MPI_TRIALS BENCH_TRIAL_MS=$MPI_TRIAL_MS BENCH_WARMUP=$MPI_WARMUP)"
  echo "# common env: CHORUS_SOCKET_IFNAME=lo UCX_NET_DEVICES=lo"
  for v in $VARIANTS; do
    variant "$v"
    echo "# variant $v ($KIND, $MEDIUM): ${VENV[*]} ${VMCA[*]}"
  done
  bench_build_line "$AR" "$ROOT"
  echo "# $(nproc) cores; raw outputs: $OUT"
  bench_probe before "$BASELINES_BUILD"
  bench_load before
} | tee "$OUT/header.txt"

for ((round = 1; round <= ROUNDS; round++)); do
  for np in $NPS; do
    for v in $VARIANTS; do
      bench_log "round $round/$ROUNDS np=$np: $v"
      variant "$v"
      if [[ $KIND == chorus ]]; then run_chorus "$v" "$np" "$round"; else run_mpi "$v" "$np" "$round"; fi
    done
    bench_load "after round $round np=$np" >>"$OUT/header.txt"
  done
done
bench_finish "$BASELINES_BUILD"

variant_table=$(bench_variant_table $VARIANTS)

BENCH_TOOLS="$ROOT/tools" python3 - "$OUT" "$NPS" "$SIZES_BYTES" "$ROUNDS" "$variant_table" <<'PY'
import json, os, re, statistics, sys

sys.path.insert(0, os.environ["BENCH_TOOLS"])
from bench_report import sz, first_error  # noqa: E402  (tools/bench_report.py)

out, nps, sizes, rounds, vt = sys.argv[1:6]
nps = [int(x) for x in nps.split()]
sizes = [int(x) for x in sizes.split(",")]
rounds = int(rounds)
variants = [tuple(x.split(":")) for x in vt.split()]  # (name, kind, medium)
bad = 0


def fmt_us(v):
    return "-" if v is None else (f"{v:.0f}" if v >= 1000 else f"{v:.2f}" if v < 10 else f"{v:.1f}")


def chorus_time(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None, "no result"
    if doc.get("error"):
        return None, doc["error"]
    if not doc.get("results"):
        return None, "no rows"
    oop = doc["results"][0]["out_of_place"]
    if oop.get("wrong"):
        return None, f"{oop['wrong']} wrong"
    return oop["time_us"], None


def mpi_times(path):
    res = {}
    try:
        with open(path) as f:
            for line in f:
                w = line.split()
                if len(w) >= 10 and w[0].isdigit():
                    res[int(w[0])] = float(w[4]) if w[9] in ("ok", "-") else "check " + w[9]
    except OSError:
        pass
    return res


notes = []
for np in nps:
    med, spread = {}, {}
    for name, kind, medium in variants:
        for size in sizes:
            ts = []
            for r in range(1, rounds + 1):
                if kind == "chorus":
                    base = os.path.join(out, f"{name}_np{np}_r{r}_{size}")
                    t, why = chorus_time(base + ".json")
                    if t is None:
                        why = first_error(base + ".err") or why
                else:
                    t = mpi_times(os.path.join(out, f"{name}_np{np}_r{r}.txt")).get(size, "no row")
                    why = t if isinstance(t, str) else None
                    if why:
                        why = first_error(os.path.join(out, f"{name}_np{np}_r{r}.err")) or why
                    t = None if why else t
                if t is None:
                    bad += 1
                    notes.append(f"np={np} {name} {sz(size)} round {r}: {why}")
                else:
                    ts.append(t)
            med[name, size] = statistics.median(ts) if ts else None
            spread[name, size] = (max(ts) / min(ts)) if len(ts) > 1 and min(ts) > 0 else None
    cols = " | ".join(sz(s) for s in sizes)
    rule = "|---|" + "---:|" * len(sizes)
    print(f"\n### np={np}: time per all-reduce, us (median of {rounds} rounds)\n")
    print(f"| variant | {cols} |\n{rule}")
    for name, kind, medium in variants:
        cells = []
        for s in sizes:
            t = med[name, s]
            cells.append(fmt_us(t) if t is not None else "fail")
        print(f"| {name} | " + " | ".join(cells) + " |")

    print(f"\n### np={np}: busbw GB/s (size/time x 2(n-1)/n, 1 GB = 1e9 B)\n")
    print(f"| variant | {cols} |\n{rule}")
    for name, kind, medium in variants:
        cells = []
        for s in sizes:
            t = med[name, s]
            if t is None:
                cells.append("-")
            else:
                bw = s / (t * 1e-6) / 1e9 * 2 * (np - 1) / np
                cells.append(f"{bw:.2f}" if bw >= 0.1 else f"{bw:.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |")

    def ratio_table(title, ref_of):
        print(f"\n### np={np}: {title}\n")
        print(f"| variant | reference | {cols} |\n|---|---|" + "---:|" * len(sizes))
        for name, kind, medium in variants:
            ref = ref_of(name, kind, medium)
            if ref is None or ref == name or not any(n == ref for n, _, _ in variants):
                continue
            cells = []
            for s in sizes:
                a, b = med[name, s], med[ref, s]
                cells.append(f"{a / b:.2f}" if a and b else "-")
            print(f"| {name} | {ref} | " + " | ".join(cells) + " |")

    ratio_table("time / Chorus shm time (above 1: slower than shm)", lambda n, k, m: "shm")
    ratio_table("time / Open MPI over UCX on the same medium (sm,tcp or tcp)",
                lambda n, k, m: None if n.startswith("mpi-ucx") else f"mpi-ucx-{m}")

    print(f"\n### np={np}: spread, max/min time over rounds\n")
    print(f"| variant | {cols} |\n{rule}")
    for name, kind, medium in variants:
        cells = [f"{spread[name, s]:.2f}" if spread[name, s] else "-" for s in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")

if notes:
    print("\nfailed or missing:")
    for n in notes:
        print(f"- {n[:400]}")
sys.exit(1 if bad else 0)
PY
pyrc=$?
((failures == 0 && pyrc == 0)) || { bench_log "$failures launch(es) failed, summary rc $pyrc; see $OUT"; exit 1; }
exit 0

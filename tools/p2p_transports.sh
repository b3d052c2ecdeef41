#!/usr/bin/env bash
# Point-to-point latency and bandwidth of each Chorus transport on loopback, next to the fabrics'
# own tools in the same run: ucx_perftest (UCX) and fi_pingpong (libfabric), interleaved in
# rounds (A B C ... A B C ...), medians per size.
#
# Builds nothing. Needs a Chorus build (CHORUS_BUILD: perf/sendrecv_perf and, for plugin-ucx,
# libchorus-net-ucx.so); ucx_perftest (package ucx-utils or libucx0's tools) and fi_pingpong
# (libfabric-bin) are optional: a missing tool is reported and its rows are left out. fabtests
# proper (fi_rdm_pingpong, fi_rdm_tagged_bw, ...) are used by nobody here: Debian ships only
# fi_pingpong, fi_info and fi_strerror in libfabric-bin.
#
# What each number means (they are NOT the same pattern; the tables say which is which):
#   Chorus   perf/sendrecv_perf -np 2 -z 1: each iteration, both ranks send SIZE bytes to each
#            other at once (chorusSend + chorusRecv in one group, blocking) and wait for both
#            to finish. time = mean per iteration, max over the two ranks (-a 3): one exchange,
#            i.e. one message in flight in EACH direction. At 8 B that is about one one-way
#            latency plus the per-call cost (not a round trip: the two messages cross). GB/s =
#            SIZE / time is the rate of ONE direction; the link carries twice that in total.
#   ucx_perftest -t tag_lat: ping-pong of UCP tagged messages; latency = half the round trip
#            (one-way). -t tag_bw: one-way stream of SIZE-byte tagged messages; its MB/s are
#            MiB/s (converted here to GB/s, 1e9 B); us = SIZE / bandwidth.
#   fi_pingpong -e rdm -m tagged: ping-pong; usec/xfer = elapsed / (2 x iterations) = half the
#            round trip; GB/s = SIZE / usec_per_xfer (one direction at a time).
#
# Variants (VARIANTS picks and orders them):
#   Chorus (as in tools/compare_transports.sh, env from bench_lib.sh): shm tcp ucx-tcp ucx-sm
#            ofi-tcp ofi-shm plugin-ucx
#   ucxpt-tcp  ucx_perftest, UCX_TLS=tcp     UCX_NET_DEVICES=lo
#   ucxpt-sm   ucx_perftest, UCX_TLS=sm,tcp  UCX_NET_DEVICES=lo
#   fipp-tcp   fi_pingpong -p "tcp;ofi_rxm" -e rdm -m tagged, FI_TCP_IFACE=lo
#   fipp-shm   fi_pingpong -p shm -e rdm -m tagged
# Everything gets CHORUS_SOCKET_IFNAME=lo UCX_NET_DEVICES=lo FI_TCP_IFACE=lo; servers listen on
# ports picked at random (ucx_perftest -p, fi_pingpong -B/-P), clients connect to 127.0.0.1.
#
# Env (defaults in brackets):
#   CHORUS_BUILD     Chorus build directory            [<repo>/build]
#   BASELINES_BUILD  for the `# probe:` lines only      [/tmp/chorus-baselines/build]
#   VARIANTS         see above                          [all, Chorus first]
#   LAT_SIZE         latency size                       [8]
#   BW_SIZES         bandwidth sizes                    [4M,64M]
#   ROUNDS           rounds                             [3]
#   LAT_ITERS        iterations at LAT_SIZE             [5000] (tools: warm-up LAT_ITERS/10)
#   ITER_BYTES / MIN_ITERS / MAX_ITERS   iterations at bandwidth sizes = clamp(ITER_BYTES/size)
#                                                       [512M / 5 / 1000]
#   CHORUS_ARGS      extra sendrecv_perf flags          ["-z 1 -c 1 -a 3"] (-c 1: a separate
#                    checked iteration per size)
#   PLUGIN / PLUGIN_UCX_TLS   plugin-ucx's object and UCX_TLS [$CHORUS_BUILD/libchorus-net-ucx.so / tcp]
#   RUN_TIMEOUT      seconds before one launch counts as hung [90]
#   LOAD_MAX / LOAD_DEADLINE / LOAD_STEP   wait for a quiet machine first, as in
#                    compare_transports.sh                [unset / "+20 min" / 120]
#   OUT              raw outputs                        [a new /tmp/chorus-p2p.XXXXXX]
# Exit status: 0 when every run succeeded, 1 otherwise (the tables still show what ran), 2 on
# bad setup.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/bench_lib.sh
source "$ROOT/tools/bench_lib.sh"

CHORUS_BUILD="${CHORUS_BUILD:-$ROOT/build}"
BASELINES_BUILD="${BASELINES_BUILD:-/tmp/chorus-baselines/build}"
VARIANTS="${VARIANTS:-shm tcp ucx-tcp ucx-sm ofi-tcp ofi-shm plugin-ucx ucxpt-tcp ucxpt-sm fipp-tcp fipp-shm}"
LAT_SIZE="${LAT_SIZE:-8}"
BW_SIZES="${BW_SIZES:-4M,64M}"
ROUNDS="${ROUNDS:-3}"
LAT_ITERS="${LAT_ITERS:-5000}"
ITER_BYTES="${ITER_BYTES:-512M}"
MIN_ITERS="${MIN_ITERS:-5}"
MAX_ITERS="${MAX_ITERS:-1000}"
CHORUS_ARGS="${CHORUS_ARGS:--z 1 -c 1 -a 3}"
PLUGIN="${PLUGIN:-$CHORUS_BUILD/libchorus-net-ucx.so}"
PLUGIN_UCX_TLS="${PLUGIN_UCX_TLS:-tcp}"
RUN_TIMEOUT="${RUN_TIMEOUT:-90}"
LOAD_MAX="${LOAD_MAX:-}"
LOAD_DEADLINE="${LOAD_DEADLINE:-+20 min}"
LOAD_STEP="${LOAD_STEP:-120}"
OUT="${OUT:-$(mktemp -d /tmp/chorus-p2p.XXXXXX)}"
export CHORUS_SOCKET_IFNAME=lo UCX_NET_DEVICES=lo FI_TCP_IFACE=lo

SR="$CHORUS_BUILD/perf/sendrecv_perf"
[[ -x "$SR" ]] || bench_die "no $SR (set CHORUS_BUILD to a Chorus build directory)"
lat_b=$(bench_to_bytes "$LAT_SIZE") || exit 2
bw_b=$(bench_size_list "$BW_SIZES") || exit 2
read -r -a SIZE_LIST <<<"$lat_b $bw_b"
ITER_BYTES_B=$(bench_to_bytes "$ITER_BYTES") || exit 2

# variant NAME: sets KIND (chorus|ucxpt|fipp), MEDIUM, VENV; for tools TOOL_ARGS. 1 if unknown.
variant() {
  TOOL_ARGS=()
  KIND=chorus
  bench_chorus_variant "$1" && return 0
  case "$1" in
    ucxpt-tcp) KIND=ucxpt MEDIUM=tcp VENV=(UCX_TLS=tcp) ;;
    ucxpt-sm) KIND=ucxpt MEDIUM=sm VENV=("UCX_TLS=sm,tcp") ;;
    fipp-tcp) KIND=fipp MEDIUM=tcp VENV=() TOOL_ARGS=(-p "tcp;ofi_rxm" -e rdm -m tagged) ;;
    fipp-shm) KIND=fipp MEDIUM=sm VENV=() TOOL_ARGS=(-p shm -e rdm -m tagged) ;;
    *) return 1 ;;
  esac
  return 0
}

missing=""
ACTIVE=""
for v in $VARIANTS; do
  variant "$v" || bench_die "unknown variant '$v' in VARIANTS"
  case $KIND in
    ucxpt) command -v ucx_perftest >/dev/null || { missing+=" $v(no ucx_perftest)"; continue; } ;;
    fipp) command -v fi_pingpong >/dev/null || { missing+=" $v(no fi_pingpong)"; continue; } ;;
    chorus) [[ $v == plugin-ucx && ! -f "$PLUGIN" ]] && bench_die "no $PLUGIN (build target chorus-net-ucx, or set PLUGIN)" ;;
  esac
  ACTIVE+="$v "
done
mkdir -p "$OUT" || bench_die "cannot create $OUT"

iters_for() {  # size
  if (($1 == lat_b)); then echo "$LAT_ITERS"; else bench_iters "$1" "$ITER_BYTES_B" "$MIN_ITERS" "$MAX_ITERS"; fi
}

failures=0
fail() {  # what errfile rc
  local why
  ((${3:-1} == 124 || ${3:-1} == 137)) && echo "timed out after $RUN_TIMEOUT s (rc $3)" >>"$2"
  why=$(grep -m1 -iE 'failed|error|timed out|refused|abort' "$2" 2>/dev/null | cut -c1-200)
  bench_log "FAILED (rc ${3:-?}): $1: $why"
  failures=$((failures + 1))
}

run_chorus() {  # variant round size
  local v=$1 r=$2 size=$3 n w out rc
  variant "$v"
  n=$(iters_for "$size")
  w=$(bench_warmup "$n")
  out="$OUT/${v}_r${r}_${size}"
  # shellcheck disable=SC2086
  env "${VENV[@]}" timeout -k 5 "$RUN_TIMEOUT" "$SR" -np 2 -b "$size" -e "$size" -n "$n" -w "$w" \
    $CHORUS_ARGS -J "$out.json" >"$out.txt" 2>"$out.err"
  rc=$?
  ((rc == 0)) || fail "$v size=$size round $r" "$out.err" "$rc"
}

# Runs a server and a client of a two-process tool; the client's output is the result.
# $1 label, $2 server port; the caller puts the server command in SRV and the client in CLI.
run_pair() {
  local label=$1 out=$2 srvpid rc src
  env "${VENV[@]}" timeout -k 5 "$RUN_TIMEOUT" "${SRV[@]}" >"$out.srv.txt" 2>&1 &
  srvpid=$!
  sleep 0.3  # let the server bind its port
  env "${VENV[@]}" timeout -k 5 "$RUN_TIMEOUT" "${CLI[@]}" >"$out.txt" 2>"$out.err"
  rc=$?
  wait "$srvpid"
  src=$?
  ((rc == 0)) || { fail "$label (client)" "$out.err" "$rc"; return; }
  ((src == 0)) || fail "$label (server)" "$out.srv.txt" "$src"
}

run_ucxpt() {  # variant round size
  local v=$1 r=$2 size=$3 n port test=tag_bw
  variant "$v"
  n=$(iters_for "$size")
  ((size == lat_b)) && test=tag_lat
  port=$(bench_free_port)
  SRV=(ucx_perftest -p "$port")
  CLI=(ucx_perftest 127.0.0.1 -p "$port" -t "$test" -s "$size" -n "$n" -w "$(((n + 9) / 10))" -f)
  run_pair "$v $test size=$size round $r" "$OUT/${v}_r${r}_${size}"
}

run_fipp() {  # variant round size
  local v=$1 r=$2 size=$3 n port
  variant "$v"
  n=$(iters_for "$size")
  port=$(bench_free_port)
  SRV=(fi_pingpong "${TOOL_ARGS[@]}" -S "$size" -I "$n" -B "$port")
  CLI=(fi_pingpong "${TOOL_ARGS[@]}" -S "$size" -I "$n" -P "$port" 127.0.0.1)
  run_pair "$v size=$size round $r" "$OUT/${v}_r${r}_${size}"
}

if [[ -n "$LOAD_MAX" ]]; then
  deadline=$(date -d "$LOAD_DEADLINE" +%s) || bench_die "bad LOAD_DEADLINE '$LOAD_DEADLINE'"
  bench_wait_quiet "$LOAD_MAX" "$deadline" "$LOAD_STEP" ||
    bench_log "load still >= $LOAD_MAX at the deadline: running anyway"
fi

start=$(date +%s)
{
  echo "# p2p_transports: VARIANTS=\"$ACTIVE\" sizes=${SIZE_LIST[*]} ROUNDS=$ROUNDS"
  [[ -n "$missing" ]] && echo "# left out (tool not installed):$missing"
  echo "# chorus: <variant env> $SR -np 2 -b S -e S -n N -w clamp(N/10,1,20) $CHORUS_ARGS"
  echo "# ucx_perftest: server 'ucx_perftest -p PORT'; client 'ucx_perftest 127.0.0.1 -p PORT -t tag_lat|tag_bw -s S -n N -w N/10 -f'"
  echo "# fi_pingpong: server 'fi_pingpong -p PROV -e rdm -m tagged -S S -I N -B PORT'; client '... -P PORT 127.0.0.1'"
  echo "# N: $LAT_ITERS at $LAT_SIZE B; clamp($ITER_BYTES/S,$MIN_ITERS,$MAX_ITERS) at $BW_SIZES"
  echo "# common env: CHORUS_SOCKET_IFNAME=lo UCX_NET_DEVICES=lo FI_TCP_IFACE=lo"
  for v in $ACTIVE; do
    variant "$v"
    echo "# variant $v ($KIND, $MEDIUM): ${VENV[*]} ${TOOL_ARGS[*]}"
  done
  bench_build_line "$SR" "$ROOT"
  echo "# $(nproc) cores; UCX $(ucx_info -v 2>/dev/null | grep -m1 -o '[0-9][0-9.]*'); $(fi_info --version 2>/dev/null | grep -m1 -i libfabric); raw outputs: $OUT"
  bench_probe before "$BASELINES_BUILD"
  bench_load before
} | tee "$OUT/header.txt"

for ((round = 1; round <= ROUNDS; round++)); do
  for v in $ACTIVE; do
    bench_log "round $round/$ROUNDS: $v"
    variant "$v"
    for size in "${SIZE_LIST[@]}"; do
      case $KIND in
        chorus) run_chorus "$v" "$round" "$size" ;;
        ucxpt) run_ucxpt "$v" "$round" "$size" ;;
        fipp) run_fipp "$v" "$round" "$size" ;;
      esac
    done
  done
  bench_load "after round $round" >>"$OUT/header.txt"
done
bench_finish "$BASELINES_BUILD"

vt=$(bench_variant_table $ACTIVE)
BENCH_TOOLS="$ROOT/tools" python3 - "$OUT" "${SIZE_LIST[*]}" "$ROUNDS" "$vt" "$PLUGIN_UCX_TLS" <<'PY'
import json, os, re, statistics, sys

sys.path.insert(0, os.environ["BENCH_TOOLS"])
import bench_report  # noqa: E402  (tools/bench_report.py)
from bench_report import sz  # noqa: E402


def first_error(path):
    return bench_report.first_error(path, r"failed|error|timed out|wrong|refused|abort")


out, sizes, rounds, vt, plugin_tls = sys.argv[1:6]
sizes = [int(x) for x in sizes.split()]
lat = sizes[0]
rounds = int(rounds)
variants = [tuple(x.split(":")) for x in vt.split()]
names = [v[0] for v in variants]
bad = 0
notes = []


def chorus(base):
    """time us of one exchange"""
    try:
        with open(base + ".json") as f:
            doc = json.load(f)
        oop = doc["results"][0]["out_of_place"]
    except (OSError, ValueError, KeyError, IndexError):
        return None, first_error(base + ".err") or "no result"
    if oop.get("wrong"):
        return None, f"{oop['wrong']} wrong"
    return oop["time_us"], None


p50 = {}


def ucxpt(base, size):
    """(us, GB/s): tag_lat -> one-way latency; tag_bw -> size / bandwidth"""
    try:
        with open(base + ".txt", errors="replace") as f:
            rows = [l.split() for l in f if re.match(r"\s*(Final:\s*)?\d+\s+[\d.]+\s+[\d.]+", l)]
    except OSError:
        rows = []
    if not rows:
        return None, first_error(base + ".err") or first_error(base + ".srv.txt") or "no result"
    w = [x for x in rows[-1] if x != "Final:"]
    # iterations, lat 50%, lat avg, lat overall, bw avg, bw overall (MiB/s), rate avg, rate overall
    if size == lat:
        p50[os.path.basename(base)] = float(w[1])
        return float(w[3]), None
    bw = float(w[5]) * 1048576 / 1e9
    return size / bw / 1e3, None


def fipp(base):
    try:
        with open(base + ".txt", errors="replace") as f:
            rows = [l.split() for l in f if re.match(r"\s*\d+[kmg]?\s+\d", l)]
    except OSError:
        rows = []
    if not rows:
        return None, first_error(base + ".err") or first_error(base + ".srv.txt") or "no result"
    return float(rows[-1][6]), None  # usec/xfer


med, spread = {}, {}
for name, kind, medium in variants:
    for s in sizes:
        ts = []
        for r in range(1, rounds + 1):
            base = os.path.join(out, f"{name}_r{r}_{s}")
            if kind == "chorus":
                t, why = chorus(base)
            elif kind == "ucxpt":
                t, why = ucxpt(base, s)
            else:
                t, why = fipp(base)
            if t is None:
                bad += 1
                notes.append(f"{name} {sz(s)} round {r}: {why}")
            else:
                ts.append(t)
        med[name, s] = statistics.median(ts) if ts else None
        spread[name, s] = max(ts) / min(ts) if len(ts) > 1 and min(ts) > 0 else None

pattern = {"chorus": "exchange: both directions at once",
           "ucxpt": "tag_lat ping-pong (half RTT) / tag_bw one-way stream",
           "fipp": "ping-pong (half RTT)"}


def us(v):
    return "fail" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def gbs(v, s):
    return "-" if v is None else f"{s / v / 1e3:.2f}"


head = f"| variant | medium | pattern | {sz(lat)} B us | {sz(lat)} B p50 us |" + "".join(
    f" {sz(s)} us | {sz(s)} GB/s |" for s in sizes[1:])
print(f"### point to point, median of {rounds} rounds (GB/s: one direction, 1 GB = 1e9 B)")
print("(us: mean per iteration; p50: ucx_perftest's own median over iterations, its tag_lat only)\n")
print(head)
print("|---|---|---|---:|---:|" + "---:|---:|" * (len(sizes) - 1))
for name, kind, medium in variants:
    q = [p50[f"{name}_r{r}_{lat}"] for r in range(1, rounds + 1) if f"{name}_r{r}_{lat}" in p50]
    q = us(statistics.median(q)) if q else "-"
    row = f"| {name} | {medium} | {pattern[kind]} | {us(med[name, lat])} | {q} |"
    for s in sizes[1:]:
        row += f" {us(med[name, s])} | {gbs(med[name, s], s)} |"
    print(row)

# Chorus variant -> its fabric's own tool (or the tool on the same medium for shm/tcp)
plugin_ref = "ucxpt-sm" if re.search(r"sm|posix|sysv|cma", plugin_tls) else "ucxpt-tcp"
refs = {"ucx-tcp": "ucxpt-tcp", "ucx-sm": "ucxpt-sm", "plugin-ucx": plugin_ref,
        "ofi-tcp": "fipp-tcp", "ofi-shm": "fipp-shm", "tcp": "ucxpt-tcp", "shm": "ucxpt-sm"}
print(f"\n### Chorus / tool (time ratio; above 1: Chorus slower)\n")
print(f"| Chorus | tool | {sz(lat)} B |" + "".join(f" {sz(s)} |" for s in sizes[1:]))
print("|---|---|---:|" + "---:|" * (len(sizes) - 1))
for name, kind, medium in variants:
    ref = refs.get(name)
    if kind != "chorus" or ref not in names:
        continue
    cells = []
    for s in sizes:
        a, b = med[name, s], med[ref, s]
        cells.append(f"{a / b:.2f}" if a and b else "-")
    print(f"| {name} | {ref} | " + " | ".join(cells) + " |")

print(f"\n### spread, max/min over rounds\n")
print(f"| variant | " + " | ".join(sz(s) for s in sizes) + " |")
print("|---|" + "---:|" * len(sizes))
for name, kind, medium in variants:
    print(f"| {name} | " + " | ".join(f"{spread[name, s]:.2f}" if spread[name, s] else "-"
                                    for s in sizes) + " |")
if notes:
    print("\nfailed or missing:")
    for n in notes:
        print(f"- {n[:400]}")
sys.exit(1 if bad else 0)
PY
pyrc=$?
((failures == 0 && pyrc == 0)) || { bench_log "$failures launch(es) failed, summary rc $pyrc; see $OUT"; exit 1; }
exit 0

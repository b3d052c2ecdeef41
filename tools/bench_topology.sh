#!/usr/bin/env bash
# All-reduce algorithms side by side on an emulated cluster with one slow link (issue 4, item 6):
# the flat ring, the hierarchical and the bandwidth-weighted all-reduce, and what the default
# tuner picks, against the bound the links set. A benchmark, not a test: it needs root (network
# namespaces, tools/netns_cluster.sh) and a quiet machine, and takes minutes.
#
#   tools/bench_topology.sh [options] [-- <extra all_reduce_perf args>]
#     --bin DIR               directory of all_reduce_perf (default $BUILD_DIR/perf, else build/perf)
#     --hosts N               hosts (default 4)
#     --ranks R | R0,R1,...   ranks per host (default 2)
#     --rate RATE             every link but the slow one (default 400mbit)
#     --slow hN=RATE          the slow host and its rate (default h1=100mbit; "none": no slow link)
#     --placement block|cyclic  rank numbering over the hosts (default block)
#     --algos "A B ..."       algorithms, "default" = the tuner's choice
#                             (default "default ring hierarchical weighted")
#     -b/-e/-f SIZE           sizes as all_reduce_perf takes them (default 1M, 32M, 2)
#     -n ITERS, -w WARMUP     timed and warm-up iterations per size (default 3, 1)
#     --rounds N              run every algorithm N times, interleaved; the best time counts (1)
#     --max-load L            wait until the 1-minute load average is below L before each run (2)
#     --out FILE              markdown results (default $OUT, else $TMPDIR/bench_topology.md)
#
# Times are all_reduce_perf's out-of-place times (mean over ranks) with float sum; the data
# check (-c 1) stays on, so every number comes from a run whose results were right.
#
# The link bound: for n bytes, every host must send at least n bytes and receive at least n:
# each element is reduced either on that host (the others' contribution must come in, and the
# result go out) or elsewhere (its own contribution must go out, the result come in). Links are
# full duplex, so T >= n / B_slow, B_slow the slowest host's rate in bytes/s; "% of bound" is
# that bound over the measured time. For reference, the flat ring sends 2(p-1)/p * n over every
# host's link (p ranks, a host's ranks contiguous), so its time is at least 2(p-1)/p * n / B_slow.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=netns_cluster.sh
source "$ROOT/tools/netns_cluster.sh"

BIN=${BUILD_DIR:-$ROOT/build}/perf
HOSTS=4
RANKS=2
RATE=400mbit
SLOW=h1=100mbit
PLACEMENT=block
ALGOS="default ring hierarchical weighted"
MINB=1M MAXB=32M FACTOR=2 ITERS=3 WARMUP=1 ROUNDS=1 MAX_LOAD=2 TIMEOUT=900
OUTFILE=${OUT:-${TMPDIR:-/tmp}/bench_topology.md}
EXTRA=()
printf -v BENCH_ARGS '%q ' "$@"
BENCH_ARGS=${BENCH_ARGS% }
while (($# > 0)); do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --hosts) HOSTS=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --slow) SLOW=$2; shift 2 ;;
    --placement) PLACEMENT=$2; shift 2 ;;
    --algos) ALGOS=$2; shift 2 ;;
    -b) MINB=$2; shift 2 ;;
    -e) MAXB=$2; shift 2 ;;
    -f) FACTOR=$2; shift 2 ;;
    -n) ITERS=$2; shift 2 ;;
    -w) WARMUP=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --max-load) MAX_LOAD=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --out) OUTFILE=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_topology: unknown option '$1' (--help)" >&2; exit 2 ;;
  esac
done
PERF=$BIN/all_reduce_perf
[[ -x $PERF ]] || { echo "bench_topology: $PERF not found (build all_reduce_perf; --bin DIR)" >&2; exit 1; }

cluster_args=(--hosts "$HOSTS" --ranks "$RANKS" --rate "$RATE" --placement "$PLACEMENT")
if [[ $SLOW != none ]]; then cluster_args+=(--rate "$SLOW"); fi
ncl_parse_args "${cluster_args[@]}" || exit 2
rc=0
ncl_up || rc=$?
if ((rc == 77)); then echo "bench_topology: $NCL_ERROR; cannot run here" >&2; exit 77; fi
((rc == 0)) || { echo "bench_topology: $NCL_ERROR" >&2; exit 1; }
ncl_on_exit() { (($1 == 0)) || echo "bench_topology: ranks' logs kept in $NCL_DIR" >&2; }
ncl_describe

# The slowest host's rate (bytes/s); every host must be shaped for the bound to mean anything.
B_SLOW=""
for ((h = 0; h < ${#NCL_HOST_RATE[@]}; ++h)); do
  [[ ${NCL_HOST_RATE[h]} != none ]] || { echo "bench_topology: host h$h is unshaped; shape every link" >&2; exit 2; }
  bps=$(ncl_rate_bps "${NCL_HOST_RATE[h]}")
  B_SLOW=$(awk -v a="${B_SLOW:-$bps}" -v b="$bps" 'BEGIN { print (b < a ? b : a) }')
done
B_SLOW_BYTES=$(awk -v b="$B_SLOW" 'BEGIN { printf "%.0f\n", b / 8 }')

wait_quiet() {
  local load waited=0
  while :; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }' && return 0
    ((waited % 60 == 0)) && echo "  load average $load >= $MAX_LOAD: waiting for a quiet machine" >&2
    sleep 10
    waited=$((waited + 10))
  done
}

# results[algo,size] = time in us (best round); picked[size] = the tuner's algorithm.
declare -A results=() picked=()
declare -a sizes=()
loads=""
export CHORUS_DEBUG=INFO CHORUS_DEBUG_SUBSYS=COLL
start=$SECONDS
for ((round = 1; round <= ROUNDS; ++round)); do
  for algo in $ALGOS; do
    wait_quiet
    loads+="$(cut -d' ' -f1 /proc/loadavg) "
    args=(-b "$MINB" -e "$MAXB" -f "$FACTOR" -n "$ITERS" -w "$WARMUP" -c 1 "${EXTRA[@]}")
    [[ $algo == default ]] || args+=(-A "$algo")
    echo "round $round: $algo ..." >&2
    ncl_run "$algo.$round" "$TIMEOUT" "$PERF" "${args[@]}" || exit 1
    log=$NCL_LAST_LOG
    grep -q "Out of bounds values : 0 OK" "$log" || { echo "bench_topology: $algo: wrong results" >&2; cat "$log" >&2; exit 1; }
    while read -r size t; do
      [[ " ${sizes[*]} " == *" $size "* ]] || sizes+=("$size")
      old=${results[$algo,$size]:-}
      if [[ -z $old ]] || awk -v a="$t" -v b="$old" 'BEGIN { exit !(a < b) }'; then results[$algo,$size]=$t; fi
    done < <(awk '$1 ~ /^[0-9]+$/ && NF == 13 { print $1, $6 }' "$log")
    if [[ $algo == default ]]; then
      while read -r count name; do
        for size in "${sizes[@]}"; do ((size == count * 4)) && picked[$size]=$name; done
      done < <(sed -n 's/.*chorusAllReduce \([0-9]*\) x float sum: algorithm \([a-z]*\).*/\1 \2/p' "$log")
    fi
  done
done
elapsed=$((SECONDS - start))

# --- report ------------------------------------------------------------------------------------
p=$NCL_NRANKS
human() { awk -v n="$1" 'BEGIN { if (n >= 1048576) printf "%g MiB", n / 1048576; else if (n >= 1024) printf "%g KiB", n / 1024; else printf "%d B", n }'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
bound_ms() { awk -v n="$1" -v b="$B_SLOW_BYTES" 'BEGIN { printf "%.1f", n / b * 1000 }'; }
ring_ms() { awk -v n="$1" -v b="$B_SLOW_BYTES" -v p="$p" 'BEGIN { printf "%.1f", 2 * (p - 1) / p * n / b * 1000 }'; }
pct() { awk -v n="$1" -v b="$B_SLOW_BYTES" -v us="$2" 'BEGIN { printf "%.0f%%", n / b * 1e6 / us * 100 }'; }
# algbw = n / t, busbw = algbw * 2(p-1)/p (as all_reduce_perf), in MB/s.
algbw() { awk -v n="$1" -v us="$2" 'BEGIN { printf "%.1f", n / us }'; }
busbw() { awk -v n="$1" -v us="$2" -v p="$p" 'BEGIN { printf "%.1f", n / us * 2 * (p - 1) / p }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

desc=$(for ((h = 0; h < ${#NCL_HOST_NS[@]}; ++h)); do printf 'h%d %s x%d, ' "$h" "${NCL_HOST_RATE[h]}" "${NCL_HOST_RANKS[h]}"; done)
{
  echo "## All-reduce on an emulated cluster with one slow link"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) cores; load average before each run: ${loads% }; $elapsed s."
  echo "Cluster (tools/netns_cluster.sh): ${#NCL_HOST_NS[@]} hosts, $p ranks ($NCL_PLACEMENT): ${desc%, }; links shaped"
  echo "with tc tbf in both directions. all_reduce_perf float sum, -n $ITERS -w $WARMUP -c 1${EXTRA[*]:+ ${EXTRA[*]}}, out-of-place"
  echo "time, mean over ranks, best of $ROUNDS round(s); algbw = n / time, busbw = algbw * 2(p-1)/p. Link bound: n / B_slow"
  echo "(B_slow = $(awk -v b="$B_SLOW" 'BEGIN { printf "%g", b / 1e6 }') Mbit/s, the slowest host's rate); flat ring in theory: 2(p-1)/p * n / B_slow."
  echo "The rate counts frames: TCP/IP and Ethernet headers take 66 of every 1514 bytes, so about 96% of the bound is"
  echo "the most any algorithm can reach."
  echo
  echo "Command: \`tools/bench_topology.sh $BENCH_ARGS\`"
  echo
  echo "| size | algorithm | time (ms) | algbw (MB/s) | busbw (MB/s) | % of link bound |"
  echo "|---:|---|---:|---:|---:|---:|"
  for size in "${sizes[@]}"; do
    for algo in $ALGOS; do
      t=${results[$algo,$size]:-}
      [[ -n $t ]] || continue
      label=$algo
      [[ $algo == default && -n ${picked[$size]:-} ]] && label="default (${picked[$size]})"
      echo "| $(human "$size") | $label | $(ms "$t") | $(algbw "$size" "$t") | $(busbw "$size" "$t") | $(pct "$size" "$t") |"
    done
  done
  echo
  has() { [[ " $ALGOS " == *" $1 "* ]]; }
  header="| size | link bound (ms) | ring theory (ms) |"
  rule="|---:|---:|---:|"
  if has weighted && has ring; then header+=" weighted / ring |"; rule+="---:|"; fi
  if has weighted && has hierarchical; then header+=" weighted / hierarchical |"; rule+="---:|"; fi
  if has weighted; then echo "Time ratios (below 1: weighted is faster):"; else echo "Bounds:"; fi
  echo
  echo "$header"
  echo "$rule"
  for size in "${sizes[@]}"; do
    line="| $(human "$size") | $(bound_ms "$size") | $(ring_ms "$size") |"
    if has weighted && has ring; then
      line+=" $(ratio "${results[weighted,$size]}" "${results[ring,$size]}") |"
    fi
    if has weighted && has hierarchical; then
      line+=" $(ratio "${results[weighted,$size]}" "${results[hierarchical,$size]}") |"
    fi
    echo "$line"
  done
} >"$OUTFILE.tmp"
mv "$OUTFILE.tmp" "$OUTFILE"
cat "$OUTFILE"
echo
echo "written to $OUTFILE"

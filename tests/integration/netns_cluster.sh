#!/usr/bin/env bash
# Chorus on an emulated multi-host cluster (tools/netns_cluster.sh): three hosts, each a network
# namespace behind one bridge, with 2, 1 and 2 ranks (uneven on purpose) and links shaped by tc,
# h1's five times slower than the others (200mbit against 1gbit). Ranks on different hosts talk
# TCP over the shaped links, ranks on one host shared memory, and the cluster file written by
# the library declares each host's link speed.
#
#   netns_cluster.sh <dir of the perf tools>
#
# Asserts, for all_reduce_perf with the default tuner and with -A ring, hierarchical and weighted
# (ranks numbered host by host, and for the last two also dealt out round robin so that a
# host's ranks are not contiguous), and for all_gather_perf: every rank exits 0, rank 0 reports
# "Out of bounds values : 0 OK" with every size measured and no row with a wrong value, and
# with -A every collective call names that algorithm in the log; and rank 0 sees three hosts,
# h1's uplink at the 0.2 Gb/s that the cluster file declares. Element counts are odd (1, 7,
# 49, ... 823543), so no split divides evenly. Exits 77 (skipped) where namespaces cannot be
# created; the ranks' logs are kept when a run fails (the directory is printed).
set -uo pipefail
BIN=${1:?usage: netns_cluster.sh <dir of the perf tools>}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/../../tools source=netns_cluster.sh
source "$ROOT/tools/netns_cluster.sh"

for tool in all_reduce_perf all_gather_perf; do
  [[ -x $BIN/$tool ]] || { echo "FAILED: $BIN/$tool is not there (build it first)"; exit 1; }
done

ncl_on_exit() {
  if (($1 != 0 && $1 != 77)); then echo "ranks' logs kept in $NCL_DIR (one directory per run, rank<r>.log)"; fi
}

ncl_parse_args --hosts 3 --ranks 2,1,2 --rate 1gbit --rate h1=200mbit || exit 1
rc=0
ncl_up || rc=$?
if ((rc == 77)); then
  echo "netns_cluster: $NCL_ERROR; skipping"
  exit 77
elif ((rc != 0)); then
  echo "FAILED: cannot build the emulated cluster: $NCL_ERROR"
  exit 1
fi
ncl_describe
echo "ranks' logs go to $NCL_DIR (kept if a run fails)"

# 4 B .. 3.2 MiB: 8 sizes, 1 to 823543 floats, every count odd.
SIZES=(-b 4 -e 4M -f 7)
QUICK=(-n 2 -w 1 -c 1)
# Rank 0's log shows the cluster it sees (TOPO) and the algorithm of each new collective shape
# (COLL).
export CHORUS_DEBUG=INFO CHORUS_DEBUG_SUBSYS=TOPO,COLL
runs=0

# check <label> <algorithm or -> <sizes> <tool> [args...]: run every rank and check rank 0's
# report: every size measured (rows are the lines that start with the size), none wrong.
check() {
  local label=$1 algo=$2 nsizes=$3 log others
  shift 3
  local t0=$SECONDS
  ncl_run "$label" 60 "$@" || { echo "FAILED ($label): a rank failed: $*"; exit 1; }
  log=$NCL_LAST_LOG
  if ! grep -q "Out of bounds values : 0 OK" "$log" ||
    awk '$1 ~ /^[0-9]+$/ && NF == 13 && (($9 != "0" && $9 != "N/A") || ($13 != "0" && $13 != "N/A")) {bad = 1} END {exit !bad}' "$log"; then
    echo "FAILED ($label): wrong results: $*"
    cat "$log"
    exit 1
  fi
  if ! awk -v want="$nsizes" '$1 ~ /^[0-9]+$/ && NF == 13 {rows++} END {exit !(rows == want)}' "$log"; then
    echo "FAILED ($label): expected $nsizes sizes measured: $*"
    cat "$log"
    exit 1
  fi
  if ! grep -q "nranks $NCL_NRANKS " "$log"; then
    echo "FAILED ($label): rank 0 does not report nranks $NCL_NRANKS: $*"
    cat "$log"
    exit 1
  fi
  if [[ $algo != - ]]; then
    others=$(grep -o "chorusAllReduce .*: algorithm [a-z]*" "$log" | grep -v ": algorithm $algo\$")
    if ! grep -q ": algorithm $algo\$" <(grep -o "chorusAllReduce .*: algorithm [a-z]*" "$log") || [[ -n $others ]]; then
      echo "FAILED ($label): -A $algo, but the log names other algorithms (or none):"
      grep "algorithm" "$log"
      exit 1
    fi
  fi
  runs=$((runs + 1))
  echo "ok: $label ($NCL_PLACEMENT placement, $((SECONDS - t0)) s)$( [[ $algo == - ]] && grep -o "chorusAllReduce [0-9]* x float sum: algorithm [a-z]*" "$log" | tail -1 | sed 's/^/; largest: /')"
}

AR=("$BIN/all_reduce_perf" "${SIZES[@]}" "${QUICK[@]}")
check allreduce.default - 8 "${AR[@]}"
# Chorus saw three hosts, and h1's link speed from the cluster file (ClusterTopology::describe).
if ! grep -q "$NCL_NRANKS rank(s) on ${#NCL_HOST_NS[@]} host(s)" "$NCL_LAST_LOG" ||
  ! grep -q "h1 (${NCL_HOST_ADDR[1]}).*uplink 0.2 Gb/s" "$NCL_LAST_LOG"; then
  echo "FAILED: rank 0 does not describe ${#NCL_HOST_NS[@]} hosts with h1's uplink at 0.2 Gb/s (from $NCL_CLUSTER_FILE):"
  grep -A12 "TOPO" "$NCL_LAST_LOG"
  exit 1
fi
for algo in ring hierarchical weighted; do
  check "allreduce.$algo" "$algo" 8 "${AR[@]}" -A "$algo"
done
# 20 B .. 2.2 MiB: 7 sizes, 1 to 117649 floats from each rank.
check allgather - 7 "$BIN/all_gather_perf" -b 20 -e 4M -f 7 "${QUICK[@]}"

# The same algorithms with each host's ranks scattered over the rank numbers.
ncl_place cyclic
for algo in hierarchical weighted; do
  check "allreduce.$algo.cyclic" "$algo" 8 "${AR[@]}" -A "$algo"
done
echo "netns_cluster: $runs runs passed on ${#NCL_HOST_NS[@]} emulated hosts ($NCL_NRANKS ranks)"

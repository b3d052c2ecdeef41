#!/usr/bin/env bash
# Every perf tool, briefly, with its data check on (-c 1): a run passes only with exit status 0,
# "Out of bounds values : 0 OK" and no row with a non-zero #wrong.
#
#   perf_tools.sh <dir of the perf tools> basic   each tool at 1, 2, 3, 4 local ranks (shm) and at
#                                                 3 over TCP; every root (-r -1); NULL stream
#                                                 (-z 1); -J JSON; mpirun
#   perf_tools.sh <dir> algos                     each tool with -A for every algorithm that serves
#                                                 its collective, and -A with one that cannot (a
#                                                 clear error from the library, non-zero exit)
#   perf_tools.sh <dir> types                     every type (-d all) and op (-o all)
#   perf_tools.sh <dir> transports                all_reduce_perf and sendrecv_perf over every
#                                                 transport the build has (ucx over tcp and sm,
#                                                 ofi over tcp;ofi_rxm and shm, the dlopen'd
#                                                 plugin) and a mixed map; the log must name
#                                                 the transport asked for
set -euo pipefail
BIN=$1
MODE=${2:-basic}
TOOLS=(all_reduce_perf all_gather_perf broadcast_perf reduce_perf reduce_scatter_perf alltoall_perf gather_perf scatter_perf
  sendrecv_perf)
ROOTED=(broadcast_perf reduce_perf gather_perf scatter_perf)
export CHORUS_TIMEOUT=${CHORUS_TIMEOUT:-60} CHORUS_SOCKET_IFNAME=lo
QUICK=(-n 2 -w 1 -c 1)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
runs=0

# run <name> <command...>: the tool must pass its check.
run() {
  local log="$TMP/$1.log"
  shift
  if ! timeout 300 "$@" >"$log" 2>&1; then
    echo "FAILED (exit status): $*"
    cat "$log"
    exit 1
  fi
  # Rows are the lines not starting with '#'; #wrong is the 9th and 13th column (N/A allowed).
  if ! grep -q "Out of bounds values : 0 OK" "$log" ||
    awk '!/^#/ && NF == 13 && (($9 != "0" && $9 != "N/A") || ($13 != "0" && $13 != "N/A")) {bad = 1} END {exit !bad}' "$log"; then
    echo "FAILED (wrong results): $*"
    cat "$log"
    exit 1
  fi
  if ! awk '!/^#/ && NF == 13 {rows++} END {exit !(rows > 0)}' "$log"; then
    echo "FAILED (no rows measured): $*"
    cat "$log"
    exit 1
  fi
  runs=$((runs + 1))
}

# refused <name> <expected text> <command...>: the tool must fail, saying that text.
refused() {
  local log="$TMP/$1.log" want=$2
  shift 2
  if timeout 120 "$@" >"$log" 2>&1; then
    echo "FAILED (should have been refused): $*"
    cat "$log"
    exit 1
  fi
  if ! grep -q -- "$want" "$log"; then
    echo "FAILED (refused without saying '$want'): $*"
    cat "$log"
    exit 1
  fi
  runs=$((runs + 1))
}

case "$MODE" in
  basic)
    for tool in "${TOOLS[@]}"; do
      for np in 1 2 3 4; do run "$tool.np$np" "$BIN/$tool" -np "$np" -b 8 -e 1M -f 8 "${QUICK[@]}"; done
      run "$tool.blocking" "$BIN/$tool" -np 3 -b 1K -e 64K -f 8 -z 1 "${QUICK[@]}"
      CHORUS_TRANSPORT=tcp run "$tool.tcp" "$BIN/$tool" -np 3 -b 8 -e 1M -f 8 "${QUICK[@]}"
    done
    for tool in "${ROOTED[@]}"; do run "$tool.roots" "$BIN/$tool" -np 3 -b 8 -e 64K -f 8 -r -1 "${QUICK[@]}"; done
    # JSON: a valid document naming the tool, with one result per row.
    run json "$BIN/all_gather_perf" -np 2 -b 1K -e 64K -f 8 -J "$TMP/ag.json" "${QUICK[@]}"
    if command -v python3 >/dev/null; then
      python3 - "$TMP/ag.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["tool"] == "all_gather_perf" and d["collective"] == "allgather" and d["ok"] is True, d
assert len(d["results"]) == 3 and all(r["out_of_place"]["wrong"] == 0 for r in d["results"]), d["results"]
PY
    else
      grep -q '"tool": "all_gather_perf"' "$TMP/ag.json"
    fi
    if command -v mpirun >/dev/null; then
      # Open MPI leaves allocations behind at exit: keep LeakSanitizer (sanitizer builds) to our code.
      ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        OMPI_MCA_rmaps_base_oversubscribe=1 \
        run mpirun mpirun -np 3 --oversubscribe --mca btl self,vader "$BIN/gather_perf" -b 8 -e 64K -f 8 -r 2 "${QUICK[@]}"
    else
      echo "mpirun not installed: mpirun launch not tested"
    fi
    ;;
  algos)
    # The algorithms that serve each collective (collectives/collective.cpp, algoServes).
    declare -A ALGOS=(
      [all_reduce_perf]="ring tree hd rd direct hierarchical weighted" [all_gather_perf]="ring rd bruck direct"
      [broadcast_perf]="ring tree direct" [reduce_perf]="ring tree direct" [reduce_scatter_perf]="ring hd direct"
      [alltoall_perf]="bruck pairwise direct" [gather_perf]="direct" [scatter_perf]="direct")
    for tool in "${!ALGOS[@]}"; do
      for algo in ${ALGOS[$tool]}; do
        for np in 2 3 4; do run "$tool.$algo.np$np" "$BIN/$tool" -np "$np" -b 8 -e 1M -f 8 -A "$algo" "${QUICK[@]}"; done
      done
    done
    # Algorithms that cannot serve the collective: the library says so when the communicator is
    # created (perf does not filter), and the tool exits non-zero.
    refused reduce.bruck "cannot run reduce" "$BIN/reduce_perf" -np 2 -b 8 -e 1K -A bruck "${QUICK[@]}"
    refused broadcast.pairwise "cannot run broadcast" "$BIN/broadcast_perf" -np 2 -b 8 -e 1K -A pairwise "${QUICK[@]}"
    refused unknown.algo "unknown algorithm" "$BIN/all_reduce_perf" -np 2 -b 8 -e 1K -A nosuchalgo "${QUICK[@]}"
    refused sendrecv.algo "sendrecv" "$BIN/sendrecv_perf" -np 2 -b 8 -e 1K -A direct "${QUICK[@]}"
    ;;
  types)
    for tool in "${TOOLS[@]}"; do
      run "$tool.types" "$BIN/$tool" -np 3 -b 8 -e 4K -f 8 -d all -o all -n 1 -w 1 -c 1
    done
    ;;
  transports)
    # name | environment (the build dir's plugins are next to the perf dir's parent)
    PLUGDIR=$(cd "$BIN/.." && pwd)
    CASES=("tcp|CHORUS_TRANSPORT=tcp" "shm|CHORUS_TRANSPORT=shm")
    [ -e "$PLUGDIR/libchorus-net-ucx.so" ] && CASES+=("ucx|CHORUS_TRANSPORT=ucx UCX_TLS=tcp" "ucx|CHORUS_TRANSPORT=ucx UCX_TLS=sm,tcp"
      "plugin:ucx|CHORUS_TRANSPORT=plugin CHORUS_NET_PLUGIN=$PLUGDIR/libchorus-net-ucx.so UCX_TLS=tcp")
    [ -e "$PLUGDIR/libchorus-net-ofi.so" ] && CASES+=("ofi|CHORUS_TRANSPORT=ofi CHORUS_OFI_PROVIDER=tcp;ofi_rxm"
      "ofi|CHORUS_TRANSPORT=ofi CHORUS_OFI_PROVIDER=shm")
    for c in "${CASES[@]}"; do
      kind=${c%%|*}
      read -r -a envs <<<"${c#*|}"
      for tool in all_reduce_perf sendrecv_perf; do
        log="$TMP/$tool.$kind.log"
        env "${envs[@]}" CHORUS_DEBUG=INFO CHORUS_DEBUG_SUBSYS=NET "$BIN/$tool" -np 3 -b 8 -e 4M -f 8 -c 1 -n 2 -w 1 >"$log" 2>&1 ||
          { echo "FAILED: $tool with ${envs[*]}"; tail -30 "$log"; exit 1; }
        grep -q "Out of bounds values : 0 OK" "$log" || { echo "FAILED (check): $tool with ${envs[*]}"; tail -30 "$log"; exit 1; }
        grep -q "via $kind\$" "$log" || { echo "FAILED: $tool with ${envs[*]} did not connect via $kind"; grep "connected to" "$log" | head; exit 1; }
        runs=$((runs + 1))
        echo "ok: $tool over $kind (${envs[*]})"
      done
    done
    ;;
  *)
    echo "unknown mode '$MODE' (basic, algos, types, transports)"
    exit 2
    ;;
esac
echo "perf tools ($MODE): $runs runs passed"

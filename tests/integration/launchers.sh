#!/usr/bin/env bash
# all_reduce_perf started by launchers instead of -np: torchrun-style variables (through
# chorusCommInitFromEnv) and, when Open MPI is installed, mpirun.
set -euo pipefail
PERF=$1
run_torchrun_style() {
  # Below the kernel's ephemeral range (32768+), where a rank's own listener could take it first.
  local port=$((20000 + RANDOM % 12000)) pids=()
  for r in 0 1 2; do
    RANK=$r WORLD_SIZE=3 LOCAL_RANK=$r LOCAL_WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port CHORUS_TIMEOUT=30 CHORUS_SOCKET_IFNAME=lo \
      "$PERF" -b 8 -e 64K -f 8 -n 3 -w 1 >"$TMP/torchrun.$r" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  grep -q "Out of bounds values : 0 OK" "$TMP/torchrun.0"
  grep -q "nranks 3" "$TMP/torchrun.0"
  echo "torchrun-style launch: ok"
}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
run_torchrun_style
if command -v mpirun >/dev/null; then
  # Open MPI leaves allocations behind at exit: keep LeakSanitizer (sanitizer builds) to our code.
  ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 CHORUS_TIMEOUT=30 CHORUS_SOCKET_IFNAME=lo \
    timeout 120 mpirun -np 2 --oversubscribe --mca btl self,vader "$PERF" -b 8 -e 64K -f 8 -n 3 -w 1 >"$TMP/mpi" 2>&1 || { cat "$TMP/mpi"; exit 1; }
  grep -q "Out of bounds values : 0 OK" "$TMP/mpi" || { cat "$TMP/mpi"; exit 1; }
  echo "mpirun launch: ok"
else
  echo "mpirun not installed: mpirun launch not tested"
fi

#!/usr/bin/env bash
# The device check for a machine with an NVIDIA GPU (docs/DEVICES.md), short enough for a lent
# GPU's few minutes:
#   1. builds Chorus (perf tools and the multiprocess suite only; no CUDA toolkit needed: the
#      cuda plugin opens libcuda.so.1 at run time);
#   2. runs the device tests on CUDA memory (the suite that runs on emu in CI, with
#      CHORUS_TEST_DEVICE_PLUGIN=cuda);
#   3. sweeps all-reduce at np 1 and 2 with host buffers and with CUDA buffers, side by side
#      (8 B to 256 MiB, blocking and on a stream bound to a CUDA stream);
#   4. where nccl-tests is installed (NCCL_TESTS=/path/to/nccl-tests/build, or an
#      all_reduce_perf on PATH that is not Chorus's), the same sweep with NCCL on one GPU.
# Output: the logs and -J JSON files in ${OUT:-device-check-out}/, a summary on stdout.
#   BUILD_DIR  build folder (default build-device)      DEVICE_SKIP_BUILD=1  use it as it is
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-device}
OUT=${OUT:-$ROOT/device-check-out}
mkdir -p "$OUT"
log() { echo "device_check: $*" | tee -a "$OUT/summary.txt"; }

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >"$OUT/gpus.txt" 2>&1; then
  log "no NVIDIA GPU here (nvidia-smi -L failed); nothing to check"
  exit 2
fi
log "GPUs: $(tr '\n' ';' < "$OUT/gpus.txt")"

if [ "${DEVICE_SKIP_BUILD:-0}" != 1 ]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHORUS_WITH_TORCH=OFF >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target all_reduce_perf chorus_multiprocess_tests >"$OUT/build.log" 2>&1 ||
    { log "build failed: $OUT/build.log"; tail -20 "$OUT/build.log"; exit 1; }
fi
export CHORUS_SOCKET_IFNAME=${CHORUS_SOCKET_IFNAME:-lo}

status=0
if CHORUS_TEST_DEVICE_PLUGIN=cuda timeout 300 "$BUILD_DIR/tests/chorus_multiprocess_tests" \
    --gtest_filter='*Device*' >"$OUT/device_tests.log" 2>&1; then
  log "device tests on CUDA memory: passed ($(grep -c '^\[       OK' "$OUT/device_tests.log") tests)"
else
  log "device tests on CUDA memory: FAILED (see $OUT/device_tests.log)"
  grep -E '^\[  FAILED|wrong|failed' "$OUT/device_tests.log" | head -20 || true
  status=1
fi

perf=$BUILD_DIR/perf/all_reduce_perf
for np in 1 2; do
  for z in 1 0; do
    for g in host cuda; do
      name=chorus_np${np}_z${z}_$g
      if timeout 120 "$perf" -np "$np" -b 8 -e 256M -f 4 -n 20 -w 5 -c 1 -z "$z" -G "$g" -J "$OUT/$name.json" \
          >"$OUT/$name.log" 2>&1; then
        log "$name: $(grep 'Avg bus bandwidth' "$OUT/$name.log")"
      else
        log "$name: FAILED (see $OUT/$name.log)"
        tail -5 "$OUT/$name.log"
        status=1
      fi
    done
  done
done

nccl=""
if [ -n "${NCCL_TESTS:-}" ] && [ -x "$NCCL_TESTS/all_reduce_perf" ]; then
  nccl=$NCCL_TESTS/all_reduce_perf
elif p=$(command -v all_reduce_perf) && [ "$(readlink -f "$p")" != "$(readlink -f "$perf")" ]; then
  nccl=$p
fi
if [ -n "$nccl" ]; then
  if timeout 120 "$nccl" -b 8 -e 256M -f 4 -n 20 -w 5 -c 1 -g 1 >"$OUT/nccl_g1.log" 2>&1; then
    log "nccl g1: $(grep 'Avg bus bandwidth' "$OUT/nccl_g1.log")"
  else
    log "nccl g1: FAILED (see $OUT/nccl_g1.log)"
  fi
else
  log "nccl-tests not found (set NCCL_TESTS=/path/to/nccl-tests/build): no NCCL sweep"
fi
log "done: logs and JSON in $OUT"
exit $status

#!/usr/bin/env bash
# Predictions of chorus-sim against measurements on this machine (docs/SIMULATOR.md,
# "Validation"): all-reduce over shared memory at 2 and 4 local ranks, ring, tree and hd,
# 1-32 MiB. The fabric is one host whose per-rank links are calibrated from a measured
# point-to-point exchange (sendrecv_perf: bandwidth at 16 MiB, latency at 8 bytes), and the
# host's memory bus is a link every copy crosses.
# Each measurement is the median of ROUNDS runs (default 3) of all_reduce_perf -z 1.
#   BUILD_DIR (default build)   ROUNDS   SIZES (default "1M 4M 16M 32M")
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${BUILD_DIR:-$ROOT/build}
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-"1M 4M 16M 32M"}
perf=$B/perf
sim=$B/tools/chorus_sim/chorus-sim
col() { awk -v c="$1" '/^ +[0-9]/{print $c}'; }

# Calibration: per-direction bandwidth at 16 MiB and the 8-byte time (both ranks exchanging).
lat=$("$perf/sendrecv_perf" -np 2 -b 8 -e 8 -n 200 -w 20 -z 1 -c 0 | col 6)
bw=$("$perf/sendrecv_perf" -np 2 -b 16M -e 16M -n 20 -w 5 -z 1 -c 0 | col 7)
# Both ranks' copies at once went through one memory bus: what the two moved together is its
# bandwidth, shared by every copy on the host (np 4 shares it four ways).
membus=$(python3 -c "print(2 * $bw)")
echo "# calibration: sendrecv np2: 8 B in $lat us, 16 MiB at $bw GB/s per direction (memory bus $membus GB/s)"
echo "# ranks algo size measured_us predicted_us error"
for np in 2 4; do
  for algo in ring tree hd; do
    for size in $SIZES; do
      runs=()
      for ((r = 0; r < ROUNDS; ++r)); do
        runs+=("$("$perf/all_reduce_perf" -np "$np" -b "$size" -e "$size" -A "$algo" -n 20 -w 5 -z 1 -c 0 | col 6)")
      done
      meas=$(printf '%s\n' "${runs[@]}" | sort -g | sed -n "$(( (ROUNDS + 1) / 2 ))p")
      pred=$("$sim" all_reduce -b "$size" -e "$size" -A "$algo" --reduce-gbps 1e6 --copy-gbps 10 \
        --fabric "flat:hosts=1,gpus=$np,nvlink=$bw,membus=$membus,alpha_us=$lat,hop_us=0" | col 4)
      err=$(python3 -c "print(f'{abs($pred-$meas)/$meas*100:.1f}%')")
      echo "$np $algo $size $meas $pred $err"
    done
  done
done | python3 -c "
import sys, math
rows=[l.split() for l in sys.stdin if l[0].isdigit()]
for r in rows: print(' '.join(r), flush=True)
errs=[abs(float(r[4])-float(r[3]))/float(r[3]) for r in rows]
g=math.exp(sum(math.log(max(e,1e-6)) for e in errs)/len(errs))
print(f'# geometric-mean error over {len(errs)} cases: {g*100:.1f}%')"

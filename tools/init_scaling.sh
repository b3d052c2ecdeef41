#!/usr/bin/env bash
# Init at scale on one host (issue 15, item 7): starts all_reduce_perf with N local ranks (its
# own -np launcher forks them; oversubscribed when N exceeds the CPUs), runs one all-reduce and
# exits, with CHORUS_DEBUG=INFO logs of the INIT, BOOTSTRAP and COLL subsystems, one file per rank.
# Then prints, over the ranks, the min, median and max of every init phase, of the first call's
# connection setup, and of the bootstrap's messages, bytes and connections (the counters the
# init and connect log lines carry), plus the wall time of the whole run.
#
#   tools/init_scaling.sh [--bin DIR] [--runs R] [--algo A] [--size BYTES] N [N ...]
#     --bin DIR    directory of all_reduce_perf (default $BUILD_DIR/perf, else build/perf)
#     --runs R     runs per N (default 1); each run is reported on its own
#     --algo A     CHORUS_ALGO=allreduce:A (default: the tuner's choice)
#     --size B     all-reduce size in bytes (default 8)
#
# The ranks talk over loopback (CHORUS_SOCKET_IFNAME=lo). Logs stay in $TMPDIR/init_scaling.*
# (the directory is printed).
set -euo pipefail

bin="${BUILD_DIR:-build}/perf"
runs=1
algo=""
size=8
nps=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --algo) algo="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) nps+=("$1"); shift ;;
  esac
done
[[ ${#nps[@]} -gt 0 ]] || { echo "usage: $0 [options] N [N ...]" >&2; exit 2; }
[[ -x "$bin/all_reduce_perf" ]] || { echo "no all_reduce_perf in $bin (use --bin)" >&2; exit 2; }

top="$(mktemp -d "${TMPDIR:-/tmp}/init_scaling.XXXXXX")"
echo "# logs in $top"
for np in "${nps[@]}"; do
  for ((run = 1; run <= runs; run++)); do
    dir="$top/np${np}_run${run}"
    mkdir -p "$dir"
    extra=()
    [[ -n "$algo" ]] && extra=(env "CHORUS_ALGO=allreduce:$algo")
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(date +%s.%N)
    set +e
    "${extra[@]}" env CHORUS_DEBUG=INFO CHORUS_DEBUG_SUBSYS=INIT,BOOTSTRAP,COLL CHORUS_DEBUG_FILE="$dir/rank.%p.log" \
      CHORUS_SOCKET_IFNAME=lo "$bin/all_reduce_perf" -np "$np" -b "$size" -e "$size" -n 1 -w 1 >"$dir/stdout" 2>&1
    rc=$?
    set -e
    t1=$(date +%s.%N)
    python3 - "$dir" "$np" "$run" "$rc" "$t0" "$t1" "$load" <<'EOF'
import glob, re, statistics, sys
d, np_, run, rc, t0, t1, load = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
traffic = r"messages (\d+) out / (\d+) in, bytes (\d+) / (\d+), connections (\d+) opened / (\d+) accepted"
init_re = re.compile(r"init rank (\d+)/\d+ .*?: device and topology ([\d.]+) ms, transports ([\d.]+) ms, bootstrap ([\d.]+) ms, "
                     r"health ([\d.]+) ms, cluster view ([\d.]+) ms, total ([\d.]+) ms; bootstrap " + traffic)
boot_re = re.compile(r"bootstrap done in [\d.]+ ms \(root check-in ([\d.]+) ms, card all-gather ([\d.]+) ms")
conn_re = re.compile(r"connected (\d+) peer\(s\) in ([\d.]+) ms, (\d+) connected in all; setup over the bootstrap " + traffic)
rows = {}
for path in glob.glob(d + "/rank.*.log"):
    r = None
    checkin = gather = None
    conn_ms, conns = 0.0, 0
    setup = [0] * 6
    for line in open(path, errors="replace"):
        m = boot_re.search(line)
        if m: checkin, gather = float(m.group(1)), float(m.group(2))
        m = init_re.search(line)
        if m:
            r = int(m.group(1))
            phases = [float(x) for x in m.group(2, 3, 4, 5, 6, 7)]
            join = [int(x) for x in m.group(8, 9, 10, 11, 12, 13)]
        m = conn_re.search(line)
        if m:
            conn_ms += float(m.group(2)); conns = int(m.group(3))
            setup = [a + int(b) for a, b in zip(setup, m.group(4, 5, 6, 7, 8, 9))]
    if r is not None:
        rows[r] = dict(zip(["device and topology", "transports", "bootstrap", "health", "cluster view", "init total"], phases))
        rows[r].update({"  bootstrap: root check-in": checkin, "  bootstrap: card all-gather": gather,
                        "first call: connection setup": conn_ms})
        rows[r].update(dict(zip(["join: messages out", "join: messages in", "join: bytes out", "join: bytes in",
                                 "join: connections opened", "join: connections accepted"], join)))
        rows[r].update({"transport connections": conns})
        rows[r].update(dict(zip(["setup: messages out", "setup: messages in", "setup: bytes out", "setup: bytes in"], setup[:4])))
algos = set()
for path in glob.glob(d + "/rank.*.log"):
    for line in open(path, errors="replace"):
        m = re.search(r"algorithm (\w+)", line)
        if m: algos.add(m.group(1))
print(f"## np {np_}, run {run}: exit {rc}, wall {t1 - t0:.2f} s, load before {load}, {len(rows)} of {np_} ranks logged "
      f"their init; algorithm {','.join(sorted(algos)) or '?'}")
if rows:
    print(f"| per rank | min | median | max |\n|---|---:|---:|---:|")
    for key in next(iter(rows.values())):
        v = sorted(x[key] for x in rows.values() if x[key] is not None)
        if not v: continue
        fmt = (lambda x: f"{x:.1f}") if isinstance(v[0], float) else str
        print(f"| {key} | {fmt(v[0])} | {fmt(statistics.median_low(v))} | {fmt(v[-1])} |")
EOF
  done
done

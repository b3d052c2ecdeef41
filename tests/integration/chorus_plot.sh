#!/usr/bin/env bash
# chorus-plot end to end on the fixtures in tests/integration/chorus_plot/: a chorus-bench
# results.json and a perf tool's -J file (also twice, with --label) give a PNG and a well-formed
# SVG per collective and measure; a bad or unknown file exits 2 naming the file, with no traceback.
# Skips (exit 77) where /usr/bin/python3 has no matplotlib.
#
#   chorus_plot.sh <project source directory>
set -euo pipefail
SRC=$1
PLOT="$SRC/tools/chorus_bench/chorus-plot"
FIX="$SRC/tests/integration/chorus_plot"
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

fail() {
  echo "FAILED: $1"
  [ -n "${2:-}" ] && [ -f "$2" ] && cat "$2"
  exit 1
}
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  echo "SKIP: $PY has no matplotlib (apt-get install python3-matplotlib)"
  exit 77
fi

# expect_charts DIR NAME...: NAME_{busbw,time}.{png,svg} exist; PNGs start with the PNG magic,
# SVGs parse as XML with an <svg> root.
expect_charts() {
  local dir=$1 n w
  shift
  for n in "$@"; do
    for w in busbw time; do
      [ -s "$dir/${n}_$w.png" ] || fail "no $dir/${n}_$w.png" "$TMP/log"
      head -c 8 "$dir/${n}_$w.png" | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a" || fail "$dir/${n}_$w.png is not a PNG"
      "$PY" -c 'import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
sys.exit(0 if r.tag.endswith("svg") else 1)' "$dir/${n}_$w.svg" || fail "$dir/${n}_$w.svg is not well-formed SVG"
    done
  done
}

# 1. chorus-bench results: one chart pair per (collective, medium, np)
"$PY" "$PLOT" "$FIX/bench_results.json" -o "$TMP/bench" >"$TMP/log" 2>&1 || fail "bench results: rc $?" "$TMP/log"
expect_charts "$TMP/bench" allreduce_shm_np2 allreduce_tcp_np2 allgather_shm_np2
grep -q "Open MPI vader" "$TMP/bench/allreduce_shm_np2_busbw.svg" || fail "no Open MPI line in the legend"
grep -q "Gloo" "$TMP/bench/allreduce_tcp_np2_time.svg" || fail "no Gloo line in the legend"

# 2. perf tools' -J files, labelled; in-place figures too
"$PY" "$PLOT" "$FIX/all_reduce_np2.json" "$FIX/all_reduce_np2.json" --label one --label two \
  -o "$TMP/perf" >"$TMP/log" 2>&1 || fail "-J files: rc $?" "$TMP/log"
expect_charts "$TMP/perf" allreduce_np2
grep -q "two" "$TMP/perf/allreduce_np2_busbw.svg" || fail "label 'two' not in the chart"
"$PY" "$PLOT" --in-place "$FIX/all_reduce_np2.json" -o "$TMP/inplace" --quiet >"$TMP/log" 2>&1 ||
  fail "--in-place: rc $?" "$TMP/log"
expect_charts "$TMP/inplace" allreduce_np2

# 3. user errors: exit 2, the file named, no traceback
bad() {  # description file-to-name args...
  local what=$1 name=$2 rc=0
  shift 2
  "$PY" "$PLOT" "$@" -o "$TMP/bad" >"$TMP/err" 2>&1 || rc=$?
  [ "$rc" = 2 ] || fail "$what: exit $rc, expected 2" "$TMP/err"
  grep -qF -- "$name" "$TMP/err" || fail "$what: the message does not name $name" "$TMP/err"
  if grep -q Traceback "$TMP/err"; then fail "$what: a traceback" "$TMP/err"; fi
}
echo '{"hello": 1}' >"$TMP/unknown.json"
printf 'not json\n' >"$TMP/garbage.json"
echo '{"tool": "all_reduce_perf", "collective": "allreduce", "nranks": 2, "results": [], "error": "rank 1 died"}' >"$TMP/failed.json"
bad "unknown JSON" "$TMP/unknown.json" "$TMP/unknown.json"
bad "not JSON" "$TMP/garbage.json" "$FIX/all_reduce_np2.json" "$TMP/garbage.json"
bad "missing file" "$TMP/nothing.json" "$TMP/nothing.json"
bad "a failed run" "$TMP/failed.json" "$TMP/failed.json"
bad "a directory" "$TMP" "$TMP"
echo "chorus_plot: OK"

#!/usr/bin/env bash
# chorus-sim end to end: the nccl-tests-style table and JSON, --compare with the tuner's pick,
# the other collectives, and clear errors (exit 2) for a bad fabric, collective or algorithm.
set -euo pipefail
sim=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "chorus_sim.sh: $*" >&2; exit 1; }

out=$("$sim" all_reduce -b 1M -e 4M -f 4 -A ring --fabric fat-tree:hosts=4,gpus=2,leaf=2,oversub=2 -J "$tmp/r.json")
echo "$out"
[ "$(echo "$out" | grep -cE '^ +[0-9]+ +[0-9]+ +float')" = 2 ] || fail "want two rows"
python3 -c "import json,sys; d=json.load(open('$tmp/r.json')); assert d['nranks']==8 and len(d['rows'])==2 and d['rows'][0]['busbw']>0, d" ||
  fail "bad JSON"
out=$("$sim" all_reduce -b 64K -e 64K --compare --fabric rail:hosts=2,gpus=4)
echo "$out"
echo "$out" | grep -qE '^ +65536 .* (ring|tree|hd|rd|direct|hierarchical|weighted) +(ring|tree|hd|rd|direct|hierarchical|weighted) +[0-9.]+x$' ||
  fail "--compare row missing"
for coll in all_gather reduce_scatter broadcast reduce alltoall gather scatter; do
  "$sim" "$coll" -b 64K -e 64K -A direct --fabric flat:hosts=3,gpus=1 | grep -qE '^ +[0-9]' || fail "$coll gave no row"
done
expect2() {
  set +e
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  [ "$rc" = 2 ] || fail "'$*' exited $rc, want 2"
  echo "$err" | grep -q -e "$want" || fail "'$*' said: $err (want '$want')"
}
want="unknown shape" expect2 "$sim" all_reduce --fabric torus:hosts=2
want="unknown collective" expect2 "$sim" all_spin --fabric flat:hosts=2
want="unknown algorithm" expect2 "$sim" all_reduce -A nosuch --fabric flat:hosts=2
want="cannot run gather" expect2 "$sim" gather -A ring --fabric flat:hosts=2
want="--fabric is required" expect2 "$sim" all_reduce -b 1M
echo "chorus_sim.sh: ok"

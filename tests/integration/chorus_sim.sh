#!/usr/bin/env bash
# chorus-sim end to end: the nccl-tests-style table and JSON, the busiest links and the critical
# path, the SVG of link load, folding, --compare with the tuner's pick, the other collectives,
# and clear errors (exit 2) for a bad fabric, collective, algorithm or option.
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
python3 -c "import json; d=json.load(open('$tmp/r.json')); cp=d['rows'][1]['critical_path']; t=d['rows'][1]['time_us']
assert cp['messages']>0 and abs(cp['wire_us']+cp['wait_us']+cp['local_us']-t) < 1e-2*t, (cp, t)" || fail "critical path does not add up"
echo "$out" | grep -q '^#   busiest links: ' || fail "no busiest links"
# One period of 4 ranks (a leaf) simulated, the same time as every rank simulated, and the SVG.
folded=$("$sim" all_reduce -b 4M -e 4M -A ring --fabric fat-tree:hosts=4,gpus=2,leaf=2,oversub=2 --fold every --svg "$tmp/l.svg")
whole=$("$sim" all_reduce -b 4M -e 4M -A ring --fabric fat-tree:hosts=4,gpus=2,leaf=2,oversub=2 --fold off)
echo "$folded"
echo "$folded" | grep -q '^# folded: 4 of 8 ranks' || fail "not folded"
[ "$(echo "$folded" | grep -E '^ +[0-9]' | awk '{print $4}')" = "$(echo "$whole" | grep -E '^ +[0-9]' | awk '{print $4}')" ] ||
  fail "folded and whole runs differ"
python3 -c "import xml.etree.ElementTree as E; r=E.parse('$tmp/l.svg').getroot(); assert r.tag.endswith('svg') and len(r) > 20" ||
  fail "bad SVG"
# A fabric file (the cluster file's format): two racks, one slow host.
printf 'fabric fat-tree hosts=4 gpus=2 oversub=2\nhost host3 group=b gbps=100\nhost host[01] group=a\nhost host* group=b\n' > "$tmp/racks"
"$sim" all_reduce -b 1M -e 1M --fabric "$tmp/racks" | grep -q '2 leaves (the hosts. groups)' || fail "fabric file not read"
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
want="--fold wants" expect2 "$sim" all_reduce --fold sometimes --fabric flat:hosts=2
want="larger slice" expect2 "$sim" all_reduce -b 1M -e 1M -A tree --slice 4K --max-steps 1000 --fabric flat:hosts=64
echo "chorus_sim.sh: ok"

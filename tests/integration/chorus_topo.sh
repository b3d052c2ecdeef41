#!/usr/bin/env bash
# chorus-topo end to end: the tree, JSON and SVG of the hwloc XML fixtures; this machine; the
# CHORUS_TOPO_FILE / CHORUS_TOPO_DUMP_FILE knobs; command-line errors (exit 2) and bad files
# (exit 1, naming the file); and the cluster view: two ranks started torchrun-style, posing as
# two hosts (CHORUS_HOSTID), each reporting a different fixture, rank 0 printing both hosts.
#
#   chorus_topo.sh <path to chorus-topo> <tests/topology>
set -euo pipefail
TOOL=$1
FIX=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export CHORUS_SOCKET_IFNAME=lo CHORUS_TIMEOUT=30
unset CHORUS_TOPO_FILE CHORUS_TOPO_DUMP_FILE

fail() {
  echo "FAILED: $1"
  [ -n "${2:-}" ] && [ -f "$2" ] && cat "$2"
  exit 1
}
# expect <file> <text>...: every text occurs in the file.
expect() {
  local f=$1
  shift
  for t in "$@"; do grep -qF -- "$t" "$f" || fail "'$t' missing from $(basename "$f")" "$f"; done
}
# well_formed_svg <file> <text>...: parses as XML, has an <svg> root, holds every text.
well_formed_svg() {
  local f=$1
  shift
  python3 - "$f" <<'EOF' || fail "$f is not a well-formed SVG document" "$f"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
sys.exit(0 if root.tag == "{http://www.w3.org/2000/svg}svg" else 1)
EOF
  expect "$f" "$@"
}

# --- the fixtures: tree, JSON, SVG -------------------------------------------------------------
"$TOOL" --xml "$FIX/dual_socket_8gpu_4nic.xml" >"$TMP/a.txt" || fail "tree of the 8-GPU fixture" "$TMP/a.txt"
expect "$TMP/a.txt" "gpu-node-a" "2 packages, 2 NUMA nodes" "NIC mlx5_0  infiniband, 200 Gb/s" "NIC mlx5_1" \
  "NIC ens5f0  ethernet, 100 Gb/s" "NIC eno1" "Accelerator cuda0  CUDA, NVIDIA H100 80GB HBM3" "Accelerator cuda7" \
  "(also ib0)" "PCI bridge 0000:11:00.0"
"$TOOL" --xml "$FIX/quad_gpu_2nic.xml" >"$TMP/b.txt" || fail "tree of the 4-GPU fixture" "$TMP/b.txt"
expect "$TMP/b.txt" "gpu-node-b" "NIC mlx5_0  roce, 100 Gb/s" "Accelerator rsmi3  ROCm" "I/O not local to a single NUMA node"
"$TOOL" --xml "$FIX/cpu_only.xml" >"$TMP/c.txt" || fail "tree of the CPU-only fixture" "$TMP/c.txt"
expect "$TMP/c.txt" "cpu-node" "0 accelerators" "NIC eth0  ethernet, 10 Gb/s" "OS devices: nvme0n1"
echo "tree: ok"

for f in dual_socket_8gpu_4nic quad_gpu_2nic cpu_only; do
  "$TOOL" --xml "$FIX/$f.xml" --json >"$TMP/$f.json" || fail "--json of $f" "$TMP/$f.json"
  python3 -m json.tool "$TMP/$f.json" >/dev/null || fail "--json of $f is not JSON" "$TMP/$f.json"
done
python3 - "$TMP/dual_socket_8gpu_4nic.json" <<'EOF' || fail "JSON content of the 8-GPU fixture" "$TMP/dual_socket_8gpu_4nic.json"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["hostname"] == "gpu-node-a" and t["pus"] == 16 and len(t["numa"]) == 2, t
assert [n["name"] for n in t["nics"]] == ["eno1", "mlx5_0", "mlx5_1", "ens5f0"], t["nics"]
assert [n["speedGbps"] for n in t["nics"]] == [1, 200, 200, 100], t["nics"]
assert [a["api"] for a in t["accelerators"]] == ["CUDA"] * 8, t["accelerators"]
assert t["numa"][0]["memoryBytes"] == 256 << 30, t["numa"][0]
assert len(t["pci"]) == 31 and t["binding"]["cpuset"] != ""
EOF
echo "json: ok"

"$TOOL" --xml "$FIX/dual_socket_8gpu_4nic.xml" --svg "$TMP/a.svg" >/dev/null || fail "--svg of the 8-GPU fixture"
well_formed_svg "$TMP/a.svg" "gpu-node-a" "NUMA node 1" "mlx5_0" "cuda7"
"$TOOL" --xml "$FIX/quad_gpu_2nic.xml" --json --svg "$TMP/b.svg" >"$TMP/b.json" || fail "--json --svg"
python3 -m json.tool "$TMP/b.json" >/dev/null || fail "--json with --svg is not JSON" "$TMP/b.json"
well_formed_svg "$TMP/b.svg" "gpu-node-b" "Local to several NUMA nodes" "eno1"
echo "svg: ok"

# --- this machine, and the environment knobs ---------------------------------------------------
"$TOOL" >"$TMP/live.txt" || fail "the local run" "$TMP/live.txt"
expect "$TMP/live.txt" "[live hwloc discovery]" "NUMA node 0" "Binding: PUs "
"$TOOL" --json >"$TMP/live.json" && python3 -m json.tool "$TMP/live.json" >/dev/null || fail "local --json" "$TMP/live.json"
"$TOOL" --svg "$TMP/live.svg" >/dev/null && well_formed_svg "$TMP/live.svg" "binding: PUs"
CHORUS_TOPO_FILE="$FIX/cpu_only.xml" CHORUS_TOPO_DUMP_FILE="$TMP/dump.xml" "$TOOL" >"$TMP/env.txt" || fail "CHORUS_TOPO_FILE" "$TMP/env.txt"
expect "$TMP/env.txt" "cpu-node"
"$TOOL" --xml "$TMP/dump.xml" >"$TMP/dump.txt" || fail "the dump does not load back" "$TMP/dump.txt"
expect "$TMP/dump.txt" "cpu-node" "NIC eth0  ethernet, 10 Gb/s"
echo "local: ok"

# --- errors ------------------------------------------------------------------------------------
status=0
"$TOOL" --no-such-flag >"$TMP/bad.txt" 2>&1 || status=$?
[ "$status" = 2 ] || fail "a bad flag exited $status, not 2" "$TMP/bad.txt"
expect "$TMP/bad.txt" "usage: chorus-topo" "--no-such-flag"
status=0
"$TOOL" --xml >"$TMP/bad.txt" 2>&1 || status=$?
[ "$status" = 2 ] || fail "--xml without a file exited $status, not 2" "$TMP/bad.txt"
"$TOOL" --help >"$TMP/help.txt" || fail "--help"
expect "$TMP/help.txt" "usage: chorus-topo" "--svg FILE"
status=0
"$TOOL" --xml "$TMP/missing.xml" >"$TMP/bad.txt" 2>&1 || status=$?
[ "$status" = 1 ] || fail "a missing file exited $status, not 1" "$TMP/bad.txt"
expect "$TMP/bad.txt" "$TMP/missing.xml"
echo "errors: ok"

# --- the cluster view: two emulated hosts, torchrun-style ---------------------------------------
# A free port below the kernel's ephemeral range, so that no rank's own listener (bound to port
# 0 at the same moment) can be handed the same one.
free_port() {
  python3 - <<'EOF'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
while True:
    port = random.randrange(10000, max(low, 10001))
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        print(port)
        break
    except OSError:
        pass
    finally:
        s.close()
EOF
}
port=$(free_port)
launch() {  # launch <rank> <host id> <fixture> <extra args...>
  local r=$1 host=$2 xml=$3
  shift 3
  RANK=$r WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port CHORUS_HOSTID=$host \
    timeout 120 "$TOOL" --xml "$xml" --cluster "$@" >"$TMP/rank$r.out" 2>"$TMP/rank$r.err"
}
launch 0 a "$FIX/dual_socket_8gpu_4nic.xml" --json --svg "$TMP/cluster.svg" &
p0=$!
launch 1 b "$FIX/quad_gpu_2nic.xml" --json &
p1=$!
wait $p0 || fail "cluster view, rank 0" "$TMP/rank0.err"
wait $p1 || fail "cluster view, rank 1" "$TMP/rank1.err"
[ ! -s "$TMP/rank1.out" ] || fail "rank 1 printed too" "$TMP/rank1.out"
python3 - "$TMP/rank0.out" <<'EOF' || fail "cluster JSON" "$TMP/rank0.out"
import json, sys
d = json.load(open(sys.argv[1]))
hosts = d["cluster"]["hosts"]
assert len(hosts) == 2, hosts
assert sorted(h["accelerators"] for h in hosts) == [4, 8], hosts
assert d["rank0"]["hostname"] == "gpu-node-a", d["rank0"]["hostname"]
EOF
well_formed_svg "$TMP/cluster.svg" "2 hosts" "mlx5_0" "roce"
# The tree, started without --cluster: torchrun's variables alone select the cluster view.
port=$(free_port)
pids=()
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port CHORUS_HOSTID=host$r timeout 120 "$TOOL" \
    >"$TMP/tree$r.out" 2>&1 &
  pids+=($!)
done
wait "${pids[0]}" || fail "tree cluster view, rank 0" "$TMP/tree0.out"
wait "${pids[1]}" || fail "tree cluster view, rank 1" "$TMP/tree1.out"
expect "$TMP/tree0.out" "host0" "host1"
[ ! -s "$TMP/tree1.out" ] || fail "rank 1 printed too" "$TMP/tree1.out"
echo "cluster: ok"

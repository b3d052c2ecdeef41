#!/usr/bin/env bash
# The fabric libraries load only for a transport that needs them (issue 13, start-up): libchorus.so
# does not link UCX or libfabric; a run over shm or tcp maps neither; a run over ucx or ofi loads
# libchorus-net-<name>.so from libchorus's own folder and gets right results.
#
#   fabric_modules.sh <libchorus.so> <all_reduce_perf> <plugins built, e.g. "ucx ofi">
set -euo pipefail
LIB=$1
PERF=$2
PLUGINS=${3:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export CHORUS_SOCKET_IFNAME=lo CHORUS_TIMEOUT=30
unset CHORUS_TRANSPORT CHORUS_TRANSPORT_MAP CHORUS_NET_PLUGIN

fail() {
  echo "FAILED: $1"
  [ -n "${2:-}" ] && [ -f "$2" ] && tail -40 "$2"
  exit 1
}
FABRIC='lib(ucp|uct|ucs|ucm|fabric|psm)[^/]*\.so'

readelf -d "$LIB" > "$TMP/dynamic" || fail "readelf $LIB"
if grep NEEDED "$TMP/dynamic" | grep -Eq "$FABRIC"; then
  fail "$LIB links a fabric library" "$TMP/dynamic"
fi
echo "ok: $(basename "$LIB") needs no fabric library"

# Which shared objects a run opens, from the dynamic loader's own trace.
for t in shm tcp; do
  CHORUS_TRANSPORT=$t LD_DEBUG=files LD_DEBUG_OUTPUT="$TMP/ld.$t" "$PERF" -np 2 -b 8 -e 64K -f 8 -n 2 -w 1 > "$TMP/out.$t" 2>&1 ||
    fail "all_reduce_perf over $t" "$TMP/out.$t"
  grep -q "Out of bounds values : 0 OK" "$TMP/out.$t" || fail "wrong results over $t" "$TMP/out.$t"
  if cat "$TMP"/ld.$t.* | grep -E "file=.*$FABRIC" | grep -q .; then
    fail "a run over $t loaded a fabric library: $(cat "$TMP"/ld.$t.* | grep -Eo "file=[^ ]*$FABRIC" | sort -u | tr '\n' ' ')"
  fi
  echo "ok: over $t no fabric library is loaded"
done

folder=$(cd "$(dirname "$(readlink -f "$LIB")")" && pwd)
for p in $PLUGINS; do
  CHORUS_TRANSPORT=$p CHORUS_DEBUG=INFO CHORUS_DEBUG_SUBSYS=TRANSPORT "$PERF" -np 2 -b 8 -e 64K -f 8 -n 2 -w 1 > "$TMP/out.$p" 2>&1 ||
    fail "all_reduce_perf over $p" "$TMP/out.$p"
  grep -q "Out of bounds values : 0 OK" "$TMP/out.$p" || fail "wrong results over $p" "$TMP/out.$p"
  grep -qF "loaded network plugin $p (ABI v1) from $folder/libchorus-net-$p.so" "$TMP/out.$p" ||
    fail "over $p the plugin module was not loaded from $folder" "$TMP/out.$p"
  echo "ok: over $p, libchorus-net-$p.so loaded from libchorus's folder"
done

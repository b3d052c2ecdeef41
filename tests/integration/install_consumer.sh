#!/usr/bin/env bash
# Installs the build tree into a scratch prefix, then builds a consumer twice: with CMake's
# find_package(chorus) and with pkg-config; both must run.
set -euo pipefail
BUILD=$1
SRC=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cmake --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
cmake -S "$SRC/consumer" -B "$WORK/cmake-build" -DCMAKE_PREFIX_PATH="$WORK/prefix" >/dev/null
cmake --build "$WORK/cmake-build" >/dev/null
LD_LIBRARY_PATH="$WORK/prefix/lib:${LD_LIBRARY_PATH:-}" "$WORK/cmake-build/consumer"
libdir=$(ls -d "$WORK"/prefix/lib*/pkgconfig | head -1)
export PKG_CONFIG_PATH="$libdir"
sed -i "s#^prefix=.*#prefix=$WORK/prefix#" "$libdir/chorus.pc"
cc "$SRC/consumer/consumer.c" $(pkg-config --cflags --libs chorus) -o "$WORK/pc-consumer"
LD_LIBRARY_PATH="$WORK/prefix/lib:${LD_LIBRARY_PATH:-}" "$WORK/pc-consumer"
# The PyTorch backend, where the build has it: the installed package imports from the prefix
# alone (libchorus found through its relative RPATH) and runs a 1-rank all-reduce.
if [ -d "$BUILD/python/chorus_torch" ]; then
  pydir=$(ls -d "$WORK"/prefix/lib*/chorus/python | head -1)
  PYTHONPATH="$pydir" MASTER_ADDR=127.0.0.1 MASTER_PORT=0 CHORUS_SOCKET_IFNAME=lo /usr/bin/python3 - <<'PY'
import torch, torch.distributed as dist, chorus_torch, os
assert os.path.realpath(chorus_torch.__file__).startswith(os.path.realpath(os.environ["PYTHONPATH"])), chorus_torch.__file__
store = dist.HashStore()
dist.init_process_group("chorus", store=store, rank=0, world_size=1)
t = torch.arange(5, dtype=torch.float32)
dist.all_reduce(t)
assert t.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0], t
dist.destroy_process_group()
PY
  echo "installed chorus_torch: ok"
fi
echo "install + find_package + pkg-config: ok"

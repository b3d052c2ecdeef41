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
echo "install + find_package + pkg-config: ok"

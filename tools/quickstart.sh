#!/usr/bin/env bash
# The main job: install dependencies, build, and run an all-reduce bus-bandwidth sweep over
# NP (default 4) local ranks on this host, nccl-tests style. Extra arguments go to
# all_reduce_perf (e.g. -b 8 -e 1G -f 2 -d all).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/tools/install_deps.sh"
"$ROOT/tools/build.sh"
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
if [ $# -eq 0 ]; then set -- -b 8 -e 256M -f 4; fi
exec "$BUILD_DIR/perf/all_reduce_perf" -np "${NP:-4}" "$@"

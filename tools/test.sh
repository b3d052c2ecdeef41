#!/usr/bin/env bash
# Install dependencies, build from scratch into ${BUILD_DIR:-build-test}, run every test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$ROOT/build-test}
"$ROOT/tools/install_deps.sh"
"$ROOT/tools/build.sh"
cd "$BUILD_DIR"
# Tests fork several ranks each: two at a time is what a 2-core machine takes.
ctest --output-on-failure -j "${TEST_JOBS:-2}" --timeout 600 "$@"

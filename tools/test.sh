#!/usr/bin/env bash
# Install dependencies, build from scratch into ${BUILD_DIR:-build-test}, run every test; then the
# sanitizer stage: the unit and multiprocess suites again under ASan+UBSan, built into
# $BUILD_DIR-asan (tools/sanitizers/run.sh; docs/RELIABILITY.md, "Sanitizers").
#   CHORUS_SANITIZE_STAGE=0  skips the sanitizer stage (quick local runs); it also does not run
#                            when the main build is itself a sanitizer build (CMAKE_ARGS).
# Last, the short fuzz pass: every libFuzzer target of tests/fuzz for 3 s, built with clang into
# $BUILD_DIR-fuzz, the source tree left alone (tools/fuzz.sh; docs/RELIABILITY.md, "Fuzzing").
#   CHORUS_FUZZ_STAGE=0      skips it.
# Arguments go to the main run's ctest (e.g. -R Bootstrap), not to the later stages.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$ROOT/build-test}
"$ROOT/tools/install_deps.sh"
"$ROOT/tools/build.sh"
# Tests fork several ranks each: two at a time is what a 2-core machine takes.
(cd "$BUILD_DIR" && ctest --output-on-failure -j "${TEST_JOBS:-2}" --timeout 600 "$@")
echo "test.sh: build and tests took ${SECONDS} s"

if [ "${CHORUS_SANITIZE_STAGE:-1}" = 0 ]; then
  echo "test.sh: sanitizer stage skipped (CHORUS_SANITIZE_STAGE=0)"
elif grep -q '^CHORUS_SANITIZE:STRING=.' "$BUILD_DIR/CMakeCache.txt"; then
  echo "test.sh: sanitizer stage skipped (the main build is a sanitizer build)"
else
  start=$SECONDS
  "$ROOT/tools/sanitizers/run.sh" address
  echo "test.sh: sanitizer stage took $((SECONDS - start)) s (${SECONDS} s in all)"
fi

if [ "${CHORUS_FUZZ_STAGE:-1}" = 0 ]; then
  echo "test.sh: fuzz stage skipped (CHORUS_FUZZ_STAGE=0)"
else
  start=$SECONDS
  FUZZ_SECONDS=${FUZZ_SECONDS:-3} FUZZ_MERGE=0 FUZZ_BUILD_DIR="$BUILD_DIR-fuzz" "$ROOT/tools/fuzz.sh"
  echo "test.sh: fuzz stage took $((SECONDS - start)) s (${SECONDS} s in all)"
fi

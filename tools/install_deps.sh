#!/usr/bin/env bash
# Installs the Debian packages Chorus builds and tests with (idempotent; skips what is there).
set -euo pipefail
PKGS=(cmake ninja-build g++ pkg-config libgtest-dev libopenmpi-dev openmpi-bin libhwloc-dev hwloc iproute2 libucx-dev ucx-utils libfabric-dev libfabric-bin
  python3-dev python3-pytest python3-numpy python3-torch libtorch-dev pybind11-dev
  clang libclang-rt-dev  # clang + its libFuzzer runtime: the fuzz stage of tools/test.sh
  libgloo-dev python3-matplotlib)  # tools/chorus_bench: Gloo for the peer baselines, the charts
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Installs everything dgpt needs on Debian 12 / Ubuntu (as root, or with sudo available).
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build ccache git ca-certificates curl \
  libtorch-dev libgloo-dev libopenblas0-openmp \
  libcli11-dev libfmt-dev nlohmann-json3-dev catch2 libbenchmark-dev libpcre2-dev \
  python3 python3-torch python3-numpy > /dev/null
# Debian's libtorch links the generic libblas.so.3; the reference BLAS behind it is ~10x slower
# than OpenBLAS, so make sure OpenBLAS is the one selected.
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
if [ -e "$blas" ]; then
  $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas" > /dev/null
  $SUDO update-alternatives --set liblapack.so.3-x86_64-linux-gnu \
    /usr/lib/x86_64-linux-gnu/openblas-openmp/liblapack.so.3 > /dev/null 2>&1 || true
fi
echo "dgpt dependencies installed"

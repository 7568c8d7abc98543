#!/bin/bash
# device_check.sh — everything the GPU machine has to do, in one call: build
# ragged with CUDA, run every test (ctest: GPU tests run here, skip elsewhere),
# compute-sanitizer memcheck and racecheck on the attention and decode tests (quick sizes),
# the attention kernel lab (build-device/cuda_attn_lab), the model ops'
# benchmark (build-device/cuda_ops_bench, RG_OPS_BENCH=0 skips it), and on request
# PyTorch's attention benchmark and the GPU's two ceilings, for comparisons made
# inside one call. Logs go to $OUT (default ./device-out); a summary is printed last.
#
#   bash scripts/device_check.sh                    build, tests, sanitizers, lab
#   RG_TORCH=1 RG_CEILINGS=1 bash scripts/device_check.sh   + PyTorch + ceilings
# Environment: RG_ARCH (CUDA architectures, default 90a), RG_BENCH_DIR (the
# shared bench folder with lengths.txt and the PyTorch scripts, default .bench),
# RG_SKIP_SANITIZE=1, RG_LAB=0 (skip the lab), RG_OPS_BENCH=0, RG_LAB_DIMS (head dims for the lab, default 64), RG_LAB_ARGS (extra lab flags).
# RG_TARGETS: build only these targets (space-separated; default all), RG_TESTS: ctest -R regex.
# RG_MODEL_BENCH=1: `ragged bench --preset seed --backend cuda` (packed, eval and train, 30 steps
# after 10) and the same with RG_PROFILE=1 (the per-op table); RG_TORCH_SEED=1 also runs
# PyTorch's compiled varlen rows (torch_seed_bench.py) between two ragged runs, so that the
# ratio comes from one call.
# RG_GEN=1: `ragged bench generate --backend cuda` (GPT-2 124M shape, batches 1/16/64) and HF
# transformers' generate on the same prompts (scripts/hf_generate_bench.py, bf16; RG_GEN_HF_ARGS
# adds flags, e.g. --compile), RG_GEN_TOKENS new tokens per prompt (default 128), RG_GEN_BATCHES
# (default 1,16,64); RG_GEN_HF=0 skips HF; RG_GEN_VARIANTS: space-separated environments, each
# a comma-joined list of NAME=VALUE, one more ragged run per entry in the order given (A/B of
# runtime switches inside one call, e.g. "RG_NO_GRAPH=1 RG_NO_GRAPH=0 RG_NO_GRAPH=1").
# RG_CTEST_TIMEOUT: seconds per test program (default 400).
# RG_BARRIER=1: bench/cuda_barrier_bench (the cost of one grid barrier, per variant).
set -u
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
BUILD=${RG_BUILD:-build-device}
ARCH=${RG_ARCH:-90a}
BENCH=${RG_BENCH_DIR:-.bench}
JOBS=$(nproc 2>/dev/null || echo 8)
SUM="$OUT/summary.txt"
: >"$SUM"
note() { echo "$*" | tee -a "$SUM"; }
t0=$(date +%s)
since() { echo "$(($(date +%s) - t0))s"; }

note "== device_check $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | tee -a "$SUM"
nvcc --version | tail -1 | tee -a "$SUM"

# ---- build (OpenBLAS for the CPU backend: the system's, else a carried .deps/) ----
cfg=(-S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH")
if ! cmake "${cfg[@]}" >"$OUT/build.log" 2>&1; then
  # The device image may lack OpenBLAS's headers: unpack the carried Debian
  # packages (.debs/, fetched by `apt-get download` here) into .deps/.
  if [ ! -d .deps/usr ] && ls .debs/*.deb >/dev/null 2>&1; then
    for f in .debs/*.deb; do dpkg -x "$f" .deps; done
  fi
  ob=$PWD/.deps/usr
  inc=$(ls -d "$ob"/include/x86_64-linux-gnu/openblas-*/ 2>/dev/null | head -1)
  lib=$(ls "$ob"/lib/x86_64-linux-gnu/openblas-*/libopenblas.so* 2>/dev/null | head -1)
  if [ -n "$inc" ] && [ -n "$lib" ]; then
    note "no system OpenBLAS: using the carried one in .deps ($lib)"
    export LD_LIBRARY_PATH=$(dirname "$lib"):$ob/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
    rm -rf "$BUILD"
    cmake "${cfg[@]}" -DCBLAS_INCLUDE_DIR="$inc" -DOPENBLAS_LIBRARY="$lib" >>"$OUT/build.log" 2>&1
  fi
fi
targets=()
for t in ${RG_TARGETS:-}; do targets+=(--target "$t"); done
if ! cmake --build "$BUILD" -j "$JOBS" "${targets[@]}" >>"$OUT/build.log" 2>&1; then
  note "BUILD FAILED ($(since))"
  grep -E "error|Error" "$OUT/build.log" | head -30
  exit 1
fi
note "build ok ($(since)); spills: $(grep -c 'spilled' "$OUT/build.log")"

# ---- tests ----
(cd "$BUILD" && ctest -V --timeout ${RG_CTEST_TIMEOUT:-400} ${RG_TESTS:+-R "$RG_TESTS"}) >"$OUT/ctest.log" 2>&1
rc=$?
grep -E "tests passed|Passed|Failed|Skipped|\*\*\*" "$OUT/ctest.log" | tee -a "$SUM"
grep -E "FAIL|worst errors" "$OUT/ctest.log" | head -20 | tee -a "$SUM"
note "ctest rc=$rc ($(since))"

# ---- compute-sanitizer on the attention test, quick sizes ----
if [ "${RG_SKIP_SANITIZE:-0}" != 1 ]; then
  CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  if [ -n "$CS" ]; then
    : >"$OUT/sanitizer.log"
    for t in ${RG_SANITIZE_TESTS:-test_cuda_attention test_cuda_decode}; do
      [ -x "$BUILD/$t" ] || continue
      for tool in memcheck racecheck; do
        RG_TEST_QUICK=1 timeout 240 "$CS" --tool $tool --error-exitcode 9 "$BUILD/$t" \
          >>"$OUT/sanitizer.log" 2>&1
        src=$?
        note "compute-sanitizer $tool $t: rc=$src, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tail -1) $(grep -E '[0-9]+ passed' "$OUT/sanitizer.log" | tail -1) ($(since))"
      done
    done
  else
    note "compute-sanitizer not found"
  fi
fi

# ---- kernel lab: every variant on the benchmark's batches ----
if [ -f "$BENCH/lengths.txt" ] && [ "${RG_LAB:-1}" = 1 ]; then
  : >"$OUT/lab.log"
  for dim in ${RG_LAB_DIMS:-64}; do
    "$BUILD/cuda_attn_lab" --lengths "$BENCH/lengths.txt" --dim "$dim" ${RG_LAB_ARGS:-} >"$OUT/lab.out" 2>"$OUT/lab.err"
    note "lab d=$dim rc=$? ($(since))"
    cat "$OUT/lab.out" | tee -a "$OUT/lab.log"
    cat "$OUT/lab.err" >>"$OUT/lab.log"
    rm -f "$OUT/lab.out" "$OUT/lab.err"
  done
else
  note "lab skipped ($([ "${RG_LAB:-1}" = 1 ] && echo "no $BENCH/lengths.txt" || echo "RG_LAB=0"))"
fi

# ---- the model ops' benchmark (bench/cuda_ops_bench.c), when built ----
if [ -x "$BUILD/cuda_ops_bench" ] && [ "${RG_OPS_BENCH:-1}" = 1 ]; then
  timeout 240 "$BUILD/cuda_ops_bench" >"$OUT/ops_bench.log" 2>&1
  note "cuda_ops_bench rc=$? ($(since))"
fi

# ---- the model benchmark (ragged bench) with its per-op profile; PyTorch's seed rows between ----
if [ "${RG_MODEL_BENCH:-0}" = 1 ]; then
  MB=(bench --preset seed --backend cuda -n 30 -w 10 --strategies "${RG_MODEL_STRATEGIES:-packed}" --no-peak)
  [ -f "$BENCH/lengths.txt" ] && MB+=(--lengths "$BENCH/lengths.txt")
  : >"$OUT/model_bench.log"
  mb() { # $1: label
    "$BUILD/ragged" "${MB[@]}" -q >>"$OUT/model_bench.log" 2>&1
    note "ragged bench ($1) rc=$? ($(since)): $(grep -E '^\| (packed|pad)' "$OUT/model_bench.log" | tail -2 | cut -d'|' -f2-5 | tr '\n' ' ')"
  }
  mb "before"
  if [ "${RG_TORCH_SEED:-0}" = 1 ] && [ -f "$BENCH/torch_seed_bench.py" ]; then
    PYTHONUNBUFFERED=1 timeout 400 python3 "$BENCH/torch_seed_bench.py" --lengths "$BENCH/lengths.txt" \
      --only varlen/eval/compiled,varlen/train/compiled >"$OUT/torch_seed.log" 2>&1
    note "torch_seed_bench rc=$? ($(since))"
    grep -E '^\{' "$OUT/torch_seed.log" | tee -a "$SUM"
    mb "after torch"
  fi
  RG_PROFILE=1 "$BUILD/ragged" "${MB[@]}" -q >"$OUT/model_profile.log" 2>&1
  note "ragged bench RG_PROFILE=1 rc=$? ($(since))"
fi

# ---- Nsight Compute on the automatic kernels (one batch, one run of each) ----
if [ "${RG_NCU:-0}" = 1 ]; then
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
  if [ -n "$NCU" ]; then
    timeout 240 "$NCU" --clock-control none -k regex:attn --launch-count 10 --section SpeedOfLight \
      --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
      --section MemoryWorkloadAnalysis --section LaunchStats \
      "$BUILD/cuda_attn_lab" --lengths "$BENCH/lengths.txt" --no-sweep --batches 1 --iters 1 --warm 0 \
      >"$OUT/ncu.log" 2>&1
    note "ncu rc=$? ($(since))"
    grep -E "attn_|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Theoretical Occ" "$OUT/ncu.log" | sed 's/(const .*//' | head -80
  else
    note "ncu not found"
  fi
fi

# ---- PyTorch's attention benchmark, same batches, same call ----
if [ "${RG_TORCH:-0}" = 1 ] && [ -f "$BENCH/torch_attn_bench.py" ]; then
  PYTHONUNBUFFERED=1 timeout 300 python3 "$BENCH/torch_attn_bench.py" >"$OUT/torch.log" 2>&1
  note "torch bench rc=$? ($(since))"
fi

# ---- ceilings: a big bf16 GEMM and a big device copy through PyTorch ----
if [ "${RG_CEILINGS:-0}" = 1 ]; then
  timeout 120 python3 - >"$OUT/ceilings.log" 2>&1 <<'EOF'
import torch
def t(fn, reps):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps): fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / reps
n = 8192
a = torch.randn(n, n, device='cuda', dtype=torch.bfloat16); b = torch.randn(n, n, device='cuda', dtype=torch.bfloat16)
ms = t(lambda: a @ b, 20)
print(f"ceiling gemm bf16 {n}^3: {2*n**3/ms/1e9:.1f} TFLOP/s ({ms:.3f} ms)")
x = torch.randn(512 * 1024 * 1024, device='cuda', dtype=torch.float32); y = torch.empty_like(x)
ms = t(lambda: y.copy_(x), 20)
print(f"ceiling copy 2 GiB: {2*x.numel()*4/ms/1e6:.0f} GB/s read+write ({ms:.3f} ms)")
EOF
  cat "$OUT/ceilings.log" >>"$SUM"
  rm -f "$OUT/ceilings.log"   # kept in the summary: $OUT returns at most 8 files
fi

# ---- generation: ragged bench generate, then HF generate on the same prompts ----
if [ "${RG_GEN:-0}" = 1 ]; then
  GB=(bench generate --backend cuda -n "${RG_GEN_TOKENS:-128}" -B "${RG_GEN_BATCHES:-1,16,64}"
      --prompts-out "$OUT/gen_prompts.txt")
  "$BUILD/ragged" "${GB[@]}" -q -o json >"$OUT/gen_ragged.json" 2>"$OUT/gen_ragged.err"
  note "ragged bench generate rc=$? ($(since))"
  "$BUILD/ragged" "${GB[@]}" -q 2>>"$OUT/gen_ragged.err" | tee -a "$SUM"
  for v in ${RG_GEN_VARIANTS:-}; do
    note "-- variant ${v//,/ }"
    env ${v//,/ } "$BUILD/ragged" "${GB[@]}" -q 2>>"$OUT/gen_ragged.err" | tee -a "$SUM"
  done
  if [ -f scripts/hf_generate_bench.py ] && [ "${RG_GEN_HF:-1}" = 1 ]; then
    PYTHONUNBUFFERED=1 timeout 300 python3 scripts/hf_generate_bench.py --prompts "$OUT/gen_prompts.txt" \
      --new-tokens "${RG_GEN_TOKENS:-128}" --dtypes bf16 ${RG_GEN_HF_ARGS:-} --json "$OUT/gen_hf.json" \
      >"$OUT/gen_hf.log" 2>&1
    note "hf generate rc=$? ($(since))"
    tail -8 "$OUT/gen_hf.log" | tee -a "$SUM"
  fi
fi

# ---- what one grid-wide handoff costs (bench/cuda_barrier_bench.cu) ----
if [ "${RG_BARRIER:-0}" = 1 ]; then
  if [ -x "$BUILD/cuda_barrier_bench" ]; then
    timeout 120 "$BUILD/cuda_barrier_bench" 2>&1 | tee -a "$SUM"
  else
    note "RG_BARRIER=1: $BUILD/cuda_barrier_bench was not built (RG_TARGETS?)"
  fi
fi

# ---- summary (last, so it ends the output) ----
echo
echo "==================== summary ===================="
cat "$SUM"
grep RESULT "$OUT/lab.log" 2>/dev/null
[ -f "$OUT/torch.log" ] && grep -E '"varlen"|error|gpu' "$OUT/torch.log"
[ -f "$OUT/model_bench.log" ] && grep -E '^\| (strategy|packed|pad|---)' "$OUT/model_bench.log"
[ -f "$OUT/model_profile.log" ] && sed -n '/^### Per-op/,$p' "$OUT/model_profile.log" | head -80
echo "total $(since)"

#!/usr/bin/env bash
# The ONE prepared GPU check for issue 7 (H100 or H200, bf16, real-size random weights).
#
#   bash benchmarks/gpu_check.sh                       # from the repository root, on the GPU machine
#
# Installs nothing and needs no network: jinav3 is imported from core/ through a symlink on
# PYTHONPATH; torch, transformers (>= 5.17), peft and sentence-transformers come from the machine.
# Sections run one after another, each under its own timeout, and fail soft (a failed section is
# logged and the next one runs). Worst case about 8 minutes; typically 4-5. Output: the numbers on
# stdout, and in $OUT (default /tmp/jinav3-gpu-out):
#   env.txt          GPU, driver, versions, which varlen kernel is available and its signature
#   parity.json      packed vs padded vs golden on the GPU (benchmarks/gpu_parity.py)
#   real.json        the benchmark: model-card way, jinav3 padded, jinav3 packed (64k, + 32k/128k),
#                    jinav3 packed with tokenising in line (what the pipeline's overlap is worth),
#                    sentence-transformers; time to first query vector; 8 x 8192-token documents;
#                    late chunking of a 100,000-token document
#   real-compiled.json  jinav3 packed with torch.compile'd layers (only if time is left)
#   gpu_check.log    everything printed
# Smoke test anywhere: SIZE=tiny DEVICE=cpu DTYPE=float32 TOKENS=3000 LATE=2000 bash benchmarks/gpu_check.sh
set -u
OUT="${OUT:-/tmp/jinav3-gpu-out}"
SIZE="${SIZE:-real}" DEVICE="${DEVICE:-cuda}" DTYPE="${DTYPE:-bfloat16}" TOKENS="${TOKENS:-905291}" LATE="${LATE:-100000}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
START=$(date +%s)
LOG="$OUT/gpu_check.log"
# TOKENIZERS_PARALLELISM stays unset: tokenising is host work every way pays; all cores should do it
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export JINAV3_BENCH_DIR="${JINAV3_BENCH_DIR:-/tmp/jinav3-bench}"
# jinav3 without installing anything: the package directory is core/, imported as "jinav3"
mkdir -p /tmp/jinav3-path && ln -sfn "$PWD/core" /tmp/jinav3-path/jinav3
export PYTHONPATH="/tmp/jinav3-path:$PWD${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "[$(date +%T) +$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
left() { echo $(( 480 - ( $(date +%s) - START ) )); }
run() {  # run <seconds> <name> <command...>: time-boxed, logged, never fatal
  local limit=$1 name=$2; shift 2
  say "== $name (limit ${limit}s)"
  timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  say "== $name: exit $rc"
}

# 0. environment (seconds)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  "$PY" - <<'EOF' 2>&1
import inspect, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for name in ("transformers", "peft", "sentence_transformers", "tokenizers", "flash_attn"):
    try:
        print(name, __import__(name).__version__)
    except Exception as error:
        print(name, "MISSING", type(error).__name__)
try:
    from torch.nn.attention.varlen import varlen_attn
    print("torch varlen_attn", inspect.signature(varlen_attn))
except Exception as error:
    print("torch varlen_attn MISSING", type(error).__name__, error)
from transformers import JinaEmbeddingsV3Model  # noqa: F401  (transformers >= 5.17)
import jinav3, jinav3.packing as p
print("jinav3 from", jinav3.__file__, "| packed backend bf16:", p.varlen_backend("cuda", torch.bfloat16),
      "| packing_supported:", p.packing_supported("cuda", torch.bfloat16))
EOF
} | tee "$OUT/env.txt" | tee -a "$LOG"

# 1. correctness on the GPU first (about 30 s)
run 90 "parity" "$PY" -m benchmarks.gpu_parity --device "$DEVICE" --json "$OUT/parity.json"

# 2. the benchmark: real size, bf16, 905,291 passage tokens (about 3 min: building the 1.1 GB random
#    checkpoint and converting it ~40 s, loading three stacks ~30 s, two rounds of every way ~90 s)
run 300 "benchmark $SIZE $DTYPE" "$PY" -m benchmarks.run --size "$SIZE" --device "$DEVICE" --dtype "$DTYPE" \
  --tokens "$TOKENS" --rounds 2 --packed-budgets 32768,131072 --long-docs 8 --late-tokens "$LATE" \
  --ways card,jinav3-padded,jinav3-packed,jinav3-packed-inline,sentence-transformers --json "$OUT/real.json"

# 3. only if time is left: the packed path with torch.compile'd layers (same checkpoint, reused)
if [ "$(left)" -gt 110 ]; then
  run $(( $(left) - 10 )) "benchmark $SIZE $DTYPE, compiled layers" "$PY" -m benchmarks.run --size "$SIZE" \
    --device "$DEVICE" --dtype "$DTYPE" --tokens "$TOKENS" --rounds 2 --ways jinav3-packed --compile --long-docs 2 \
    --late-tokens 0 --json "$OUT/real-compiled.json"
else
  say "skipping the compiled run: $(left)s left"
fi
say "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"

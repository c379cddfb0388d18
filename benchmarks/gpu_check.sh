#!/usr/bin/env bash
# The ONE prepared device check (issue 26): H100 or H200, bf16, real-size random weights.
#
#   bash benchmarks/gpu_check.sh --prepare   # here, with network: the server's wheels for Python 3.12 into .whl/
#   bash benchmarks/gpu_check.sh             # on the GPU machine, from the repository root (carry .whl)
#   bash benchmarks/gpu_check.sh --dry-run   # any CPU: every section at tiny size, a stand-in varlen_attn
#
# Sections (benchmarks/gpu_check.py), one process each, each under its own time limit and fail-soft (a
# failed or timed-out section is recorded and the next one runs): env, parity, real, profile, switch,
# compiled, server. Each writes $OUT/<section>.json; then $OUT/summary.json, and a summary of at most 60
# lines is printed last. 8 files in all. The whole run stops starting sections after $BUDGET seconds
# (default 480; a section gets at most what is left). SECTIONS="compiled server" runs only those (a rerun).
# Logs per section: $LOGS (default a new /tmp/jinav3-gpu-logs.*); the summary quotes the tail of any that failed.
#
# jinav3 is imported from this checkout (core/ as `jinav3`, integrations/ as `jinav3.integrations`,
# through a folder of symbolic links on PYTHONPATH); torch, transformers (>= 5.17), peft and
# sentence-transformers come from the machine. The server's packages (fastapi, uvicorn, starlette,
# pydantic, ...: not in the GPU image) come from .whl/, installed with pip --no-index --target.
set -u
MODE=device
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --prepare) MODE=prepare ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--dry-run | --prepare]" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
if [ -z "${PYTHON:-}" ] && [ "$MODE" != device ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
PY="${PYTHON:-python3}"
WHEELS="$ROOT/.whl"
# --prepare: the wheels for the GPU machine (Python 3.12, x86-64), the server's packages at the versions
# this checkout's tests ran with and everything they need (benchmarks/gpu_check.py: wheels)
if [ "$MODE" = prepare ]; then exec "$PY" -m benchmarks.gpu_check wheels --wheels "$WHEELS"; fi

OUT="${OUT:-/tmp/jinav3-gpu-out}"
LOGS="${LOGS:-$(mktemp -d /tmp/jinav3-gpu-logs.XXXXXX)}"
BUDGET="${BUDGET:-480}"
SECTIONS="${SECTIONS:-env parity real profile switch compiled server}"
mkdir -p "$OUT" "$LOGS"
START=$(date +%s)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export JINAV3_BENCH_DIR="${JINAV3_BENCH_DIR:-/tmp/jinav3-bench}"
DRY=()
if [ "$MODE" = dry ]; then DRY=(--dry-run); fi
# TOKENIZERS_PARALLELISM stays unset: tokenising is host work every way pays; all cores should do it

# jinav3 from this checkout without installing it: a package folder of links to core/, plus integrations/
LINKS="$(mktemp -d /tmp/jinav3-path.XXXXXX)"
mkdir -p "$LINKS/jinav3"
for f in "$ROOT"/core/*; do ln -s "$f" "$LINKS/jinav3/$(basename "$f")"; done
ln -s "$ROOT/integrations" "$LINKS/jinav3/integrations"
export PYTHONPATH="$LINKS:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "[$(date +%T) +$(( $(date +%s) - START ))s] $*"; }
left() { echo $(( BUDGET - ( $(date +%s) - START ) )); }
wanted() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
section() {  # section <name> <limit seconds> [command...]: time-boxed, logged, never fatal
  local name=$1 limit=$2; shift 2
  wanted "$name" || return 0
  local remaining; remaining=$(left)
  if [ "$remaining" -lt 20 ]; then
    echo "skipped: ${remaining}s of the ${BUDGET}s budget left" > "$LOGS/$name.rc"; say "== $name skipped"; return 0
  fi
  [ "$limit" -gt "$remaining" ] && limit=$remaining
  say "== $name (limit ${limit}s)"
  if [ $# -eq 0 ]; then set -- "$PY" -m benchmarks.gpu_check "$name" --out "$OUT" "${DRY[@]}"; fi
  timeout --signal=INT --kill-after=15 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  echo "$rc" > "$LOGS/$name.rc"
  tail -n 25 "$LOGS/$name.log"
  say "== $name: exit $rc"
}

# A clean clone has no .whl/ (git-ignored): the dry run prepares it (needs the network); the device has
# no network, so there it must have travelled (carry .whl)
if [ "$MODE" = dry ] && wanted server && [ -z "$(ls "$WHEELS"/*.whl 2>/dev/null)" ]; then
  say "no wheels in $WHEELS: preparing them (bash benchmarks/gpu_check.sh --prepare)"
  "$PY" -m benchmarks.gpu_check wheels --wheels "$WHEELS" > "$LOGS/wheels.log" 2>&1 || tail -n 5 "$LOGS/wheels.log"
fi

# The real-size checkpoint is built in the background while env and parity run (they use small models).
BUILD_PID=""
if wanted real || wanted profile || wanted switch || wanted compiled || wanted server; then
  "$PY" -m benchmarks.gpu_check build --out "$OUT" "${DRY[@]}" > "$LOGS/build.log" 2>&1 &
  BUILD_PID=$!
fi

section env 60
# packed_ok false (no varlen kernel, or its smoke test failed): every later section runs padded
PACKED=$("$PY" -c 'import json, sys; print(int(json.load(open(sys.argv[1])).get("packed_ok", False)))' \
         "$OUT/env.json" 2>/dev/null || echo 0)
export JINAV3_GPU_PACKED="$PACKED"
[ "$PACKED" = 1 ] || say "packed attention OFF for the rest of the run (see env.json: varlen_attn, smoke)"
section parity 90
if [ -n "$BUILD_PID" ]; then
  wait "$BUILD_PID" || { say "checkpoint build failed:"; tail -n 20 "$LOGS/build.log"; }
fi
section real 180
section profile 60
section switch 60
section compiled 150

section server 150

say "done"
"$PY" -m benchmarks.gpu_check summary --out "$OUT" --logs "$LOGS" "${DRY[@]}"
rm -rf "$LINKS"

"""The sections of the device check, one per process: ``bash benchmarks/gpu_check.sh`` runs them.

    python -m benchmarks.gpu_check SECTION --out DIR [--dry-run]

Sections (each writes DIR/SECTION.json with ``status`` "ok" or "failed" and its numbers):

  build     the real-size random checkpoint (bf16), built while env and parity run (no JSON)
  env       versions, the GPU, varlen_attn's signature, the measured bf16 matmul rate and copy
            bandwidth, and a varlen_attn smoke test against per-sequence SDPA (lengths 1, 2, 8192):
            ``packed_ok`` false sends every later section down the padded path (JINAV3_GPU_PACKED=0)
  parity    benchmarks/gpu_parity.py: golden parity in fp32 (1e-5) and bf16 (cosine >= 0.999, merged
            and correction path, late chunking), packed vs one-by-one, host waits per forward = 0
  real      benchmarks/run.py at real size: the model-card way, jinav3 padded, jinav3 packed (64k-token
            batches, plus 32k and 128k); 8 documents of 8,192 tokens; late chunking of 100,000 tokens
  profile   torch.profiler over three packed forwards: where the device's time goes, GPU-busy fraction
  switch    benchmarks/task_switch.py: a query right after passages against a warm query
  compiled  jinav3 packed with torch_compile=True next to eager: compile seconds, tokens/s, cosine,
            graphs compiled during the timed rounds (0: no recompiles there)
  server    benchmarks/server_bench.py: 64 concurrent clients, bulk through the server, query latency
            under bulk
  summary   reads every JSON, writes DIR/summary.json, prints at most 60 lines
  wheels    (``--prepare``, here, with network) the server's wheels for Python 3.12 into .whl/

``--dry-run``: the same code on this CPU at tiny size, bfloat16, with torch's CUDA-only varlen_attn
replaced by benchmarks/varlen_standin.py (same signature and checks), so every line has run before
any device time is spent.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import re
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

SECTIONS = ("env", "parity", "real", "profile", "switch", "compiled", "server")
TASK = "retrieval.passage"


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the device's (``GPU``) or the dry run's on a CPU (``DRY``)."""

    device: str
    dtype: str
    size: str
    tokens: int                   # passage corpus of the real section
    budgets: str                  # extra packed budgets of the real section
    long_docs: int
    long_length: int
    late_tokens: int
    smoke_lengths: tuple[int, ...]
    matmul: tuple[tuple[int, int, int], ...]
    copy_mib: int
    profile_tokens: int           # tokens per profiled forward (the packed budget)
    switch_repeats: int
    compiled_tokens: int
    server: tuple[str, ...]       # server_bench arguments besides size, device, dtype


GPU = Plan("cuda", "bfloat16", "real", 905291, "32768,131072", 8, 8192, 100000, (1, 2, 8192),
           ((8192, 8192, 8192), (65536, 1024, 4096), (65536, 4096, 1024)), 1024, 65536, 5, 400000,
           ("--concurrency", "1,8,64", "--requests", "512", "--passage-tokens", "300000", "--bulk-clients", "4",
            "--mixed-queries", "40", "--rounds", "2"))
DRY = Plan("cpu", "bfloat16", "tiny", 3000, "1024,8192", 2, 600, 2000, (1, 2, 300),
           ((256, 256, 256), (1024, 64, 128)), 16, 1024, 2, 2000,
           ("--concurrency", "1,8", "--requests", "32", "--passage-tokens", "2000", "--bulk-clients", "2",
            "--mixed-queries", "5", "--query-rate", "20", "--rounds", "1"))


def log(*parts: object) -> None:
    print(*parts, flush=True)


def packed_ok() -> bool:
    """What env found (gpu_check.sh exports it): False runs every later section padded."""
    return os.environ.get("JINAV3_GPU_PACKED", "1") != "0"


def workdir() -> Path:
    from .run import DEFAULT_WORKDIR

    return Path(os.environ.get("JINAV3_BENCH_DIR") or DEFAULT_WORKDIR)


def checkpoint(plan: Plan) -> tuple[Path, Path]:
    """(original, native) random checkpoint of the plan's size, as benchmarks.run builds it (reused)."""
    from jinav3.devices import pick_dtype

    from .checkpoint import build

    dtype = pick_dtype(plan.dtype, torch.device(plan.device)) if plan.device == "cuda" else torch.float32
    return build(workdir(), plan.size, dtype=dtype)


def load(plan: Plan, **options):
    from jinav3 import Encoder

    original, _ = checkpoint(plan)
    return Encoder.from_pretrained(original, device=plan.device, dtype=plan.dtype, **options)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ============================================================================================ env
def copy_bandwidth(device: torch.device, mib: int) -> dict:
    """GB/s of pinned host -> device, device -> pinned host and device -> device copies (best of 5)."""
    n = mib * 2**20
    host = torch.empty(n, dtype=torch.uint8)
    host = host.pin_memory() if device.type == "cuda" else host
    on_device = torch.empty(n, dtype=torch.uint8, device=device)
    other = torch.empty(n, dtype=torch.uint8, device=device)
    out = {}
    for name, dst, src in (("host_to_device", on_device, host), ("device_to_host", host, on_device),
                           ("device_to_device", other, on_device)):
        best = float("inf")
        for _ in range(5):
            sync(device)
            start = time.perf_counter()
            dst.copy_(src, non_blocking=True)
            sync(device)
            best = min(best, time.perf_counter() - start)
        out[name + "_gb_s"] = n / best / 1e9
    return out


def varlen_smoke(device: torch.device, dtype: torch.dtype, lengths: tuple[int, ...]) -> dict:
    """jinav3's packed attention (the kernel it picks) against SDPA per sequence in float32: 16 heads of
    64, the model's scaling; max abs difference and min cosine per token and head."""
    from jinav3 import packing

    torch.manual_seed(0)
    total = sum(lengths)
    q, k, v = (torch.randn(1, 16, total, 64, device=device).to(dtype) for _ in range(3))
    packed = packing.pack([[1] * n for n in lengths], device)
    with torch.inference_mode():
        got, _ = packing.varlen_attention_forward(None, q, k, v, None, scaling=64**-0.5,
                                                  cu_seq_lens_q=packed.cu_seq_lens, max_length_q=packed.max_length)
        want = packing._sdpa_loop(q[0].float(), k[0].float(), v[0].float(), packed.bounds, 64**-0.5)
    got = got[0].float()
    cos = torch.nn.functional.cosine_similarity(got, want, dim=-1)  # (T, heads)
    max_abs, min_cos = float((got - want).abs().max()), float(cos.min())
    return {"lengths": list(lengths), "backend": packing.varlen_backend(device, dtype), "max_abs": max_abs,
            "min_cosine": min_cos, "ok": max_abs < 0.05 and min_cos > 0.999}


def section_env(plan: Plan, args) -> dict:
    from jinav3 import packing

    from .measure import machine, matmul_peak, versions

    device, dtype = torch.device(plan.device), getattr(torch, plan.dtype)
    report: dict = {"machine": machine(device), "versions": versions()}
    for name in ("fastapi", "uvicorn", "starlette", "pydantic", "prometheus_client", "httpx"):
        try:
            report["versions"][name] = __import__(name).__version__
        except Exception:
            report["versions"][name] = None
    if device.type == "cuda":
        import shutil
        import subprocess

        if shutil.which("nvidia-smi"):
            query = "--query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit"
            report["nvidia_smi"] = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True,
                                                  text=True, timeout=20).stdout.strip()
        report["gpu"] = {"name": torch.cuda.get_device_name(device),
                         "capability": list(torch.cuda.get_device_capability(device)),
                         "memory_gib": torch.cuda.get_device_properties(device).total_memory / 2**30}
    fn, takes_scale = packing._varlen_kernel(device.type)
    report["varlen_attn"] = {
        "signature": str(inspect.signature(fn)) if fn is not None else "MISSING (torch < 2.10)",
        "takes_scale": takes_scale, "stand_in": args.dry_run,
        "backend": packing.varlen_backend(device, dtype), "flash_attn": packing._flash_attn_varlen() is not None,
        "packing_supported": packing.packing_supported(device, dtype)}
    log(f"varlen_attn{report['varlen_attn']['signature']}  backend {report['varlen_attn']['backend']}")
    try:
        report["smoke"] = varlen_smoke(device, dtype, plan.smoke_lengths)
    except Exception as error:
        report["smoke"] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        traceback.print_exc(limit=6)
    report["packed_ok"] = bool(report["smoke"].get("ok")) and report["varlen_attn"]["backend"] != "sdpa_loop"
    log(f"varlen smoke {report['smoke']}: packed path {'ON' if report['packed_ok'] else 'OFF (padded)'}")
    report["matmul"] = matmul_peak(dtype, device, plan.matmul)
    report["copy"] = copy_bandwidth(device, plan.copy_mib)
    log(f"{plan.dtype} matmul peak {report['matmul']['peak_tflops']:.1f} TFLOP/s; copies {report['copy']}")
    return report


# ============================================================================================ parity, real, switch
def section_parity(plan: Plan, args) -> dict:
    from . import gpu_parity

    return gpu_parity.main(["--device", plan.device] + (["--bf16", "--small"] if args.dry_run else []))


def section_real(plan: Plan, args) -> dict:
    from . import run

    ways = "card,jinav3-padded,jinav3-packed" if packed_ok() else "card,jinav3-padded"
    argv = ["--size", plan.size, "--device", plan.device, "--dtype", plan.dtype, "--tokens", str(plan.tokens),
            "--rounds", "2" if not args.dry_run else "1", "--ways", ways, "--long-docs", str(plan.long_docs),
            "--long-length", str(plan.long_length), "--late-tokens", str(plan.late_tokens),
            "--workdir", str(workdir()), "--json", str(args.out / "real.json")]
    if packed_ok():
        argv += ["--packed-budgets", plan.budgets]
    if args.dry_run:
        argv.append("--no-peak")  # env measured it; the CPU's fp32 probe takes seconds
    report = run.main(argv)
    report["packed"] = packed_ok()
    return report


def section_switch(plan: Plan, args) -> dict:
    from . import task_switch

    return task_switch.main(["--size", plan.size, "--device", plan.device, "--dtype", plan.dtype,
                             "--repeats", str(plan.switch_repeats), "--workdir", str(workdir())])


# ============================================================================================ profile
CATEGORIES = (  # first match wins; kernel names on CUDA, aten operators on the CPU
    ("attention", r"flash|fmha|varlen|attention|sdpa|scaled_dot"),
    ("matmul", r"gemm|gemv|cutlass|xmma|cublas|nvjet|wgmma|aten::(mm|addmm|bmm|matmul|linear)$"),
    ("layernorm", r"layer_?norm"),
    ("copies", r"memcpy|memset|copy|aten::(to|_to_copy|contiguous|clone|index_select)$"),
    ("elementwise_rotary", r"elementwise|vectorized|reduce|gelu|add|mul|cat|neg|index|embedding|sum|div|aten::"),
)


def category(name: str) -> str:
    for label, pattern in CATEGORIES:
        if re.search(pattern, name, re.IGNORECASE):
            return label
    return "other"


def device_us(event) -> float:
    """An averaged profiler event's own device time in microseconds (the name changed in torch 2.4)."""
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0) or 0


def device_times(events) -> dict[str, float]:
    """Seconds of CUDA kernels (and copies) by category."""
    times: dict[str, float] = {}
    for event in events:
        if getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA:
            times[category(event.key)] = times.get(category(event.key), 0.0) + device_us(event) / 1e6
    return times


def section_profile(plan: Plan, args) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from . import corpus

    device = torch.device(plan.device)
    encoder = load(plan, packed=packed_ok(), max_tokens_per_batch=plan.profile_tokens)
    texts = corpus.passages(encoder.tokenizer, 3 * plan.profile_tokens - plan.profile_tokens // 8, seed=3)
    encoder.encode(texts, task=TASK)  # warm: the same batches, so nothing is first-time in the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        encoder.encode(texts, task=TASK)
        sync(device)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    times = device_times(events) if device.type == "cuda" else {}
    how = "CUDA kernel time"
    if not times:  # the CPU (dry run), or a profiler that attributes no kernels: the operators' own time
        how = "aten operators' own device time" if device.type == "cuda" else "aten operators' own CPU time"
        for event in events:
            if event.key.startswith("aten::"):
                us = device_us(event) if device.type == "cuda" else event.self_cpu_time_total
                times[category(event.key)] = times.get(category(event.key), 0.0) + us / 1e6
    busy = sum(times.values())
    report = {"packed": packed_ok(), "tokens_per_forward": plan.profile_tokens, "forwards": "3 (one encode call)",
              "wall_s": wall, "seconds_by_category": times,
              "share_by_category": {k: v / busy for k, v in times.items()} if busy else {},
              "device_busy_fraction": busy / wall if device.type == "cuda" else None,
              "how": how}
    log(f"profile: {wall * 1e3:.1f} ms for 3 forwards; "
        + ", ".join(f"{k} {v:.0%}" for k, v in sorted(report["share_by_category"].items(), key=lambda kv: -kv[1]))
        + (f"; GPU busy {report['device_busy_fraction']:.0%}" if report["device_busy_fraction"] else ""))
    return report


# ============================================================================================ compiled
def section_compiled(plan: Plan, args) -> dict:
    from torch._dynamo.utils import counters

    from . import corpus
    from .measure import timed

    device = torch.device(plan.device)
    eager = load(plan, packed=packed_ok())
    compiled = load(plan, packed=packed_ok(), torch_compile=True)
    texts = corpus.passages(eager.tokenizer, plan.compiled_tokens, seed=5)
    tokens = sum(len(ids) for ids in eager.tokenize([eager.instruction(TASK) + t for t in texts], eager.max_length))
    warm = texts[:64]
    _, compile_s, _ = timed(lambda: compiled.encode(warm, task=TASK), device)
    eager.encode(warm, task=TASK)
    _, second_s, _ = timed(lambda: compiled.encode(texts, task=TASK), device)  # other shapes: dynamic, no recompile
    graphs_before = counters["stats"]["unique_graphs"]
    walls: dict[str, list[float]] = {"eager": [], "compiled": []}
    vectors = {}
    for _ in range(2):
        for name, encoder in (("eager", eager), ("compiled", compiled)):
            gc.collect()
            vectors[name], wall, _ = timed(lambda e=encoder: e.encode(texts, task=TASK), device)
            walls[name].append(wall)
    cos = (vectors["eager"] * vectors["compiled"]).sum(1)  # unit vectors
    report = {"packed": packed_ok(), "tokens": tokens, "compile_s": compile_s, "first_full_pass_s": second_s,
              "graphs_compiled_in_timed_rounds": counters["stats"]["unique_graphs"] - graphs_before,
              "eager_tokens_per_s": tokens / min(walls["eager"]),
              "compiled_tokens_per_s": tokens / min(walls["compiled"]),
              "rounds_s": walls, "min_cosine_vs_eager": float(cos.min())}
    report["speedup"] = report["compiled_tokens_per_s"] / report["eager_tokens_per_s"]
    merges = compiled.lora.merges
    _, query_s, _ = timed(lambda: compiled.encode(["what helps sensitive skin"], task="retrieval.query"), device)
    report["first_query_after_passages_ms"] = query_s * 1e3
    report["query_remerged"] = compiled.lora.merges > merges  # compiled layers re-merge (no corrections)
    log(f"compiled: compile {compile_s:.1f}s, {report['compiled_tokens_per_s']:,.0f} vs eager "
        f"{report['eager_tokens_per_s']:,.0f} tok/s ({report['speedup']:.2f}x), "
        f"min cos {report['min_cosine_vs_eager']:.6f}, "
        f"{report['graphs_compiled_in_timed_rounds']} graphs compiled while timed")
    return report


# ============================================================================================ server
# The GPU image has no fastapi/uvicorn/starlette/pydantic: they travel as wheels in .whl/ (git-ignored),
# built here by `bash benchmarks/gpu_check.sh --prepare` at the versions this checkout's tests ran with.
SERVER_PACKAGES = ("fastapi", "uvicorn", "starlette", "pydantic", "prometheus-client", "httpx")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_34_x86_64")
FOR_PYTHON_3_12 = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
                   *(arg for platform in PLATFORMS for arg in ("--platform", platform))]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def pins() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in SERVER_PACKAGES]


def wheels_prepare(folder: Path) -> int:
    """Download the server's packages and everything they need, as wheels for Python 3.12 on x86-64."""
    import shutil
    import subprocess

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    subprocess.run([*PIP, "download", "-q", *FOR_PYTHON_3_12, "-d", str(folder), *pins()], check=True)
    names = sorted(p.name for p in folder.glob("*.whl"))
    size = sum(p.stat().st_size for p in folder.glob("*.whl"))
    print(f"{len(names)} wheels, {size / 2**20:.1f} MiB, in {folder}:", *names, sep="\n  ", flush=True)
    return 0


def distribution(wheel: Path) -> str:
    """A wheel file's distribution name, normalised (``pydantic_core-2.5-cp312-...whl`` -> ``pydantic-core``)."""
    return re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()


def installed(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


def install_wheels(folder: Path, dry_run: bool) -> dict:
    """pip install --no-index --no-deps --target of the wheels the machine lacks (what it has stays its
    own, so nothing on PYTHONPATH shadows the machine's packages); then on the path of this process and of
    the server it starts. Dry run: all of them, for Python 3.12, into a temporary folder (this CPU's
    Python is another version), and a resolution from .whl/ alone: every requirement is met there."""
    import subprocess
    import tempfile

    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise FileNotFoundError(f"no wheels in {folder}: run `bash benchmarks/gpu_check.sh --prepare` (with network)")
    target = Path(tempfile.mkdtemp(prefix="jinav3-site-")) if dry_run else Path("/tmp/site")
    chosen = wheels if dry_run else [w for w in wheels if not installed(distribution(w))]
    install = [*PIP, "--isolated", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
               "--upgrade", "--target", str(target), *(FOR_PYTHON_3_12 if dry_run else [])]
    command = [*install, *map(str, chosen)]
    if chosen:
        subprocess.run(command, check=True)
    report = {"target": str(target), "installed": [distribution(w) for w in chosen],
              "machine_had": sorted({distribution(w) for w in wheels} - {distribution(w) for w in chosen}),
              "command": " ".join(command[:12]) + " ..."}
    if dry_run:
        check = Path(tempfile.mkdtemp(prefix="jinav3-resolve-"))
        subprocess.run([*PIP, "--isolated", "install", "-q", "--dry-run", "--no-index", "--find-links", str(folder),
                        "--target", str(check), *FOR_PYTHON_3_12, *pins()], check=True)
        report["resolves_from_wheels_alone"] = True
        report["modules"] = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
        import shutil

        for folder_made in (target, check):  # built for another Python: nothing here can use them
            shutil.rmtree(folder_made, ignore_errors=True)
    else:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
        probe = [sys.executable, "-c", "import fastapi, uvicorn, pydantic, prometheus_client, httpx"]
        if subprocess.run(probe).returncode != 0 and len(chosen) < len(wheels):
            # a package the machine has is too old for the others: take the whole set from .whl/ after all
            subprocess.run([*install, *map(str, wheels)], check=True)
            report["installed"], report["machine_had"] = [distribution(w) for w in wheels], []
            report["note"] = "the machine's own copies did not import with the rest: all wheels installed"
        sys.path.insert(0, str(target))
    log(f"wheels: installed {report['installed']} into {target}; the machine's own: {report['machine_had']}")
    return report


def section_server(plan: Plan, args) -> dict:
    wheels = install_wheels(args.wheels, args.dry_run)
    from . import server_bench

    argv = ["--size", plan.size, "--device", plan.device, "--dtype", plan.dtype, "--workdir", str(workdir()),
            *plan.server]
    report = server_bench.main(argv)
    report["wheels"] = wheels
    return report


# ============================================================================================ summary
def _read(out: Path, name: str) -> dict | None:
    try:
        return json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def _status(out: Path, logs: Path, name: str) -> dict:
    """ok / failed / timeout / skipped, from the section's JSON and its exit status (written by gpu_check.sh)."""
    data = _read(out, name)
    rc_file = logs / f"{name}.rc"
    rc = rc_file.read_text().strip() if rc_file.exists() else "not run"
    entry: dict = {"rc": rc}
    if rc.startswith("skipped"):
        entry["status"] = "skipped"
    elif rc in ("124", "137"):
        entry["status"] = "timeout" + (" (partial JSON)" if data else "")
    elif data is not None and data.get("status") == "ok" and rc == "0":
        entry["status"] = "ok"
    else:
        entry["status"] = "failed"
    if data is not None:
        entry["seconds"] = data.get("seconds")
        if data.get("error"):
            entry["error"] = data["error"]
    if entry["status"] != "ok" and (logs / f"{name}.log").exists():
        entry["log_tail"] = (logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
    return entry


def _headlines(out: Path) -> list[str]:
    """The numbers that answer the issue's goals, one line each (what exists)."""
    lines: list[str] = []
    env, parity, real = _read(out, "env") or {}, _read(out, "parity") or {}, _read(out, "real") or {}
    peak = (env.get("matmul") or {}).get("peak_tflops")
    if env:
        v = env.get("versions", {})
        where = (env.get("gpu") or {}).get("name", env.get("machine", {}).get("cpu"))
        lines.append(f"env: {where}, torch {v.get('torch')}"
                     f", transformers {v.get('transformers')}, backend {env.get('varlen_attn', {}).get('backend')}"
                     f" (stand-in {env.get('varlen_attn', {}).get('stand_in')}), packed_ok {env.get('packed_ok')}")
        lines.append(f"  varlen_attn{env.get('varlen_attn', {}).get('signature', '')}"[:160])
        smoke, copy = env.get("smoke", {}), env.get("copy", {})
        lines.append(f"  smoke {smoke.get('lengths')}: max abs {smoke.get('max_abs', float('nan')):.3g}, min cos "
                     f"{smoke.get('min_cosine', float('nan')):.6f}; peak {peak or float('nan'):.1f} TFLOP/s; "
                     "copies GB/s "
                     + " ".join(f"{k.removesuffix('_gb_s')} {x:.1f}" for k, x in copy.items()))
    if parity:
        checks = parity.get("checks", {})
        failed = [k for k, c in checks.items() if not c.get("ok")]
        lines.append(f"parity: {len(checks) - len(failed)}/{len(checks)} checks pass; host waits per packed forward "
                     f"{(parity.get('host_waits_per_packed_forward') or {}).get('count')}")
        lines += [f"  FAIL {k}: {checks[k].get('value', checks[k].get('error'))}"[:160] for k in failed[:5]]
    for name, way in (real.get("ways") or {}).items():
        share = f", {way['useful_tflops'] / peak:.0%} of peak" if peak else ""
        lines.append(f"real {name:24s} {way['tokens_per_s']:>12,.0f} tok/s{share}, peak "
                     f"{way['peak_memory']['peak_gib']:.2f} GiB, x card {way.get('ratio_vs_card', float('nan')):.2f}")
    for name, entry in (real.get("long_documents") or {}).items():
        if name != "setup" and "tokens_per_s" in entry:
            lines.append(f"real long docs {name:18s} {entry['tokens_per_s']:>12,.0f} tok/s, own peak "
                         f"{entry.get('own_peak_gib', float('nan')):.2f} GiB")
    for name, entry in (real.get("late_chunking") or {}).items():
        if "tokens_per_s" in entry:
            lines.append(f"real late chunking {name:14s} {entry['tokens_per_s']:>12,.0f} tok/s, peak "
                         f"{entry['peak_memory']['peak_gib']:.2f} GiB")
    if real.get("errors"):
        lines.append(f"real errors: {json.dumps(real['errors'])}"[:300])
    profile = _read(out, "profile") or {}
    if profile.get("share_by_category"):
        busy = profile.get("device_busy_fraction")
        lines.append("profile: " + ", ".join(f"{k} {v:.0%}" for k, v in sorted(
            profile["share_by_category"].items(), key=lambda kv: -kv[1])) + (f"; GPU busy {busy:.0%}" if busy else ""))
    switch = _read(out, "switch") or {}
    if switch.get("ratios"):
        lines.append(f"switch: warm query {switch['warm_query_ms']:.1f} ms, first after passages "
                     f"{switch['switch_corrected_ms']:.1f} ms "
                     f"({switch['ratios']['switch_corrected_over_warm_query']:.2f}x),"
                     f" re-merge {switch['merge_ms']:.1f} ms")
    compiled = _read(out, "compiled") or {}
    if "speedup" in compiled:
        lines.append(f"compiled: {compiled['compiled_tokens_per_s']:,.0f} vs eager "
                     f"{compiled['eager_tokens_per_s']:,.0f} "
                     f"tok/s ({compiled['speedup']:.2f}x), compile {compiled['compile_s']:.1f}s, min cos "
                     f"{compiled['min_cosine_vs_eager']:.6f}, graphs compiled while timed "
                     f"{compiled['graphs_compiled_in_timed_rounds']}")
    lines += _goals(env, real, switch, compiled)
    server = _read(out, "server") or {}
    for name, goal in (server.get("goals") or {}).items():
        lines.append(f"server {name}: {goal['ratio']:.2f} (goal {goal['goal']}) {'met' if goal['met'] else 'NOT met'}")
    return lines


def _goals(env: dict, real: dict, switch: dict, compiled: dict) -> list[str]:
    """Issue 26's goals for the run (bf16, real size), from what the sections measured."""
    ways, long = real.get("ways") or {}, real.get("long_documents") or {}
    h200 = "H200" in str((env.get("gpu") or {}).get("name", ""))
    passages = max([w["tokens_per_s"] for n, w in ways.items() if n.startswith("jinav3-packed")]
                   + [compiled.get("compiled_tokens_per_s", 0.0)], default=0.0)
    goals = [("passages, best jinav3 packed (eager or compiled), tok/s", passages, 700_000 if h200 else 650_000, ">="),
             ("8,192-token documents, jinav3 packed, tok/s", long.get("jinav3-packed", {}).get("tokens_per_s"),
              250_000, ">="),
             ("first query after passages / warm query", (switch.get("ratios") or {}).get(
                 "switch_corrected_over_warm_query"), 1.0, "<"),
             ("GiB with one 8,192-token document in flight (weights + pass)",
              long.get("jinav3-packed", {}).get("own_peak_gib"), 3.0, "<")]
    lines = []
    for name, value, goal, sign in goals:
        if value:
            met = value >= goal if sign == ">=" else value < goal
            lines.append(f"goal {name}: {value:,.2f} ({sign} {goal:,}) {'met' if met else 'NOT met'}")
    return lines


def summary(out: Path, logs: Path, dry_run: bool) -> dict:
    sections = {name: _status(out, logs, name) for name in SECTIONS}
    report = {"dry_run": dry_run, "sections": sections, "headlines": _headlines(out)}
    (out / "summary.json").write_text(json.dumps(report, indent=2))
    lines = [f"== summary ({'dry run on the CPU, stand-in varlen_attn' if dry_run else 'device run'}; files in {out})"]
    for name, entry in sections.items():
        seconds = entry.get("seconds")
        lines.append(f"{name:9s} {entry['status']:9s} rc {entry['rc']:>4s}"
                     + (f"  {seconds:6.1f}s" if isinstance(seconds, (int, float)) else "")
                     + (f"  {entry['error']}"[:110] if entry.get("error") else ""))
    lines += report["headlines"]
    print("\n".join(lines[:60]), flush=True)
    return report


# ============================================================================================ main
RUNNERS = {"env": section_env, "parity": section_parity, "real": section_real, "profile": section_profile,
           "switch": section_switch, "compiled": section_compiled, "server": section_server}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("section", choices=[*RUNNERS, "build", "summary", "wheels"])
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/jinav3-gpu-out"))
    p.add_argument("--logs", type=Path, default=None, help="where gpu_check.sh keeps exit statuses and logs")
    p.add_argument("--dry-run", action="store_true", help="this CPU, tiny size, the stand-in varlen_attn")
    p.add_argument("--wheels", type=Path, default=Path(__file__).resolve().parent.parent / ".whl",
                   help="the server's wheels (default: .whl/ in the checkout)")
    args = p.parse_args(argv)
    if args.section == "wheels":
        return wheels_prepare(args.wheels)
    args.out.mkdir(parents=True, exist_ok=True)
    plan = DRY if args.dry_run else GPU
    if args.dry_run:
        from . import varlen_standin

        varlen_standin.install("2.12" if packing_signature_new() else "2.10")
    if args.section == "summary":
        summary(args.out, args.logs or args.out, args.dry_run)
        return 0
    if args.section == "build":
        checkpoint(plan)
        return 0
    started = time.perf_counter()
    try:
        report = RUNNERS[args.section](plan, args)
        problems = report.get("errors") or ({"checks": "some parity checks failed"} if report.get("all_ok") is False
                                            else None)
        report = {"section": args.section, "status": "failed" if problems else "ok", **report}
        if problems:
            report["error"] = json.dumps(problems)[:500]
    except Exception as error:  # fail soft: the summary says what broke, the next section runs
        traceback.print_exc()
        report = {"section": args.section, "status": "failed", "error": f"{type(error).__name__}: {error}"[:500]}
    report["seconds"] = time.perf_counter() - started
    report["plan"] = {**asdict(plan), "dry_run": args.dry_run}
    (args.out / f"{args.section}.json").write_text(json.dumps(report, indent=2, default=str))
    log(f"{args.section}: {report['status']} in {report['seconds']:.1f}s")
    return 0 if report["status"] == "ok" else 1


def packing_signature_new() -> bool:
    """The stand-in takes the signature of this torch's own varlen_attn where it has one (else 2.12's)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except Exception:
        return True
    from jinav3.packing import varlen_takes_scale

    return varlen_takes_scale(varlen_attn)


if __name__ == "__main__":
    sys.exit(main())

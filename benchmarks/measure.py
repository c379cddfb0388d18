"""Timing, memory, FLOP counting and machine facts for the benchmarks.

Useful FLOPs (what a perfect implementation must compute; padding, LoRA side-matmuls, embedding
lookups, LayerNorm, GELU, softmax and pooling are NOT counted):

    per sequence of n real tokens:   2 * n * P  +  4 * L * H * n^2
    P = L * (4 H^2 + 2 H F)          weights every token multiplies through (q, k, v, o, fc1, fc2)
    4 L H n^2                        per layer Q K^T (2 n^2 H) and attn @ V (2 n^2 H)

For the real model (L 24, H 1024, F 4096) P = 302 M, so a 120-token passage costs ~0.62 GFLOP per
token, an 8192-token document ~1.41 GFLOP per token. useful TFLOP/s = sum over inputs / seconds.
"""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from collections.abc import Callable, Sequence

import torch


def useful_flops(lengths: Sequence[int], layers: int, hidden: int, ffn: int) -> float:
    params = layers * (4 * hidden * hidden + 2 * hidden * ffn)
    return float(sum(2 * n * params + 4 * layers * hidden * n * n for n in lengths))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory while the block runs: CUDA ``max_memory_allocated`` on a GPU, else RSS sampled
    every 2 ms. ``peak`` is absolute (everything the process holds, models included), ``added`` is
    the peak above what was held when the block started (activations, batches, outputs)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = self.added = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._start = self._max = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._max = max(self._max, _rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, _rss_bytes())
        self.added = max(0, self.peak - self._start)

    def as_dict(self) -> dict:
        kind = "cuda_max_memory_allocated" if self.device.type == "cuda" else "rss"
        return {"kind": kind, "peak_gib": self.peak / 2**30, "added_gib": self.added / 2**30}


def timed(fn: Callable, device: torch.device):
    """(result, wall seconds, process CPU seconds) of ``fn()``, the device synchronised around it."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def machine(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30, cuda=torch.version.cuda)
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def versions() -> dict:
    out = {}
    for name in ("torch", "transformers", "peft", "tokenizers", "sentence_transformers", "flash_attn", "numpy"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except Exception:
            out[name] = None
    return out


def matmul_peak(dtype: torch.dtype, device: torch.device, shapes: Sequence[tuple[int, int, int]],
                seconds: float = 1.0) -> dict:
    """The best matrix-product rate this process gets now: for each (m, k, n) ``torch.mm`` of
    (m, k) @ (k, n), best of repeats for about ``seconds``; TFLOP/s = 2 m k n / time. The model's own
    shapes (tokens per pass x hidden x FFN) show what its linear layers can reach; a large square
    product what the processor's matrix units can. Measured in the same run as the ways, so that a
    loaded machine lowers both alike."""
    out: dict = {"dtype": str(dtype).removeprefix("torch."), "shapes": {}}
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        with torch.inference_mode():
            for _ in range(2):
                torch.mm(a, b)
            sync(device)
            best, deadline = float("inf"), time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                torch.mm(a, b)
                sync(device)
                best = min(best, time.perf_counter() - start)
        out["shapes"][f"{m}x{k}x{n}"] = 2 * m * k * n / best / 1e12
    out["peak_tflops"] = max(out["shapes"].values())
    if device.type == "cpu" and dtype == torch.float32:
        # torch's fp32 products go to MKL, which on AMD processors runs well below the chip's FMA rate;
        # oneDNN (what bf16 uses, and close to what ONNX Runtime's MLAS gets) shows what fp32 can reach
        out["onednn_shapes"] = {f"{m}x{k}x{n}": _onednn_linear_tflops(m, k, n, seconds) for m, k, n in shapes}
        out["onednn_peak_tflops"] = max(out["onednn_shapes"].values())
        out["peak_tflops"] = max(out["peak_tflops"], out["onednn_peak_tflops"])
    return out


def _onednn_linear_tflops(m: int, k: int, n: int, seconds: float) -> float:
    """fp32 (m, k) @ (k, n) through oneDNN (``torch.utils.mkldnn``'s prepacked Linear), TFLOP/s."""
    import torch.utils.mkldnn as mkldnn_utils

    with torch.inference_mode():
        linear = mkldnn_utils.to_mkldnn(torch.nn.Linear(k, n, bias=False).eval())
        x = torch.randn(m, k).to_mkldnn()
        for _ in range(2):
            linear(x)
        best, deadline = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            linear(x)
            best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e12


def folder_bytes(folder) -> int:
    """Bytes of the files under ``folder`` (0 if it is not there)."""
    from pathlib import Path

    root = Path(folder)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0

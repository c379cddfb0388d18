"""Device and dtype choice: "auto" means CUDA, then MPS, then CPU; bf16 on CUDA, float32 elsewhere."""

from __future__ import annotations

import torch

from .errors import invalid
from .validation import choice

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise invalid(
            "device", f"{device!r} is not a torch device; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'"
        ) from error
    _check_available(chosen)
    return chosen


def _check_available(device: torch.device) -> None:
    """Refuse a device this machine lacks now, by name: torch itself fails later, at the first
    ``.to(device)``, with an AssertionError or RuntimeError that does not say which argument was wrong."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES)" if torch.backends.cuda.is_built() \
                else f"this torch build ({torch.__version__}) has no CUDA support"
            raise invalid("device", f"{str(device)!r}: CUDA is not available: {why}; available here: {_available()}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise invalid("device", f"{str(device)!r}: no such GPU, {count} CUDA device(s) visible; "
                                    f"available here: {_available()}")
    elif device.type == "mps" and not _mps_available():
        raise invalid("device", f"{str(device)!r}: MPS (Apple GPU) is not available on this machine or torch build; "
                                f"available here: {_available()}")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def _available() -> str:
    """The devices a caller can pass here, for error messages: 'cpu', 'cuda:0', ..., 'mps'."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return ", ".join(repr(n) for n in names)


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise invalid("dtype", f"{dtype} is not supported; use float32, bfloat16 or float16")
        return dtype
    choice(dtype, "dtype", ("auto", *_DTYPES))  # "auto" is handled above: listed for the message
    return _DTYPES[dtype]


def default_token_budget(device: torch.device | str) -> int:
    """Tokens per forward pass: large on CUDA; small on the CPU, where activations that stay in cache
    pay more than bigger matrix products (4,096 measured best of 1k..16k, packed and padded alike:
    benchmarks/RESULTS.md)."""
    device = torch.device(device)
    return {"cuda": 65536, "cpu": 4096}.get(device.type, 16384)


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Host tensor -> ``device``; to CUDA through pinned memory without blocking, so the host goes on
    preparing the next batch while this one is copied (stream order keeps the copy before its use)."""
    device = torch.device(device)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _cpuinfo(field: str) -> str:
    """The first ``field`` line's value in /proc/cpuinfo (Linux); "" elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cpu_flags() -> set[str]:
    """The processor's feature flags (empty where /proc/cpuinfo is not there)."""
    return set(_cpuinfo("flags").split())


def cpu_vendor() -> str:
    """The processor's vendor id ("AuthenticAMD", "GenuineIntel"; "" where /proc/cpuinfo is not there)."""
    return _cpuinfo("vendor_id")


def _torch_cpu_check(name: str) -> bool | None:
    """torch's own CPU feature check (``torch.cpu._is_avx512_bf16_supported`` ...), None when absent."""
    check = getattr(getattr(torch, "cpu", None), name, None)
    if check is None:
        return None
    try:
        return bool(check())
    except Exception:  # a private helper: never let it break a caller
        return None


def cpu_bf16_support() -> dict[str, bool]:
    """Whether this CPU multiplies bfloat16 matrices natively, from /proc/cpuinfo and torch's checks:

    * ``amx_bf16``: Intel AMX tiles with bf16 (Sapphire Rapids and later): bf16 matmuls several times
      faster than fp32 (1.86 vs 0.41 TFLOP/s measured on one such CPU).
    * ``avx512_bf16``: bf16 dot-product instructions (Cooper Lake, AMD Zen 4/5), used by oneDNN:
      bf16 matmuls run natively, two products per fp32 lane (measured faster than fp32 on the project's
      AMD EPYC: benchmarks/RESULTS.md).
    * ``native``: either one; without them torch emulates bf16 by converting to fp32, slower than fp32.

    ``torch.cpu`` checks (what oneDNN will use) win where they exist; /proc/cpuinfo flags otherwise."""
    flags = _cpu_flags()
    amx = _torch_cpu_check("_is_amx_tile_supported")
    avx = _torch_cpu_check("_is_avx512_bf16_supported")
    amx_bf16 = ("amx_bf16" in flags) if amx is None else (amx and ("amx_bf16" in flags or not flags))
    avx512_bf16 = ("avx512_bf16" in flags) if avx is None else avx
    return {"amx_bf16": bool(amx_bf16), "avx512_bf16": bool(avx512_bf16), "native": bool(amx_bf16 or avx512_bf16)}


def describe_cpu_bf16() -> str:
    """One line for ``jinav3 info``: this CPU's bf16 matrix units and what they mean for ``--dtype``."""
    s = cpu_bf16_support()
    if s["amx_bf16"]:
        return "native, AMX (amx_bf16): --dtype bfloat16 is several times faster than float32 (cosine >= 0.9999)"
    if s["avx512_bf16"]:
        return ("native dot products (avx512_bf16), no AMX: --dtype bfloat16 runs natively, usually faster than "
                "float32 (cosine >= 0.9999); measure with python -m benchmarks.run")
    return "none (no amx_bf16 / avx512_bf16): " + _EMULATED_BF16


# measured: benchmarks/RESULTS.md, "Issue 18 on an AVX2-only AMD EPYC (Zen 3)"
_EMULATED_BF16 = ("bfloat16 is emulated and slower than float32 on this CPU (measured 6x slower, 0.16x); "
                  "float32 is both faster and exact here")


def emulated_bf16_warning(device: torch.device, dtype: torch.dtype) -> str | None:
    """The warning for a user who asked for bfloat16 on a CPU without bf16 matrix units, else None.
    A warning, not an error: the vectors are as good as bf16 elsewhere (cosine 0.9999), only slow."""
    if device.type != "cpu" or dtype != torch.bfloat16 or cpu_bf16_support()["native"]:
        return None
    return f"dtype bfloat16 on a CPU without amx_bf16 / avx512_bf16: {_EMULATED_BF16} (see jinav3 info)"

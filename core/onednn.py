"""fp32 linear layers through oneDNN on AMD processors.

torch computes an fp32 ``nn.Linear`` on the CPU with MKL's sgemm. On AMD processors MKL does not take
its fast code path: on the project's 2-core Zen 5 EPYC it reaches 0.20 TFLOP/s on the model's shapes,
where oneDNN (the library torch ships and already uses for bf16) reaches 0.47 with the same fp32
arithmetic (``matmul_peak`` in benchmarks/run.py prints both). On an AVX2-only Zen 3 EPYC the two
measured equal (0.12-0.13 TFLOP/s: what MKL's AMD path leaves out is AVX-512, which that CPU lacks), so the rule
stays "AMD" rather than a list of models. On AMD CPUs in fp32 the Encoder runs its linear layers
through torch's oneDNN linear op:

  * the same weights, plain tensors: LoRA merges write into them and forward hooks (the task
    corrections, core/lora.py) run unchanged; only the kernel differs;
  * results equal MKL's up to summation order (golden parity holds: tests/test_onednn.py).

Intel CPUs keep torch's default: MKL is Intel's own library and tuned there. ``Encoder.from_pretrained(...,
onednn_linears=True/False)`` decides explicitly either way.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from . import devices
from .errors import invalid
from .validation import boolean

_ROUTED = "_jinav3_onednn"  # set on a linear layer whose forward goes through oneDNN


def _linear_op():
    """torch's oneDNN linear (``mkldnn::_linear_pointwise``, the op torch.compile's CPU backend emits),
    or None when this torch build has no oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def available() -> bool:
    """This torch can run fp32 linear layers through oneDNN."""
    return _linear_op() is not None


def preferred(device: torch.device, dtype: torch.dtype) -> bool:
    """Where oneDNN is measured faster than torch's default: fp32 on an AMD CPU."""
    return device.type == "cpu" and dtype == torch.float32 and devices.cpu_vendor() == "AuthenticAMD" and available()


def decide(requested: bool | None, device: torch.device, dtype: torch.dtype, torch_compile: bool) -> bool:
    """The Encoder's ``onednn_linears`` option: None -> ``preferred`` (not under torch.compile, whose CPU
    backend lowers this op only with prepacked weights, and makes its own kernel choices); True only
    where it can run."""
    if requested is None:
        return preferred(device, dtype) and not torch_compile
    requested = boolean(requested, "onednn_linears")
    if requested and torch_compile:
        raise invalid("onednn_linears", "True cannot be combined with torch_compile=True (torch.compile picks its "
                                        "own kernels); choose one")
    if requested and (device.type != "cpu" or dtype != torch.float32 or not available()):
        raise invalid("onednn_linears", f"True needs float32 on the CPU and a torch built with oneDNN; this runs "
                                        f"{str(dtype).removeprefix('torch.')} on {device}"
                                        + ("" if available() else " (this torch has no oneDNN)"))
    return requested


def _onednn_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    # (..., in) -> (..., out), the plain (not prepacked) weight: merges rewrite it in place
    return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def route_linears(model: nn.Module, enabled: bool) -> int:
    """Every ``nn.Linear`` of ``model`` computes through oneDNN (``enabled``) or torch's default again.
    Returns how many layers are routed now. Only for fp32 CPU inference: the op has no autograd."""
    if enabled and not available():
        raise RuntimeError("this torch build has no oneDNN (torch.backends.mkldnn.is_available() is False)")
    routed = 0
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        if enabled:
            module.forward = types.MethodType(_onednn_forward, module)  # type: ignore[method-assign]
            setattr(module, _ROUTED, True)
            routed += 1
        elif getattr(module, _ROUTED, False):
            del module.forward  # back to nn.Linear.forward
            delattr(module, _ROUTED)
    return routed


def routed(model: nn.Module) -> bool:
    """Whether ``model``'s linear layers run through oneDNN."""
    return any(getattr(m, _ROUTED, False) for m in model.modules() if isinstance(m, nn.Linear))


def describe() -> str:
    """One line for ``jinav3 info``: which kernel fp32 linear layers use on this CPU, and why."""
    vendor = devices.cpu_vendor() or "unknown vendor"
    if not available():
        return "torch's default (MKL); this torch has no oneDNN"
    if preferred(torch.device("cpu"), torch.float32):
        return f"oneDNN ({vendor}: MKL's fp32 path runs at under half its rate); onednn_linears=False opts out"
    return f"torch's default, MKL ({vendor}); onednn_linears=True uses oneDNN"

"""bf16 matmuls on fp32 kernels, for CPUs without native bf16 (AVX2-only x86).

A bf16 matmul on a CPU with AVX512_BF16 or AMX multiplies bf16 inputs exactly and
accumulates in fp32, then rounds the output to bf16. On a CPU without those instructions
oneDNN emulates this and is slow, above all in the backward pass's ``mm`` (measured: see
docs/precision.md). The same result is ``round_bf16(fp32_matmul(a, b))`` for bf16 ``a``
and ``b``: their products are exact in fp32 and the sum is fp32 in both, so only the
summation order differs; on random bf16 products almost every output element is
bit-identical to oneDNN's bf16 kernel, the rest one bf16 ulp apart (measured: see
docs/precision.md).

:class:`Bf16OnFp32Kernels` is a ``TorchDispatchMode`` that computes every bf16 CPU
matmul that way. It works below autograd and autocast, so the forward pass (under bf16
autocast), the backward pass and encoding all see bf16 tensors and bf16 rounding exactly
as before; only the kernel changes. Every other op (GELU, softmax, attention,
layer norm) still runs in torch's own bf16 CPU kernels.

:func:`bf16_kernels` is the one switch. The trainer and the encoder enter it for a
resolved ``bf16`` on a CPU without native bf16
(:func:`babelir.precision.resolver.cpu_bf16_supported`);
everywhere else it does nothing. ``BABELIR_BF16_KERNELS=onednn`` turns it off (to
compare with oneDNN's emulation, as ``benchmarks/bench_train_step.py`` does).

Example::

    with torch.autocast("cpu", dtype=torch.bfloat16), bf16_kernels("bf16", "cpu"):
        loss = model_loss(batch)
        loss.backward()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

from babelir.precision import resolver as _precision

# the environment switch lives with the precision policy (no torch there); kept importable
# from here, where the kernels it chooses between are
from babelir.precision.resolver import KERNELS_ENV, emulation

__all__ = ["KERNELS_ENV", "Bf16OnFp32Kernels", "bf16_kernels", "emulation", "kernels_for"]

Kernels = Literal["native", "fp32-kernels", "onednn-emulated"]

_aten = torch.ops.aten
#: The matmul family that torch's CPU autocast runs in bf16. With autograd on, linear and
#: matmul reach a dispatch mode decomposed into mm/addmm/bmm; under ``inference_mode``
#: (encoding) they arrive whole.
MATMULS = frozenset(
    {
        _aten.linear.default,
        _aten.matmul.default,
        _aten.mm.default,
        _aten.addmm.default,
        _aten.bmm.default,
        _aten.baddbmm.default,
        _aten.mv.default,
        _aten.addmv.default,
        _aten.dot.default,
    }
)


class Bf16OnFp32Kernels(TorchDispatchMode):
    """Run bf16 CPU matmuls as fp32 matmuls of the same (bf16-valued) inputs, rounded to
    bf16: bf16 numerics up to the summation order, at fp32 speed.

    Only ops whose tensor arguments are all bf16 CPU tensors are changed, so a mixed-dtype
    call fails as it would without the mode. ``calls`` counts the matmuls it rerouted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        if func in MATMULS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            bf16_cpu = (t.dtype == torch.bfloat16 and t.device.type == "cpu" for t in tensors)
            if tensors and all(bf16_cpu):
                self.calls += 1
                up = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
                return func(*up, **kwargs).to(torch.bfloat16)
        return func(*args, **kwargs)


def kernels_for(resolved: str, device: Any = "cpu") -> Kernels | None:
    """How bf16 matmuls are computed for a *resolved* precision on ``device``: ``native``
    (CUDA, or a CPU with native bf16), ``fp32-kernels`` (this module) or
    ``onednn-emulated`` (``$BABELIR_BF16_KERNELS=onednn``); None when not bf16."""
    if resolved != "bf16":
        return None
    kind = device if isinstance(device, str) else getattr(device, "type", str(device))
    # looked up on the module at call time: tests fake the CPU by patching it there
    if kind.split(":", 1)[0] != "cpu" or _precision.cpu_bf16_supported():
        return "native"
    return emulation()


@contextlib.contextmanager
def bf16_kernels(resolved: str, device: Any = "cpu") -> Iterator[Bf16OnFp32Kernels | None]:
    """Enter :class:`Bf16OnFp32Kernels` where :func:`kernels_for` says ``fp32-kernels``
    (and it is not already active); otherwise do nothing. Yields the mode or None."""
    if kernels_for(resolved, device) != "fp32-kernels" or any(
        isinstance(m, Bf16OnFp32Kernels) for m in _get_current_dispatch_mode_stack()
    ):
        yield None
        return
    with Bf16OnFp32Kernels() as mode:
        yield mode

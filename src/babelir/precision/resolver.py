"""One precision policy: what each ``--precision`` word means, for encoding and training.

Every path that encodes (evaluation, ``index``, ``search``, the validation during
training) and the trainer resolve a requested precision here, with :func:`resolve`, so
``auto`` means one thing in one run. The vocabulary is
:data:`babelir.precision.vocabulary.Precision`.

================  ==========================  ======================  =========================
requested         CUDA                        CPU with native bf16    CPU without native bf16
================  ==========================  ======================  =========================
auto, encode      bf16 (fp16 on GPUs          bf16                    fp32
                  without bf16)
auto, train       bf16 (fp16 on GPUs          :data:`CPU_TRAIN_AUTO`  fp32
                  without bf16)               (bf16, measured)
fp32              fp32                        fp32                    fp32
bf16              bf16 autocast; refused      bf16 autocast           bf16 autocast, matmuls on
                  where the GPU lacks bf16                            fp32 kernels; allowed, with
                                                                      a warning (slower than fp32)
fp16              fp16 autocast (training:    refused                 refused
                  with loss scaling)
int8, encode      refused (CPU only)          int8 (ONNX Runtime)     int8 (ONNX Runtime)
int8, train       refused                     refused                 refused
================  ==========================  ======================  =========================

"Native bf16" is AVX512_BF16 or AMX-BF16 on x86, the BF16 extension on Arm
(:func:`cpu_bf16_supported`). Without it torch's bf16 kernels are emulated and many times
slower than fp32 (docs/precision.md has the measurements), so there babelir computes bf16
matmuls on fp32 kernels with the same numerics (:mod:`.emulated_bf16`): an explicit
``bf16`` reproduces a native-bf16 run at close to fp32 speed
(:data:`EMULATED_BF16_SLOWDOWN`), and warns that it is still slower than fp32. ``auto``
never picks bf16 there. Devices other than CUDA and CPU (mps, xpu...): ``auto`` is fp32,
fp16 and int8 are refused, bf16 is taken as asked.

Training autocasts the forward pass only (transformers' ``bf16=True``: accelerate wraps
the model's forward in ``torch.autocast``); master weights, optimizer state and the loss
stay fp32. The validation during training encodes in the *training* precision.

Faking the CPU (tests, subprocesses): ``BABELIR_CPU_FLAGS="avx512_bf16"`` (flags separated
by spaces or commas) replaces the flags read from ``/proc/cpuinfo``; ``BABELIR_CPU_FLAGS=avx2``
is a CPU without native bf16. It is read at every call, so ``monkeypatch.setenv`` works.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Literal

from babelir.core.errors import ConfigError
from babelir.precision.vocabulary import PRECISIONS

Purpose = Literal["encode", "train"]
#: Environment variable that replaces the CPU flags (space- or comma-separated).
CPU_FLAGS_ENV = "BABELIR_CPU_FLAGS"
#: Environment variable: ``onednn`` keeps oneDNN's emulated bf16 kernels on CPUs without
#: native bf16 (default: :mod:`babelir.precision.emulated_bf16`'s fp32 kernels).
KERNELS_ENV = "BABELIR_BF16_KERNELS"
#: What ``auto`` trains in on a CPU with native bf16: bf16, because the seed-paired study
#: ``babelir compare --profile precision-study`` found bf16 equivalent to fp32 on every
#: measure (measured: see docs/precision.md). CPUs without native bf16 still train fp32
#: under ``auto`` (bf16 is slower there); set "fp32" to undo.
CPU_TRAIN_AUTO: Literal["fp32", "bf16"] = "bf16"
#: What bf16 costs against fp32 on a CPU without native bf16, by how its matmuls run
#: (:func:`emulation`), in words: the measured figures, their machine and commands are
#: in docs/precision.md. Quoted by the warnings below and compare's plan.
EMULATED_BF16_SLOWDOWN = {
    "fp32-kernels": {"train": "somewhat", "encode": "somewhat"},
    "onednn-emulated": {"train": "over ten times", "encode": "several times"},
}
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX-512/AMX, Arm
log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()


@functools.cache
def _detected_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:  # no /proc (macOS, Windows): ask oneDNN (Apple M2+ and Arm bf16)
        try:
            import torch

            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except Exception:
            return False
    return not _NATIVE_BF16_FLAGS.isdisjoint(flags)


def cpu_bf16_supported() -> bool:
    """True when this CPU computes bf16 natively (AVX512_BF16, AMX-BF16 or Arm BF16).

    Read from ``/proc/cpuinfo`` (once), not from oneDNN's check, which also says yes on
    AVX-512 CPUs without bf16 instructions, where bf16 is emulated. ``$BABELIR_CPU_FLAGS``
    overrides the flags (see the module docstring).
    """
    fake = os.environ.get(CPU_FLAGS_ENV)
    if fake is not None:
        native = not _NATIVE_BF16_FLAGS.isdisjoint(fake.replace(",", " ").split())
        # a test hook: say so once, since it changes what auto means and what is recorded
        _warn_once(
            ("cpu-flags", fake),
            f"${CPU_FLAGS_ENV} is set: the CPU flags are taken from it, not /proc/cpuinfo "
            f"(native bf16: {'yes' if native else 'no'})",
        )
        return native
    return _detected_native_bf16()


def cpu_model() -> str:
    """The CPU's name as ``/proc/cpuinfo`` gives it, with family/model where the name is
    generic (a cloud "AMD EPYC" is Zen 3 as family 25 model 1, Zen 5 as family 26)."""
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine() or "unknown"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return name


def machine() -> dict[str, Any]:
    """Where a run ran, for the records timings sit in: CPU model, cores, native bf16,
    CUDA device."""
    out: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "native_bf16": cpu_bf16_supported(),
        "cuda": None,
    }
    try:
        import torch

        if torch.cuda.is_available():
            out["cuda"] = torch.cuda.get_device_name(0)
    except Exception:  # a record field, never a reason to fail a run
        pass
    return out


def _device_type(device: Any) -> str:
    if isinstance(device, str):
        return device.split(":", 1)[0]
    return str(getattr(device, "type", device))


def _cuda_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported())


def _warn_once(key: tuple[str, str], message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def resolve(
    precision: str,
    device: Any = "cpu",
    purpose: Purpose = "encode",
    *,
    native_bf16: bool | None = None,
) -> str:
    """The precision that ``precision`` means for ``purpose`` on ``device`` (table above).

    Returns ``fp32``, ``bf16``, ``fp16`` or (encoding) ``int8``; refusals are one-line
    :class:`~babelir.core.errors.ConfigError`. ``native_bf16`` overrides
    :func:`cpu_bf16_supported` for this call.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: unknown '{precision}' (valid: {', '.join(PRECISIONS)})")
    if purpose not in ("encode", "train"):
        raise ValueError(f"purpose must be 'encode' or 'train', not {purpose!r}")
    kind = _device_type(device)
    if precision == "int8":
        if purpose == "train":
            raise ConfigError(
                "precision: int8 is for evaluation (ONNX Runtime); train in auto, fp32, bf16 "
                "or fp16 (CUDA)"
            )
        if kind != "cpu":
            raise ConfigError("precision: int8 runs on the CPU; use bf16 on CUDA")
        return "int8"
    if kind == "cuda":
        if precision == "auto":
            return "bf16" if _cuda_bf16() else "fp16"
        if precision == "bf16" and not _cuda_bf16():
            raise ConfigError(
                "precision: bf16 requested but this GPU does not support it; use fp16"
            )
        return precision
    if precision == "fp16":
        raise ConfigError("precision: fp16 is only supported on CUDA; use bf16 or fp32 on CPU")
    if kind != "cpu":
        return "fp32" if precision == "auto" else precision
    native = cpu_bf16_supported() if native_bf16 is None else native_bf16
    if precision == "auto":
        if not native:
            return "fp32"
        return CPU_TRAIN_AUTO if purpose == "train" else "bf16"
    if precision == "bf16" and not native:
        _warn_once(
            (purpose, emulation()),
            f"precision bf16: this CPU has no native bf16 (AVX512_BF16/AMX), so "
            f"{emulated_bf16_cost(purpose)} (auto picks fp32 here)",
        )
    return precision


def emulation() -> Literal["fp32-kernels", "onednn-emulated"]:
    """How a CPU without native bf16 computes bf16 matmuls: :mod:`.emulated_bf16`'s fp32
    kernels, unless ``$BABELIR_BF16_KERNELS=onednn`` asks for oneDNN's emulation."""
    value = os.environ.get(KERNELS_ENV, "").strip().lower()
    if value == "onednn":
        return "onednn-emulated"
    if value not in ("", "fp32", "fp32-kernels"):
        raise ConfigError(
            f"${KERNELS_ENV}={os.environ[KERNELS_ENV]!r}: expected 'onednn' (oneDNN's "
            "emulation) or 'fp32' (fp32 kernels, the default), or leave it unset"
        )
    return "fp32-kernels"


def emulated_bf16_cost(purpose: Purpose) -> str:
    """How bf16 runs on a CPU without native bf16 and what it costs for ``purpose``
    (:data:`EMULATED_BF16_SLOWDOWN`); quoted by the warning above and compare's plan."""
    how = emulation()
    kernels = (
        "its matmuls run on fp32 kernels with bf16 rounding (babelir.precision.emulated_bf16)"
        if how == "fp32-kernels"
        else "oneDNN emulates it (BABELIR_BF16_KERNELS=onednn)"
    )
    return (
        f"{kernels} and {'training' if purpose == 'train' else 'encoding'} runs "
        f"{EMULATED_BF16_SLOWDOWN[how][purpose]} slower than fp32 (measured: docs/precision.md)"
    )


def trainer_flags(resolved: str) -> dict[str, bool]:
    """``bf16`` / ``fp16`` arguments of transformers' ``TrainingArguments`` for a resolved
    training precision (bf16 on a CPU is accelerate's CPU autocast)."""
    if resolved not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"not a resolved training precision: {resolved!r}")
    return {"bf16": resolved == "bf16", "fp16": resolved == "fp16"}

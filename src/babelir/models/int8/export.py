"""Export an encoder's transformer backbone to ONNX and quantize it to int8.

The computation half of an int8 build: which quantization settings apply (they key the
cache, see :mod:`babelir.models.int8.store`), ``torch.onnx.export`` of the backbone and
ONNX Runtime's ``quantize_dynamic``. Nothing here knows about the cache or the manifest.
"""

from __future__ import annotations

import copy
import logging
import platform
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

#: Bump when the export or the quantization changes, so cached builds are redone.
FORMAT_VERSION = 1
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def cpu_int8_dot_supported() -> bool:
    """True when the CPU has int8 dot-product instructions (VNNI, AMX, Arm dotprod).

    Without them ONNX Runtime's x86 int8 kernel (u8 x s8 via VPMADDUBSW) can saturate, so
    weights are then quantized to 7 bits (``reduce_range``), as ONNX Runtime advises.
    """
    machine = platform.machine().lower()
    try:
        flags = set(Path("/proc/cpuinfo").read_text(errors="replace").split())
    except OSError:
        flags = set()
    if machine in ("x86_64", "amd64", "i686"):
        return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return machine in ("aarch64", "arm64") and bool(flags & {"asimddp", "dotprod"} or not flags)


def quantization_settings(
    reduce_range: bool | None = None, ffn_output_fp32: bool = True
) -> dict[str, Any]:
    """The quantize_dynamic settings; part of the cache key, so a change rebuilds.

    ``ffn_output_fp32`` keeps the feed-forward output projections (the MatMuls fed by
    GELU) in fp32: their inputs have outliers that one per-tensor int8 scale crushes.
    Measured on multilingual-e5-small, XQuAD-R en/de/zh/ar held out: quantizing them too
    cost cross mAP -0.018 and multi -0.013 (worst pair -0.032); keeping them fp32
    -0.008 / -0.005 (worst pair -0.021), for a third of the weight FLOPs left in fp32.
    """
    if reduce_range is None:
        reduce_range = not cpu_int8_dot_supported()
    return {
        "format_version": FORMAT_VERSION,
        "method": "onnxruntime.quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": True,
        "reduce_range": bool(reduce_range),
        "op_types": ["MatMul"],
        "matmul_const_b_only": True,
        "ffn_output_fp32": bool(ffn_output_fp32),
    }


def ffn_output_matmuls(path: Path) -> list[str]:
    """Names of the weight MatMuls whose input comes from a GELU (FFN output projections)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    found = []
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2 or node.input[1] not in weights:
            continue
        src = producer.get(node.input[0])
        if src is not None and (
            src.op_type in ("Gelu", "FastGelu", "BiasGelu") or "gelu" in src.name.lower()
        ):
            found.append(node.name)
    return found


def input_names(model: SentenceTransformer) -> list[str]:
    """The tokenizer outputs the backbone takes (e5's tokenizer gives no token_type_ids)."""
    features = model.preprocess(["a b", "a"])
    return [k for k in _INPUTS if k in features]


def cpu_copy(model: SentenceTransformer) -> SentenceTransformer:
    """A CPU copy of ``model`` to export from (the caller's model stays on its device)."""
    clone = copy.deepcopy(model)
    return clone.to("cpu")


def export_backbone(model: SentenceTransformer, names: list[str], path: Path) -> str:
    """Export the transformer backbone (features -> last_hidden_state) to ONNX."""
    import torch

    hf = model[0].auto_model

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out = self.hf(**dict(zip(names, tensors, strict=True)), return_dict=True)
            return out.last_hidden_state

    # Two rows of different lengths: the example has padding, so the traced graph applies
    # the attention mask (an all-ones example could let transformers drop it).
    features = model.preprocess(["export example with a few more words", "short"])
    args = tuple(features[k].to("cpu") for k in names)
    wrapper = Wrapper().eval()
    axes = {k: {0: "batch", 1: "sequence"} for k in [*names, "last_hidden_state"]}
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            try:
                dyn = torch.export.Dim.DYNAMIC
                torch.onnx.export(
                    wrapper,
                    args,
                    str(path),
                    dynamo=True,
                    input_names=names,
                    output_names=["last_hidden_state"],
                    dynamic_shapes=(tuple({0: dyn, 1: dyn} for _ in names),),
                    external_data=True,
                    optimize=True,
                    verbose=False,
                )
                return "torch.export"
            except Exception as exc:  # an architecture torch.export cannot trace
                log.warning("torch.export-based ONNX export failed (%s); using TorchScript", exc)
                for leftover in path.parent.glob(path.name + "*"):
                    leftover.unlink()
            torch.onnx.export(
                wrapper,
                args,
                str(path),
                dynamo=False,
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
            )
            return "torchscript"
        finally:
            quiet.setLevel(level)


def quantize(src: Path, dst: Path, settings: dict[str, Any]) -> list[str]:
    """Quantize the fp32 graph ``src`` into ``dst``; returns the MatMuls kept in fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    big = sum(p.stat().st_size for p in src.parent.glob(src.name + "*")) > 1_900_000_000
    exclude = ffn_output_matmuls(src) if settings["ffn_output_fp32"] else []
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger about pre-processing
    try:
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=settings["op_types"],
            per_channel=settings["per_channel"],
            reduce_range=settings["reduce_range"],
            weight_type=QuantType.QInt8,
            use_external_data_format=big,
            nodes_to_exclude=exclude,
            extra_options={"MatMulConstBOnly": settings["matmul_const_b_only"]},
        )
    finally:
        root.setLevel(level)
    return exclude

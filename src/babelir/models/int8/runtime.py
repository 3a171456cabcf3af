"""The int8 encoder itself: a SentenceTransformer whose backbone runs in ONNX Runtime.

:func:`int8_model` gets a verified build from :mod:`babelir.models.int8.store` and swaps
the Transformer module's HF backbone for a torch module that feeds the tokenizer's
outputs to the ONNX Runtime session (as sentence-transformers' ``backend="onnx"`` does),
so tokenizer, prompts, pooling and normalisation stay the original's.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from babelir.core.errors import ConfigError, ModelError
from babelir.models.int8.export import quantization_settings
from babelir.models.int8.session import open_session
from babelir.models.int8.store import ONNX_FILE, ensure_build, int8_path
from babelir.models.loading import load_model, memo_fingerprint, model_fingerprint

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

INSTALL_HINT = "pip install 'babelir[int8]'"


def _require_runtime() -> None:
    missing = [
        name
        for name in ("onnxruntime", "onnx", "onnxscript")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ConfigError(
            f"precision int8 needs {', '.join(missing)} (not installed); {INSTALL_HINT}"
        )


def _int8_module(session: Any, names: list[str], config: Any, digest: str) -> Any:
    import torch

    class OnnxInt8Backbone(torch.nn.Module):
        """Stands in for the HF backbone inside ST's Transformer module (cf. backend="onnx").

        The ``int8_build`` buffer (the build's SHA-256) puts the build in the model's
        state dict, so :func:`~babelir.models.loading.model_fingerprint` tells builds apart.
        """

        def __init__(self) -> None:
            super().__init__()
            self.session = session
            self.input_names = names
            self.config = config
            self.register_buffer(
                "int8_build", torch.tensor(list(bytes.fromhex(digest)), dtype=torch.uint8)
            )

        @property
        def device(self) -> torch.device:
            return torch.device("cpu")

        @property
        def dtype(self) -> torch.dtype:
            return torch.float32

        def forward(self, **features: Any) -> dict[str, torch.Tensor]:
            missing = [k for k in self.input_names if features.get(k) is None]
            if missing:
                raise ModelError(f"int8 model: input features lack {', '.join(missing)}")
            feed = {
                k: features[k].detach().cpu().numpy().astype(np.int64, copy=False)
                for k in self.input_names
            }
            hidden = self.session.run(["last_hidden_state"], feed)[0]
            return {"last_hidden_state": torch.from_numpy(hidden)}

    return OnnxInt8Backbone()


def _detached_copy(model: SentenceTransformer) -> SentenceTransformer:
    """A copy of ``model`` without its backbone's weights (they are replaced anyway)."""
    inner = model[0]
    backbone = inner._modules.pop("model")
    try:
        clone = copy.deepcopy(model)
    finally:
        inner._modules["model"] = backbone
    clone[0]._modules["model"] = None
    return clone


def int8_model(
    name_or_path_or_model: Any = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    fingerprint: str | None = None,
    max_seq_length: int | None = None,
    threads: int | None = None,
    reduce_range: bool | None = None,
    ffn_output_fp32: bool = True,
    rebuild: bool = False,
) -> SentenceTransformer:
    """An int8 (ONNX Runtime, CPU) copy of an encoder, built once and then reused.

    ``name_or_path_or_model``: what :func:`~babelir.models.loading.load_model` takes (None:
    the default model; loaded on the CPU with ``max_seq_length``), or a loaded
    ``SentenceTransformer``, which is left untouched (its truncation and prompts carry
    over). The build is keyed by ``fingerprint`` (default: ``model_fingerprint`` of the
    name or folder, ``memo_fingerprint`` of a loaded model) and the quantization settings,
    under ``cache_dir`` (default ``<babelir cache>/int8``); ``rebuild`` forces a new one.
    ``threads``: ONNX Runtime threads (default: torch's count now). ``reduce_range``
    (7-bit weights; default: only on CPUs without int8 dot products). ``ffn_output_fp32``
    (default True) keeps the FFN output projections in fp32 (see
    :func:`~babelir.models.int8.export.quantization_settings`: less mAP drift, a third of
    the weight FLOPs in fp32).

    The returned model runs on the CPU; encode it with fp32 precision (autocast has
    nothing to do there). ``model.int8_info`` says where the build is, whether this call
    built it, and its probe cosine to fp32. Raises ConfigError without the ``int8`` extra,
    ModelError when the model cannot be exported or its int8 copy disagrees with fp32.
    """
    _require_runtime()
    from sentence_transformers import SentenceTransformer

    owned = not isinstance(name_or_path_or_model, SentenceTransformer)
    if owned:
        if name_or_path_or_model is not None and not isinstance(
            name_or_path_or_model, str | os.PathLike
        ):
            raise ConfigError(
                "int8_model: expected a model name, a folder or a SentenceTransformer, got "
                f"{type(name_or_path_or_model).__name__}"
            )
        model = load_model(name_or_path_or_model, device="cpu", max_seq_length=max_seq_length)
        name = "default" if name_or_path_or_model is None else os.fspath(name_or_path_or_model)
        fingerprint = fingerprint or model_fingerprint(name)
    else:
        model = name_or_path_or_model
        if max_seq_length is not None:
            raise ConfigError("int8_model: set max_seq_length on the loaded model instead")
        name = type(model).__name__
        fingerprint = fingerprint or memo_fingerprint(model)
    if (
        not isinstance(fingerprint, str)
        or not fingerprint
        or not all(c.isalnum() or c in "._-" for c in fingerprint)
    ):
        raise ConfigError(f"int8_model: fingerprint {fingerprint!r} is not a plain identifier")
    if getattr(model[0], "auto_model", None) is None or not hasattr(model[0], "preprocess"):
        raise ModelError(f"int8: {name} has no transformer backbone to quantize")
    settings = quantization_settings(reduce_range, ffn_output_fp32)
    dest = int8_path(
        fingerprint, cache_dir=cache_dir, reduce_range=reduce_range, ffn_output_fp32=ffn_output_fp32
    )
    source = {"name": name, "fingerprint": fingerprint}
    manifest, built = ensure_build(model, dest, settings, source, rebuild=rebuild)
    try:
        session = open_session(dest / ONNX_FILE, threads)
    except Exception as exc:  # e.g. written by an ONNX Runtime this one cannot read
        raise ModelError(
            f"int8: ONNX Runtime cannot load {dest / ONNX_FILE} ({str(exc).splitlines()[0]}); "
            "rebuild it (int8_model(..., rebuild=True)) or delete the folder"
        ) from exc
    names = list(manifest["inputs"])
    digest = manifest["files"][ONNX_FILE]["sha256"]
    config = model[0].auto_model.config
    out = model if owned else _detached_copy(model)
    out[0].model = _int8_module(session, names, config, digest)
    out.to("cpu")  # heads after the backbone (Dense...) must sit where its output is
    out.eval()
    out.int8_info = {
        "path": str(dest),
        "built": built,
        "fingerprint": fingerprint,
        "probe_min_cosine": manifest.get("probe_min_cosine"),
        "settings": settings,
        "threads": session.get_session_options().intra_op_num_threads,
    }
    return out

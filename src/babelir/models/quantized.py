"""An int8 copy of a sentence-transformers encoder for CPU inference (ONNX Runtime).

Why not sentence-transformers' own ``backend="onnx"`` / ``backend="openvino"`` with
``export_dynamic_quantized_onnx_model`` / ``export_static_quantized_openvino_model``: both
go through optimum, and no optimum release works with the transformers 5.x that
sentence-transformers 6.x needs. ``optimum-onnx`` 0.1.0 (the latest, which ST's ``onnx``
extra installs) pins ``transformers<4.58`` and ``optimum~=2.1``, and forced in anyway it
fails at import (``is_offline_mode`` is gone from ``transformers.utils``);
``optimum-intel`` 2.2.0 pins ``transformers<5.6`` and ``huggingface-hub<1.22`` and fails
at import on transformers 5.24 (``VisionRotaryEmbedding`` is gone from qwen2_vl). So the
backbone is exported here with ``torch.onnx.export`` (the ``torch.export`` path, falling
back to the TorchScript exporter) and quantized with ONNX Runtime's
``quantize_dynamic``: int8 per-channel weights for the weight MatMuls, activations
quantized per batch at run time; embeddings, LayerNorm, the attention products and (by
default) the FFN output projections stay fp32. As activations are quantized per batch, a
text's embedding varies in the last digits with its batch-mates (babelir's batching is
deterministic, so runs repeat exactly). ONNX Runtime's transformer fusion was tried and
left out: it finds no attention pattern in the ``torch.export`` graph and was no faster.

The result is an ordinary :class:`SentenceTransformer` whose Transformer module runs the
backbone through an ONNX Runtime session (as ST's own ``backend="onnx"`` does), so its
tokenizer, prompts, pooling and normalisation are the original's and
:func:`babelir.encoding.encode_texts` (length bucketing, embedding cache) works unchanged.
Its fingerprint differs from the fp32 model's (a buffer holds the build's hash), so cached
embeddings of the two never mix.

The quantized model is built once per (model fingerprint, quantization settings) under
``<cache>/int8/``, atomically, with a manifest of sizes and SHA-256s; a build that fails
that check (truncated, edited) is rebuilt.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from babelir.errors import ConfigError, ModelError
from babelir.io import atomic_dir, build_lock, write_json

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

#: Bump when the export or the quantization changes, so cached builds are redone.
FORMAT_VERSION = 1
MANIFEST = "babelir-int8.json"
ONNX_FILE = "model.onnx"
INSTALL_HINT = "pip install 'babelir[int8]'"
#: Below this cosine to the fp32 embeddings on the probe texts a build is refused: it
#: means a broken export (wrong mask, wrong inputs), not quantization noise (~0.99+).
MIN_PROBE_COSINE = 0.9
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBES = (
    "query: how long is the river?",
    "passage: The Rhine is 1,230 km long and flows from the Alps to the North Sea.",
    "passage: Der Rhein ist 1.230 km lang.",
    "passage: 莱茵河全长1230公里。",
    "query: x",
)
_digest_memo: dict[tuple[str, int, int, int], str] = {}


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


def _ffn_output_matmuls(path: Path) -> list[str]:
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


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _digest_memo:
        with open(path, "rb") as f:
            _digest_memo[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _digest_memo[key]


def _check_build(folder: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a complete, intact build in ``folder``; None if it is not one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("settings") != settings:
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or ONNX_FILE not in files:
        return None
    for name, meta in files.items():
        path = folder / name
        try:
            if path.stat().st_size != meta["size"] or _sha256(path) != meta["sha256"]:
                return None
        except (OSError, KeyError, TypeError):
            return None
    return manifest


def _remove_stale(dest: Path) -> None:
    """Delete temp folders of builds of ``dest`` that were killed (we hold its lock)."""
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _input_names(model: SentenceTransformer) -> list[str]:
    """The tokenizer outputs the backbone takes (e5's tokenizer gives no token_type_ids)."""
    features = model.preprocess(["a b", "a"])
    return [k for k in _INPUTS if k in features]


def _export(model: SentenceTransformer, names: list[str], path: Path) -> str:
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


def _quantize(src: Path, dst: Path, settings: dict[str, Any]) -> list[str]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    big = sum(p.stat().st_size for p in src.parent.glob(src.name + "*")) > 1_900_000_000
    exclude = _ffn_output_matmuls(src) if settings["ffn_output_fp32"] else []
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


def _session(path: Path, threads: int | None) -> onnxruntime.InferenceSession:
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: Any, names: list[str], texts: list[str], model: Any) -> np.ndarray:
    """The session's pooled, normalised embeddings of ``texts`` (the build's self-check)."""
    import torch

    features = model.preprocess(texts)
    feed = {k: features[k].cpu().numpy().astype(np.int64) for k in names}
    hidden = torch.from_numpy(session.run(["last_hidden_state"], feed)[0])
    pooled = _pool(model, features, hidden)
    return torch.nn.functional.normalize(pooled.float(), dim=1).numpy()


def _pool(model: Any, features: dict[str, Any], hidden: Any) -> Any:
    out = dict(features)
    out["token_embeddings"] = hidden
    for module in list(model)[1:]:
        out = module(out)
    return out["sentence_embedding"]


def _reference(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            features = model.preprocess(texts)
            features = {
                k: v.to(model.device) if isinstance(v, torch.Tensor) else v
                for k, v in features.items()
            }
            emb = model(features)["sentence_embedding"]
    finally:
        model.train(was_training)
    return torch.nn.functional.normalize(emb.float(), dim=1).cpu().numpy()


def _build(
    model: SentenceTransformer, dest: Path, settings: dict[str, Any], source: dict[str, Any]
) -> None:
    """Export, quantize, check against fp32 and write the manifest, all in a temp folder."""
    hf = model[0].auto_model
    device = next(iter(hf.parameters())).device
    was_training = hf.training
    work = model
    if device.type != "cpu":
        work = _cpu_copy(model)
    names = _input_names(work)
    started = time.perf_counter()
    with atomic_dir(dest) as tmp:
        fp32 = tmp / "fp32" / "model.onnx"
        fp32.parent.mkdir()
        work[0].auto_model.eval()
        try:
            exporter = _export(work, names, fp32)
        except Exception as exc:
            raise ModelError(f"int8: cannot export {source['name']} to ONNX: {exc}") from exc
        finally:
            work[0].auto_model.train(was_training)
        kept_fp32 = _quantize(fp32, tmp / ONNX_FILE, settings)
        for leftover in sorted(fp32.parent.iterdir()):
            leftover.unlink()
        fp32.parent.rmdir()
        session = _session(tmp / ONNX_FILE, threads=None)
        probes = list(_PROBES)
        cosine = float(
            np.min(np.sum(_run(session, names, probes, work) * _reference(work, probes), 1))
        )
        for text in probes[:2]:  # single rows: no padding at all
            got, ref = _run(session, names, [text], work), _reference(work, [text])
            cosine = min(cosine, float(np.sum(got * ref)))
        if not cosine >= MIN_PROBE_COSINE:
            raise ModelError(
                f"int8: the quantized {source['name']} disagrees with fp32 (cosine {cosine:.3f} "
                f"< {MIN_PROBE_COSINE} on probe texts); use --precision fp32"
            )
        files = {
            p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        write_json(
            tmp / MANIFEST,
            {
                "settings": settings,
                "source": source,
                "inputs": names,
                "exporter": exporter,
                "fp32_matmuls": kept_fp32,
                "probe_min_cosine": round(cosine, 6),
                "build_seconds": round(time.perf_counter() - started, 1),
                "versions": {
                    k: _version(k)
                    for k in ("torch", "transformers", "onnx", "onnxruntime", "onnxscript")
                },
                "files": files,
            },
        )


def _cpu_copy(model: SentenceTransformer) -> SentenceTransformer:
    clone = copy.deepcopy(model)
    return clone.to("cpu")


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


def int8_path(
    fingerprint: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    reduce_range: bool | None = None,
    ffn_output_fp32: bool = True,
) -> Path:
    """Where the int8 build of the model with ``fingerprint`` lives (built or not)."""
    from babelir.settings import cache_dir as default_cache

    settings = quantization_settings(reduce_range, ffn_output_fp32)
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache() / "int8"
    return root / f"{fingerprint}-{tag}"


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
    :func:`quantization_settings`: less mAP drift, a third of the weight FLOPs in fp32).

    The returned model runs on the CPU; encode it with fp32 precision (autocast has
    nothing to do there). ``model.int8_info`` says where the build is, whether this call
    built it, and its probe cosine to fp32. Raises ConfigError without the ``int8`` extra,
    ModelError when the model cannot be exported or its int8 copy disagrees with fp32.
    """
    _require_runtime()
    from sentence_transformers import SentenceTransformer

    from babelir.encoding import memo_fingerprint
    from babelir.models.loading import load_model, model_fingerprint

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
    built = False
    manifest = None if rebuild else _check_build(dest, settings)
    if manifest is None:
        with build_lock(dest):
            manifest = None if rebuild else _check_build(dest, settings)  # built meanwhile?
            if manifest is None:
                if dest.exists() and not rebuild:
                    log.warning("int8 build %s is incomplete or corrupt; rebuilding", dest)
                _remove_stale(dest)
                _build(model, dest, settings, source)
                built = True
                manifest = _check_build(dest, settings)
    if manifest is None:
        raise ModelError(f"int8: the build in {dest} does not verify after writing it")
    try:
        session = _session(dest / ONNX_FILE, threads)
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

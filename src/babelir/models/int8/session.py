"""The ONNX Runtime session of an int8 build, and the build's self-check against fp32.

A build is refused when its pooled embeddings of a few probe texts fall below
:data:`MIN_PROBE_COSINE` to the fp32 model's: that means a broken export, not
quantization noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer

#: Below this cosine to the fp32 embeddings on the probe texts a build is refused: it
#: means a broken export (wrong mask, wrong inputs), not quantization noise (~0.99+).
MIN_PROBE_COSINE = 0.9
_PROBES = (
    "query: how long is the river?",
    "passage: The Rhine is 1,230 km long and flows from the Alps to the North Sea.",
    "passage: Der Rhein ist 1.230 km lang.",
    "passage: 莱茵河全长1230公里。",
    "query: x",
)


def open_session(path: Path, threads: int | None) -> onnxruntime.InferenceSession:
    """A CPU session on ``path`` with ``threads`` intra-op threads (default: torch's)."""
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
    with torch.inference_mode():  # heads after pooling (an LSAR Dense) carry trainable weights
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


def probe_min_cosine(session: Any, names: list[str], model: SentenceTransformer) -> float:
    """The lowest cosine between the session's and ``model``'s embeddings of the probes."""
    probes = list(_PROBES)
    cosine = float(
        np.min(np.sum(_run(session, names, probes, model) * _reference(model, probes), 1))
    )
    for text in probes[:2]:  # single rows: no padding at all
        got, ref = _run(session, names, [text], model), _reference(model, [text])
        cosine = min(cosine, float(np.sum(got * ref)))
    return cosine

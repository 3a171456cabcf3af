"""Text -> embedding, shared by evaluation, training checks and search.

Every caller gets the same settings: the input prefix (e5's ``query: `` / ``passage: ``),
L2 normalisation (so inner product = cosine) and float32 numpy output. Encoding dominates
every evaluation, so this does not call ``SentenceTransformer.encode``, which sorts by
*character* length and cuts fixed-size batches: across scripts (Chinese vs English) that
pads heavily. Instead texts are sorted by *token* length and cut into batches of at most
``max_tokens`` padded tokens (small batches also stay in cache), duplicates are encoded
once, and the forward pass runs under ``torch.inference_mode`` with bf16/fp16 autocast
where the hardware computes it natively. An optional
:class:`~babelir.encoding.cache.EmbeddingCache` skips texts already encoded, and
:func:`babelir.encoding.streaming.encode_to_disk` streams a corpus of any size to an ``.npy`` at
flat memory. How to encode is one :class:`~babelir.encoding.options.EncodeOptions` object.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from babelir.core.errors import ConfigError
from babelir.encoding.options import DEFAULT_MAX_TOKENS, EncodeOptions
from babelir.models.int8 import int8_model
from babelir.models.loading import (
    DEFAULT_MODEL,
    load_model,
    memo_fingerprint,
    model_fingerprint,
    resolve_prefixes,
)
from babelir.precision.emulated_bf16 import bf16_kernels, kernels_for
from babelir.precision.resolver import cpu_bf16_supported, resolve
from babelir.precision.vocabulary import PRECISIONS

__all__ = ["DEFAULT_MAX_TOKENS", "PRECISIONS", "EncodeOptions", "encode_texts", "load_encoder"]
#: Fixed cost of one forward pass, in tokens (layer dispatch, small-matrix inefficiency);
#: it stops the batch planner from cutting many tiny batches.
DEFAULT_BATCH_OVERHEAD = 64
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def model_device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(iter(model.parameters())).device


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """The precision ``precision`` means for encoding on ``device``: the one policy of
    :func:`babelir.precision.resolver.resolve` (auto: bf16 on CUDA or on CPUs with native bf16,
    fp16 on GPUs without bf16, else fp32; explicit bf16 on other CPUs: emulated, warned)."""
    return resolve(precision, device, "encode", native_bf16=cpu_bf16_supported())


@contextlib.contextmanager
def autocast(precision: str, device: str | torch.device) -> Iterator[None]:
    """Autocast for a *resolved* precision; a no-op for fp32. bf16 on a CPU without native
    bf16 computes its matmuls on fp32 kernels (:mod:`babelir.precision.emulated_bf16`)."""
    dtype = _AUTOCAST.get(precision)
    if dtype is None:
        yield
        return
    kind = torch.device(device).type
    with torch.autocast(device_type=kind, dtype=dtype), bf16_kernels(precision, device):
        yield


def encoder_settings(model: Any, options: EncodeOptions = EncodeOptions()) -> dict[str, Any]:
    """How embeddings were computed, for metrics.json: results depend on precision."""
    precision, max_tokens = options.precision, options.max_tokens
    device = model_device(model)
    return {
        "precision": resolve_precision(precision, device),
        "precision_requested": precision,
        "max_tokens": max_tokens,
        "max_seq_length": getattr(model, "max_seq_length", None),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": cpu_bf16_supported(),
        "bf16_kernels": kernels_for(resolve_precision(precision, device), device),
        "int8": getattr(model, "int8_info", None),
    }


def embedding_dim(model: Any) -> int:
    """The model's declared embedding size (0 when it declares none)."""
    getter = getattr(model, "get_embedding_dimension", None) or getattr(
        model, "get_sentence_embedding_dimension", None
    )
    return int(getter() or 0) if getter else 0


def _token_lengths(model: Any, texts: Sequence[str], chunk: int = 10_000) -> list[int]:
    """Token counts as the model will see them (truncated); characters as a fallback.

    Tokenized in chunks: the id lists of a million texts at once would take gigabytes.
    """
    tokenizer = getattr(model, "tokenizer", None)
    max_len = getattr(model, "max_seq_length", None)
    if callable(tokenizer):
        lengths: list[int] = []
        try:
            for i in range(0, len(texts), chunk):
                enc = tokenizer(
                    list(texts[i : i + chunk]),
                    truncation=max_len is not None,
                    max_length=max_len,
                    add_special_tokens=True,
                    return_attention_mask=False,
                )
                lengths.extend(len(ids) for ids in enc["input_ids"])
            return lengths
        except Exception:  # not a text tokenizer: fall back to characters
            pass
    return [len(t) for t in texts]


def token_budget_batches(
    lengths: Sequence[int],
    max_tokens: int,
    max_rows: int | None = None,
    overhead: int = DEFAULT_BATCH_OVERHEAD,
) -> list[np.ndarray]:
    """Index batches, longest first, that minimise padded tokens plus a cost per batch.

    Rows are sorted by length and cut into contiguous runs; a batch pads to its longest
    row, holds at most ``max_tokens`` padded tokens (a longer single row still forms its
    own batch) and at most ``max_rows`` rows. Where to cut is solved exactly (dynamic
    programming over the sorted rows), charging ``overhead`` tokens per batch: greedily
    filling the budget pads 16 short rows to one 128-token row, nearly doubling the work.
    """
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    srt = np.maximum(lens[order], 1)
    n = len(srt)
    best = np.zeros(n + 1, dtype=np.float64)  # best[i]: cost of rows i.. in sorted order
    cut = np.zeros(n, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        rows = max(1, min(max_tokens // int(srt[i]), max_rows or n, n - i))
        sizes = np.arange(1, rows + 1)
        costs = sizes * srt[i] + overhead + best[i + 1 : i + rows + 1]
        k = int(np.argmin(costs))
        best[i], cut[i] = costs[k], i + k + 1
    batches: list[np.ndarray] = []
    i = 0
    while i < n:
        batches.append(order[i : cut[i]])
        i = int(cut[i])
    return batches


def _forward(model: Any, texts: list[str], precision: str, device: torch.device) -> np.ndarray:
    features = model.preprocess(texts)
    features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
    with autocast(precision, device):
        emb = model(features)["sentence_embedding"]
    emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
    return emb.cpu().numpy()


def _check_truncation(model: Any, max_seq_length: int | None) -> None:
    """Refuse options that say one truncation while the model applies another.

    Truncation is set when the model is loaded (:func:`load_encoder`), where its position
    limit is checked; a mismatch here would record (and cache) embeddings under the wrong
    length.
    """
    actual = getattr(model, "max_seq_length", None)
    if max_seq_length is not None and actual is not None and actual != max_seq_length:
        raise ConfigError(
            f"max_seq_length: the options say {max_seq_length} but the model truncates at "
            f"{actual} (load it with babelir.encoding.encoder.load_encoder)"
        )


def _encode_unique(
    model: Any,
    texts: list[str],
    *,
    precision: str,
    max_tokens: int,
    batch_size: int,
    show_progress: bool,
    desc: str | None,
) -> np.ndarray:
    """Encode distinct, already prefixed texts in token-budget batches."""
    device = model_device(model)
    out = np.empty((len(texts), embedding_dim(model)), dtype=np.float32)
    batches = token_budget_batches(_token_lengths(model, texts), max_tokens, batch_size)
    bar = None
    if show_progress and len(texts) > batch_size:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc=desc or "encoding", unit="text")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in batches:
                emb = _forward(model, [texts[j] for j in idx], precision, device)
                if out.shape[1] != emb.shape[1]:  # model without a declared dimension
                    out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
                out[idx] = emb
                if bar is not None:
                    bar.update(len(idx))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return out


def encode_texts(
    model: Any,
    texts: Sequence[str],
    *,
    options: EncodeOptions = EncodeOptions(),
    prefix: str = "",
    desc: str | None = None,
    fingerprint: str | None = None,
) -> np.ndarray:
    """Encode ``texts`` (prefixed) into L2-normalised float32 rows, in input order.

    ``options`` says how (:class:`~babelir.encoding.options.EncodeOptions`): ``batch_size`` caps
    rows per forward pass, ``max_tokens`` padded tokens; ``precision``: auto | fp32 | bf16 |
    fp16 (see :func:`resolve_precision`). With a cache, only texts it lacks are encoded and
    then stored; ``fingerprint`` names the model in its keys (default:
    :func:`~babelir.models.loading.memo_fingerprint` of the in-memory model; a folder's
    ``model_fingerprint(path)`` is cheaper but a different id, so use one form per cache).
    ``prefix`` is explicit because one options object serves queries and passages.
    """
    _check_truncation(model, options.max_seq_length)
    batch_size, max_tokens = options.batch_size, options.max_tokens
    cache = options.embedding_cache()
    resolved = resolve_precision(options.precision, model_device(model))
    if len(texts) == 0:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    unique = list(dict.fromkeys(texts))
    where = {t: i for i, t in enumerate(unique)}
    cached: dict[int, np.ndarray] = {}
    keys: list[bytes] = []
    if cache is not None:
        fingerprint = fingerprint or memo_fingerprint(model)
        max_len = getattr(model, "max_seq_length", None)
        keys = [cache.key(fingerprint, prefix, max_len, resolved, t) for t in unique]
        found = cache.get_many(keys)
        cached = {i: found[k] for i, k in enumerate(keys) if k in found}
    missing = [i for i in range(len(unique)) if i not in cached]
    fresh = None
    if missing:
        fresh = _encode_unique(
            model,
            [prefix + unique[i] for i in missing],
            precision=resolved,
            max_tokens=max_tokens,
            batch_size=batch_size,
            show_progress=options.show_progress,
            desc=desc,
        )
        if cache is not None:
            cache.put_many([keys[i] for i in missing], fresh)
    dim = fresh.shape[1] if fresh is not None else len(next(iter(cached.values())))
    table = np.empty((len(unique), dim), dtype=np.float32)
    for i, row in cached.items():
        table[i] = row
    if fresh is not None:
        table[missing] = fresh
    return table[[where[t] for t in texts]]


def for_precision(model: Any, name: str | os.PathLike[str] | None, precision: str) -> Any:
    """The model that computes ``precision``: for int8 the cached ONNX Runtime build of
    ``name`` (built once per model fingerprint, reused), else ``model`` itself."""
    if precision != "int8":
        return model
    source = os.fspath(name) if name else DEFAULT_MODEL
    return int8_model(model, fingerprint=model_fingerprint(source))


def load_encoder(
    name: str | os.PathLike[str] | None,
    options: EncodeOptions | None = None,
    *,
    device: str | None = None,
) -> tuple[Any, EncodeOptions]:
    """Load a model as ``options`` ask, and return it with the options it was loaded with.

    Args:
        name: a model as :func:`babelir.models.loading.load_model` takes it.
        options: how to encode (:class:`babelir.encoding.options.EncodeOptions`); int8
            loads the ONNX Runtime build.
        device: where to load it (default: CUDA when available).

    Returns:
        ``(model, options)``: the model truncates at ``options.max_seq_length`` (None: its
        own); the returned options carry that effective length and the resolved
        query/passage prefixes (model defaults where the options left them None), so what
        is recorded is what was computed.

    Example:
        >>> import babelir
        >>> model, opts = babelir.load_encoder("runs/hybrid", babelir.EncodeOptions())
    """
    opts = options or EncodeOptions()
    if opts.precision == "int8":
        device = "cpu"
    model = load_model(name, device=device, max_seq_length=opts.max_seq_length)
    qp, pp = resolve_prefixes(name, model, opts.query_prefix, opts.passage_prefix)
    model = for_precision(model, name, opts.precision)
    effective = getattr(model, "max_seq_length", None)
    if effective is None:  # a model that declares no truncation: keep the options' own
        effective = opts.max_seq_length
    return model, replace(opts, query_prefix=qp, passage_prefix=pp, max_seq_length=effective)

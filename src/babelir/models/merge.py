"""Weight-space merging of a fine-tuned retriever with its base model (WiSE-FT).

``theta = (1 - weight) * theta_base + weight * theta_finetuned``, parameter by parameter:
``weight`` 0 is the base model, 1 the fine-tuned one. Fine-tuning for cross-lingual
retrieval costs some monolingual quality; interpolating towards the base model can keep
most of the gain at a smaller cost (see docs/ for what babelir measured).

Only two models of the same architecture and tokenizer can be merged: the same module
layout, the same parameter names and shapes, the same vocabulary; anything else is refused
in one line. Integer buffers (position ids) must be equal and are copied.

References:
    Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022 (WiSE-FT).

Example:
    >>> from babelir.models.merge import merge_models
    >>> merge_models("multilingual-e5-small", "runs/hybrid", 0.7, "runs/hybrid-wise0.7")
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from babelir.core.errors import ConfigError, ModelError

#: The record a merged folder carries beside the model files.
MERGE_RECORD = "babelir-merge.json"


def _architecture(model: Any) -> list[str]:
    """The module classes in order, and the transformer's model type."""
    out = [type(m).__name__ for m in model]
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    out.append(str(getattr(config, "model_type", "?")))
    return out


def check_mergeable(base: Any, finetuned: Any, names: tuple[str, str]) -> None:
    """Refuse two models that are not the same network with the same tokenizer."""
    a, b = _architecture(base), _architecture(finetuned)
    if a != b:
        raise ModelError(f"cannot merge {names[0]} ({', '.join(a)}) with {names[1]} "
                         f"({', '.join(b)}): different architectures")
    sa, sb = base.state_dict(), finetuned.state_dict()
    if set(sa) != set(sb):
        only = sorted(set(sa) ^ set(sb))[:3]
        raise ModelError(f"cannot merge {names[0]} with {names[1]}: different parameters "
                         f"(e.g. {', '.join(only)})")
    for k, t in sa.items():
        if t.shape != sb[k].shape:
            raise ModelError(f"cannot merge {names[0]} with {names[1]}: {k} has shape "
                             f"{tuple(t.shape)} vs {tuple(sb[k].shape)}")
    if base.tokenizer.get_vocab() != finetuned.tokenizer.get_vocab():
        raise ModelError(f"cannot merge {names[0]} with {names[1]}: different tokenizers "
                         "(vocabularies differ)")


def interpolate(sa: dict[str, Any], sb: dict[str, Any], weight: float) -> dict[str, Any]:
    """The merged state dict of base ``sa`` and fine-tuned ``sb`` (floating tensors
    interpolated in fp32, others checked equal)."""
    import torch

    out = {}
    for k, tb in sb.items():
        ta = sa[k]
        if torch.is_floating_point(tb):
            merged = (1.0 - weight) * ta.float() + weight * tb.float()
            out[k] = merged.to(tb.dtype)
        else:
            if not torch.equal(ta, tb):
                raise ModelError(f"cannot merge: the integer buffer {k} differs between models")
            out[k] = tb.clone()
    return out


def merge_models(
    base: str | os.PathLike[str] | None,
    finetuned: str | os.PathLike[str],
    weight: float,
    output: str | os.PathLike[str],
    *,
    device: str = "cpu",
) -> Path:
    """Write ``(1 - weight) * base + weight * finetuned`` as a sentence-transformers folder.

    Args:
        base: the base model (None or ``multilingual-e5-small``: the offline default), a
            folder or a hub id, as ``--model`` elsewhere.
        finetuned: a model fine-tuned from ``base`` (e.g. a ``babelir train`` output).
        weight: lambda in [0, 1]; 0 gives the base model, 1 the fine-tuned model.
        output: the folder to write; written atomically, with a model card and
            ``babelir-merge.json`` (both inputs' fingerprints and the weight).
        device: where the two models are loaded for merging.

    Returns:
        The output folder, loadable with ``SentenceTransformer(path)``.

    References:
        Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022.

    Example:
        >>> merge_models(None, "runs/hybrid", 0.5, "runs/hybrid-merged")
    """
    check_weight(weight)
    base_model, ft_model, record = _load_pair(base, finetuned, output, device)
    record["weight"] = float(weight)
    merged = interpolate(base_model.state_dict(), ft_model.state_dict(), float(weight))
    ft_model.load_state_dict(merged)
    return _write(ft_model, record, Path(output))


def merge_selected(
    base: str | os.PathLike[str] | None,
    finetuned: str | os.PathLike[str],
    grid: list[float],
    score: Callable[[Any], dict[str, Any]],
    output: str | os.PathLike[str],
    *,
    criterion: str = "val_map",
    tolerance: float | None = None,
    curve: list[dict[str, Any]] | None = None,
    device: str = "cpu",
) -> Path:
    """Merge at the lambda of ``grid`` whose merged model ``score`` rates best (or, with
    ``tolerance``, the smallest lambda rated within ``tolerance`` of the best).

    Args:
        base: the base model, as in :func:`merge_models`.
        finetuned: a model fine-tuned from ``base``.
        grid: the candidate lambdas in [0, 1].
        score: called with each merged model, returns its measures (e.g.
            :meth:`babelir.training.validation.ValidationSet.measure` on training-side
            validation items: never a benchmark's); ``criterion`` is the one maximised,
            ties going to the smaller lambda (closer to the base model).
        output: the folder to write, as in :func:`merge_models`; its
            ``babelir-merge.json`` holds every candidate's measures under ``selection``.
        criterion: the key of ``score``'s result to maximise.
        tolerance: pick the smallest lambda (the closest to the base model) whose
            ``criterion`` is at least the best minus ``tolerance``; None: the best.
        curve: the scores of exactly these lambdas from an earlier selection (the
            ``selection.curve`` of its record): reused instead of scoring again.
        device: where the models are loaded.

    Returns:
        The output folder.

    Example:
        >>> merge_selected(None, "runs/hybrid", [0.5, 0.7, 1.0], my_validation, "runs/m")
    """
    if len(grid) < 1:
        raise ConfigError("merge: the grid of weights is empty")
    for w in grid:
        check_weight(w)
    base_model, ft_model, record = _load_pair(base, finetuned, output, device)
    # the fine-tuned weights, kept while each candidate overwrites the model
    base_state = base_model.state_dict()
    ft_state = {k: v.clone() for k, v in ft_model.state_dict().items()}
    weights = sorted(set(float(x) for x in grid))
    if curve is not None and [p["weight"] for p in curve] != weights:
        raise ConfigError("merge: the given curve scores other lambdas than the grid")
    if curve is None:
        curve = []
        for w in weights:
            ft_model.load_state_dict(interpolate(base_state, ft_state, w))
            point = score(ft_model)
            if point.get(criterion) is None:
                raise ConfigError(f"merge: the score has no '{criterion}'")
            curve.append({"weight": w, **point})
    best = max(curve, key=lambda p: (p[criterion], -p["weight"]))
    if tolerance is not None:
        best = min(
            (p for p in curve if p[criterion] >= best[criterion] - tolerance),
            key=lambda p: p["weight"],
        )
    record.update(
        weight=best["weight"],
        selection={"criterion": criterion, "maximised": True, "ties": "smaller weight",
                   "tolerance": tolerance, "curve": curve},
    )  # fmt: skip
    ft_model.load_state_dict(interpolate(base_state, ft_state, best["weight"]))
    return _write(ft_model, record, Path(output))


def check_weight(weight: Any) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise ConfigError(f"--weight must be a number in [0, 1], got {weight!r}")


def _load_pair(
    base: str | os.PathLike[str] | None,
    finetuned: str | os.PathLike[str],
    output: str | os.PathLike[str],
    device: str,
) -> tuple[Any, Any, dict[str, Any]]:
    """Both models, checked mergeable, and the record of their fingerprints (taken before
    any weight changes)."""
    from babelir import __version__
    from babelir.models.loading import load_model, model_fingerprint

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output: {out} exists and is not a folder")
    names = (str(base or "multilingual-e5-small"), os.fspath(finetuned))
    base_model = load_model(base, device=device)
    ft_model = load_model(finetuned, device=device)
    check_mergeable(base_model, ft_model, names)
    record = {
        "babelir_version": __version__,
        "method": "WiSE-FT weight interpolation: (1 - weight) * base + weight * finetuned",
        "weight": None,
        "base_model": names[0],
        "base_fingerprint": model_fingerprint(base_model),
        "finetuned_model": names[1],
        "finetuned_fingerprint": model_fingerprint(ft_model),
    }
    return base_model, ft_model, record


def _write(model: Any, record: dict[str, Any], out: Path) -> Path:
    from babelir.core.io import atomic_dir, write_json, write_text
    from babelir.training.save import _keep_pooler_off, model_bytes

    with atomic_dir(out, need=model_bytes(model), what="the merged model") as tmp:
        model.save(str(tmp))
        _keep_pooler_off(tmp)
        write_text(tmp / "README.md", merge_card(record))
        write_json(tmp / MERGE_RECORD, record)
    return out


def merge_card(record: dict[str, Any]) -> str:
    """The model card of a merged folder."""
    w = record["weight"]
    return (
        "---\nlibrary_name: sentence-transformers\ntags:\n- babelir\n- sentence-similarity\n"
        "- multilingual\n- model-merging\n---\n\n"
        f"# Weight-space merge (WiSE-FT, weight {w:g})\n\n"
        f"`{1 - w:g} * base + {w:g} * fine-tuned`, parameter by parameter "
        "(Wortsman et al., CVPR 2022), written by babelir"
        + (" (weight picked on validation items)" if record.get("selection") else "")
        + ".\n\n"
        "| input | model | fingerprint |\n|---|---|---|\n"
        f"| base | {record['base_model']} | {record['base_fingerprint'][:16]} |\n"
        f"| fine-tuned | {record['finetuned_model']} | "
        f"{record['finetuned_fingerprint'][:16]} |\n\n"
        "Load it with `SentenceTransformer(path)`; its prefixes are the fine-tuned model's.\n\n"
        f"```json\n{json.dumps(record, indent=2)}\n```\n"
    )

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
from pathlib import Path
from typing import Any

from babelir.errors import ConfigError, ModelError

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


def interpolate(base: Any, finetuned: Any, weight: float) -> dict[str, Any]:
    """The merged state dict (floating tensors interpolated in fp32, others checked equal)."""
    import torch

    sa, sb = base.state_dict(), finetuned.state_dict()
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
    from babelir import __version__
    from babelir.io import atomic_dir, write_json, write_text
    from babelir.models.loading import load_model, model_fingerprint
    from babelir.training.save import _keep_pooler_off, model_bytes

    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise ConfigError(f"--weight must be a number in [0, 1], got {weight!r}")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output: {out} exists and is not a folder")
    names = (str(base or "multilingual-e5-small"), os.fspath(finetuned))
    base_model = load_model(base, device=device)
    ft_model = load_model(finetuned, device=device)
    check_mergeable(base_model, ft_model, names)
    record = {  # the inputs' fingerprints, taken before the weights change
        "babelir_version": __version__,
        "method": "WiSE-FT weight interpolation: (1 - weight) * base + weight * finetuned",
        "weight": float(weight),
        "base_model": names[0],
        "base_fingerprint": model_fingerprint(base_model),
        "finetuned_model": names[1],
        "finetuned_fingerprint": model_fingerprint(ft_model),
    }
    ft_model.load_state_dict(interpolate(base_model, ft_model, float(weight)))
    with atomic_dir(out, need=model_bytes(ft_model), what="the merged model") as tmp:
        ft_model.save(str(tmp))
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
        "(Wortsman et al., CVPR 2022), written by `babelir merge`.\n\n"
        "| input | model | fingerprint |\n|---|---|---|\n"
        f"| base | {record['base_model']} | {record['base_fingerprint'][:16]} |\n"
        f"| fine-tuned | {record['finetuned_model']} | "
        f"{record['finetuned_fingerprint'][:16]} |\n\n"
        "Load it with `SentenceTransformer(path)`; its prefixes are the fine-tuned model's.\n\n"
        f"```json\n{json.dumps(record, indent=2)}\n```\n"
    )

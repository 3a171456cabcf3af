"""An LSAR transform as a plain sentence-transformers model folder (``Dense`` with
``P = I - U U^T``, then ``Normalize``) and the model card that says what was fitted on what."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from babelir.core.errors import ConfigError
from babelir.debias.methods import DebiasTransform
from babelir.debias.store import MODEL_SUBDIR, write_transform


def export_lsar_model(
    model: Any,
    transform: DebiasTransform,
    output: str | os.PathLike[str],
    *,
    model_name: str | None = None,
) -> Path:
    """Write a plain sentence-transformers folder: ``model``'s modules, then ``Dense``
    (weight ``P = I - U U^T``, no bias, identity activation), then ``Normalize``.

    ``SentenceTransformer(output)`` loads it without babelir; its embeddings equal
    ``transform.apply(<model's normalised embeddings>)``. Weights are safetensors; the
    transform itself is kept in ``output/babelir-debias/`` (so ``babelir evaluate
    --debias-fit output`` can check the fit split); README.md says what was fitted on what.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    from babelir.core.io import atomic_dir, write_text

    if transform.method != "lsar":
        raise ConfigError(
            f"export: only lsar is one matrix for all languages ({transform.method} needs "
            f"the language at inference; use it through babelir evaluate --debias-fit)"
        )
    p = torch.tensor(transform.projection(), dtype=torch.float32)
    dense = Dense(
        transform.dim,
        transform.dim,
        bias=False,
        activation_function=torch.nn.Identity(),
        init_weight=p,
    )
    device = getattr(model, "device", None)
    modules = [*list(model), dense, Normalize()]
    debiased = SentenceTransformer(modules=modules, device="cpu")  # shares model's modules
    # Keep the prefixes the fit used (e5's "query: "/"passage: " are implied by the base
    # model's *name*, which the exported folder no longer carries): saved as prompts.
    prompts = dict(getattr(model, "prompts", None) or {})
    for key in ("query", "passage"):
        if transform.fit_info.get(f"{key}_prefix") and not prompts.get(key):
            prompts[key] = transform.fit_info[f"{key}_prefix"]
    if prompts:
        debiased.prompts = prompts
        debiased.default_prompt_name = getattr(model, "default_prompt_name", None)
    output = Path(output)
    with atomic_dir(output) as tmp:
        debiased.save(str(tmp), safe_serialization=True)
        write_text(tmp / "README.md", model_card(transform, model_name=model_name))
        write_transform(transform, tmp / MODEL_SUBDIR)
    if device is not None:
        model.to(device)  # the shared modules were moved to the CPU with ``debiased``
    return output


def model_card(transform: DebiasTransform, *, model_name: str | None = None) -> str:
    """A README.md for an exported LSAR folder: what was fitted, on what, how to load it."""
    info = transform.fit_info
    n_total = sum(transform.n_texts.values())
    per_lang = ", ".join(f"{k} {v}" for k, v in transform.n_texts.items())
    lines = [
        "---",
        "library_name: sentence-transformers",
        "tags: [sentence-transformers, babelir, lsar, multilingual, language-debiasing]",
        "---",
        "",
        f"# {model_name or info.get('model', 'model')} + LSAR",
        "",
        "The original encoder followed by a fixed linear projection `P = I - U U^T` "
        "(a `Dense` layer, no bias, identity activation) and L2 re-normalisation. `U` "
        "spans the low-rank subspace of the per-language mean embeddings (LSAR: Xie et "
        'al., "Discovering Low-rank Subspaces for Language-agnostic Multilingual '
        'Representations", EMNLP 2022), so language identity is projected out without '
        "knowing a text's language. Written by babelir (`babelir debias --method lsar`).",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "model = SentenceTransformer('<this folder>')  # no babelir needed",
        "```",
        "",
        "## What was fitted on what",
        "",
        "| field | value |",
        "|---|---|",
        f"| base model | {info.get('model', model_name or 'n/a')} |",
        f"| base model fingerprint | {info.get('model_fingerprint', 'n/a')} |",
        f"| fit data | {info.get('source', 'n/a')} |",
        f"| benchmark | {info.get('benchmark', 'n/a')} |",
        f"| articles | {info.get('articles', 'n/a')} |",
        f"| held-out articles checked disjoint | {info.get('eval_articles', 'not checked')} |",
        f"| languages | {', '.join(transform.languages)} |",
        f"| fit texts (unlabeled questions and candidate sentences) | {n_total} ({per_lang}) |",
        f"| rank requested / effective | {transform.rank} / {transform.effective_rank} |",
        f"| query prefix / passage prefix | {info.get('query_prefix', '')!r} / "
        f"{info.get('passage_prefix', '')!r} |",
        f"| fit-embeddings fingerprint | {transform.data_fingerprint} |",
        "",
        "Encode queries and passages with the same prefixes as the base model. The "
        "transform (matrices and provenance) is also stored in `babelir-debias/`.",
        "",
    ]
    if info.get("run"):
        lines.insert(-3, f"Fitted on the training texts of the babelir run `{info['run']}`.")
    return "\n".join(lines)

"""Debiasing with a model: encode the fit texts as evaluation encodes them, fit a
transform with provenance, and re-score a LAReQA evaluation on debiased embeddings after
checking the fit/eval split and that the fit was made with the evaluated model.

A fit records two fingerprints of its model (``fit_info``): ``model_fingerprint``, the
hash of the in-memory weights (:func:`~babelir.models.loading.memo_fingerprint`, the form
metrics.json records), and, when the model came from a name or folder,
``model_source_fingerprint`` (:func:`~babelir.models.loading.model_fingerprint` of that
name: the same for the fp32 model and its int8 build). An evaluation matches a fit when
any fingerprint of one equals one of the other; a fit made with another model of the
same dimension would otherwise apply silently and move every number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.errors import ConfigError, ModelError
from babelir.debias.fit_data import FitTexts
from babelir.debias.methods import DebiasTransform, fit_from_texts
from babelir.encoding.options import EncodeOptions
from babelir.models.loading import memo_fingerprint

#: The fingerprint fields a fit's ``fit_info`` and an evaluation's info may carry.
FINGERPRINT_KEYS = ("model_fingerprint", "model_source_fingerprint")

#: Fits encode quietly unless told: they run inside longer commands with their own bars.
_FIT_OPTIONS = EncodeOptions(show_progress=False)


def encode_fit_texts(
    model: Any, fit: FitTexts, *, options: EncodeOptions = _FIT_OPTIONS
) -> dict[str, np.ndarray]:
    """Encode the fit texts with babelir's encoder (queries and passages with the
    options' prefixes, ``None`` meaning ``""``, exactly as evaluation encodes them):
    ``{lang: (n_lang, d)}``."""
    from babelir.encoding.encoder import encode_texts  # torch: only when something is encoded

    qp, pp = options.query_prefix or "", options.passage_prefix or ""
    out: dict[str, np.ndarray] = {}
    for lang in fit.languages:
        parts = []
        q, p = fit.queries.get(lang, []), fit.passages.get(lang, [])
        if q:
            parts.append(encode_texts(model, q, options=options, prefix=qp, desc=f"fit {lang} q"))
        if p:
            parts.append(encode_texts(model, p, options=options, prefix=pp, desc=f"fit {lang} p"))
        out[lang] = np.concatenate(parts)
    return out


def fit_model(
    model: Any,
    fit: FitTexts,
    method: str,
    rank: int | None = None,
    *,
    options: EncodeOptions = _FIT_OPTIONS,
    extra_info: Mapping[str, Any] | None = None,
) -> DebiasTransform:
    """Encode ``fit`` as ``options`` say (prefixes included) and fit ``method``;
    provenance goes into fit_info."""
    import time

    t0 = time.perf_counter()
    emb = encode_fit_texts(model, fit, options=options)
    t1 = time.perf_counter()
    info = {
        **fit.provenance(),
        "model_fingerprint": memo_fingerprint(model),
        "precision": options.precision,
        "query_prefix": options.query_prefix or "",
        "passage_prefix": options.passage_prefix or "",
        **dict(extra_info or {}),
    }
    t = fit_from_texts(method, emb, rank, fit_info=info, fit_texts=fit.all_texts())
    t.fit_info["timing_s"] = {
        "encode": round(t1 - t0, 3),
        "fit": round(time.perf_counter() - t1, 3),
    }
    return t


def source_fingerprint(name: str | os.PathLike[str] | None) -> str:
    """``model_fingerprint`` of a model *name or folder* (None: the default model), ""
    when it cannot be computed; for int8 this is the fingerprint its build is keyed by."""
    from babelir.models.loading import DEFAULT_MODEL, model_fingerprint

    try:
        return model_fingerprint(os.fspath(name) if name else DEFAULT_MODEL)
    except (ModelError, OSError):
        return ""


def fingerprints(info: Mapping[str, Any]) -> list[str]:
    """The model fingerprints recorded in ``info`` (a fit's fit_info, a metrics.json)."""
    return [str(info[k]) for k in FINGERPRINT_KEYS if isinstance(info.get(k), str) and info[k]]


def embeddings_provenance(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """What the metrics.json saved next to ``--save-embeddings`` output says about the
    model that computed them: model name, fingerprints, an earlier debias ({} if none)."""
    path = Path(folder) / "metrics.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(meta, dict):
        return {}
    out: dict[str, Any] = {k: meta[k] for k in FINGERPRINT_KEYS if isinstance(meta.get(k), str)}
    if isinstance(meta.get("model"), str):
        out["embeddings_model"] = meta["model"]
    debias = meta.get("debias")
    if isinstance(debias, dict):
        out["embeddings_debiased"] = str(debias.get("method", "yes"))
    return out


def check_fit_model(
    transform: DebiasTransform,
    evaluated: Mapping[str, Any],
    *,
    fit_path: Any = None,
    allow_mismatch: bool = False,
) -> list[str]:
    """Refuse (ConfigError) a fit made with another model than the one that computed the
    evaluated embeddings (``evaluated``: the evaluation's info), naming both fingerprints.

    Returns warnings: the mismatch itself when ``allow_mismatch``; an old fit or saved
    embeddings without a fingerprint (nothing to compare: warned, not refused); embeddings
    that were already debiased.
    """
    fit = f"--debias-fit {fit_path}" if fit_path is not None else "the debias fit"
    info = transform.fit_info
    ours, theirs = fingerprints(info), fingerprints(evaluated)
    source = evaluated.get("embeddings_source")
    what = f"the embeddings in {source}" if source else "the evaluated model"
    warnings: list[str] = []
    if evaluated.get("embeddings_debiased"):
        warnings.append(
            f"{what} are already debiased ({evaluated['embeddings_debiased']}); "
            f"{fit} is applied on top"
        )
    if not ours:
        warnings.append(
            f"{fit} records no model fingerprint (an older fit): it cannot be checked "
            f"against {what}; refit it with babelir debias to have it checked"
        )
    elif not theirs:
        verb = "record" if source else "records"
        warnings.append(f"{what} {verb} no model fingerprint: {fit} cannot be checked against it")
    elif not set(ours) & set(theirs):
        fitted = info.get("model") or "a model"
        model = evaluated.get("embeddings_model") or evaluated.get("model") or "another model"
        verb = "were computed by" if source else "is"
        msg = (
            f"{fit} was fitted with {fitted} (fingerprint {ours[0]}) but {what} {verb} "
            f"{model} (fingerprint {theirs[0]})"
        )
        if not allow_mismatch:
            raise ConfigError(
                f"{msg}; refit on this model with babelir debias, or pass "
                f"--allow-fit-mismatch to apply it anyway"
            )
        warnings.append(f"{msg}; applied anyway (--allow-fit-mismatch)")
    return warnings


def check_benchmark(transform: DebiasTransform, bench: Any, what: str = "") -> None:
    """Refuse (ConfigError) a LAReQA ``Benchmark`` that overlaps ``transform``'s fit texts."""
    transform.check_evaluation(
        benchmark_name=bench.name,
        benchmark_path=bench.path,
        question_ids=bench.question_ids,
        texts=[*bench.question_texts, *bench.candidate_texts()],
        what=what or f"articles {bench.articles} of {bench.name}",
    )


def debias_result(
    result: Any, transform: DebiasTransform, *, fit_path: Any = None, allow_mismatch: bool = False
) -> Any:
    """An ``EvaluationResult`` re-scored on debiased embeddings, the transform recorded in
    its info (``metrics.json["debias"]``). Checks the fit/eval split and the fit's model
    (:func:`check_fit_model`) first; ``model_fingerprint_matches`` says whether the fit
    used the evaluated model, ``warnings`` what could not be checked."""
    import time

    from babelir.evaluation.lareqa import Embeddings, EvaluationResult, score_benchmark

    b = result.benchmark
    check_benchmark(transform, b)
    warnings = check_fit_model(
        transform, result.info, fit_path=fit_path, allow_mismatch=allow_mismatch
    )
    t0 = time.perf_counter()
    q = transform.apply(result.embeddings.questions, b.question_langs)
    c = transform.apply(result.embeddings.candidates, b.candidate_langs)
    t1 = time.perf_counter()
    info = dict(result.info)
    record = {**transform.summary(), "apply_s": round(t1 - t0, 4)}
    if fit_path is not None:
        record["fit_path"] = str(fit_path)
    ours, fitted = fingerprints(info), fingerprints(transform.fit_info)
    if ours and fitted:
        record["model_fingerprint_matches"] = bool(set(ours) & set(fitted))
    if warnings:
        record["warnings"] = warnings
    info["debias"] = record
    return EvaluationResult(b, score_benchmark(b, q, c), Embeddings(q, c), info)

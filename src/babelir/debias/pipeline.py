"""Debiasing with a model: encode the fit texts as evaluation encodes them, fit a
transform with provenance, and re-score a LAReQA evaluation on debiased embeddings after
checking the fit/eval split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from babelir.debias.fit_data import FitTexts
from babelir.debias.methods import DebiasTransform, fit_from_texts
from babelir.models.loading import memo_fingerprint
from babelir.options import EncodeOptions

#: Fits encode quietly unless told: they run inside longer commands with their own bars.
_FIT_OPTIONS = EncodeOptions(show_progress=False)


def encode_fit_texts(
    model: Any, fit: FitTexts, *, options: EncodeOptions = _FIT_OPTIONS
) -> dict[str, np.ndarray]:
    """Encode the fit texts with babelir's encoder (queries and passages with the
    options' prefixes, ``None`` meaning ``""``, exactly as evaluation encodes them):
    ``{lang: (n_lang, d)}``."""
    from babelir.encoding import encode_texts  # torch: only when something is encoded

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


def check_benchmark(transform: DebiasTransform, bench: Any, what: str = "") -> None:
    """Refuse (ConfigError) a LAReQA ``Benchmark`` that overlaps ``transform``'s fit texts."""
    transform.check_evaluation(
        benchmark_name=bench.name,
        benchmark_path=bench.path,
        question_ids=bench.question_ids,
        texts=[*bench.question_texts, *bench.candidate_texts()],
        what=what or f"articles {bench.articles} of {bench.name}",
    )


def debias_result(result: Any, transform: DebiasTransform, *, fit_path: Any = None) -> Any:
    """An ``EvaluationResult`` re-scored on debiased embeddings, the transform recorded in
    its info (``metrics.json["debias"]``). Checks the fit/eval split first; the extra
    field ``model_fingerprint_matches`` says whether the fit used the evaluated model."""
    import time

    from babelir.evaluation.lareqa import Embeddings, EvaluationResult, score_benchmark

    b = result.benchmark
    check_benchmark(transform, b)
    t0 = time.perf_counter()
    q = transform.apply(result.embeddings.questions, b.question_langs)
    c = transform.apply(result.embeddings.candidates, b.candidate_langs)
    t1 = time.perf_counter()
    info = dict(result.info)
    record = {**transform.summary(), "apply_s": round(t1 - t0, 4)}
    if fit_path is not None:
        record["fit_path"] = str(fit_path)
    ours, fitted = info.get("model_fingerprint"), transform.fit_info.get("model_fingerprint")
    if ours and fitted:
        record["model_fingerprint_matches"] = ours == fitted
    info["debias"] = record
    return EvaluationResult(b, score_benchmark(b, q, c), Embeddings(q, c), info)

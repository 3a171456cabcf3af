"""Passage-retrieval benchmarks in ``babelir compare``: MIRACL and XOR-Retrieve entries.

A LAReQA benchmark is a pool of candidate sentences scored by mAP; these two rank a
passage corpus (MIRACL: per-language Wikipedia, nDCG@10 and Recall@100; XOR-Retrieve:
English Wikipedia for questions in 7 languages, R@2kt and R@5kt). This module is what
compare needs of them: load and check an entry, its cache identity (file contents),
its leak-check texts, and the evaluation of one model (or of BM25) into a folder with
``metrics.json`` and the per-query values the report's paired tests read
(``per_query.npz``: ``query_ids``, ``langs`` and one array per measure key). What differs
by family (loading, files, queries, evaluation) is asked of the entry's row in
:data:`babelir.evaluation.families.FAMILY_TABLE`.

Passage shards are written under the user cache (``<cache>/shards``), keyed by the
model's weights and the corpus, so a second comparison with the same models reuses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from babelir.compare.config import BenchmarkSpec
from babelir.core.errors import ConfigError, DataError
from babelir.core.io import atomic_dir, write_json
from babelir.evaluation.families import get_family
from babelir.evaluation.measures import Measure

DONE = "metrics.json"
PER_QUERY = "per_query.npz"


def measures(kind: str) -> tuple[Measure, ...]:
    """The measures of a retrieval family, the first being the one its claim reads."""
    return get_family(kind).measures


def passage_format(spec: BenchmarkSpec) -> str:
    from babelir.data.miracl import check_passage_format

    return check_passage_format(
        spec.retrieval().passage_format, option=f"passage_format of benchmark {spec.title()}"
    )


def _root(spec: BenchmarkSpec) -> Path | None:
    if spec.path is None:
        return None
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"benchmarks.path: {spec.path} is not a folder")
    return root


def load(spec: BenchmarkSpec, data_dir: Path) -> Any:
    """The entry's data, as its family loads it (MIRACL languages with topics, qrels and
    corpus files; XOR questions and passage file). A missing or half-fetched corpus is a
    DataError naming the fetch."""
    opts = spec.retrieval()
    corpus = Path(opts.corpus).expanduser() if opts.corpus else None
    assert spec.family.load is not None, spec.kind
    return spec.family.load(
        data_dir, spec.languages, split=opts.split, corpus=corpus, root=_root(spec)
    )


def identity(spec: BenchmarkSpec, data_dir: Path) -> tuple[Any, ...]:
    """What makes two entries the same evaluation: the files' content and the selection.

    The corpus counts by content too (hashed once per file change: see
    :func:`babelir.core.fingerprint.fingerprint`), so a re-fetched or edited corpus is never
    a cache hit.
    """
    from babelir.core.fingerprint import content_fingerprint

    assert spec.family.files is not None, spec.kind
    judged, corpus = spec.family.files(load(spec, data_dir))
    langs = tuple(spec.languages) if spec.languages is not None else None
    opts = spec.retrieval()
    return (
        spec.kind,
        tuple(content_fingerprint(p) for p in judged),
        tuple(content_fingerprint(p) for p in corpus),
        langs,
        opts.split,
        passage_format(spec),
        opts.corpus_limit,
        opts.top_k,
    )


def summary(spec: BenchmarkSpec, loaded: Any) -> dict[str, Any]:
    """The facts the dry run and the report show of an entry."""
    family = spec.family
    assert family.facts is not None, spec.kind
    opts = spec.retrieval()
    doc = {"kind": spec.kind, "split": opts.split, **family.facts(loaded)}
    if "corpus_limit" in family.keys:
        doc["corpus_limit"] = opts.corpus_limit
    doc["bm25"] = spec.wants_bm25
    return doc


def texts(spec: BenchmarkSpec, loaded: Any, where: str) -> Any:
    """The entry's question ids and texts, for the training-leak check. Its passages are
    not compared (a corpus of millions): training positives found in the corpus are the
    normal case for Wikipedia-based QA data and no leak of the test questions."""
    from babelir.training.sources import BenchmarkTexts, normalise

    assert spec.family.queries is not None, spec.kind
    pairs = spec.family.queries(loaded)
    return BenchmarkTexts(
        where,
        frozenset(i for i, _ in pairs),
        frozenset(normalise(t) for _, t in pairs),
        frozenset(),
    )


# --------------------------------------------------------------------------- evaluation


def save(
    folder: Path,
    doc: Mapping[str, Any],
    query_ids: Sequence[str],
    langs: Sequence[str],
    values: Mapping[str, Sequence[float]],
) -> None:
    """metrics.json and per_query.npz into ``folder`` atomically (metrics.json last)."""
    n = len(query_ids)
    bad = [k for k, v in values.items() if len(v) != n]
    if bad or len(langs) != n:
        raise ValueError(f"per-query arrays disagree in length ({bad or 'langs'} vs {n} ids)")
    with atomic_dir(Path(folder)) as tmp:
        np.savez(
            tmp / PER_QUERY,
            query_ids=np.asarray(query_ids, dtype=str),
            langs=np.asarray(langs, dtype=str),
            **{k: np.asarray(v, dtype=np.float64) for k, v in values.items()},
        )
        write_json(tmp / DONE, dict(doc))


def check_cached(folder: Path, kind: str) -> None:
    """Raise unless ``folder`` holds a whole evaluation of this family."""
    import json

    doc = json.loads((Path(folder) / DONE).read_text("utf-8"))
    if not isinstance(doc, dict) or doc.get("benchmark") != kind:
        raise ValueError(f"metrics.json is no {kind} evaluation")
    with np.load(Path(folder) / PER_QUERY, allow_pickle=False) as z:
        keys = ["query_ids", "langs", *(m.key for m in measures(kind))]
        missing = [k for k in keys if k not in z.files]
        if missing:
            raise ValueError(f"per_query.npz lacks {', '.join(missing)}")
        if len({len(z[k]) for k in keys}) != 1:
            raise ValueError("per_query.npz arrays disagree in length")


def _run_options(spec: BenchmarkSpec, *, encodes: bool = True) -> dict[str, Any]:
    """The entry's options as its family's evaluation functions take them (the passage
    format checked, naming the entry)."""
    kw = spec.family.run_options(spec.retrieval(), encodes=encodes)
    kw["passage_format"] = passage_format(spec)
    return kw


def evaluate(
    spec: BenchmarkSpec,
    data_dir: Path,
    model_name: str | None,
    base_model: str | None,
    options: Any,
    folder: Path,
    info: Mapping[str, Any],
) -> None:
    """Evaluate one model on one retrieval entry (its family's ``evaluate``) and save the
    folder.

    ``options`` are the comparison's encoding options (precision, batch size, length,
    cache, progress); the prefixes are the base model's (a trained folder keeps them).
    """
    from dataclasses import replace

    from babelir.core.settings import cache_dir
    from babelir.encoding.encoder import load_encoder
    from babelir.index.faiss_backend import IndexSpec
    from babelir.models.loading import model_fingerprint, resolve_prefixes

    family = spec.family
    assert family.evaluate is not None, spec.kind
    loaded = load(spec, data_dir)
    model, opts = load_encoder(model_name, options)
    qp, pp = resolve_prefixes(base_model, model)
    opts = replace(opts, query_prefix=qp, passage_prefix=pp)
    fp = model_fingerprint(model)
    meta = {**info, "model_fingerprint": fp, "max_seq_length": opts.max_seq_length}
    result = family.evaluate(
        model, loaded, cache_dir() / "shards", options=opts, index=IndexSpec(), info=meta,
        model_fingerprint=fp, **_run_options(spec),
    )  # fmt: skip
    if result is None:
        raise DataError(
            f"{family.title} evaluation returned no result (run compare without torchrun)"
        )
    save(folder, result.metrics_json(), *result.per_query_arrays())


def evaluate_bm25(
    spec: BenchmarkSpec, data_dir: Path, folder: Path, info: Mapping[str, Any]
) -> None:
    """The BM25 row of an entry (its family's ``evaluate_bm25``): the same passages,
    queries and metrics as the dense rows."""
    assert spec.family.evaluate_bm25 is not None, spec.kind
    result = spec.family.evaluate_bm25(load(spec, data_dir), **_run_options(spec, encodes=False))
    result.info.update(info)
    save(folder, result.metrics_json(), *result.per_query_arrays())


def bm25_identity() -> dict[str, Any]:
    """What changes the BM25 row besides the data: the library and its parameters."""
    from babelir.evaluation import bm25

    try:
        version = bm25._bm25s().__version__
    except Exception:  # not installed: the run refuses it with the install line
        version = "missing"
    return {"bm25s": version, "k1": bm25.K1, "b": bm25.B, "method": bm25.METHOD}

"""Passage-retrieval benchmarks in ``babelir compare``: MIRACL and XOR-Retrieve entries.

A LAReQA benchmark is a pool of candidate sentences scored by mAP; these two rank a
passage corpus (MIRACL: per-language Wikipedia, nDCG@10 and Recall@100; XOR-Retrieve:
English Wikipedia for questions in 7 languages, R@2kt and R@5kt). This module is what
compare needs of them: load and check an entry, its cache identity (file contents),
its leak-check texts, and the evaluation of one model (or of BM25) into a folder with
``metrics.json`` and the per-query values the report's paired tests read
(``per_query.npz``: ``query_ids``, ``langs`` and one array per measure key).

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
from babelir.evaluation.measures import MIRACL, XOR_RETRIEVE, Measure

DONE = "metrics.json"
PER_QUERY = "per_query.npz"

#: The measures of each retrieval family, the first being the one its claim reads.
MEASURES: dict[str, tuple[Measure, ...]] = {"miracl": MIRACL, "xor-retrieve": XOR_RETRIEVE}


def measures(kind: str) -> tuple[Measure, ...]:
    return MEASURES[kind]


def passage_format(spec: BenchmarkSpec) -> str:
    from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT, check_passage_format

    return check_passage_format(
        spec.passage_format or DEFAULT_PASSAGE_FORMAT,
        option=f"passage_format of benchmark {spec.title()}",
    )


def _root(spec: BenchmarkSpec) -> Path | None:
    if spec.path is None:
        return None
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"benchmarks.path: {spec.path} is not a folder")
    return root


def load(spec: BenchmarkSpec, data_dir: Path) -> Any:
    """The entry's data: MIRACL languages (topics, qrels, corpus files) or XOR questions
    and passage file. A missing or half-fetched corpus is a DataError naming the fetch."""
    corpus = Path(spec.corpus).expanduser() if spec.corpus else None
    if spec.kind == "miracl":
        from babelir.data.miracl import load_miracl

        return load_miracl(
            data_dir, spec.languages, split=spec.split or "dev", corpus=corpus, root=_root(spec)
        )
    from babelir.data.xor_retrieve import load_xor_retrieve

    return load_xor_retrieve(
        data_dir, spec.languages, questions=spec.split or "dev", corpus=corpus, root=_root(spec)
    )


def _files(spec: BenchmarkSpec, loaded: Any) -> tuple[list[Path], list[Path]]:
    """(query and judgement files, corpus files) of a loaded entry."""
    if spec.kind == "miracl":
        judged = [p for ml in loaded for p in (ml.topics_path, ml.qrels_path)]
        return judged, [p for ml in loaded for p in ml.corpus_files]
    return [Path(loaded.questions_path)], [Path(loaded.corpus_path)]


def identity(spec: BenchmarkSpec, data_dir: Path) -> tuple[Any, ...]:
    """What makes two entries the same evaluation: the files' content and the selection.

    The corpus counts by content too (hashed once per file change: see
    :func:`babelir.training.sources.fingerprint`), so a re-fetched or edited corpus is never
    a cache hit.
    """
    from babelir.training.sources import content_fingerprint

    loaded = load(spec, data_dir)
    judged, corpus = _files(spec, loaded)
    langs = tuple(spec.languages) if spec.languages is not None else None
    return (
        spec.kind,
        tuple(content_fingerprint(p) for p in judged),
        tuple(content_fingerprint(p) for p in corpus),
        langs,
        spec.split or "dev",
        passage_format(spec),
        spec.corpus_limit,
        spec.top_k or 100,
    )


def summary(spec: BenchmarkSpec, loaded: Any) -> dict[str, Any]:
    """The facts the dry run and the report show of an entry."""
    if spec.kind == "miracl":
        # the queries scored: those with a relevant judgement (as the evaluation counts)
        queries = sum(
            any(g > 0 for g in ml.qrels.get(q, {}).values()) for ml in loaded for q in ml.topics
        )
        return {
            "kind": "miracl",
            "split": spec.split or "dev",
            "languages": [ml.lang for ml in loaded],
            "num_questions": int(queries),
            "corpus_files": sum(len(ml.corpus_files) for ml in loaded),
            "bm25": spec.wants_bm25,
        }
    return {
        "kind": "xor-retrieve",
        "split": spec.split or "dev",
        "languages": list(loaded.languages),
        "num_questions": len(loaded.questions),
        "corpus_file": str(loaded.corpus_path),
        "corpus_limit": spec.corpus_limit,
        "bm25": spec.wants_bm25,
    }


def texts(spec: BenchmarkSpec, loaded: Any, where: str) -> Any:
    """The entry's question ids and texts, for the training-leak check. Its passages are
    not compared (a corpus of millions): training positives found in the corpus are the
    normal case for Wikipedia-based QA data and no leak of the test questions."""
    from babelir.training.sources import BenchmarkTexts, normalise

    if spec.kind == "miracl":
        pairs = [(f"{ml.lang}/{q}", t) for ml in loaded for q, t in ml.topics.items()]
    else:
        pairs = [(q.id, q.question) for q in loaded.questions]
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


def _miracl_arrays(results: Sequence[Any]) -> tuple[list[str], list[str], dict[str, list[float]]]:
    ids: list[str] = []
    langs: list[str] = []
    values: dict[str, list[float]] = {m.key: [] for m in MIRACL}
    for r in results:
        for qid in sorted(r.per_query):
            ids.append(f"{r.lang}/{qid}")
            langs.append(r.lang)
            for m in MIRACL:
                values[m.key].append(float(r.per_query[qid][m.key]))
    return ids, langs, values


def evaluate(
    spec: BenchmarkSpec,
    data_dir: Path,
    model_name: str | None,
    base_model: str | None,
    options: Any,
    folder: Path,
    info: Mapping[str, Any],
) -> None:
    """Evaluate one model on one retrieval entry and save the folder.

    ``options`` are the comparison's encoding options (precision, batch size, length,
    cache, progress); the prefixes are the base model's (a trained folder keeps them).
    """
    from dataclasses import replace

    from babelir.core.settings import cache_dir
    from babelir.encoding.encoder import load_encoder
    from babelir.index.faiss_backend import IndexSpec
    from babelir.models.loading import model_fingerprint, resolve_prefixes

    loaded = load(spec, data_dir)
    model, opts = load_encoder(model_name, options)
    qp, pp = resolve_prefixes(base_model, model)
    opts = replace(opts, query_prefix=qp, passage_prefix=pp)
    fp = model_fingerprint(model)
    meta = {**info, "model_fingerprint": fp, "max_seq_length": opts.max_seq_length}
    work = cache_dir() / "shards"
    fmt = passage_format(spec)
    if spec.kind == "miracl":
        from babelir.evaluation.miracl import evaluate_miracl

        result = evaluate_miracl(
            model, loaded, work, options=opts, passage_format=fmt, index=IndexSpec(),
            info=meta, model_fingerprint=fp,
        )  # fmt: skip
        if result is None:
            raise DataError("MIRACL evaluation returned no result (run compare without torchrun)")
        ids, langs, values = _miracl_arrays(result.languages)
        save(folder, result.metrics_json(), ids, langs, values)
        return
    from babelir.evaluation.xor_retrieve import evaluate_xor_retrieve

    xr = evaluate_xor_retrieve(
        model, loaded, work, options=opts, passage_format=fmt, index=IndexSpec(),
        model_fingerprint=fp, corpus_limit=spec.corpus_limit, top_k=spec.top_k or 100,
        info=meta,
    )  # fmt: skip
    if xr is None:
        raise DataError("XOR-Retrieve evaluation returned no result (run compare without torchrun)")
    _save_xor(folder, xr)


def _save_xor(folder: Path, xr: Any) -> None:
    qs = xr.per_query
    save(
        folder,
        xr.metrics_json(),
        [s.question.id for s in qs],
        [s.question.lang for s in qs],
        {m.key: [float(s.hits[m.key]) for s in qs] for m in XOR_RETRIEVE},
    )


def evaluate_bm25(
    spec: BenchmarkSpec, data_dir: Path, folder: Path, info: Mapping[str, Any]
) -> None:
    """The BM25 row of an entry: the same passages, queries and metrics as the dense rows
    (:func:`babelir.evaluation.bm25.evaluate_miracl_bm25`,
    :func:`babelir.evaluation.xor_retrieve.evaluate_xor_retrieve_bm25`)."""
    from babelir.evaluation.bm25 import evaluate_miracl_bm25

    loaded = load(spec, data_dir)
    if spec.kind == "xor-retrieve":
        from babelir.evaluation.xor_retrieve import evaluate_xor_retrieve_bm25

        xr = evaluate_xor_retrieve_bm25(
            loaded, passage_format=passage_format(spec), corpus_limit=spec.corpus_limit,
            top_k=spec.top_k or 100,
        )  # fmt: skip
        xr.info.update(info)
        _save_xor(folder, xr)
        return
    section, results = evaluate_miracl_bm25(loaded, passage_format=passage_format(spec))
    doc = {
        **info,
        "benchmark": "miracl",
        "split": spec.split or "dev",
        "languages": [ml.lang for ml in loaded],
        "index": {"kind": "bm25"},
        **section,
    }
    ids, langs, values = _miracl_arrays(results)
    save(folder, doc, ids, langs, values)


def bm25_identity() -> dict[str, Any]:
    """What changes the BM25 row besides the data: the library and its parameters."""
    from babelir.evaluation import bm25

    try:
        version = bm25._bm25s().__version__
    except Exception:  # not installed: the run refuses it with the install line
        version = "missing"
    return {"bm25s": version, "k1": bm25.K1, "b": bm25.B, "method": bm25.METHOD}

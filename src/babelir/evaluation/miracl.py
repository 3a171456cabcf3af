"""MIRACL-format evaluation: nDCG@10 and Recall@100 per language, macro-averaged.

Per language (queries of X against the corpus of X, MIRACL's monolingual setting): the
corpus is encoded into shards and made searchable by the routine ``babelir index`` uses
(:func:`babelir.index.corpus_index.index_corpus`: streamed, resumable, splittable across
``torchrun`` ranks, and reused by later runs of the same model and settings), each
query's top-100 is retrieved (exact inner product by default; FAISS IVF/HNSW on request,
with their recall against exact search reported), and the run is scored by ir-measures
with its pytrec_eval (trec_eval) provider. Passages and queries are encoded with one
:class:`~babelir.encoding.options.EncodeOptions`. The terminal table is in
:mod:`babelir.reporting.miracl_table`, the command in :mod:`babelir.cli.evaluate.miracl`.

Conventions (``conventions`` in metrics.json; checked in ``tests/evaluation/test_miracl.py``):

* nDCG@10 is trec_eval's ``ndcg_cut.10``: gain = the qrels grade, discount
  log2(rank + 1), ideal DCG from all of the query's judgements.
* Recall@100 = relevant (grade > 0) passages in the top 100 / relevant passages judged.
* Unjudged retrieved passages count as non-relevant: the ranking is not condensed to
  judged passages ("judged-only" scores would be higher and are not what MIRACL reports).
* Scored queries are the topics with at least one relevant judgement; topics without one
  and qrels without a topic are counted and reported, not scored.
* Judged docids absent from the corpus are counted (all judged / relevant) and reported,
  and stay in the qrels: a partial corpus lowers the scores rather than being forgiven.
* Equal scores: trec_eval orders ties by docid, whatever the retrieval order.
* Macro: the mean over languages of each language's mean over its queries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from babelir import __version__
from babelir.core.errors import DataError
from babelir.core.io import atomic_dir, write_json, write_text
from babelir.data.corpus import files_fingerprint
from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT, MiraclLanguage
from babelir.encoding.encoder import encode_texts
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.measures import MIRACL
from babelir.evaluation.options import DEFAULT_SHARD_SIZE
from babelir.evaluation.retrieval import Stopwatch, encoder_record, index_passages
from babelir.index.faiss_backend import IndexSpec

NDCG, RECALL = "ndcg@10", "recall@100"
#: Passages retrieved per query: Recall@100 reads the top 100 (the measure fixes it; no option).
TOP_K = 100
CONVENTIONS = {
    NDCG: "trec_eval ndcg_cut.10 (pytrec_eval via ir-measures): gain = qrels grade, "
    "discount log2(rank+1), ideal DCG over all judgements of the query",
    RECALL: "relevant (grade > 0) in the top 100 / relevant judged for the query",
    "unjudged": "retrieved passages without a judgement count as non-relevant (no judged-only "
    "condensation)",
    "queries": "topics with >= 1 relevant judgement; others are counted, not scored",
    "missing_docids": "judged docids absent from the corpus are counted and kept in the qrels",
    "ties": "equal scores are ordered by docid (trec_eval)",
    "macro": "mean over languages of the per-language mean over queries",
}


# --------------------------------------------------------------------------- metrics


def ndcg_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """trec_eval's nDCG@k of one ranked docid list (reference for the tests and docs)."""
    dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def trec_recall_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int = 100) -> float:
    """trec_eval's Recall@k of one ranked docid list against graded judgements (grade > 0
    is relevant; 0 without relevant docs); cf. the score-matrix
    :func:`babelir.evaluation.metrics.pessimistic_recall_at_k` of LAReQA."""
    relevant = {d for d, g in judged.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def score_run(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """Per-query nDCG@10 and Recall@100 by ir-measures (pytrec_eval); absent runs score 0."""
    import ir_measures
    from ir_measures import R, nDCG

    names = {str(nDCG @ 10): NDCG, str(R @ 100): RECALL}
    out = {qid: {NDCG: 0.0, RECALL: 0.0} for qid in qrels}
    qrels_d = {q: dict(j) for q, j in qrels.items()}
    run_d = {q: dict(r) for q, r in run.items() if r and q in qrels}
    if run_d:
        for m in ir_measures.pytrec_eval.iter_calc([nDCG @ 10, R @ 100], qrels_d, run_d):
            out[m.query_id][names[str(m.measure)]] = float(m.value)
    return out


# --------------------------------------------------------------------------- results


@dataclass
class LanguageResult:
    lang: str
    num_queries: int
    num_passages: int
    per_query: dict[str, dict[str, float]]
    topics_without_relevant: int
    qrels_without_topic: int
    judged_missing: int
    relevant_missing: int
    recall_vs_exact: dict[str, Any] | None = None
    timing_s: dict[str, float] = field(default_factory=dict)
    run: dict[str, list[tuple[str, float]]] = field(default_factory=dict, repr=False)

    def mean(self, name: str) -> float:
        vals = [v[name] for v in self.per_query.values()]
        return float(np.mean(vals)) if vals else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            NDCG: round(self.mean(NDCG), 6),
            RECALL: round(self.mean(RECALL), 6),
            "num_queries": self.num_queries,
            "num_passages": self.num_passages,
            "topics_without_relevant": self.topics_without_relevant,
            "qrels_without_topic": self.qrels_without_topic,
            "qrels_docids_missing_from_corpus": self.judged_missing,
            "relevant_docids_missing_from_corpus": self.relevant_missing,
            "recall_vs_exact": self.recall_vs_exact,
            "timing_s": self.timing_s,
        }


@dataclass
class MiraclResult:
    split: str
    languages: list[LanguageResult]
    passage_format: str
    index: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def macro(self, name: str) -> float:
        return float(np.mean([r.mean(name) for r in self.languages]))

    def per_query_arrays(self) -> tuple[list[str], list[str], dict[str, list[float]]]:
        return per_query_arrays(self.languages)

    def metrics_json(self) -> dict[str, Any]:
        """The metrics.json document: macro metrics, per-language table, provenance."""
        per = {r.lang: r.to_dict() for r in self.languages}
        return {
            "babelir_version": __version__,
            **self.info,
            "benchmark": "miracl",
            "split": self.split,
            "languages": [r.lang for r in self.languages],
            "passage_format": self.passage_format,
            "index": self.index,
            "num_queries": sum(r.num_queries for r in self.languages),
            "num_passages": sum(r.num_passages for r in self.languages),
            NDCG: round(self.macro(NDCG), 6),
            RECALL: round(self.macro(RECALL), 6),
            "qrels_docids_missing_from_corpus": sum(r.judged_missing for r in self.languages),
            "per_language": per,
            "conventions": CONVENTIONS,
        }


def per_query_arrays(
    results: Sequence[LanguageResult],
) -> tuple[list[str], list[str], dict[str, list[float]]]:
    """(``lang/qid`` ids, languages, one list per measure key) of every scored query: the
    per_query.npz compare's report tests."""
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


# --------------------------------------------------------------------------- pipeline


def scored_topics(ml: MiraclLanguage) -> list[str]:
    """The topics scored (those with a relevant judgement), in topic order; a DataError
    when there is none."""
    relevant = {q for q, j in ml.qrels.items() if any(g > 0 for g in j.values())}
    qids = [q for q in ml.topics if q in relevant]
    if not qids:
        raise DataError(f"{ml.qrels_path}: no topic of {ml.topics_path} has a relevant judgement")
    return qids


def language_result(
    ml: MiraclLanguage,
    qids: Sequence[str],
    run: dict[str, list[tuple[str, float]]],
    corpus_ids: Iterable[str],
    num_passages: int,
    clock: Stopwatch,
    recall_vs_exact: dict[str, Any] | None = None,
) -> LanguageResult:
    """Score ``run`` (the top passages of each of ``qids``) against the qrels and count
    what the corpus (``corpus_ids``) lacks; the scoring is ``clock``'s "score" stage. The
    one scoring of a dense and a BM25 row."""
    qrels = {x: ml.qrels[x] for x in qids}
    per_query = score_run(qrels, {x: dict(r) for x, r in run.items()})
    judged = ml.judged_docids()
    missing = judged - {d for d in corpus_ids if d in judged}
    rel_missing = {d for j in qrels.values() for d, g in j.items() if g > 0 and d in missing}
    clock.lap("score")
    return LanguageResult(
        lang=ml.lang,
        num_queries=len(qids),
        num_passages=num_passages,
        per_query=per_query,
        topics_without_relevant=len(ml.topics) - len(qids),
        qrels_without_topic=len(set(ml.qrels) - set(ml.topics)),
        judged_missing=len(missing),
        relevant_missing=len(rel_missing),
        recall_vs_exact=recall_vs_exact,
        timing_s=clock.laps,
        run=run,
    )


def evaluate_language(
    model: Any,
    ml: MiraclLanguage,
    work_dir: Path,
    *,
    options: EncodeOptions,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    index: IndexSpec | None = None,
    model_fingerprint: str = "",
    shard_size: int = DEFAULT_SHARD_SIZE,
    exact_check_queries: int = 200,
) -> LanguageResult | None:
    """Encode (or reuse) one language's corpus, retrieve, and score; None on ranks > 0.

    ``options`` (prefixes, batch size, precision, cache for the queries) is used for the
    passages and the queries alike; approximate search is checked against exact search on
    the first ``exact_check_queries`` queries. Shards live in one folder per (language,
    model, prefix, precision, truncation, format, corpus), reused by later runs.
    """
    from babelir.core.distributed import rank_and_world

    clock = Stopwatch()
    built = index_passages(
        model, ml.passages(), work_dir, f"miracl-{ml.lang}", options=options,
        index=index or IndexSpec(), shard_size=shard_size, model_fingerprint=model_fingerprint,
        corpus_fingerprint=files_fingerprint(ml.corpus_files), passage_format=passage_format,
    )  # fmt: skip
    if built is None or rank_and_world()[0] != 0:
        return None
    shards = built.shards
    clock.lap("encode")

    qids = scored_topics(ml)
    q = encode_texts(
        model,
        [ml.topics[x] for x in qids],
        prefix=options.query_prefix or "",
        options=replace(options, show_progress=False),
        desc=f"queries {ml.lang}",
    )
    k = TOP_K
    scores, rows, recall = built.search_checked(q, k, num_check=exact_check_queries)
    clock.lap("search")

    run: dict[str, list[tuple[str, float]]] = {}
    flat_rows = rows.reshape(-1)
    ids = shards.ids_for(np.where(flat_rows >= 0, flat_rows, 0))
    for i, qid in enumerate(qids):
        seen: dict[str, float] = {}
        for j in range(k):
            if rows[i, j] >= 0:
                seen.setdefault(ids[i * k + j], float(scores[i, j]))
        run[qid] = list(seen.items())
    return language_result(ml, qids, run, shards.iter_ids(), shards.num_rows, clock, recall)


def evaluate_miracl(
    model: Any,
    languages: Sequence[MiraclLanguage],
    work_dir: Path,
    *,
    options: EncodeOptions | None = None,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    index: IndexSpec | None = None,
    info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> MiraclResult | None:
    """Evaluate every language (see :func:`evaluate_language` for ``kwargs``).

    The prefixes and encoder settings (resolved precision included) are recorded in the
    result's info (metrics.json). Returns None on torchrun ranks other than 0 (they only
    encode their shards).
    """
    opts = options or EncodeOptions()
    index = index or IndexSpec()
    results = []
    for ml in languages:
        res = evaluate_language(
            model, ml, work_dir, options=opts, passage_format=passage_format, index=index, **kwargs
        )
        if res is not None:
            results.append(res)
    if len(results) < len(languages):
        return None
    split = languages[0].split if languages else "dev"
    meta = {**(info or {}), **encoder_record(model, opts)}
    return MiraclResult(split, results, passage_format, index.describe(), meta)


def write_miracl_result(result: MiraclResult, output: Path, *, save_run: bool = False) -> None:
    """metrics.json (and TREC run files ``run.<lang>.trec``) into ``output``, atomically."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    pending = output / ".babelir-pending"
    with atomic_dir(pending) as tmp:
        if save_run:
            for r in result.languages:
                lines = (
                    f"{qid} Q0 {docid} {rank} {score:.6f} babelir\n"
                    for qid, hits in r.run.items()
                    for rank, (docid, score) in enumerate(hits, 1)
                )
                write_text(tmp / f"run.{r.lang}.trec", "".join(lines))
        write_json(tmp / "metrics.json", result.metrics_json())
    for f in sorted(pending.iterdir(), key=lambda p: p.name == "metrics.json"):
        f.replace(output / f.name)
    pending.rmdir()

"""MIRACL-format evaluation: nDCG@10 and Recall@100 per language, macro-averaged.

Per language (queries of X against the corpus of X, MIRACL's monolingual setting): the
corpus is encoded into shards (:mod:`babelir.shards`: streamed, resumable, splittable
across ``torchrun`` ranks, and reused by later runs of the same model and settings), each
query's top-100 is retrieved (exact inner product by default; FAISS IVF/HNSW on request,
with their recall against exact search reported), and the run is scored by ir-measures
with its pytrec_eval (trec_eval) provider.

Conventions (``conventions`` in metrics.json; checked in ``tests/test_miracl.py``):

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

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelir import __version__
from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT, MiraclLanguage, format_passage
from babelir.encoding import encode_texts
from babelir.errors import DataError
from babelir.index import (
    IndexSpec,
    approximate_search,
    build_faiss_index,
    exact_search,
    load_faiss,
    overlap_at_k,
    save_faiss,
)
from babelir.io import atomic_dir, write_json, write_text
from babelir.shards import ShardSet, encode_shards, files_fingerprint

NDCG, RECALL = "ndcg@10", "recall@100"
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


def recall_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int = 100) -> float:
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


# --------------------------------------------------------------------------- pipeline


def shard_folder(work_dir: Path, lang: str, split_config: Mapping[str, Any]) -> Path:
    """One folder per (language, model, prefix, format, corpus): reused by later runs."""
    digest = hashlib.sha256(json.dumps(split_config, sort_keys=True).encode()).hexdigest()[:12]
    return Path(work_dir) / f"miracl-{lang}-{digest}"


def evaluate_language(
    model: Any,
    ml: MiraclLanguage,
    work_dir: Path,
    *,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    query_prefix: str = "",
    passage_prefix: str = "",
    index: IndexSpec | None = None,
    model_fingerprint: str = "",
    max_seq_length: int | None = None,
    shard_size: int = 50_000,
    batch_size: int = 64,
    show_progress: bool = True,
    exact_check_queries: int = 200,
) -> LanguageResult | None:
    """Encode (or reuse) one language's corpus, retrieve, and score; None on ranks > 0."""
    from babelir.shards import rank_and_world

    index = index or IndexSpec()
    t0 = time.perf_counter()
    config = {
        "model_fingerprint": model_fingerprint,
        "passage_format": passage_format,
        "max_seq_length": max_seq_length,
        "corpus": files_fingerprint(ml.corpus_files),
    }
    folder = shard_folder(work_dir, ml.lang, {"prefix": passage_prefix, **config})
    records = ((p.docid, format_passage(p, passage_format)) for p in ml.passages())
    rep = encode_shards(
        model,
        records,
        folder,
        prefix=passage_prefix,
        shard_size=shard_size,
        batch_size=batch_size,
        config=config,
        show_progress=show_progress,
    )
    if not rep.complete or rank_and_world()[0] != 0:
        return None
    shards = ShardSet.open(folder)
    t1 = time.perf_counter()

    relevant = {q for q, j in ml.qrels.items() if any(g > 0 for g in j.values())}
    qids = [q for q in ml.topics if q in relevant]
    if not qids:
        raise DataError(f"{ml.qrels_path}: no topic of {ml.topics_path} has a relevant judgement")
    q = encode_texts(
        model,
        [ml.topics[x] for x in qids],
        prefix=query_prefix,
        batch_size=batch_size,
        show_progress=False,
        desc=f"queries {ml.lang}",
    )
    k = TOP_K
    recall = None
    if index.exact:
        scores, rows = exact_search(shards, q, k)
    else:
        faiss_index = _cached_index(shards, index, show_progress)
        scores, rows = approximate_search(faiss_index, q, k)
        n = min(exact_check_queries, len(qids))
        _, exact_rows = exact_search(shards, q[:n], k)
        recall = {
            "k": k,
            "recall": round(overlap_at_k(rows[:n], exact_rows, k), 4),
            "num_queries": n,
            "query_source": "queries",
        }
    t2 = time.perf_counter()

    run: dict[str, list[tuple[str, float]]] = {}
    flat_rows = rows.reshape(-1)
    ids = shards.ids_for(np.where(flat_rows >= 0, flat_rows, 0))
    for i, qid in enumerate(qids):
        seen: dict[str, float] = {}
        for j in range(k):
            if rows[i, j] >= 0:
                seen.setdefault(ids[i * k + j], float(scores[i, j]))
        run[qid] = list(seen.items())
    qrels = {x: ml.qrels[x] for x in qids}
    per_query = score_run(qrels, {x: dict(r) for x, r in run.items()})

    judged = ml.judged_docids()
    present = {d for d in shards.iter_ids() if d in judged}
    missing = judged - present
    rel_missing = {d for j in qrels.values() for d, g in j.items() if g > 0 and d in missing}
    t3 = time.perf_counter()
    return LanguageResult(
        lang=ml.lang,
        num_queries=len(qids),
        num_passages=shards.num_rows,
        per_query=per_query,
        topics_without_relevant=len(ml.topics) - len(qids),
        qrels_without_topic=len(set(ml.qrels) - set(ml.topics)),
        judged_missing=len(missing),
        relevant_missing=len(rel_missing),
        recall_vs_exact=recall,
        timing_s={
            "encode": round(t1 - t0, 3),
            "search": round(t2 - t1, 3),
            "score": round(t3 - t2, 3),
        },
        run=run,
    )


def _cached_index(shards: ShardSet, spec: IndexSpec, show_progress: bool) -> Any:
    """Build an approximate index once per shard folder and settings; reuse it later."""
    spec = spec.resolved(shards.num_rows)
    tag = hashlib.sha256(json.dumps(spec.describe(), sort_keys=True).encode()).hexdigest()[:10]
    path = shards.folder / f"index-{spec.kind.replace(',', '_')}-{tag}.faiss"
    if path.is_file():
        return load_faiss(path, spec)
    index = build_faiss_index(shards, spec, show_progress=show_progress)
    save_faiss(index, path)
    return index


def evaluate_miracl(
    model: Any,
    languages: Sequence[MiraclLanguage],
    work_dir: Path,
    *,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    index: IndexSpec | None = None,
    info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> MiraclResult | None:
    """Evaluate every language (see :func:`evaluate_language` for ``kwargs``).

    Returns None on torchrun ranks other than 0 (they only encode their shards).
    """
    index = index or IndexSpec()
    results = []
    for ml in languages:
        res = evaluate_language(
            model, ml, work_dir, passage_format=passage_format, index=index, **kwargs
        )
        if res is not None:
            results.append(res)
    if len(results) < len(languages):
        return None
    split = languages[0].split if languages else "dev"
    return MiraclResult(split, results, passage_format, index.describe(), dict(info or {}))


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


def miracl_table(m: Mapping[str, Any]) -> Any:
    """A rich table of a MIRACL metrics.json document."""
    from rich.table import Table

    t = Table(
        title=f"{m.get('model', '?')} on MIRACL {m['split']} ({m['index']['kind']} search, "
        f"passages '{m['passage_format']}')",
        title_justify="left",
    )
    for col in ("lang", "nDCG@10", "R@100", "queries", "passages", "missing judged docids"):
        t.add_column(col, justify="right")
    for lang, row in m["per_language"].items():
        t.add_row(
            lang,
            f"{row[NDCG]:.4f}",
            f"{row[RECALL]:.4f}",
            str(row["num_queries"]),
            str(row["num_passages"]),
            str(row["qrels_docids_missing_from_corpus"]),
        )
    t.add_row(
        "macro",
        f"{m[NDCG]:.4f}",
        f"{m[RECALL]:.4f}",
        str(m["num_queries"]),
        str(m["num_passages"]),
        str(m["qrels_docids_missing_from_corpus"]),
        style="bold",
    )
    return t


def evaluate_miracl_cli(
    *,
    model: str | None,
    data_dir: Path | None,
    languages: str | None,
    output: Path | None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    max_seq_length: int = 128,
    batch_size: int = 64,
    device: str | None = None,
    quiet: bool = False,
    split: str = "dev",
    corpus: Path | None = None,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    index: str = "flat",
    nlist: int | None = None,
    nprobe: int | None = None,
    work_dir: Path | None = None,
    shard_size: int = 50_000,
    save_run: bool = False,
) -> dict[str, Any] | None:
    """``babelir evaluate --benchmark miracl``: print the table, write metrics.json.

    Under ``torchrun`` every rank encodes its shards of each language and rank 0 scores
    and writes; the others return None. Returns the metrics.json document on rank 0.
    """
    from rich.console import Console

    from babelir.data.miracl import check_passage_format, load_miracl
    from babelir.models.loading import load_model, model_fingerprint, resolve_prefixes
    from babelir.settings import cache_dir
    from babelir.settings import data_dir as resolve_data_dir
    from babelir.shards import init_distributed, rank_device

    check_passage_format(passage_format)
    spec = IndexSpec(kind=index, nlist=nlist, nprobe=nprobe)
    langs = load_miracl(resolve_data_dir(data_dir), languages, split=split, corpus=corpus)
    init_distributed()
    st = load_model(model, device=device or rank_device(), max_seq_length=max_seq_length)
    qp, pp = resolve_prefixes(model, st, query_prefix, passage_prefix)
    fingerprint = model_fingerprint(st)
    info = {
        "model": model or "multilingual-e5-small",
        "model_fingerprint": fingerprint,
        "max_seq_length": max_seq_length,
        "device": str(st.device),
        "query_prefix": qp,
        "passage_prefix": pp,
    }
    result = evaluate_miracl(
        st,
        langs,
        Path(work_dir) if work_dir else cache_dir() / "shards",
        passage_format=passage_format,
        index=spec,
        info=info,
        query_prefix=qp,
        passage_prefix=pp,
        model_fingerprint=fingerprint,
        max_seq_length=max_seq_length,
        shard_size=shard_size,
        batch_size=batch_size,
        show_progress=not quiet,
    )
    if result is None:
        return None
    doc = result.metrics_json()
    Console().print(miracl_table(doc))
    err = Console(stderr=True)
    for lang, row in doc["per_language"].items():
        if row["qrels_docids_missing_from_corpus"]:
            err.print(
                f"warning: {lang}: {row['qrels_docids_missing_from_corpus']} judged docids "
                f"({row['relevant_docids_missing_from_corpus']} relevant) are not in the corpus; "
                f"they count as not retrieved",
                highlight=False,
            )
    if output is not None:
        write_miracl_result(result, output, save_run=save_run)
        err.print(f"wrote {Path(output) / 'metrics.json'}")
    return doc

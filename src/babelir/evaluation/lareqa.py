"""Evaluate an encoder on a LAReQA benchmark: encode once, score every setting.

Each question and each candidate is encoded exactly once; the monolingual,
cross-lingual and multilingual settings are all read off the same score matrix
(:mod:`babelir.evaluation.metrics`), unlike tools that re-encode per language pair.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelir import __version__
from babelir.data.lareqa import Benchmark
from babelir.encoding import encode_texts
from babelir.evaluation.metrics import LareqaMetrics, evaluate_embeddings
from babelir.io import atomic_dir, write_json, write_jsonl, write_npy
from babelir.options import EncodeOptions

#: Languages no paper model saw in training (zero-shot at evaluation).
ZERO_SHOT_LANGUAGES = ("el", "vi")


@dataclass
class Embeddings:
    questions: np.ndarray
    candidates: np.ndarray


@dataclass
class EvaluationResult:
    benchmark: Benchmark
    metrics: LareqaMetrics
    embeddings: Embeddings
    info: dict[str, Any] = field(default_factory=dict)

    def metrics_json(self) -> dict[str, Any]:
        """The metrics.json document: headline numbers, tables and provenance."""
        out: dict[str, Any] = {
            "babelir_version": __version__,
            **self.info,
            "benchmark": self.benchmark.name,
            "benchmark_path": str(self.benchmark.path),
            "languages": self.benchmark.languages,
            "articles": self.benchmark.articles,
            "candidate_mode": self.benchmark.candidate_mode,
            "num_questions": self.benchmark.num_questions,
            "num_candidates": self.benchmark.num_candidates,
        }
        out.update(self.metrics.to_dict())
        unseen = [x for x in ZERO_SHOT_LANGUAGES if x in self.benchmark.languages]
        if unseen:
            out["zero_shot_languages"] = self.metrics.subset(unseen)
        out["conventions"] = {
            "map": "AP over the full ranking divided by the number of relevant candidates",
            "ties": "pessimistic: rank = number of candidates scoring >= (sklearn AP)",
            "mono": "macro mean over languages X of mAP(X->X)",
            "cross": "macro mean over ordered pairs X!=Y of mAP(X->Y)",
            "multi": "mean AP over all questions against the pooled candidates",
            "rank_distance": "per question max-min pooled rank of its relevant candidates; "
            "mean per query language, then macro mean",
        }
        return out


def score_benchmark(
    benchmark: Benchmark, questions: np.ndarray, candidates: np.ndarray
) -> LareqaMetrics:
    """Metrics of a benchmark from its (normalised) question and candidate embeddings."""
    return evaluate_embeddings(
        questions,
        candidates,
        benchmark.question_lang_codes(),
        benchmark.candidate_lang_codes(),
        benchmark.relevant,
        benchmark.languages,
    )


def evaluate_model(
    model: Any,
    benchmark: Benchmark,
    *,
    options: EncodeOptions | None = None,
    info: dict[str, Any] | None = None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    batch_size: int | None = None,
    show_progress: bool | None = None,
    precision: str | None = None,
    cache: Any = None,
) -> EvaluationResult:
    """Encode a benchmark with ``model`` and compute every LAReQA setting.

    ``options`` says how to encode; the other keyword arguments override its fields when
    given (``query_prefix``/``passage_prefix`` default to ``""`` here: resolve the model's
    defaults with :func:`babelir.encoding.load_encoder`). The precision asked for and the
    resolved one are recorded in the result's info (metrics.json); ``cache`` is an optional
    EmbeddingCache (or True for the default one).
    """
    from babelir.encoding import encoder_settings

    opts = EncodeOptions.of(
        options,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        batch_size=batch_size,
        show_progress=show_progress,
        precision=precision,
        cache=cache,
    )
    store = opts.embedding_cache()  # opened once for questions and candidates
    enc = opts.merged(cache=store if store is not None else False)
    qp, pp = opts.query_prefix or "", opts.passage_prefix or ""
    t0 = time.perf_counter()
    q = encode_texts(model, benchmark.question_texts, prefix=qp, options=enc, desc="questions")
    c = encode_texts(
        model, benchmark.candidate_texts(), prefix=pp, options=enc, desc="candidates"
    )
    t1 = time.perf_counter()
    metrics = score_benchmark(benchmark, q, c)
    t2 = time.perf_counter()
    meta = dict(info or {})
    meta.update(
        {
            "query_prefix": qp,
            "passage_prefix": pp,
            "encoder": encoder_settings(model, options=opts),
            "timing_s": {"encode": round(t1 - t0, 3), "metrics": round(t2 - t1, 3)},
        }
    )
    return EvaluationResult(benchmark, metrics, Embeddings(q, c), meta)


def write_result(result: EvaluationResult, output: Path, *, save_embeddings: bool = False) -> None:
    """Write metrics.json (and embeddings) into ``output``.

    Files are built in a temporary folder and moved in only when all are complete, so an
    interrupted run leaves ``output`` as it was.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_dir(output / ".babelir-pending") as tmp:
        if save_embeddings:
            b = result.benchmark
            write_npy(tmp / "questions.npy", result.embeddings.questions)
            write_npy(tmp / "candidates.npy", result.embeddings.candidates)
            write_jsonl(
                tmp / "questions.jsonl",
                (
                    {"id": i, "lang": lang, "text": t}
                    for i, lang, t in zip(
                        b.question_ids, b.question_langs, b.question_texts, strict=False
                    )
                ),
            )
            texts = b.candidate_texts()
            write_jsonl(
                tmp / "candidates.jsonl",
                (
                    {"lang": lang, "text": t, "relevant_ids": list(r)}
                    for lang, t, r in zip(
                        b.candidate_langs, texts, b.candidate_relevant_ids, strict=False
                    )
                ),
            )
        write_json(tmp / "metrics.json", result.metrics_json())
    pending = output / ".babelir-pending"
    for f in sorted(pending.iterdir(), key=lambda p: p.name == "metrics.json"):
        f.replace(output / f.name)
    pending.rmdir()


def load_saved_embeddings(folder: Path) -> tuple[Embeddings, list[dict], list[dict]]:
    """Read what ``--save-embeddings`` wrote (no pickles: ``allow_pickle=False``)."""
    import json

    q = np.load(folder / "questions.npy", allow_pickle=False)
    c = np.load(folder / "candidates.npy", allow_pickle=False)
    qs = [json.loads(x) for x in (folder / "questions.jsonl").read_text("utf-8").splitlines()]
    cs = [json.loads(x) for x in (folder / "candidates.jsonl").read_text("utf-8").splitlines()]
    return Embeddings(q, c), qs, cs


def benchmark_from_saved(
    qs: list[dict], cs: list[dict]
) -> tuple[list[str], np.ndarray, np.ndarray, list[np.ndarray]]:
    """Languages, question/candidate language codes and relevance from saved jsonl rows."""
    languages: list[str] = []
    for row in cs:
        if row["lang"] not in languages:
            languages.append(row["lang"])
    index = {x: i for i, x in enumerate(languages)}
    by_id: dict[str, list[int]] = {}
    for k, row in enumerate(cs):
        for qid in row["relevant_ids"]:
            by_id.setdefault(qid, []).append(k)
    q_blocks = np.array([index[r["lang"]] for r in qs], dtype=np.int64)
    c_blocks = np.array([index[r["lang"]] for r in cs], dtype=np.int64)
    relevant = [np.asarray(by_id.get(r["id"], []), dtype=np.int64) for r in qs]
    return languages, q_blocks, c_blocks, relevant

"""XOR-TyDi XOR-Retrieve evaluation: R@2kt and R@5kt per language, macro-averaged.

The definition is that of the task's official script (AkariAsai/XORQA
``evals/eval_xor_retrieve.py``, ``evaluate_top_k_hit``), reproduced step by step and
checked against a literal re-implementation in ``tests/evaluation/test_xor_retrieve.py``:

* Each ranked passage's *text* (not its title: XOR-TyDi's DPR baseline writes
  ``ctx["text"]`` only into its prediction file) is tokenised with NLTK's
  ``word_tokenize``; passages are concatenated in rank order until the budget is reached,
  and the token list is cut at exactly N tokens, mid-passage if need be.
* The first N tokens are joined with single spaces, and the question scores 1 when any
  answer string is a *substring* of that text: case-sensitive, no normalisation (no DPR
  ``has_answer``-style lower-casing or re-tokenising of the answer), so an answer may
  span two passages, and one tokenised differently from the text (``don't`` becomes
  ``do n't``) is not found, exactly as officially scored.
* Answers ``"yes"`` and ``"no"`` are dropped; a question left without answers is not
  scored (not counted at all). A language with no scored question is left out.
* Per language: hits / scored questions; overall: the unweighted mean over languages
  (the script's "Final macro averaged score"). The script prints percentages; metrics.json
  holds fractions (the table prints percentages).

Tokenisation: the official ``word_tokenize`` needs ``nltk`` and its Punkt data
(``punkt_tab``); without them ``tokenizer="auto"`` falls back to whitespace splitting,
which cuts fewer tokens from the same text (punctuation stays attached), so its R@kt read
slightly high; the tokenizer used is recorded and the CLI warns. Retrieval reuses the
MIRACL path: :func:`babelir.index.corpus_index.index_corpus` (sharded, resumable,
``torchrun``-splittable encoding, exact or FAISS search).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from babelir import __version__
from babelir.core.errors import ConfigError, DataError
from babelir.core.io import atomic_dir, write_json, write_text
from babelir.data.corpus import files_fingerprint
from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT
from babelir.data.xor_retrieve import XorQuestion, XorRetrieve
from babelir.encoding.encoder import encode_texts
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.measures import XOR_RETRIEVE
from babelir.evaluation.options import DEFAULT_SHARD_SIZE, DEFAULT_TOP_K, RetrievalOptions
from babelir.evaluation.retrieval import Stopwatch, encoder_record, index_passages
from babelir.index.faiss_backend import IndexSpec

R2KT, R5KT = "r@2kt", "r@5kt"
#: Metric -> token budget, as the official script's ``topk * 1000`` for topk in (2, 5).
BUDGETS: dict[str, int] = {R2KT: 2000, R5KT: 5000}
YES_NO = ("yes", "no")
TOKENIZERS = ("auto", "nltk", "whitespace")

Tokenizer = Callable[[str], list[str]]

CONVENTIONS = {
    "tokens": "each ranked passage's text (no title) tokenised, concatenated in rank order and "
    "cut at exactly N tokens (mid-passage); official: nltk word_tokenize",
    "match": "an answer string is a case-sensitive substring of the first N tokens joined by "
    "single spaces (no normalisation; answers may span passages)",
    "answers": "'yes'/'no' answers are dropped; questions left without answers are not scored",
    "macro": "unweighted mean over languages of hits / scored questions (official 'Final macro "
    "averaged score'); fractions here, the official script prints percentages",
    "under_budget": "questions whose retrieved passages hold fewer than N tokens in all: their "
    "score may be underestimated (raise --top-k)",
}


# --------------------------------------------------------------------------- tokenisers


def whitespace_tokenize(text: str) -> list[str]:
    """Whitespace tokens: the fallback when NLTK is not installed (not the official)."""
    return text.split()


def nltk_tokenizer() -> Tokenizer:
    """NLTK's ``word_tokenize``, the official script's tokeniser; a one-line error when
    NLTK or its Punkt data is missing."""
    try:
        from nltk.tokenize import word_tokenize
    except ImportError:
        raise ConfigError(
            "--tokenizer nltk: NLTK is not installed (pip install nltk; then python -m "
            "nltk.downloader punkt_tab), or use --tokenizer whitespace"
        ) from None
    try:
        word_tokenize("A test. Another one.")
    except LookupError:
        raise ConfigError(
            "--tokenizer nltk: NLTK's Punkt data is missing (python -m nltk.downloader "
            "punkt_tab), or use --tokenizer whitespace"
        ) from None
    return word_tokenize


def resolve_tokenizer(name: str = "auto") -> tuple[str, Tokenizer]:
    """``(name used, tokeniser)``: ``auto`` is ``nltk`` when available, else whitespace."""
    if name not in TOKENIZERS:
        raise ConfigError(f"--tokenizer {name}: use one of {', '.join(TOKENIZERS)}")
    if name == "whitespace":
        return "whitespace", whitespace_tokenize
    try:
        return "nltk", nltk_tokenizer()
    except ConfigError:
        if name == "nltk":
            raise
        return "whitespace", whitespace_tokenize


# --------------------------------------------------------------------------- metric


def span_answers(answers: Iterable[str]) -> list[str]:
    """The answers the metric looks for: all but ``"yes"`` and ``"no"`` (official)."""
    return [a for a in answers if a not in YES_NO]


def _read_tokens(
    ranked_passages: Iterable[str], k_tokens: int, tokenize: Tokenizer
) -> tuple[list[str], int]:
    """(tokens of the passages read, passages read): passages are tokenised in rank order
    only until ``k_tokens`` tokens are reached, as the official loop reads them."""
    tokens: list[str] = []
    read = 0
    for text in ranked_passages:
        tokens += tokenize(text)
        read += 1
        if len(tokens) >= k_tokens:
            break
    return tokens, read


def first_tokens(
    ranked_passages: Iterable[str], k_tokens: int, tokenize: Tokenizer = whitespace_tokenize
) -> list[str]:
    """The first ``k_tokens`` tokens of the ranked passages' texts, concatenated (the last
    passage read is cut mid-way at the budget)."""
    return _read_tokens(ranked_passages, k_tokens, tokenize)[0][:k_tokens]


def answer_in(tokens: Sequence[str], answers: Iterable[str]) -> bool:
    """Whether an answer is a substring of ``tokens`` joined by single spaces."""
    text = " ".join(tokens)
    return any(a in text for a in answers)


def recall_at_k_tokens(
    ranked_passages: Iterable[str],
    answers: Iterable[str],
    k_tokens: int,
    tokenize: Tokenizer = whitespace_tokenize,
) -> float:
    """1.0 when a span answer (not yes/no) occurs in the first ``k_tokens`` tokens of the
    ranked passages, else 0.0. A question with no span answer is not scored by the
    official script: check :func:`span_answers` first (it scores 0.0 here)."""
    return float(
        answer_in(first_tokens(ranked_passages, k_tokens, tokenize), span_answers(answers))
    )


def hits_at_budgets(
    ranked_passages: Iterable[str],
    answers: Iterable[str],
    budgets: Mapping[str, int] = BUDGETS,
    tokenize: Tokenizer = whitespace_tokenize,
) -> tuple[dict[str, bool], int, int]:
    """Every budget's hit from one tokenisation of the largest prefix needed (the first N
    tokens do not depend on a larger budget), the tokens available (<= the largest budget;
    fewer: the ranking ran out of text) and the passages read to get them."""
    largest = max(budgets.values())
    tokens, read = _read_tokens(ranked_passages, largest, tokenize)
    tokens = tokens[:largest]
    spans = span_answers(answers)
    return {name: answer_in(tokens[:n], spans) for name, n in budgets.items()}, len(tokens), read


def macro_scores(
    per_query: Mapping[str, Mapping[str, Any]], names: Sequence[str] = tuple(BUDGETS)
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """``(per language {metric: hits / count}, {metric: mean over languages})`` of scored
    queries (``{"lang", metric: bool, ...}`` each), as the official script aggregates."""
    per_lang: dict[str, list[Mapping[str, Any]]] = {}
    for row in per_query.values():
        per_lang.setdefault(row["lang"], []).append(row)
    langs = {
        lang: {n: sum(bool(r[n]) for r in rows) / len(rows) for n in names}
        for lang, rows in per_lang.items()
    }
    macro = {n: float(np.mean([v[n] for v in langs.values()])) for n in names} if langs else {}
    return langs, macro


# --------------------------------------------------------------------------- results


@dataclass
class QueryScore:
    """One scored question: its hits, the tokens its ranking held, its ranked rows."""

    question: XorQuestion
    hits: dict[str, bool]
    tokens: int
    ranked: list[tuple[str, float]] = field(default_factory=list, repr=False)
    texts: list[str] = field(default_factory=list, repr=False)


@dataclass
class XorResult:
    questions_name: str
    questions_path: str
    corpus_path: str
    corpus_limit: int | None
    num_passages: int
    per_query: list[QueryScore]
    unscored: dict[str, int]
    tokenizer: str
    top_k: int
    passage_format: str
    index: dict[str, Any]
    recall_vs_exact: dict[str, Any] | None = None
    empty_answers: int = 0
    timing_s: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, bench: XorRetrieve, **fields: Any) -> XorResult:
        """A result over ``bench``: its files and empty-answer count filled in."""
        return cls(
            questions_name=bench.questions_name, questions_path=str(bench.questions_path),
            corpus_path=str(bench.corpus_path), empty_answers=bench.empty_answers, **fields,
        )  # fmt: skip

    def scores(self) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        rows = {s.question.id: {"lang": s.question.lang, **s.hits} for s in self.per_query}
        return macro_scores(rows)

    def per_query_arrays(self) -> tuple[list[str], list[str], dict[str, list[float]]]:
        """(question ids, languages, 0/1 per measure key): the per_query.npz compare's
        report tests."""
        qs = self.per_query
        return (
            [s.question.id for s in qs],
            [s.question.lang for s in qs],
            {m.key: [float(s.hits[m.key]) for s in qs] for m in XOR_RETRIEVE},
        )

    def metrics_json(self) -> dict[str, Any]:
        """The metrics.json document: macro metrics, per-language table, provenance."""
        from babelir.data.xor_retrieve import sorted_languages

        langs, macro = self.scores()
        per: dict[str, Any] = {}
        for lang in sorted_languages(list(langs)):
            mine = [s for s in self.per_query if s.question.lang == lang]
            per[lang] = {
                **{n: round(langs[lang][n], 6) for n in BUDGETS},
                "num_queries": len(mine),
                "hits": {n: sum(s.hits[n] for s in mine) for n in BUDGETS},
                "questions_without_span_answer": self.unscored.get(lang, 0),
                "under_budget": {n: sum(s.tokens < b for s in mine) for n, b in BUDGETS.items()},
            }
        return {
            "babelir_version": __version__,
            **self.info,
            "benchmark": "xor-retrieve",
            "questions": self.questions_name,
            "questions_file": self.questions_path,
            "corpus_file": self.corpus_path,
            "corpus_limit": self.corpus_limit,
            "num_passages": self.num_passages,
            "languages": list(per),
            "passage_format": self.passage_format,
            "index": self.index,
            "recall_vs_exact": self.recall_vs_exact,
            "top_k": self.top_k,
            "tokenizer": self.tokenizer,
            "official_tokenizer": self.tokenizer == "nltk",
            "num_queries": len(self.per_query),
            **{n: round(macro[n], 6) for n in BUDGETS},
            "questions_with_empty_answer": self.empty_answers,
            "per_language": per,
            "timing_s": self.timing_s,
            "conventions": CONVENTIONS,
        }


# --------------------------------------------------------------------------- pipeline


def _texts_for_rows(
    bench: XorRetrieve, rows: set[int], limit: int | None, ids: Mapping[int, str]
) -> dict[int, str]:
    """Texts of the retrieved ``rows`` by a second pass over the passage file (rows are
    stream positions); each docid is checked against the shards' ids."""
    out: dict[int, str] = {}
    last = max(rows) if rows else -1
    for i, p in enumerate(bench.passages(limit)):
        if i > last:
            break
        if i in rows:
            if p.docid != ids[i]:
                raise DataError(
                    f"{bench.corpus_path}: passage {i} is {p.docid!r}, the shards hold "
                    f"{ids[i]!r} (the file changed since it was encoded: delete the shards)"
                )
            out[i] = p.text
    missing = rows - out.keys()
    if missing:
        raise DataError(
            f"{bench.corpus_path}: holds fewer passages than its shards ({min(missing)} not found)"
        )
    return out


def _scored_questions(bench: XorRetrieve) -> tuple[list[XorQuestion], dict[str, int]]:
    """The questions the official script scores (a span answer: not only yes/no) and, per
    language, how many it skips."""
    scored = [q for q in bench.questions if span_answers(q.answers)]
    unscored: dict[str, int] = {}
    for q in bench.questions:
        if not span_answers(q.answers):
            unscored[q.lang] = unscored.get(q.lang, 0) + 1
    if not scored:
        raise DataError(f"{bench.questions_path}: no question has an answer other than yes/no")
    return scored, unscored


def _score(
    q: XorQuestion, ranked: Sequence[tuple[str, float]], texts: list[str], tokenize: Tokenizer
) -> QueryScore:
    """One question scored on its ranked passages' texts (both rows, dense and BM25)."""
    hits, n_tokens, used = hits_at_budgets(texts, q.answers, BUDGETS, tokenize)
    return QueryScore(q, hits, n_tokens, list(ranked), texts[:used])


def evaluate_xor_retrieve(
    model: Any,
    bench: XorRetrieve,
    work_dir: Path,
    *,
    options: EncodeOptions | None = None,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    index: IndexSpec | None = None,
    model_fingerprint: str = "",
    shard_size: int = DEFAULT_SHARD_SIZE,
    corpus_limit: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    tokenizer: str = "auto",
    exact_check_queries: int = 200,
    info: dict[str, Any] | None = None,
) -> XorResult | None:
    """Encode (or reuse) the passages, retrieve ``top_k`` per question, score R@2kt/R@5kt.

    ``corpus_limit``: the first N passages of the file only (CPU trials; XOR-Retrieve has
    no gold passage ids to add, so the scores then only say how the model ranks within
    that prefix). Passages are encoded as ``passage_format`` (title and text by default,
    as DPR encodes them) but scored on their text alone (official). Shards live in one
    folder per (model, prefix, precision, truncation, format, corpus, limit). Returns
    None on ``torchrun`` ranks other than 0 (they only encode their shards) and, for
    ranks run without a process group (``RANK``/``WORLD_SIZE`` only), on all but the rank
    that completes the shards.
    """
    RetrievalOptions(corpus_limit=corpus_limit, top_k=top_k)  # their ranges, before any work
    tok_name, tokenize = resolve_tokenizer(tokenizer)
    opts = options or EncodeOptions()
    index = index or IndexSpec()
    clock = Stopwatch()
    corpus_fp = f"{files_fingerprint([bench.corpus_path])}:first={corpus_limit or 'all'}"
    built = index_passages(
        model, bench.passages(corpus_limit), work_dir, "xor-retrieve", options=opts,
        index=index, shard_size=shard_size, model_fingerprint=model_fingerprint,
        corpus_fingerprint=corpus_fp, passage_format=passage_format,
    )  # fmt: skip
    if built is None:  # under torchrun a rank > 0; without a process group, not the last
        return None
    shards = built.shards
    clock.lap("encode")

    scored, unscored = _scored_questions(bench)
    qvec = encode_texts(
        model,
        [q.question for q in scored],
        prefix=opts.query_prefix or "",
        options=replace(opts, show_progress=False),
        desc="questions",
    )
    k = min(top_k, shards.num_rows)
    scores, rows, recall = built.search_checked(qvec, k, num_check=exact_check_queries)
    clock.lap("search")

    wanted = sorted({int(r) for r in rows.reshape(-1) if r >= 0})
    ids = dict(zip(wanted, shards.ids_for(np.asarray(wanted, dtype=np.int64)), strict=True))
    texts = _texts_for_rows(bench, set(wanted), corpus_limit, ids)
    per_query = []
    for i, q in enumerate(scored):
        ranked = [(int(r), float(s)) for r, s in zip(rows[i], scores[i], strict=True) if r >= 0]
        per_query.append(
            _score(q, [(ids[r], s) for r, s in ranked], [texts[r] for r, _ in ranked], tokenize)
        )
    clock.lap("score")
    return XorResult.of(
        bench, corpus_limit=corpus_limit, num_passages=shards.num_rows, per_query=per_query,
        unscored=unscored, tokenizer=tok_name, top_k=k, passage_format=passage_format,
        index=index.describe(), recall_vs_exact=recall, timing_s=clock.laps,
        info={**(info or {}), **encoder_record(model, opts)},
    )  # fmt: skip


def evaluate_xor_retrieve_bm25(
    bench: XorRetrieve,
    *,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    corpus_limit: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    tokenizer: str = "auto",
    progress: bool = False,
) -> XorResult:
    """The BM25 row of XOR-Retrieve: the same passages (``passage_format``), questions,
    budgets and scoring as the dense row, retrieved by :class:`~babelir.evaluation.bm25.BM25Index`
    (Lucene BM25, English stopwords).

    The questions are NOT translated: BM25 only matches terms the question shares with an
    English passage (names, numbers, Latin-script words), which is the point of the row
    (what a lexical system gets cross-lingually without machine translation). It holds
    the whole corpus in memory: use ``corpus_limit`` on a CPU.
    """
    from babelir.data.miracl import format_passage
    from babelir.evaluation.bm25 import BM25Index

    RetrievalOptions(corpus_limit=corpus_limit)  # its range, before any work
    tok_name, tokenize = resolve_tokenizer(tokenizer)
    clock = Stopwatch()
    rows: dict[str, int] = {}

    def docs() -> Iterable[tuple[str, str]]:
        for i, p in enumerate(bench.passages(corpus_limit)):
            rows[p.docid] = i
            yield p.docid, format_passage(p, passage_format)

    index = BM25Index.build(docs(), "en", progress=progress)
    clock.lap("index")
    scored, unscored = _scored_questions(bench)
    k = min(top_k, index.num_docs)
    run = index.search({q.id: q.question for q in scored}, k)
    clock.lap("search")
    wanted = {rows[d] for hits in run.values() for d, _ in hits}
    ids = {r: d for d, r in rows.items() if r in wanted}
    texts = _texts_for_rows(bench, wanted, corpus_limit, ids)
    per_query = [_score(q, run[q.id], [texts[rows[d]] for d, _ in run[q.id]], tokenize)
                 for q in scored]  # fmt: skip
    clock.lap("score")
    return XorResult.of(
        bench, corpus_limit=corpus_limit, num_passages=index.num_docs, per_query=per_query,
        unscored=unscored, tokenizer=tok_name, top_k=k, passage_format=passage_format,
        index={"kind": "bm25"}, timing_s=clock.laps, info={"model": "bm25"},
    )  # fmt: skip


def bm25_section(result: XorResult) -> dict[str, Any]:
    """The ``baselines.bm25`` section of a dense metrics.json: macro and per-language
    R@kt of the BM25 row, with its settings."""
    from babelir.evaluation.bm25 import K1, METHOD, B, _bm25s, tokenizer_info

    doc = result.metrics_json()
    return {
        "library": f"bm25s {_bm25s().__version__}",
        "params": {"k1": K1, "b": B, "method": METHOD},
        "passage_format": result.passage_format,
        "tokenization": tokenizer_info("en"),
        "queries": "untranslated",
        **{n: doc[n] for n in BUDGETS},
        "num_queries": doc["num_queries"],
        "num_passages": doc["num_passages"],
        "per_language": doc["per_language"],
    }


PER_QUERY = "per_query.npz"
PREDICTIONS = "xor_retrieve_predictions.json"


def write_xor_result(result: XorResult, output: Path, *, save_run: bool = False) -> None:
    """metrics.json and per_query.npz (question ids, languages, 0/1 per metric) into
    ``output``, atomically; with ``save_run`` also ``run.trec`` and the official
    prediction file (``[{"id", "lang", "ctxs": [texts]}]``, as many passages as the
    5,000-token budget reads) that ``eval_xor_retrieve.py`` scores to the same numbers."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    pending = output / ".babelir-pending"
    with atomic_dir(pending) as tmp:
        qs = result.per_query
        np.savez(
            tmp / PER_QUERY,
            question_ids=np.asarray([s.question.id for s in qs], dtype=str),
            langs=np.asarray([s.question.lang for s in qs], dtype=str),
            r2kt=np.asarray([s.hits[R2KT] for s in qs], dtype=np.float64),
            r5kt=np.asarray([s.hits[R5KT] for s in qs], dtype=np.float64),
            tokens=np.asarray([s.tokens for s in qs], dtype=np.int64),
        )
        if save_run:
            lines = (
                f"{s.question.id} Q0 {docid} {rank} {score:.6f} babelir\n"
                for s in qs
                for rank, (docid, score) in enumerate(s.ranked, 1)
            )
            write_text(tmp / "run.trec", "".join(lines))
            preds = [
                {"id": s.question.raw_id, "lang": s.question.lang, "ctxs": s.texts} for s in qs
            ]
            write_json(tmp / PREDICTIONS, preds, indent=None)
        write_json(tmp / "metrics.json", result.metrics_json())
    for f in sorted(pending.iterdir(), key=lambda p: p.name == "metrics.json"):
        f.replace(output / f.name)
    pending.rmdir()

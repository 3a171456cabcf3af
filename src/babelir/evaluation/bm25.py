r"""BM25 baseline: lexical retrieval over a passage corpus, as a run MIRACL scoring reads.

Why :mod:`bm25s`: pure Python on numpy/scipy sparse matrices (Pyserini, which the MIRACL
paper's BM25 row used, needs a Java runtime these machines lack), maintained, and fast
enough to index a language of MIRACL on a CPU. The scoring is Lucene's BM25 (bm25s
``method="lucene"``: idf ``log(1 + (N - df + 0.5) / (df + 0.5))``, term weight
``tf / (tf + k1 (1 - b + b dl / avgdl))``) with Anserini's defaults ``k1=0.9, b=0.4``,
the settings of MIRACL's BM25 baseline.

Tokenisation, one unicode-aware rule for every language (the ``regex`` module's Unicode
properties; Python's ``re`` ``\w`` leaves out combining marks, so it splits Hindi,
Bengali and Telugu words at their vowel signs and Yorùbá words at their tone marks):

* NFKC, then casefold (the normalisation of Lucene's ICU folding): full-width forms and
  composed / decomposed diacritics compare equal.
* A token is a maximal run of letters, marks and digits.
* Runs in scripts written without spaces (Han, Hiragana, Katakana, Thai) become
  overlapping bigrams of grapheme clusters (a one-character run stays whole), as Lucene's
  CJK analyzer does: no segmenter dictionary or model to ship, and the standard lexical
  baseline for zh/ja; Thai gets the same, where Lucene would use a dictionary word break.
  This goes by script, not by language: Latin words inside Chinese text stay words.
* Stopwords: bm25s' lists where it has the language (en, de, es, fr, ru, ko), none
  elsewhere. No stemming (PyStemmer would be one more dependency, and only covers some
  languages): stemmed Lucene runs score a little higher on en/de/fr/es/ru/fi.

Passages without any matching query term are not returned (Lucene returns only matches),
so a run may be shorter than ``k``; a query with no term in the corpus has an empty run.
"""

from __future__ import annotations

import unicodedata
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from typing import Any

from babelir.core.errors import ConfigError, DataError
from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT, MiraclLanguage, format_passage
from babelir.evaluation.options import DEFAULT_TOP_K

K1, B, METHOD = 0.9, 0.4, "lucene"
_NO_SPACE_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}"
_STOPWORD_LISTS = {
    "en": "STOPWORDS_EN",
    "de": "STOPWORDS_GERMAN",
    "es": "STOPWORDS_SPANISH",
    "fr": "STOPWORDS_FRENCH",
    "ru": "STOPWORDS_RUSSIAN",
    "ko": "STOPWORDS_KOREAN",
}


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError:
        raise ConfigError(
            "the BM25 baseline needs bm25s: pip install 'babelir[bm25]' (or pip install bm25s)"
        ) from None
    return bm25s


@cache
def _patterns() -> tuple[Any, Any]:
    try:
        import regex
    except ImportError:
        raise ConfigError("the BM25 tokenizer needs regex: pip install 'babelir[bm25]'") from None

    # ``ー`` (U+30FC) and ``々`` belong to no single script: taken by Script_Extensions.
    no_space = rf"[[{_NO_SPACE_SCRIPTS}\p{{scx=Hira}}\p{{scx=Kana}}]&&[\p{{L}}\p{{M}}\p{{N}}]]"
    token = regex.compile(rf"(?V1)({no_space}+)|((?:(?!{no_space})[\p{{L}}\p{{M}}\p{{N}}])+)")
    return token, regex.compile(r"\X")


@cache
def stopwords(lang: str) -> frozenset[str]:
    """bm25s' stopword list of ``lang`` (normalised like the text), empty where it has none."""
    name = _STOPWORD_LISTS.get(lang)
    if name is None:
        return frozenset()
    words = getattr(_bm25s().stopwords, name)
    return frozenset(_normalise(w) for w in words)


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str, lang: str = "") -> list[str]:
    """The BM25 terms of ``text`` (see the module docstring for the rules)."""
    token, grapheme = _patterns()
    stop = stopwords(lang)
    out: list[str] = []
    for m in token.finditer(_normalise(text)):
        run, word = m.group(1), m.group(2)
        if word is not None:
            if word not in stop:
                out.append(word)
            continue
        chars = grapheme.findall(run)
        if len(chars) == 1:
            out.append(run)
        else:
            out.extend(a + b for a, b in pairwise(chars))
    return out


def tokenizer_info(lang: str) -> dict[str, Any]:
    """How ``lang`` was tokenised, for metrics.json."""
    return {
        "normalise": "NFKC + casefold",
        "tokens": "runs of letters/marks/digits; Han/Hiragana/Katakana/Thai runs as "
        "grapheme bigrams",
        "stopwords": f"bm25s {_STOPWORD_LISTS[lang]}" if lang in _STOPWORD_LISTS else None,
        "stemming": None,
    }


# --------------------------------------------------------------------------- index


@dataclass
class BM25Index:
    """A bm25s index of one language's passages, with their docids."""

    retriever: Any
    docids: list[str]
    vocab: dict[str, int]
    lang: str = ""

    @classmethod
    def build(
        cls,
        docs: Iterable[tuple[str, str]],
        lang: str = "",
        *,
        k1: float = K1,
        b: float = B,
        progress: bool = False,
    ) -> BM25Index:
        """Index ``(docid, text)`` pairs; token ids are kept as compact int arrays, not
        lists of Python ints, so a corpus of millions of passages fits in memory."""
        vocab: dict[str, int] = {}
        ids: list[array] = []
        docids: list[str] = []
        for docid, text in docs:
            docids.append(docid)
            ids.append(array("i", (vocab.setdefault(t, len(vocab)) for t in tokenize(text, lang))))
        if not docids:
            raise DataError(f"BM25 {lang or 'corpus'}: no passages to index")
        if not vocab:
            raise DataError(f"BM25 {lang or 'corpus'}: the passages have no terms")
        retriever = _bm25s().BM25(k1=k1, b=b, method=METHOD, backend="numpy")
        retriever.index((ids, vocab), show_progress=progress)
        return cls(retriever, docids, vocab, lang)

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    def search(
        self, queries: Mapping[str, str], k: int = DEFAULT_TOP_K, *, progress: bool = False
    ) -> dict[str, list[tuple[str, float]]]:
        """Top-``k`` ``(docid, score)`` per query id, best first; matches only."""
        out: dict[str, list[tuple[str, float]]] = {q: [] for q in queries}
        asked = []
        for qid, text in queries.items():
            terms = [self.vocab[t] for t in tokenize(text, self.lang) if t in self.vocab]
            if terms:
                asked.append((qid, terms))
        if not asked:
            return out
        top = min(k, self.num_docs)
        rows, scores = self.retriever.retrieve(
            [t for _, t in asked], k=top, show_progress=progress, n_threads=0
        )
        for (qid, _), row, score in zip(asked, rows, scores, strict=True):
            hits = zip(row.tolist(), score.tolist(), strict=True)
            out[qid] = [(self.docids[d], s) for d, s in hits if s > 0]
        return out


# --------------------------------------------------------------------------- MIRACL


def evaluate_language_bm25(
    ml: MiraclLanguage,
    *,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    k: int | None = None,
    progress: bool = False,
) -> Any:
    """One language's BM25 row: a :class:`~babelir.evaluation.miracl.LanguageResult` over
    the same passages (``passage_format``), queries and conventions as the dense row."""
    from babelir.evaluation.miracl import TOP_K, language_result, scored_topics
    from babelir.evaluation.retrieval import Stopwatch

    clock = Stopwatch()
    index = BM25Index.build(
        ((p.docid, format_passage(p, passage_format)) for p in ml.passages()),
        ml.lang,
        progress=progress,
    )
    clock.lap("index")
    qids = scored_topics(ml)
    run = index.search({q: ml.topics[q] for q in qids}, k or TOP_K)
    clock.lap("search")
    return language_result(ml, qids, run, index.docids, index.num_docs, clock)


def evaluate_miracl_bm25(
    languages: Sequence[MiraclLanguage],
    *,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    progress: bool = False,
) -> tuple[dict[str, Any], list[Any]]:
    """The ``baselines.bm25`` section of metrics.json (macro and per-language nDCG@10 and
    Recall@100, settings) and the per-language results (their runs included)."""
    import numpy as np

    from babelir.evaluation.miracl import NDCG, RECALL

    results = [
        evaluate_language_bm25(ml, passage_format=passage_format, progress=progress)
        for ml in languages
    ]
    section = {
        "library": f"bm25s {_bm25s().__version__}",
        "params": {"k1": K1, "b": B, "method": METHOD},
        "passage_format": passage_format,
        "tokenization": {r.lang: tokenizer_info(r.lang) for r in results},
        NDCG: round(float(np.mean([r.mean(NDCG) for r in results])), 6),
        RECALL: round(float(np.mean([r.mean(RECALL) for r in results])), 6),
        "num_queries": sum(r.num_queries for r in results),
        "num_passages": sum(r.num_passages for r in results),
        "qrels_docids_missing_from_corpus": sum(r.judged_missing for r in results),
        "per_language": {r.lang: r.to_dict() for r in results},
    }
    return section, results


@dataclass
class MiraclBM25:
    """The BM25 row of a MIRACL compare entry: its metrics.json document (the
    ``baselines.bm25`` section with the run's identity) and per-query values."""

    split: str
    section: dict[str, Any]
    results: list[Any]
    info: dict[str, Any] = field(default_factory=dict)

    def metrics_json(self) -> dict[str, Any]:
        return {
            **self.info,
            "benchmark": "miracl",
            "split": self.split,
            "languages": [r.lang for r in self.results],
            "index": {"kind": "bm25"},
            **self.section,
        }

    def per_query_arrays(self) -> tuple[list[str], list[str], dict[str, list[float]]]:
        from babelir.evaluation.miracl import per_query_arrays

        return per_query_arrays(self.results)


def miracl_bm25_row(
    languages: Sequence[MiraclLanguage], *, passage_format: str = DEFAULT_PASSAGE_FORMAT
) -> MiraclBM25:
    """:func:`evaluate_miracl_bm25` as compare stores a row (its family's ``evaluate_bm25``)."""
    section, results = evaluate_miracl_bm25(languages, passage_format=passage_format)
    return MiraclBM25(languages[0].split if languages else "dev", section, results)

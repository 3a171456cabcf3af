"""Parallel QA training data: the same (query, passage) item in several languages.

A :class:`ParallelQA` is a list of items; each item has a parallel ``id`` and, per
language, a query, a positive passage and optional hard negatives. Loaders:

* :func:`from_lareqa` - a LAReQA/SQuAD-format folder (XQuAD-R, XQuAD with sentences):
  pair = (question, answer sentence) or (question, paragraph); hard negatives are the
  other sentences of the same paragraph. Takes the same ``articles`` selection as
  evaluation, so a held-out split is one flag on each side.
* :func:`from_jsonl` - users' own data, one JSON object per line::

      {"id": "q17", "lang": "de", "query": "...", "positive": "...", "negatives": ["..."]}

  Lines with the same ``id`` are translations of one item; ``negatives`` is optional.

:func:`pair_table` flattens items into the rows the batch samplers draw from: one row
per (item, query language, passage language). Parallel questions
(:mod:`babelir.data.parallel_questions`) give cross-language rows only, the translation
as the positive, marked in an ``origin`` column.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from babelir.core.errors import ConfigError, DataError
from babelir.data.jsonl import numbered_lines, parse_object
from babelir.data.lareqa import (
    available_languages,
    parse_language_file,
    require_languages,
    resolve_benchmark_dir,
)
from babelir.data.mmarco import MMarco, load_mmarco
from babelir.data.types import (
    QUESTION,
    ArticleSelection,
    ParallelItem,
    ParallelQA,
    Side,
    parse_languages,
)

#: The paper's nine training languages; el and vi stay unseen (zero-shot at evaluation).
PAPER_TRAIN_LANGUAGES = ("ar", "de", "en", "es", "hi", "ru", "th", "tr", "zh")

PairMode = Literal["sentence", "paragraph"]


def from_lareqa(
    name_or_path: str | Path,
    data_dir: Path | None = None,
    *,
    languages: Sequence[str] | str | None = None,
    articles: ArticleSelection | str | None = None,
    passage: PairMode = "sentence",
) -> ParallelQA:
    """Training pairs from a LAReQA-format folder (see module docstring)."""
    from babelir.core.settings import data_dir as default_data_dir

    if passage not in ("sentence", "paragraph"):
        raise ConfigError(f"passage mode '{passage}' is not 'sentence' or 'paragraph'")
    _, folder = resolve_benchmark_dir(name_or_path, data_dir or default_data_dir())
    present = available_languages(folder)
    wanted = parse_languages(languages) or [x for x in PAPER_TRAIN_LANGUAGES if x in present]
    if not wanted:
        raise DataError(f"{folder}: none of the default training languages is present")
    require_languages(folder, wanted, present, "training language")
    selection = ArticleSelection.parse(articles)
    items: dict[str, ParallelItem] = {}
    for lang in wanted:
        f = parse_language_file(folder / f"{lang}.json", lang, selection)
        by_para: dict[tuple[int, int], list[str]] = {}
        for s in f.sentences:
            by_para.setdefault((s.article, s.paragraph), []).append(s.text)
        for qa in f.qas:
            sents = by_para[(qa.article, qa.paragraph)]
            answer = qa.answer_sentences[0]
            if passage == "sentence":
                positive = sents[answer]
                negatives = tuple(
                    t for k, t in enumerate(sents) if k not in qa.answer_sentences and t != positive
                )
            else:
                positive = next(
                    s.context
                    for s in f.sentences
                    if (s.article, s.paragraph) == (qa.article, qa.paragraph)
                )
                negatives = ()
            item = items.setdefault(qa.id, ParallelItem(qa.id))
            item.sides[lang] = Side(qa.question, positive, negatives)
    if not items:
        raise DataError(f"{folder}: the selection (articles {selection}) holds no questions")
    return ParallelQA(list(items.values()), source=str(folder))


def from_jsonl(path: str | Path, *, languages: Sequence[str] | str | None = None) -> ParallelQA:
    """Training pairs from a JSONL(.gz) file (see module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: training data file not found")
    items: dict[str, ParallelItem] = {}
    lineno = 0
    try:
        for lineno, line in numbered_lines(path):
            _add_jsonl_row(items, line, f"{path}:{lineno}")
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        what = "truncated" if isinstance(e, EOFError) else "not a valid gzip file"
        raise DataError(f"{path}: {what} after line {lineno} ({e or 'unexpected end'})") from None
    if not items:
        raise DataError(f"{path}: no training lines")
    data = ParallelQA(list(items.values()), source=str(path))
    wanted = parse_languages(languages)
    return data.select_languages(wanted) if wanted else data


def _add_jsonl_row(items: dict[str, ParallelItem], line: str, where: str) -> None:
    row = parse_object(line, where)
    for key in ("id", "lang", "query", "positive"):
        if key not in row:
            raise DataError(f"{where}: missing field '{key}'")
        if not isinstance(row[key], str | int) or not str(row[key]).strip():
            raise DataError(f"{where}: field '{key}' must be a non-empty string")
    negs = row.get("negatives", [])
    if not isinstance(negs, list) or not all(isinstance(x, str) for x in negs):
        raise DataError(f"{where}: field 'negatives' must be a list of strings")
    item = items.setdefault(str(row["id"]), ParallelItem(str(row["id"])))
    lang = str(row["lang"])
    if lang in item.sides:
        raise DataError(f"{where}: id {row['id']} has a second '{lang}' line")
    item.sides[lang] = Side(str(row["query"]), str(row["positive"]), tuple(negs))


def load_parallel(
    source: str | Path,
    data_dir: Path | None = None,
    *,
    languages: Sequence[str] | str | None = None,
    articles: str | None = None,
    passage: PairMode = "sentence",
    max_triples: int = 100_000,
) -> ParallelQA:
    """A JSONL file, an mMARCO-layout folder (or ``mmarco`` under the data dir), or a
    LAReQA-format benchmark by name or folder. ``max_triples`` bounds the mMARCO window."""
    text = str(source)
    if text == "mmarco" or (Path(text).is_dir() and MMarco.detect(Path(text))):
        from babelir.core.settings import data_dir as default_data_dir

        root = (data_dir or default_data_dir()) / "mmarco" if text == "mmarco" else Path(text)
        if articles not in (None, "all"):
            raise ConfigError("--articles applies to LAReQA-format folders, not mMARCO")
        return load_mmarco(root, languages=parse_languages(languages), max_triples=max_triples)
    if text.endswith((".jsonl", ".jsonl.gz", ".json.gz")) or Path(text).is_file():
        if articles not in (None, "all"):
            raise ConfigError("--articles applies to LAReQA-format folders, not JSONL files")
        return from_jsonl(text, languages=languages)
    return from_lareqa(text, data_dir, languages=languages, articles=articles, passage=passage)


class PairTable(dict):
    """A pair table (``{column: list}``) that also carries the run's ``parallel_share``:
    the share of each x-y batch's pairs drawn from parallel questions, None for "in
    proportion to their items". The batch sampler reads it from the table it is given."""

    parallel_share: float | None = None


def pair_table(
    data: ParallelQA,
    *,
    cross: bool = True,
    hard_negatives: bool = False,
    seed: int = 0,
    parallel_share: float | None = None,
) -> PairTable:
    """Rows (item, query language, passage language) for the batch samplers.

    Same-language rows always; cross-language rows (X != Y) when ``cross``. With
    ``hard_negatives`` each row gets one negative drawn (seeded) from the passage
    language's hard negatives; rows whose passage side has none are dropped.

    A parallel question (kind :data:`~babelir.data.types.QUESTION`) gives cross-language
    rows only, its translation in Y as the positive (none without ``cross``, and none with
    ``hard_negatives``: it has no passages). When there are any, an ``origin`` column
    says ``qa`` or ``question`` per row.
    """
    rng = np.random.default_rng(seed)
    cols = PairTable(id=[], query_lang=[], passage_lang=[], query=[], positive=[])
    cols.parallel_share = parallel_share
    if hard_negatives:
        cols["negative"] = []
    origins: list[str] = []
    for item in data.items:
        question = item.kind == QUESTION
        if question and (not cross or hard_negatives):
            continue
        for ql, qs in item.sides.items():
            for pl, ps in item.sides.items():
                if (ql != pl and not cross) or (ql == pl and question):
                    continue
                if hard_negatives:
                    if not ps.negatives:
                        continue
                    cols["negative"].append(ps.negatives[int(rng.integers(len(ps.negatives)))])
                cols["id"].append(item.id)
                cols["query_lang"].append(ql)
                cols["passage_lang"].append(pl)
                cols["query"].append(qs.query)
                cols["positive"].append(ps.query if question else ps.positive)
                origins.append(item.kind)
    if QUESTION in origins:
        cols["origin"] = origins
    return cols


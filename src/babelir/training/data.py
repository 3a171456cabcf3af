"""The training side of a run: parallel items, the validation split, the pair table and
the loss's view of it (:func:`loss_columns`).

The validation split is carved out of the training articles (LAReQA data) or items
(JSONL, mMARCO) here, so training, ``compare`` validation and ``babelir batches`` see
the same split. Parallel questions (no passages) never enter it: they train x-y
batches only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babelir.batches.strategies import get_strategy
from babelir.core.errors import ConfigError, DataError
from babelir.data.types import QUESTION, ParallelQA
from babelir.training.config import TrainConfig
from babelir.training.sources import is_multi_source, is_question_path
from babelir.training.validation import count_articles, split_articles, split_items

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """The training items, the sampler's pair table and the validation items."""

    data: ParallelQA
    table: dict[str, list[str]]
    val: ParallelQA | None
    train_articles: str | None  # the effective training selection (LAReQA data)
    val_articles: str | None
    val_note: str | None = None  # why there is no validation split, when there is none
    sources: list[dict[str, Any]] | None = None  # per source: items, SQuAD counts, sha256
    overlaps: list[str] | None = None  # items dropped for overlapping a benchmark

    def validation_record(self) -> dict[str, Any]:
        groups = sorted({it.group for it in self.val.items if it.group}) if self.val else []
        return {
            "articles": self.val_articles,
            "items": len(self.val.items) if self.val else 0,
            "item_ids": sorted(it.id for it in self.val.items) if self.val else [],
            "held_out_articles": groups or None,
            "note": self.val_note,
        }


def _is_item_data(source: str) -> bool:
    """JSONL files and mMARCO folders split by item; LAReQA folders split by article."""
    from babelir.data.mmarco import MMarco

    path = Path(source)
    return source == "mmarco" or path.is_file() or (path.is_dir() and MMarco.detect(path))


def _split_items(
    data: ParallelQA, cfg: TrainConfig
) -> tuple[ParallelQA, ParallelQA | None, str | None]:
    """(training, validation, why there is none): 'auto' may find too little data to
    split when nothing is selected on it; then training goes on without validation."""
    try:
        train, val = split_items(data, cfg.val_articles)
    except ConfigError as e:
        if cfg.val_articles != "auto" or cfg.select != "last":
            raise
        return data, None, str(e)
    return train, val, None


def build_training_data(cfg: TrainConfig) -> TrainingData:
    """Load the parallel data, carve out the validation split, build the pair table.

    The validation split comes out of the training side only (articles, or items for
    JSONL/mMARCO) and is checked disjoint from ``eval_articles`` when those are given.
    """
    from babelir.core.settings import data_dir as resolve_data_dir
    from babelir.data.lareqa import (
        ArticleSelection,
        check_disjoint,
        load_benchmark,
        resolve_benchmark_dir,
    )
    from babelir.data.parallel import PAPER_TRAIN_LANGUAGES, load_parallel, pair_table

    data_dir = resolve_data_dir(cfg.data_dir)
    if is_multi_source(cfg.train_data) or is_question_path(cfg.train_data, data_dir):
        return _multi_source_data(cfg, data_dir)
    if cfg.parallel_share is not None:
        raise ConfigError(
            "parallel_share: the training data holds no parallel-question source "
            "(Mintaka JSON, {id, lang, text} JSONL, line-aligned LANG.txt folders)"
        )
    source = str(cfg.train_data)
    load = {
        "languages": cfg.languages,
        "passage": cfg.passage,
        "max_triples": cfg.max_triples,
    }
    val_data: ParallelQA | None = None
    train_articles = val_articles = note = None
    if _is_item_data(source):
        data = load_parallel(source, data_dir, articles=cfg.articles, **load)
    else:
        _, folder = resolve_benchmark_dir(source, data_dir)
        langs = cfg.languages or sorted(p.stem for p in folder.glob("*.json"))
        n_articles = count_articles(folder, "en" if "en" in langs else langs[0])
        try:
            train_articles, val_articles = split_articles(
                cfg.articles, cfg.val_articles, n_articles
            )
        except ConfigError as e:
            if cfg.val_articles != "auto" or cfg.select != "last":
                raise
            train_articles, val_articles, note = cfg.articles, None, str(e)
        data = load_parallel(source, data_dir, articles=train_articles, **load)
        if val_articles is not None:
            val_data = load_parallel(source, data_dir, articles=val_articles, **load)
    if cfg.languages is None:
        default = [x for x in PAPER_TRAIN_LANGUAGES if x in data.languages]
        data = data.select_languages(default or data.languages)
    if _is_item_data(source):
        data, val_data, note = _split_items(data, cfg)
    if val_data is not None:
        val_data = val_data.select_languages(data.languages)
        check_disjoint(data.ids, val_data.ids, "training vs validation items")
    if note:
        log.warning("no validation split: %s", note)
    if cfg.eval_articles is not None and not _is_item_data(source):
        _, folder = resolve_benchmark_dir(source, data_dir)
        held = load_benchmark(
            folder,
            data_dir,
            languages=data.languages,
            articles=ArticleSelection.parse(cfg.eval_articles),
        )
        check_disjoint(
            data.ids, held.question_ids, f"articles {cfg.articles} vs {cfg.eval_articles}"
        )
        if val_data is not None:
            check_disjoint(
                val_data.ids, held.question_ids, f"validation vs evaluation {cfg.eval_articles}"
            )
    cross = get_strategy(cfg.strategy).needs_cross_pairs(cfg.alpha)
    table = pair_table(data, cross=cross, hard_negatives=cfg.hard_negatives, seed=cfg.seed)
    return TrainingData(data, table, val_data, train_articles, val_articles, note)


def loss_columns(
    dataset: Any,
    *,
    query_column: str = "query",
    positive_column: str = "positive",
    negative_column: str | None = "negative",
) -> Any:
    """The dataset with only the loss's text columns, in (anchor, positive, negative) order.

    Sentence-transformers feeds every non-label column to the loss by position, so the
    metadata columns must go (the sampler gets them via ``metadata=``).
    """
    names = list(dataset.column_names)
    for required in (query_column, positive_column):
        if required not in names:
            raise DataError(f"dataset: column {required!r} is missing (columns: {names})")
    keep = [query_column, positive_column]
    if negative_column and negative_column in names:
        keep.append(negative_column)
    return dataset.select_columns(keep)


def benchmark_texts(names: list[str], data_dir: Path) -> list[Any]:
    """What each benchmark holds that training must not (ids, questions, passages)."""
    from babelir.data.lareqa import load_benchmark, resolve_benchmark_dir
    from babelir.training.sources import BenchmarkTexts

    out = []
    for name in names:
        title, folder = resolve_benchmark_dir(name, data_dir)
        out.append(BenchmarkTexts.from_benchmark(title, load_benchmark(folder, data_dir)))
    return out


def _multi_source_data(cfg: TrainConfig, data_dir: Path) -> TrainingData:
    """Several ``LANG:PATH`` sources linked by id, leak-checked, validated on held-out
    articles of the training sources themselves (never a benchmark's).

    Parallel questions are leak-checked with the rest, kept out of the validation split,
    and give x-y rows only (:func:`babelir.data.parallel.pair_table`)."""
    from babelir.data.parallel import pair_table
    from babelir.training.sources import check_leaks, load_sources, parse_sources

    if cfg.articles != "all":
        raise ConfigError("--articles selects articles of one LAReQA-format folder, not sources")
    ms = load_sources(
        parse_sources(cfg.train_data),
        data_dir,
        passage=cfg.passage,
        max_triples=cfg.max_triples,
        on_missing=cfg.on_missing_answer,
    )
    data = ms.data
    if cfg.languages is not None:
        data = data.select_languages(cfg.languages)
    if data.has_questions:  # a question left in one language gives no pair
        data = ParallelQA(
            [it for it in data.items if it.kind != QUESTION or len(it.sides) > 1], data.source
        )
    dropped: list[str] = []
    if cfg.disjoint_from:
        data, overlaps = check_leaks(
            data, benchmark_texts(cfg.disjoint_from, data_dir), drop=cfg.drop_overlap
        )
        for o in overlaps:
            log.warning("dropped %s", o.describe())
            dropped.extend(sorted(o.items))
    cross = get_strategy(cfg.strategy).needs_cross_pairs(cfg.alpha)
    questions = [it for it in data.items if it.kind == QUESTION]
    _check_questions(cfg, questions, cross)
    qa = ParallelQA([it for it in data.items if it.kind != QUESTION], data.source)
    if qa.items or not questions:
        qa, val, note = _split_items(qa, cfg)
    else:
        val, note = None, "parallel questions only: no QA items to validate on"
        if cfg.select != "last":
            raise ConfigError(f"select: '{cfg.select}' needs QA items to validate on")
    if note:
        log.warning("no validation split: %s", note)
    data = ParallelQA(qa.items + questions, data.source)
    table = pair_table(
        data, cross=cross, hard_negatives=cfg.hard_negatives, seed=cfg.seed,
        parallel_share=cfg.parallel_share,
    )  # fmt: skip
    if questions:
        _count_xy_pairs(ms, data)
    return TrainingData(
        data, table, val, None, None, note,
        sources=[r.to_dict() for r in ms.records], overlaps=dropped or None,
    )


def _check_questions(cfg: TrainConfig, questions: list[Any], cross: bool) -> None:
    """What parallel questions cannot do, refused before any batch is drawn."""
    if cfg.parallel_share is not None and not questions:
        raise ConfigError(
            "parallel_share: the training data holds no parallel questions (Mintaka JSON, "
            "{id, lang, text} JSONL, line-aligned LANG.txt folders; or all were dropped)"
        )
    if questions and cross and cfg.hard_negatives:
        raise ConfigError(
            "hard_negatives: parallel questions have no passages to draw hard negatives from; "
            "leave the parallel-question source out or hard_negatives off"
        )


def _count_xy_pairs(ms: Any, data: ParallelQA) -> None:
    """Each source record's x-y pairs (query language -> passage language -> count),
    counted for the source that gives the query side: over all records they add up to the
    run's x-y pairs, QA and parallel questions."""
    counts: dict[str, dict[str, dict[str, int]]] = {r.label: {} for r in ms.records}
    for item in data.items:
        for ql in item.sides:
            by = counts[ms.owner[(item.id, ql)]].setdefault(ql, {})
            for pl in item.sides:
                if pl != ql:
                    by[pl] = by.get(pl, 0) + 1
    for record in ms.records:
        record.xy_pairs = {
            ql: dict(sorted(by.items())) for ql, by in sorted(counts[record.label].items())
        }

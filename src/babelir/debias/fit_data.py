"""Unlabeled fit texts per language (:class:`FitTexts`), read from a LAReQA benchmark, a
JSONL file of ``{lang, text[, role]}`` lines, or the training data of a babelir run."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.errors import ConfigError, DataError
from babelir.data.types import ArticleSelection, parse_languages


@dataclass
class FitTexts:
    """Unlabeled texts to fit on, per language, split by role (so each gets its prefix).

    ``question_ids``: ids of the LAReQA questions whose texts are included (for the
    disjointness check); ``info``: where the texts came from (source, benchmark, articles).
    """

    queries: dict[str, list[str]]
    passages: dict[str, list[str]]
    question_ids: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return list(dict.fromkeys([*self.queries, *self.passages]))

    def all_texts(self) -> list[str]:
        return [t for d in (self.queries, self.passages) for v in d.values() for t in v]

    def n_texts(self) -> dict[str, int]:
        return {
            x: len(self.queries.get(x, ())) + len(self.passages.get(x, ())) for x in self.languages
        }

    def provenance(self) -> dict[str, Any]:
        """fit_info for the transform: source, articles, fit question ids, ..."""
        return {**self.info, "fit_question_ids": sorted(set(self.question_ids))}


def _subsample(texts: list[str], cap: int | None, seed: int) -> list[str]:
    if cap is None or len(texts) <= cap:
        return texts
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(texts), size=cap, replace=False))
    return [texts[i] for i in keep]


def collect_fit_texts(
    source: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    articles: str | None = "all",
    languages: Sequence[str] | str | None = None,
    max_per_language: int | None = None,
    seed: int = 0,
) -> FitTexts:
    """Unlabeled fit texts from a LAReQA benchmark (name or folder: questions and
    candidate sentences of ``articles``), a JSONL file of ``{lang, text[, role]}`` lines
    (role ``query`` or ``passage``, default passage), or a trained babelir model folder
    (its ``babelir-train.json``: the run's training data, articles and languages).

    ``max_per_language`` caps each language's texts by a seeded sample (split
    proportionally between queries and passages).
    """
    from babelir.core.settings import data_dir as resolve_data_dir

    root = resolve_data_dir(data_dir)
    path = Path(source)
    if path.is_dir() and (path / "babelir-train.json").is_file():
        return _from_run(path, data_dir, articles, languages, max_per_language, seed)
    text = str(source)
    if path.is_file() or text.endswith((".jsonl", ".jsonl.gz")):
        if articles not in (None, "all"):
            raise ConfigError("--articles applies to LAReQA-format folders, not JSONL files")
        fit = _from_jsonl(path, languages)
    else:
        fit = _from_lareqa(text, root, articles, languages)
    if max_per_language is not None:
        if max_per_language < 1:
            raise ConfigError(f"max_per_language: must be >= 1, got {max_per_language}")
        for lang in fit.languages:
            q, p = fit.queries.get(lang, []), fit.passages.get(lang, [])
            total = len(q) + len(p)
            if total > max_per_language:
                nq = round(max_per_language * len(q) / total)
                fit.queries[lang] = _subsample(q, nq, seed)
                fit.passages[lang] = _subsample(p, max_per_language - nq, seed + 1)
        fit.info["max_per_language"] = max_per_language
    return fit


def _from_lareqa(
    name: str, root: Path, articles: str | None, languages: Sequence[str] | str | None
) -> FitTexts:
    from babelir.data.lareqa import (
        available_languages,
        parse_language_file,
        require_languages,
        resolve_benchmark_dir,
    )

    bench_name, folder = resolve_benchmark_dir(name, root)
    present = available_languages(folder)
    wanted = parse_languages(languages) or present
    require_languages(folder, wanted, present)
    selection = ArticleSelection.parse(articles)
    queries: dict[str, list[str]] = {}
    passages: dict[str, list[str]] = {}
    ids: list[str] = []
    for lang in wanted:
        f = parse_language_file(folder / f"{lang}.json", lang, selection)
        queries[lang] = [qa.question for qa in f.qas]
        passages[lang] = [s.text for s in f.sentences]
        ids.extend(qa.id for qa in f.qas)
        if not queries[lang] and not passages[lang]:
            raise DataError(f"{folder / (lang + '.json')}: articles {selection} hold no text")
    return FitTexts(
        queries,
        passages,
        ids,
        {
            "source": name,
            "benchmark": bench_name,
            "benchmark_path": str(folder),
            "articles": str(selection),
        },
    )


def _from_jsonl(path: Path, languages: Sequence[str] | str | None) -> FitTexts:
    """``{lang, text[, role]}`` lines, read by :mod:`babelir.data.jsonl` like every JSONL
    input: a line that is not UTF-8 or not JSON is named (file:line), never a traceback."""
    import gzip
    import zlib

    from babelir.data.jsonl import numbered_lines, parse_object

    if not path.is_file():
        raise DataError(f"{path}: fit data file not found")
    wanted = parse_languages(languages)
    queries: dict[str, list[str]] = {}
    passages: dict[str, list[str]] = {}
    lineno = 0
    try:
        for lineno, line in numbered_lines(path):
            where = f"{path}:{lineno}"
            row = parse_object(line, where)
            for key in ("lang", "text"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise DataError(f"{where}: field '{key}' must be a non-empty string")
            role = row.get("role", "passage")
            if role not in ("query", "passage"):
                raise DataError(f"{where}: field 'role' must be 'query' or 'passage'")
            lang = row["lang"]
            if wanted is not None and lang not in wanted:
                continue
            (queries if role == "query" else passages).setdefault(lang, []).append(row["text"])
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        what = "truncated" if isinstance(e, EOFError) else "not a valid gzip file"
        raise DataError(f"{path}: {what} after line {lineno} ({e or 'unexpected end'})") from None
    fit = FitTexts(queries, passages, [], {"source": str(path)})
    if not fit.languages:
        raise DataError(f"{path}: no fit texts" + (" in the chosen languages" if wanted else ""))
    return fit


def _from_run(
    folder: Path,
    data_dir: str | os.PathLike[str] | None,
    articles: str | None,
    languages: Sequence[str] | str | None,
    max_per_language: int | None,
    seed: int,
) -> FitTexts:
    """The unlabeled training texts (queries and positives' sentences) of a babelir run."""
    marker = folder / "babelir-train.json"
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
        cfg = info["config"]
        train_data = str(cfg["train_data"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{marker}: cannot read the run's training config ({e})") from None
    if articles not in (None, "all") and articles != cfg.get("articles", "all"):
        raise ConfigError(
            f"--articles {articles}: the run {folder} trained on articles "
            f"{cfg.get('articles', 'all')}; leave --articles out to fit on the run's data"
        )
    langs = languages or info.get("train_languages") or cfg.get("languages")
    fit = collect_fit_texts(
        train_data,
        data_dir or cfg.get("data_dir"),
        articles=cfg.get("articles", "all"),
        languages=langs,
        max_per_language=max_per_language,
        seed=seed,
    )
    fit.info["run"] = str(folder)
    if cfg.get("eval_articles"):
        fit.info["run_eval_articles"] = cfg["eval_articles"]
    return fit

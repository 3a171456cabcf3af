"""Corpora to index: one pooled, ordered stream of passages from any supported layout.

:func:`open_corpus` turns a name (``miracl``, ``mmarco``, ``xquad-r``, ``mlqa-r``) or a
path (a JSONL file, a MIRACL-format folder, an mMARCO folder, a LAReQA folder) into a
:class:`CorpusSource`; the dataset modules are imported only for the layout in use. The
order is fixed (languages, then files in name order), so shard layouts are reproducible,
and :meth:`CorpusSource.fingerprint` detects a corpus changed between runs.

A docid must be unique within its collection (:class:`~babelir.data.jsonl.UniqueIds`): a
repeated passage would be indexed twice and, when relevant, count twice in retrieval metrics.
A MIRACL language folder is one collection, whose lines may not claim another ``lang``;
a single JSONL file may pool languages (its docids are unique per language).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from babelir.core.errors import DataError
from babelir.core.fingerprint import stat_fingerprint as files_fingerprint
from babelir.data.jsonl import UniqueIds
from babelir.data.miracl import Passage


def _tsv_places(path: Path, pid: str) -> list[str]:
    """The first two ``path:line`` places of ``pid`` in a ``pid<TAB>passage`` file."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.partition("\t")[0].strip() == pid:
                out.append(f"{path}:{lineno}")
                if len(out) == 2:
                    break
    return out


@dataclass
class CorpusSource:
    """A stream of passages (all languages pooled, in a fixed order) and its files."""

    name: str
    languages: list[str]
    files: list[Path]
    reader: Callable[[], Iterator[Passage]]

    def passages(self) -> Iterator[Passage]:
        return self.reader()

    def fingerprint(self) -> str:
        return files_fingerprint(self.files)


def _miracl_source(root: Path, languages: list[str] | None) -> CorpusSource:
    from babelir.data.miracl import corpus_files, iter_jsonl_passages

    if languages is None:
        prefix = "miracl-corpus-v1.0-"
        languages = sorted(
            p.name.removeprefix(prefix) for p in root.iterdir() if p.is_dir() and p.name[0] != "."
        )
    per_lang = [(lang, corpus_files(root, lang)) for lang in languages]

    def read() -> Iterator[Passage]:
        for lang, files in per_lang:
            yield from iter_jsonl_passages(files, lang)

    return CorpusSource(str(root), languages, [f for _, fs in per_lang for f in fs], read)


def _mmarco_source(root: Path, languages: list[str] | None) -> CorpusSource:
    from babelir.data.mmarco import MMarco, iter_collection

    mm = MMarco.open(root)
    langs = languages or mm.collection_languages()
    paths = [(lang, mm.collection_path(lang)) for lang in langs]

    def read() -> Iterator[Passage]:
        for lang, path in paths:
            unique = UniqueIds(lambda pid, _lang, path=path: _tsv_places(path, pid))
            for p in iter_collection(path, lang):
                unique.check(p.docid, p.lang)
                yield p

    return CorpusSource(str(mm.root), langs, [p for _, p in paths], read)


def _lareqa_source(name: str, data_dir: Path, languages: list[str] | None) -> CorpusSource:
    from babelir.data.lareqa import load_benchmark

    bench = load_benchmark(name, data_dir, languages=languages)
    files = [bench.path / f"{lang}.json" for lang in bench.languages]

    def read() -> Iterator[Passage]:
        counters: dict[str, int] = {}
        for lang, sent in zip(bench.candidate_langs, bench.candidate_sentences, strict=True):
            k = counters[lang] = counters.get(lang, -1) + 1
            yield Passage(str(k), "", sent, lang)

    return CorpusSource(str(bench.path), bench.languages, files, read)


def _jsonl_source(path: Path, lang: str, languages: list[str] | None) -> CorpusSource:
    from babelir.data.miracl import iter_jsonl_passages

    def read() -> Iterator[Passage]:
        for p in iter_jsonl_passages([path], lang, mixed=True):
            if languages is None or p.lang in languages:
                yield p

    return CorpusSource(str(path), languages or [], [path], read)


def open_corpus(
    spec: str | os.PathLike[str],
    data_dir: Path,
    *,
    languages: Sequence[str] | None = None,
    lang: str = "und",
) -> CorpusSource:
    """A corpus by name (``miracl``, ``mmarco``, ``xquad-r``, ``mlqa-r``) or path.

    Paths: a ``.jsonl[.gz]`` file of ``{"docid", "title", "text"[, "lang"]}`` (``lang``
    fills missing languages); a folder of ``<lang>/*.jsonl[.gz]`` (MIRACL format); an
    mMARCO folder; a LAReQA folder of ``<lang>.json``.
    """
    from babelir.data.lareqa import KNOWN_BENCHMARKS
    from babelir.evaluation.families import FAMILY_TABLE

    langs = list(languages) if languages else None
    text = str(spec)
    family = FAMILY_TABLE.get(text)  # a benchmark family named by itself: its corpus
    if family is not None and family.corpus_dir is not None:
        root = family.corpus_dir(data_dir)
        if not root.is_dir():
            raise DataError(
                f"{root}: no {family.title} corpus (it is not fetched; download "
                "miracl/miracl-corpus into <data_dir>/miracl/corpus/<lang>/ or pass its folder)"
            )
        return _miracl_source(root, langs)
    if text == "mmarco":
        return _mmarco_source(data_dir / "mmarco", langs)
    if text in KNOWN_BENCHMARKS:
        return _lareqa_source(text, data_dir, langs)
    path = Path(text).expanduser()
    if path.is_file():
        if not path.name.endswith((".jsonl", ".jsonl.gz")):
            raise DataError(f"{path}: a corpus file must be .jsonl or .jsonl.gz")
        return _jsonl_source(path, lang, langs)
    if not path.is_dir():
        raise DataError(
            f"corpus {text!r}: not a known name (miracl, mmarco, xquad-r, mlqa-r) nor a file "
            f"or folder"
        )
    from babelir.data.mmarco import MMarco

    if MMarco.detect(path):
        return _mmarco_source(path, langs)
    if any(path.glob("*/*.jsonl")) or any(path.glob("*/*.jsonl.gz")):
        return _miracl_source(path, langs)
    if any(path.glob("*.json")):
        return _lareqa_source(str(path), data_dir, langs)
    raise DataError(
        f"{path}: not a corpus folder (expected <lang>/*.jsonl[.gz], an mMARCO layout, or "
        f"<lang>.json LAReQA files)"
    )

"""Training data from several sources in one run: ``LANG:PATH`` specs, linking, leak checks.

The paper trains zero-shot: English QA sets and their machine translations (which keep
SQuAD's question ids) plus native monolingual sets, never the benchmark's own data. Here
a run's training side is a list of :class:`SourceSpec`:

* ``en:training/squad-v1.1-train-en/first10-articles.json`` - a SQuAD v1.1 file (plain,
  ``.gz`` or a zip of JSONL) in one language; a SQuAD file carries no language, so it
  needs the ``LANG:`` prefix.
* ``en:training/squad-v1.1-train-full/en/train-v1.1.json#articles=0-9`` - the same with an
  article selection (by position in the file, the syntax of ``--articles``): the first
  ten articles of the official file. Where the data dir lacks that file but holds a
  registered stand-in for exactly that selection
  (:data:`babelir.data.registry.STAND_INS`), the stand-in is read instead and the run
  records it (:func:`apply_stand_ins`).
* ``xquad-r``, a LAReQA folder, a JSONL file or an mMARCO folder - today's forms; a
  ``LANG:`` prefix keeps only that language of them.
* ``training/mintaka/mintaka_dev.json`` or ``parallel:PATH`` - parallel questions without
  passages (:mod:`babelir.data.parallel_questions`: Mintaka JSON, ``{id, lang, text}``
  JSONL, folders of line-aligned ``LANG.txt`` files), recognised by their bytes or named
  by the prefix. They give x-y pairs only (a question in X, its translation in Y) and
  never link to other sources: their ids are prefixed with the source's file name.

Items are linked across sources by id: a question present in two or more languages
gives x-y pairs, and every item feeds the same-language pools, so a native monolingual
set (ARCD, CMRC 2018, iapp) feeds monolingual batches only. Relative paths are tried
against the working directory, then the data dir.

Before training, :func:`check_leaks` compares every item with every benchmark of the
run by question id and by normalised question and passage text (parallel questions: by
the text of every translation; their ids are their dataset's own).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from babelir.core.errors import ConfigError, DataError
from babelir.core.fingerprint import content_sha256, fingerprint
from babelir.data.squad import is_squad_file, load_squad
from babelir.data.types import LANG_CODE, ArticleSelection, ParallelItem, ParallelQA

_LANG_PREFIX = re.compile(rf"^({LANG_CODE.pattern}):(?!//)(.+)$")
#: What a user meant as a ``LANG:`` prefix (letters, maybe a subtag) even when it is no
#: valid code (``EN:``, ``e:``): refused by name instead of read as a file called "EN:x".
_LANG_LIKE_PREFIX = re.compile(r"^([A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*):(?!//)(.+)$")
_ARTICLES_SUFFIX = re.compile(r"^(.+)#articles=([^#]*)$")
#: The prefix that names a parallel-question source (``parallel:PATH``).
PARALLEL_PREFIX = "parallel:"
#: Passages shorter than this are not compared by text (a "Yes." sentence is no leak).
MIN_LEAK_TEXT = 25


@dataclass(frozen=True)
class SourceSpec:
    """One training source: a path or dataset name, its language, and its weight.

    ``weight`` in (0, 1] is the share of the source's questions kept, chosen by a hash
    of the question id (so sources that share ids keep the same questions). ``articles``
    selects articles of a SQuAD-format file by position (``0-9``, ``%4!=0``); None: all.
    ``parallel``: read as parallel questions (``parallel:PATH``); a source without it is
    still read so when its bytes say so.
    """

    path: str
    lang: str | None = None
    weight: float = 1.0
    articles: str | None = None
    parallel: bool = False

    @classmethod
    def parse(cls, value: str | dict[str, Any] | SourceSpec) -> SourceSpec:
        """``"en:path"``, ``"xquad-r"``, ``"parallel:path"``, or a mapping ``{path, lang?,
        weight?, articles?, parallel?}``."""
        if isinstance(value, SourceSpec):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"path", "lang", "weight", "articles", "parallel"})
            if unknown:
                raise ConfigError(
                    f"train.data: unknown key '{unknown[0]}' in {value!r} (valid: path, lang, "
                    "weight, articles, parallel)"
                )
            if not isinstance(value.get("path"), str) or not value["path"].strip():
                raise ConfigError(f"train.data: entry {value!r} needs a 'path' string")
            lang = value.get("lang")
            if lang is not None:
                lang = check_lang(lang, f"'lang' in {value!r}")
            weight = value.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ConfigError(f"train.data: 'weight' must be a number in {value!r}")
            articles = value.get("articles")
            if articles is not None and not isinstance(articles, str):
                raise ConfigError(f"train.data: 'articles' must be a string in {value!r}")
            parallel = value.get("parallel", False)
            if not isinstance(parallel, bool):
                raise ConfigError(f"train.data: 'parallel' must be true or false in {value!r}")
            spec = cls(value["path"].strip(), lang, float(weight), articles, parallel)
        elif isinstance(value, str) and value.strip().startswith(PARALLEL_PREFIX):
            spec = cls(value.strip()[len(PARALLEL_PREFIX) :].strip(), parallel=True)
            if not spec.path:
                raise ConfigError(f"train.data: {value.strip()!r} names no path")
        elif isinstance(value, str):
            text = value.strip()
            articles = None
            a = _ARTICLES_SUFFIX.match(text)
            if a:
                text, articles = a.group(1), a.group(2)
            m = _LANG_PREFIX.match(text)
            if m is None and (bad := _LANG_LIKE_PREFIX.match(text)):
                check_lang(bad.group(1), f"the prefix of {value.strip()!r}")
            spec = cls(m.group(2), m.group(1), 1.0, articles) if m else cls(text, None, 1.0,
                                                                           articles)
        else:
            raise ConfigError(f"train.data: cannot read a source from {value!r}")
        if not 0 < spec.weight <= 1:
            raise ConfigError(f"train.data: weight of {spec.label}: {spec.weight} not in (0, 1]")
        if spec.parallel and (spec.lang is not None or spec.articles is not None):
            raise ConfigError(
                f"train.data: {spec.label}: parallel questions take no "
                + ("language (they hold several; --languages keeps some)" if spec.lang
                   else "article selection")
            )
        if spec.articles is not None:
            try:
                selection = ArticleSelection.parse(spec.articles)
            except ConfigError as e:
                raise ConfigError(f"train.data: {spec.label}: {e}") from None
            # one spelling per selection, so equal selections give equal cache keys
            spec = replace(spec, articles=None if selection.spec == "all" else selection.spec)
        return spec

    @property
    def file(self) -> str:
        """The path without a ``.zip:MEMBER`` suffix: what must exist on disk."""
        head, sep, member = self.path.rpartition(".zip:")
        return head + ".zip" if sep and member else self.path

    @property
    def label(self) -> str:
        text = f"{self.lang}:{self.path}" if self.lang else self.path
        if self.parallel:
            text = PARALLEL_PREFIX + text
        if self.articles is not None:
            text += f"#articles={self.articles}"
        return text if self.weight == 1.0 else f"{text}@{self.weight:g}"

    def to_value(self) -> str | dict[str, Any]:
        """The form :meth:`parse` reads back: a string, or a mapping where a weight needs it."""
        if self.weight == 1.0:
            return self.label
        out: dict[str, Any] = {"path": self.path, "weight": self.weight}
        if self.lang is not None:
            out["lang"] = self.lang
        if self.articles is not None:
            out["articles"] = self.articles
        if self.parallel:
            out["parallel"] = True
        return out


def check_lang(lang: Any, where: str) -> str:
    """``lang`` if it is a language code (:data:`LANG_CODE`), else a one-line ConfigError.

    The one check for the ``LANG:`` prefix and a mapping's ``lang``: ``EN`` beside ``en``
    would be a second language, and its items would pair with their own English text.
    """
    text = lang.strip() if isinstance(lang, str) else lang
    if not isinstance(text, str) or not LANG_CODE.fullmatch(text):
        raise ConfigError(
            f"train.data: {where}: {lang!r} is not a language code (lowercase ISO 639, "
            "e.g. en, pt, zh-Hans)"
        )
    return text


def parse_sources(value: str | Sequence[Any] | None) -> list[SourceSpec]:
    """The run's sources from a CLI/YAML value (one spec or a list of them)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str | dict) else list(value)
    specs = [SourceSpec.parse(v) for v in items]
    seen: dict[tuple[str, str | None, str | None], None] = {}
    for s in specs:
        key = (s.path, s.lang, s.articles)
        if key in seen:
            raise ConfigError(f"train.data: source {s.label} given twice")
        seen[key] = None
    return specs


def apply_stand_ins(
    specs: Sequence[SourceSpec], data_dir: Path
) -> tuple[list[SourceSpec], list[str]]:
    """Each source whose file is missing but whose registered stand-in (same file, same
    article selection: :data:`babelir.data.registry.STAND_INS`) is in ``data_dir``,
    replaced by the stand-in; and one line per replacement saying so.

    A source that is on disk is never replaced, so with the official file present the
    official file is read.
    """
    from babelir.data.registry import STAND_INS

    out: list[SourceSpec] = []
    notes: list[str] = []
    for spec in specs:
        stand_in = STAND_INS.get((spec.file, spec.articles))
        if stand_in is not None and resolve_path(spec.file, data_dir) is None:
            local, dataset, how = stand_in
            if (data_dir / local).is_file():
                new = SourceSpec(local, spec.lang, spec.weight)
                notes.append(
                    f"{spec.label} is not in {data_dir}: reading its stand-in {new.label} "
                    f"(dataset {dataset}: {how})"
                )
                spec = new
        out.append(spec)
    return out, notes


def is_question_path(value: Any, data_dir: Path) -> bool:
    """Whether a plain ``train_data`` string names a parallel-question source (judged by
    its bytes): such a source is read through this module, as ``parallel:PATH``."""
    from babelir.data.parallel_questions import question_format

    if not isinstance(value, str) or is_multi_source(value):
        return False
    path = resolve_path(value.strip(), data_dir)
    try:
        return path is not None and question_format(path) is not None
    except OSError:
        return False


def is_multi_source(value: Any) -> bool:
    """True when a ``train_data`` value needs this module (a list, or a ``LANG:`` spec)."""
    if isinstance(value, str):  # a bad prefix too, so that parse_sources names it
        return bool(_LANG_LIKE_PREFIX.match(value.strip()))
    return value is not None


def resolve_path(path: str, data_dir: Path) -> Path | None:
    """An existing file or folder: as given, else under the data dir; None if neither."""
    p = Path(path).expanduser()
    if p.exists():
        return p
    q = data_dir / path
    return q if q.exists() else None


def _keep(item_id: str, weight: float) -> bool:
    if weight >= 1.0:
        return True
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < weight


@dataclass
class SourceRecord:
    """What one source gave: for the run record (``babelir-train.json``)."""

    label: str
    path: str
    lang: str | None
    weight: float
    sha256: str | None
    items: int
    linked: int = 0  # items whose id another source also has (translations)
    squad: dict[str, Any] | None = None  # the SQuAD loader's per-case counts
    questions: dict[str, Any] | None = None  # a parallel-question source: format, skips
    #: x-y pairs whose query side this source gives, {X: {Y: count}} (set once a run holds
    #: parallel questions, after language selection, leak checks and the validation split)
    xy_pairs: dict[str, dict[str, int]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class MultiSource:
    data: ParallelQA
    records: list[SourceRecord] = field(default_factory=list)
    #: (item id, language) -> label of the source that gave that side
    owner: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        """The training languages: those of the sources (their explicit ``LANG:``)."""
        return self.data.languages


def load_one(
    spec: SourceSpec,
    data_dir: Path,
    *,
    passage: str = "sentence",
    max_triples: int = 100_000,
    on_missing: str = "paragraph",
) -> tuple[ParallelQA, dict[str, Any] | None, Path | None]:
    """One source's items (and SQuAD or parallel-question counts); ``LANG:`` keeps that
    language only. Parallel questions come back with their own ids (not yet prefixed)."""
    from babelir.data.parallel import load_parallel
    from babelir.data.parallel_questions import load_questions, question_format

    path = resolve_path(spec.file, data_dir)
    if spec.parallel and path is None:
        raise DataError(
            f"--train-data {spec.label}: no such file or folder (tried {Path(spec.path)} and "
            f"{data_dir / spec.path}){_fetch_hint(spec.file)}"
        )
    fmt = None
    if path is not None and spec.articles is None and not (path.is_file() and is_squad_file(path)):
        fmt = question_format(path)
    if spec.parallel or fmt is not None:
        if spec.lang is not None:
            raise ConfigError(
                f"--train-data {spec.label}: {path} holds parallel questions in several "
                f"languages; give it without '{spec.lang}:' (--languages keeps some)"
            )
        assert path is not None
        data, stats = load_questions(path, fmt)
        return data, stats, path
    if path is not None and path.is_file() and is_squad_file(path):
        if spec.lang is None:
            raise ConfigError(
                f"--train-data {spec.path}: a SQuAD-format file carries no language; give it "
                f"as LANG:PATH (e.g. en:{spec.path})"
            )
        target = str(path) + spec.path[len(spec.file) :]  # keeps a ``:MEMBER`` suffix
        data, stats = load_squad(
            target,
            spec.lang,
            passage=passage,  # type: ignore[arg-type]
            on_missing=on_missing,  # type: ignore[arg-type]
            articles=spec.articles,
        )
        return data, dict(stats), path
    if spec.articles is not None:
        raise ConfigError(
            f"--train-data {spec.label}: '#articles=' selects articles of a SQuAD-format "
            "file; this source is not one"
            + ("" if path is not None else f" (no such file: tried {spec.file} and "
               f"{data_dir / spec.file}){_fetch_hint(spec.file)}")
        )
    if path is None and not _is_dataset_name(spec.path, data_dir):
        raise DataError(
            f"--train-data {spec.label}: no such file or folder (tried {Path(spec.path)} "
            f"and {data_dir / spec.path}){_fetch_hint(spec.file)}"
        )
    data = load_parallel(
        str(path) if path is not None else spec.path,
        data_dir,
        languages=[spec.lang] if spec.lang else None,
        passage=passage,  # type: ignore[arg-type]
        max_triples=max_triples,
    )
    return data, None, path


def _fetch_hint(path: str) -> str:
    """'; fetch it with ...' when ``path`` is a file of a registered dataset."""
    from babelir.data.registry import datasets

    for d in datasets().values():
        if any(f.path == path for f in d.files):
            return f"; fetch it with `babelir data fetch {d.name}`"
    return ""


def _is_dataset_name(name: str, data_dir: Path) -> bool:
    """A name the loaders resolve themselves (``xquad-r``, ``mmarco``)."""
    from babelir.data.lareqa import resolve_benchmark_dir

    if name == "mmarco":
        return True
    try:
        resolve_benchmark_dir(name, data_dir)
    except (ConfigError, DataError):
        return False
    return True


def load_sources(
    specs: Sequence[SourceSpec],
    data_dir: Path,
    *,
    passage: str = "sentence",
    max_triples: int = 100_000,
    on_missing: str = "paragraph",
    fingerprints: bool = True,
) -> MultiSource:
    """Load and link every source by question id (see the module docstring).

    The same (id, language) from two sources is refused: it would be one question twice.
    So is one SQuAD-format file (the same bytes) under two languages: its questions would
    link to themselves, every "cross-lingual" pair a text with itself.
    """
    if not specs:
        raise ConfigError("train.data: no training source given")
    items: dict[str, ParallelItem] = {}
    questions: dict[str, ParallelItem] = {}
    owner: dict[tuple[str, str], str] = {}
    records: list[SourceRecord] = []
    squad_files: dict[tuple[str, str], SourceSpec] = {}  # (sha256, zip member) -> source
    tags: set[str] = set()
    question_files: dict[str, SourceSpec] = {}  # content sha256 -> source
    for spec in specs:
        data, stats, path = load_one(
            spec, data_dir, passage=passage, max_triples=max_triples, on_missing=on_missing
        )
        if data.has_questions:
            assert path is not None
            content = fingerprint(path) if path.is_dir() else content_sha256(path)
            first = question_files.setdefault(content, spec)
            if first is not spec:
                raise DataError(
                    f"--train-data: {first.label} and {spec.label} hold the same parallel "
                    f"questions (same bytes, sha256 {content[:12]}); give them once"
                )
            tag = _question_tag(path, tags)
            kept = [it for it in data.items if _keep(it.id, spec.weight)]
            if not kept:
                raise DataError(f"--train-data {spec.label}: no training items")
            for it in kept:
                it.id = f"{tag}:{it.id}"  # never linked to another source's item
                questions[it.id] = it
                owner.update(((it.id, lang), spec.label) for lang in it.sides)
            sha = fingerprint(path) if fingerprints else None
            records.append(
                SourceRecord(spec.label, spec.path, None, spec.weight, sha, len(kept),
                             questions=stats)
            )
            continue
        if stats is not None and path is not None:  # a SQuAD file: its LANG: is its language
            key = (content_sha256(path), spec.path[len(spec.file) :])
            first = squad_files.setdefault(key, spec)
            if first.lang != spec.lang:
                raise DataError(
                    f"--train-data: {first.label} and {spec.label} are the same file (same "
                    f"bytes, sha256 {key[0][:12]}) under two languages; a SQuAD-format file "
                    "holds one language: give each translation its own file"
                )
        kept = [it for it in data.items if _keep(it.id, spec.weight)]
        if not kept:
            raise DataError(f"--train-data {spec.label}: no training items")
        linked = 0
        for it in kept:
            merged = items.get(it.id)
            if merged is None:
                merged = items[it.id] = ParallelItem(it.id, {}, group=it.group)
            else:
                linked += 1
                if merged.group is None:
                    merged.group = it.group
            for lang, side in it.sides.items():
                other = owner.get((it.id, lang))
                if other is not None:
                    raise DataError(
                        f"--train-data: question {it.id} in '{lang}' comes from both {other} "
                        f"and {spec.label}; give each language of an item once"
                    )
                owner[(it.id, lang)] = spec.label
                merged.sides[lang] = side
        sha = fingerprint(path) if fingerprints and path is not None else None
        records.append(
            SourceRecord(spec.label, spec.path, spec.lang, spec.weight, sha, len(kept), linked,
                         stats)
        )
    clash = sorted(set(items) & set(questions))
    if clash:
        raise DataError(
            f"--train-data: id {clash[0]} is both a QA item and a parallel question; rename "
            "the file of the parallel questions"
        )
    label = " + ".join(s.label for s in specs)
    all_items = [*items.values(), *questions.values()]
    return MultiSource(ParallelQA(all_items, source=label), records, owner)


def _question_tag(path: Path, taken: set[str]) -> str:
    """The prefix of a parallel-question source's ids: its file or folder name (a number
    added when another source of the run has the same name)."""
    name = path.name
    tag, k = name, 1
    while tag in taken:
        k += 1
        tag = f"{name}~{k}"
    taken.add(tag)
    return tag


# --------------------------------------------------------------------------- leak checks


def normalise(text: str) -> str:
    """NFKC, case-folded, punctuation and whitespace collapsed: translations of the same
    file often differ only in spacing and quotes."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in text)
    return " ".join(text.split())


@dataclass
class Overlap:
    """Items of the training side found in a benchmark, by how they were found."""

    benchmark: str
    by_id: set[str] = field(default_factory=set)
    by_question: set[str] = field(default_factory=set)
    by_passage: set[str] = field(default_factory=set)

    @property
    def items(self) -> set[str]:
        return self.by_id | self.by_question | self.by_passage

    def describe(self) -> str:
        parts = [
            f"{len(s)} by {what}"
            for what, s in (("id", self.by_id), ("question text", self.by_question),
                            ("passage text", self.by_passage))
            if s
        ]
        example = sorted(self.items)[:3]
        return f"{self.benchmark}: {len(self.items)} items ({', '.join(parts)}; e.g. {example})"


@dataclass(frozen=True)
class BenchmarkTexts:
    """What a benchmark holds that training must not: ids, questions, passages."""

    name: str
    ids: frozenset[str]
    questions: frozenset[str]
    passages: frozenset[str]  # normalised sentences and paragraph contexts

    @classmethod
    def from_benchmark(cls, name: str, benchmark: Any) -> BenchmarkTexts:
        """From a loaded :class:`babelir.data.lareqa.Benchmark`."""
        ps = {normalise(t) for t in benchmark.candidate_sentences}
        ps.update(normalise(t) for t in benchmark.candidate_contexts)
        return cls(
            name,
            frozenset(benchmark.question_ids),
            frozenset(normalise(q) for q in benchmark.question_texts),
            frozenset(p for p in ps if len(p) >= MIN_LEAK_TEXT),
        )


def find_overlap(data: ParallelQA, bench: BenchmarkTexts) -> Overlap:
    out = Overlap(bench.name)
    for it in data.items:
        if it.id in bench.ids:
            out.by_id.add(it.id)
        for side in it.sides.values():
            if normalise(side.query) in bench.questions:
                out.by_question.add(it.id)
            p = normalise(side.positive)
            if len(p) >= MIN_LEAK_TEXT and p in bench.passages:
                out.by_passage.add(it.id)
    return out


def check_leaks(
    data: ParallelQA, benchmarks: Iterable[BenchmarkTexts], *, drop: bool = False
) -> tuple[ParallelQA, list[Overlap]]:
    """Refuse training items found in a benchmark, or (``drop``) remove them.

    Returns the (possibly reduced) data and the overlaps found, for the run record.
    """
    overlaps = [o for o in (find_overlap(data, b) for b in benchmarks) if o.items]
    if not overlaps:
        return data, []
    if not drop:
        raise DataError(
            "training data overlaps an evaluation benchmark: "
            + "; ".join(o.describe() for o in overlaps)
            + " (use --drop-overlap to train without those items)"
        )
    bad = set().union(*(o.items for o in overlaps))
    kept = [it for it in data.items if it.id not in bad]
    if not kept:
        raise DataError("every training item overlaps an evaluation benchmark")
    return ParallelQA(kept, source=data.source), overlaps

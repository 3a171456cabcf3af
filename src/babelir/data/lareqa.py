"""LAReQA-format benchmarks (XQuAD-R, MLQA-R, or any folder in that format).

A benchmark folder holds one SQuAD v1.1 JSON per language (``en.json``, ``de.json``, ...)
whose paragraphs carry ``sentences`` and ``sentence_breaks``. Following LAReQA
(Roy et al., 2020): every sentence is a candidate; a question's relevant candidate in
its own language is the sentence whose span contains its answer's ``answer_start``; the
same question ``id`` in another language's file is its translation, so in the pooled
(multilingual) setting a question has one relevant sentence per language holding its id.

Article selections (``--articles``) pick articles by their position in each language's
file. XQuAD-R's files are parallel article by article, so a selection keeps the same
articles in every language; for files that are not (MLQA-R), train/eval disjointness is
checked on question ids (:func:`check_disjoint`), never assumed.

A sentence's text (the candidate) and its ``sentence_breaks`` span (which answers it
holds) are two descriptions of one sentence: spans must lie in order, without overlap,
within the context, and ``context[start:end]`` must be the sentence (whitespace aside).
Published files are not perfect (XQuAD-R's tr has two sentences whose breaks are one
character off), so a few disagreements per file are warned about, more are refused
(:data:`MAX_MISMATCHES`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from babelir.core.errors import ConfigError, DataError
from babelir.core.io import read_input_text
from babelir.data.jsonl import check_text, loads
from babelir.data.types import ArticleSelection, parse_languages

CandidateMode = Literal["sentence", "sentence+context"]
#: Sentences of one file whose span text may differ from the sentence (a warning names
#: them): at most this many, and at most ``MAX_MISMATCH_SHARE`` of the file's sentences.
MAX_MISMATCHES = 5
MAX_MISMATCH_SHARE = 0.01
CANDIDATE_MODES: tuple[str, ...] = ("sentence", "sentence+context")

#: Benchmarks known by name: folder name under the data dir and its languages.
KNOWN_BENCHMARKS: dict[str, tuple[str, ...]] = {
    "xquad-r": ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"),
    "mlqa-r": ("ar", "de", "en", "es", "hi", "vi", "zh"),
}


# --------------------------------------------------------------------------- raw parsing


@dataclass(frozen=True)
class Sentence:
    text: str
    context: str
    article: int
    paragraph: int
    index: int


@dataclass(frozen=True)
class QA:
    id: str
    question: str
    article: int
    paragraph: int
    answer_sentences: tuple[int, ...]  # sentence indices within the paragraph


@dataclass
class LanguageFile:
    """One parsed language file: sentences and questions of the selected articles."""

    lang: str
    path: Path
    sentences: list[Sentence] = field(default_factory=list)
    qas: list[QA] = field(default_factory=list)
    # (article, paragraph) -> offset of the paragraph's first sentence in ``sentences``
    paragraph_offset: dict[tuple[int, int], int] = field(default_factory=dict)
    num_articles: int = 0


def _load_json(path: Path) -> Any:
    return loads(read_input_text(path, "a JSON file"), str(path))


def _field(obj: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{where}: missing field '{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        raise DataError(f"{where}: field '{key}' has the wrong type ({type(value).__name__})")
    return value


def find_sentence(breaks: Sequence[Sequence[int]], answer_start: int) -> int | None:
    """Index of the sentence whose span holds ``answer_start``, or None.

    Spans are half-open ``[start, end)``: some files (zh) let consecutive spans share a
    boundary, and there the character at ``end`` belongs to the next sentence. An answer
    starting on the whitespace between two sentences belongs to the following one.
    """
    for i, (start, end) in enumerate(breaks):
        if start <= answer_start < end:
            return i
    for i in range(len(breaks) - 1):
        if breaks[i][1] <= answer_start < breaks[i + 1][0]:
            return i + 1
    return None


def _selection(articles: ArticleSelection | str | None) -> ArticleSelection:
    """``articles`` parsed; a value of another type (``articles=5``) is a one-line error."""
    if articles is not None and not isinstance(articles, str | ArticleSelection):
        raise ConfigError(
            f"articles: expected a selection such as 'all', '0-11,20' or '%4==0' (a string), "
            f"not {type(articles).__name__} {articles!r}"
        )
    return ArticleSelection.parse(articles)


def _text(obj: Any, key: str, where: str) -> str:
    """A string field, refused if it holds a lone surrogate (no Unicode text)."""
    value = _field(obj, key, where, str)
    check_text(value, where, key)
    return value


def _squeeze(text: str) -> str:
    return "".join(text.split())


def _difference(sentence: str, span: str) -> str:
    """Where the sentence and its span first differ, shown briefly."""
    a, b = sentence.strip(), span.strip()
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"from character {i}: sentence {a[i : i + 30]!r}, context {b[i : i + 30]!r}"


def _check_breaks(breaks: list[Any], context: str, where: str) -> None:
    """Each break a ``[start, end]`` pair of ints, in order, not overlapping (consecutive
    spans may share a boundary, as zh files do), within the context."""
    previous_end = 0
    for k, br in enumerate(breaks):
        if not (
            isinstance(br, list)
            and len(br) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in br)
        ):
            raise DataError(f"{where}: sentence_breaks[{k}] is not a [start, end] pair")
        if br[0] < 0 or br[1] < br[0]:
            raise DataError(
                f"{where}: sentence_breaks[{k}] {br} is reversed or negative "
                f"(need 0 <= start <= end)"
            )
        if br[1] > len(context):
            raise DataError(
                f"{where}: sentence_breaks[{k}] {br} ends beyond the context "
                f"({len(context)} characters)"
            )
        if br[0] < previous_end:
            raise DataError(
                f"{where}: sentence_breaks[{k}] {br} starts before sentence_breaks[{k - 1}] "
                f"ends ({previous_end}): spans must be in order and not overlap"
            )
        previous_end = br[1]


def _num_sentences(data: list[Any]) -> int:
    """Sentences of the whole file (selected or not), the base of the mismatch share."""
    return sum(
        len(para["sentences"])
        for article in data
        if isinstance(article, dict) and isinstance(article.get("paragraphs"), list)
        for para in article["paragraphs"]
        if isinstance(para, dict) and isinstance(para.get("sentences"), list)
    )


def parse_language_file(
    path: Path, lang: str, articles: ArticleSelection | str | None = None
) -> LanguageFile:
    """Parse one LAReQA JSON file, keeping the selected articles."""
    articles = _selection(articles)
    doc = _load_json(path)
    data = _field(doc, "data", str(path), list)
    out = LanguageFile(lang=lang, path=path, num_articles=len(data))
    seen_ids: set[str] = set()
    mismatches: list[str] = []
    for a, article in enumerate(data):
        if not articles.selects(a):
            continue
        paragraphs = _field(article, "paragraphs", f"{path}: data[{a}]", list)
        for p, para in enumerate(paragraphs):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = _text(para, "context", where)
            sentences = _field(para, "sentences", where, list)
            breaks = _field(para, "sentence_breaks", where, list)
            if len(sentences) != len(breaks):
                raise DataError(
                    f"{where}: {len(sentences)} sentences but {len(breaks)} sentence_breaks"
                )
            _check_breaks(breaks, context, where)
            out.paragraph_offset[(a, p)] = len(out.sentences)
            for k, sent in enumerate(sentences):
                if not isinstance(sent, str):
                    raise DataError(f"{where}: sentences[{k}] is not a string")
                check_text(sent, where, f"sentences[{k}]")
                start, end = breaks[k]
                if _squeeze(context[start:end]) != _squeeze(sent):
                    mismatches.append(
                        f"{where}: sentences[{k}] is not the context at its sentence_breaks"
                        f"[{k}] [{start}, {end}] ({_difference(sent, context[start:end])})"
                    )
                out.sentences.append(Sentence(sent, context, a, p, k))
            for j, qa in enumerate(_field(para, "qas", where, list)):
                qwhere = f"{where}.qas[{j}]"
                raw_id = _field(qa, "id", qwhere, (str, int))
                check_text(raw_id, qwhere, "id")
                qid = str(raw_id)
                question = _text(qa, "question", qwhere)
                answers = _field(qa, "answers", f"{qwhere} (id {qid})", list)
                if not answers:
                    raise DataError(f"{qwhere} (id {qid}): field 'answers' is empty")
                if qid in seen_ids:
                    raise DataError(f"{qwhere}: question id {qid} appears twice in this file")
                seen_ids.add(qid)
                found: list[int] = []
                for answer in answers:
                    start = _field(answer, "answer_start", f"{qwhere} (id {qid})", int)
                    idx = find_sentence(breaks, start)
                    if idx is None:
                        raise DataError(
                            f"{qwhere} (id {qid}): answer_start {start} lies outside every "
                            f"sentence in sentence_breaks"
                        )
                    if idx not in found:
                        found.append(idx)
                out.qas.append(QA(qid, question, a, p, tuple(found)))
    if mismatches:
        _judge_mismatches(path, mismatches, _num_sentences(data))
    return out


def _judge_mismatches(path: Path, mismatches: list[str], total: int) -> None:
    """Warn about a few sentences whose text is not their span's; refuse more, since the
    candidate text and its relevance then describe different sentences."""
    allowed = min(MAX_MISMATCHES, int(total * MAX_MISMATCH_SHARE))
    if len(mismatches) > allowed:
        raise DataError(
            f"{mismatches[0]}; {len(mismatches)} of the {total} sentences of {path} disagree "
            f"with their sentence_breaks (at most {allowed} tolerated): the breaks do not "
            f"describe these sentences"
        )
    for line in mismatches:
        warnings.warn(f"{line} (tolerated)", UserWarning, stacklevel=3)


# --------------------------------------------------------------------------- benchmark


@dataclass
class Benchmark:
    """Questions and candidates of all selected languages, ready for evaluation.

    Rows are grouped by language in ``languages`` order. ``relevant`` lists, for every
    question row, the candidate rows (any language) that answer its id.
    """

    name: str
    path: Path
    languages: list[str]
    articles: str
    candidate_mode: str
    question_ids: list[str]
    question_langs: list[str]
    question_texts: list[str]
    candidate_langs: list[str]
    candidate_sentences: list[str]
    candidate_contexts: list[str]
    candidate_relevant_ids: list[tuple[str, ...]]
    relevant: list[np.ndarray]

    @property
    def num_questions(self) -> int:
        return len(self.question_ids)

    @property
    def num_candidates(self) -> int:
        return len(self.candidate_sentences)

    def candidate_texts(self) -> list[str]:
        """What the passage encoder sees: the sentence, or the sentence then its paragraph."""
        if self.candidate_mode == "sentence":
            return list(self.candidate_sentences)
        return [
            f"{s} {c}"
            for s, c in zip(self.candidate_sentences, self.candidate_contexts, strict=False)
        ]

    def question_lang_codes(self) -> np.ndarray:
        index = {lang: i for i, lang in enumerate(self.languages)}
        return np.array([index[x] for x in self.question_langs], dtype=np.int64)

    def candidate_lang_codes(self) -> np.ndarray:
        index = {lang: i for i, lang in enumerate(self.languages)}
        return np.array([index[x] for x in self.candidate_langs], dtype=np.int64)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "languages": self.languages,
            "articles": self.articles,
            "candidate_mode": self.candidate_mode,
            "num_questions": self.num_questions,
            "num_candidates": self.num_candidates,
        }


def available_languages(folder: Path) -> list[str]:
    """Language codes of the ``<lang>.json`` files in a benchmark folder."""
    return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))


def require_languages(
    folder: Path, wanted: Sequence[str], present: Sequence[str], what: str = "language"
) -> None:
    """A one-line DataError naming the first ``wanted`` language without its file."""
    for lang in wanted:
        if lang not in present:
            avail = ", ".join(present) or "none"
            raise DataError(
                f"{folder / (lang + '.json')}: {what} '{lang}' is absent (available: {avail})"
            )


def resolve_benchmark_dir(name_or_path: str | Path, data_dir: Path) -> tuple[str, Path]:
    """A known name (``xquad-r``, ``mlqa-r``) under ``data_dir``, or an explicit folder."""
    text = str(name_or_path)
    if text in KNOWN_BENCHMARKS:
        folder = data_dir / text
        if not folder.is_dir():
            raise DataError(
                f"benchmark '{text}' not found in data dir {data_dir}: run "
                f"'babelir data fetch {text}', or point --data-dir / BABELIR_DATA_DIR at a copy"
            )
        return text, folder
    path = Path(text).expanduser()
    if path.is_dir():
        return path.name, path
    if path.exists():
        raise DataError(f"{path}: a benchmark must be a folder of <lang>.json files")
    known = ", ".join(KNOWN_BENCHMARKS)
    raise DataError(f"unknown benchmark '{text}': not a known name ({known}) and no such folder")


def load_benchmark(
    name_or_path: str | Path,
    data_dir: Path | None = None,
    *,
    languages: Sequence[str] | str | None = None,
    articles: ArticleSelection | str | None = None,
    candidate_mode: str = "sentence",
) -> Benchmark:
    """Load a LAReQA-format benchmark by name (under ``data_dir``) or by folder path.

    Args:
        name_or_path: ``xquad-r`` or ``mlqa-r`` (under ``data_dir``), or any folder of
            ``<lang>.json`` files in the LAReQA format (an unseen benchmark loads by path).
        data_dir: the data dir (default: ``$BABELIR_DATA_DIR`` or the user cache).
        languages: the languages to load (default: all files of the folder).
        articles: an article selection (``"all"``, ``"0-9"``, ``"%4==0"``...).
        candidate_mode: ``sentence`` (LAReQA's) or ``sentence+context``.

    Returns:
        The :class:`Benchmark`: questions and candidates of every language, pooled, with
        their relevance; malformed files raise :class:`babelir.DataError` naming the file
        and field.

    References:
        Roy et al., "LAReQA: Language-agnostic answer retrieval from a multilingual
        pool", EMNLP 2020.

    Example:
        >>> import babelir
        >>> bench = babelir.load_benchmark("path/to/mlqa-r", languages=["en", "de"])"""
    from babelir.core.settings import data_dir as default_data_dir

    if candidate_mode not in CANDIDATE_MODES:
        raise ConfigError(
            f"candidate mode '{candidate_mode}' is not one of {', '.join(CANDIDATE_MODES)}"
        )
    name, folder = resolve_benchmark_dir(name_or_path, data_dir or default_data_dir())
    selection = _selection(articles)
    present = available_languages(folder)
    wanted = parse_languages(languages)
    if wanted is None:
        expected = KNOWN_BENCHMARKS.get(name)
        wanted = list(expected) if expected and name_or_path == name else present
        if not wanted:
            raise DataError(f"{folder}: no <lang>.json files")
    require_languages(folder, wanted, present)
    files = [parse_language_file(folder / f"{lang}.json", lang, selection) for lang in wanted]
    return _assemble(name, folder, files, str(selection), candidate_mode)


def _assemble(
    name: str, folder: Path, files: Sequence[LanguageFile], articles: str, candidate_mode: str
) -> Benchmark:
    c_langs: list[str] = []
    c_sent: list[str] = []
    c_ctx: list[str] = []
    c_rel: list[list[str]] = []
    for f in files:
        base = len(c_sent)
        for s in f.sentences:
            c_langs.append(f.lang)
            c_sent.append(s.text)
            c_ctx.append(s.context)
            c_rel.append([])
        for qa in f.qas:
            offset = base + f.paragraph_offset[(qa.article, qa.paragraph)]
            for k in qa.answer_sentences:
                c_rel[offset + k].append(qa.id)
    _warn_unshared(files)
    by_id: dict[str, list[int]] = {}
    for row, ids in enumerate(c_rel):
        for qid in ids:
            by_id.setdefault(qid, []).append(row)
    q_ids: list[str] = []
    q_langs: list[str] = []
    q_texts: list[str] = []
    relevant: list[np.ndarray] = []
    for f in files:
        for qa in f.qas:
            q_ids.append(qa.id)
            q_langs.append(f.lang)
            q_texts.append(qa.question)
            relevant.append(np.asarray(by_id[qa.id], dtype=np.int64))
    if not q_ids:
        raise DataError(f"{folder}: the selection (articles {articles}) holds no questions")
    return Benchmark(
        name=name,
        path=folder,
        languages=[f.lang for f in files],
        articles=articles,
        candidate_mode=candidate_mode,
        question_ids=q_ids,
        question_langs=q_langs,
        question_texts=q_texts,
        candidate_langs=c_langs,
        candidate_sentences=c_sent,
        candidate_contexts=c_ctx,
        candidate_relevant_ids=[tuple(x) for x in c_rel],
        relevant=relevant,
    )


def _warn_unshared(files: Sequence[LanguageFile]) -> None:
    """Warn about a language sharing no question id with any other: its questions have no
    relevant candidate in another language, so its cross-lingual pairs drop out of the
    averages without a word."""
    if len(files) < 2:
        return
    ids = [{qa.id for qa in f.qas} for f in files]
    for i, f in enumerate(files):
        others = set().union(*(x for j, x in enumerate(ids) if j != i))
        if ids[i] and not ids[i] & others:
            rest = ", ".join(g.lang for g in files if g is not f)
            warnings.warn(
                f"{f.path}: no question id of {f.lang} occurs in {rest}; its cross-lingual "
                f"pairs have no relevant candidate and are left out of the averages",
                UserWarning,
                stacklevel=4,
            )


def check_disjoint(train_ids: Iterable[str], eval_ids: Iterable[str], what: str = "") -> None:
    """Raise if training and evaluation share question ids (a leak between the splits)."""
    overlap = set(train_ids) & set(eval_ids)
    if overlap:
        example = ", ".join(sorted(overlap)[:3])
        raise ConfigError(
            f"train/eval overlap{(' in ' + what) if what else ''}: {len(overlap)} question ids "
            f"are in both (e.g. {example}); choose disjoint --articles (e.g. %4!=0 and %4==0)"
        )

"""XOR-TyDi XOR-Retrieve: questions in 7 languages, English Wikipedia passages to retrieve.

Layout under the data dir (the file names of the XOR-TyDi release, which ``babelir data
fetch xor-retrieve`` / ``xor-retrieve-corpus`` download)::

    xor-retrieve/xor_dev_retrieve_eng_span_v1_1.jsonl   questions "dev" (v1.1, the default)
    xor-retrieve/xor_dev_retrieve_eng_span.jsonl        questions "dev-v1.0"
    xor-retrieve/xor_train_retrieve_eng_span.jsonl      questions "train"
    xor-retrieve/corpus/enwiki_20190201_w100.tsv        passages (XOR-TyDi's own collection)
    xor-retrieve/dpr-corpus/psgs_w100.tsv.gz            passages (DPR's, an alternative)

A questions line is ``{"id", "question", "answers": [...], "lang"}``. A passage file is
DPR's TSV (``id<TAB>text<TAB>title``, a header row, fields quoted the ``csv`` way; also
gzipped), read as DPR and XOR-TyDi's ``dense_retriever.py`` read it (``csv.reader`` with a
tab delimiter), or babelir's corpus JSONL (``{"docid", "title", "text"}``). The official
collection is XOR-TyDi's ``enwiki_20190201_w100.tsv`` (Wikipedia of 2019-02-01 cut into
100-word passages, what the task's README asks for); DPR's ``psgs_w100.tsv`` is the same
recipe on the 2018-12-20 dump, so scores over it are close to, not equal to, official ones.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from babelir.core.errors import ConfigError, DataError
from babelir.data.jsonl import UniqueIds, numbered_lines, parse_object
from babelir.data.registry import XOR_RETRIEVE_LANGUAGES
from babelir.data.types import Passage, parse_languages

ROOT = "xor-retrieve"
#: ``--questions`` names -> file under ``<data_dir>/xor-retrieve/``.
QUESTION_FILES = {
    "dev": "xor_dev_retrieve_eng_span_v1_1.jsonl",
    "dev-v1.0": "xor_dev_retrieve_eng_span.jsonl",
    "train": "xor_train_retrieve_eng_span.jsonl",
}
#: Passage files looked for, in this order, when no ``--corpus`` is given.
CORPUS_CANDIDATES = (
    "corpus/enwiki_20190201_w100.tsv",
    "corpus/enwiki_20190201_w100.tsv.gz",
    "dpr-corpus/psgs_w100.tsv.gz",
    "dpr-corpus/psgs_w100.tsv",
)
_CORPUS_SUFFIXES = (".tsv", ".tsv.gz", ".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class XorQuestion:
    """One question; ``raw_id`` is the id as the file wrote it (a string or an integer)."""

    id: str
    question: str
    answers: tuple[str, ...]
    lang: str
    raw_id: str | int = ""


# --------------------------------------------------------------------------- questions


def _question(line: str, where: str) -> XorQuestion:
    row = parse_object(line, where)
    for key in ("id", "question", "answers", "lang"):
        if key not in row:
            hint = " (a questions-only file cannot be scored)" if key == "answers" else ""
            raise DataError(f"{where}: missing field '{key}'{hint}")
    question, answers, lang = row["question"], row["answers"], row["lang"]
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: field 'question' must be a non-empty string")
    if not isinstance(lang, str) or not lang.strip():
        raise DataError(f"{where}: field 'lang' must be a non-empty string")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise DataError(f"{where}: field 'answers' must be a list of strings")
    qid = str(row["id"])
    if not qid or any(ch.isspace() for ch in qid):
        # run.trec is whitespace-separated: such an id would break or shift its lines
        raise DataError(f"{where}: field 'id' {qid!r} is empty or holds whitespace")
    return XorQuestion(qid, question, tuple(answers), lang.strip(), row["id"])


def read_questions(path: Path, languages: Sequence[str] | str | None = None) -> list[XorQuestion]:
    """The questions of a ``.jsonl[.gz]`` file (of ``languages`` only, when given).

    Errors name the file and line; a repeated id is refused naming both lines (the official
    script would keep the last one silently). Asking for a language with no question is
    an error listing the languages present.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: XOR-Retrieve questions file not found (run 'babelir data fetch "
            f"xor-retrieve', or pass --questions PATH)"
        )
    out: list[XorQuestion] = []
    first_line: dict[str, int] = {}
    lineno = 0
    try:
        for lineno, line in numbered_lines(path):
            q = _question(line, f"{path}:{lineno}")
            if q.id in first_line:
                raise DataError(
                    f"{path}:{lineno}: question id {q.id!r} appears twice (first on line "
                    f"{first_line[q.id]})"
                )
            first_line[q.id] = lineno
            out.append(q)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: unreadable after line {lineno} ({e})") from None
    if not out:
        raise DataError(f"{path}: no questions")
    wanted = parse_languages(languages)
    if wanted:
        present = sorted_languages({q.lang for q in out})
        missing = [lg for lg in wanted if lg not in present]
        if missing:
            raise ConfigError(
                f"{path}: no questions in {', '.join(missing)} (languages: {', '.join(present)})"
            )
        out = [q for q in out if q.lang in wanted]
    return out


def sorted_languages(langs: set[str] | Sequence[str]) -> list[str]:
    """XOR-TyDi's 7 languages in their usual order, then any others by name."""
    order = {lg: i for i, lg in enumerate(XOR_RETRIEVE_LANGUAGES)}
    return sorted(set(langs), key=lambda lg: (order.get(lg, len(order)), lg))


# --------------------------------------------------------------------------- passages


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(first line, fields)`` per row of a DPR TSV; the ``id text title`` header is
    skipped. Read with ``csv.reader`` (tab, default quoting) as DPR reads it."""
    start = 0
    try:
        with _open_text(path) as f:
            reader = csv.reader(f, delimiter="\t")
            for row in reader:
                line, start = start + 1, reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if line == 1 and row[0] == "id":
                    continue
                yield line, row
    except csv.Error as e:
        raise DataError(f"{path}:{start + 1}: malformed TSV row ({e})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text after line {start} ({e.reason})") from None
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: unreadable after line {start} ({e})") from None


def _tsv_passage(row: list[str], where: str) -> Passage:
    if len(row) != 3:
        raise DataError(
            f"{where}: expected 3 tab-separated fields id, text, title (got {len(row)})"
        )
    pid, text, title = row
    if not pid.strip():
        raise DataError(f"{where}: empty passage id")
    return Passage(pid.strip(), title, text, "en")


def _tsv_places(path: Path, pid: str) -> list[str]:
    out = []
    for line, row in _tsv_rows(path):
        if row and row[0].strip() == pid:
            out.append(f"{path}:{line}")
            if len(out) == 2:
                break
    return out


def iter_tsv_passages(path: Path) -> Iterator[Passage]:
    """Stream a DPR passage TSV (``.tsv`` or ``.tsv.gz``) as English passages.

    Errors name the file and line: a row without exactly 3 fields, an empty id, a broken
    quote, a passage id met twice (both lines named).
    """
    path = Path(path)
    unique = UniqueIds(lambda pid, _scope: _tsv_places(path, pid), what="passage id")
    for line, row in _tsv_rows(path):
        p = _tsv_passage(row, f"{path}:{line}")
        unique.check(p.docid)
        yield p


def iter_passages(path: Path, limit: int | None = None) -> Iterator[Passage]:
    """The passages of a DPR TSV or a babelir corpus JSONL, the first ``limit`` only when
    given (``--corpus-limit``: a prefix of the file, the same one on every run)."""
    from babelir.data.miracl import iter_jsonl_passages

    path = Path(path)
    stream = (
        iter_jsonl_passages([path], "en")
        if path.name.endswith((".jsonl", ".jsonl.gz"))
        else iter_tsv_passages(path)
    )
    return stream if limit is None else itertools.islice(stream, limit)


def find_corpus(root: Path, corpus: Path | None = None) -> Path:
    """The passage file: ``corpus`` (a file, or a folder holding one of the known names),
    else the first of :data:`CORPUS_CANDIDATES` under ``root``."""
    if corpus is not None:
        corpus = Path(corpus).expanduser()
        if corpus.is_file():
            if not corpus.name.endswith(_CORPUS_SUFFIXES):
                raise DataError(
                    f"{corpus}: a passage file must be .tsv[.gz] (DPR: id, text, title) or "
                    f".jsonl[.gz] (docid, title, text)"
                )
            return corpus
        if not corpus.is_dir():
            raise DataError(f"{corpus}: passage file not found")
        names = [c.split("/", 1)[1] for c in CORPUS_CANDIDATES]
        for name in names:
            if (corpus / name).is_file():
                return corpus / name
        raise DataError(f"{corpus}: holds none of {', '.join(names)} (pass the file itself)")
    for rel in CORPUS_CANDIDATES:
        if (root / rel).is_file():
            return root / rel
    raise DataError(
        f"{root / CORPUS_CANDIDATES[0]}: no XOR-Retrieve passage file (run 'babelir data "
        f"fetch xor-retrieve-corpus' (13 GB), or pass --corpus with a DPR TSV or corpus JSONL)"
    )


# --------------------------------------------------------------------------- benchmark


@dataclass
class XorRetrieve:
    """Questions (with answers) and the passage file they are retrieved from."""

    questions: list[XorQuestion]
    questions_path: Path
    corpus_path: Path
    questions_name: str = ""
    languages: list[str] = field(default_factory=list)

    def passages(self, limit: int | None = None) -> Iterator[Passage]:
        return iter_passages(self.corpus_path, limit)

    @property
    def empty_answers(self) -> int:
        """Questions with an empty answer string: the official substring test finds "" in
        any text, so they score 1 (kept, as in the official script; reported)."""
        return sum(1 for q in self.questions if "" in q.answers)


def xor_root(data_dir: Path) -> Path:
    return Path(data_dir) / ROOT


def load_xor_retrieve(
    data_dir: Path,
    languages: Sequence[str] | str | None = None,
    *,
    questions: str | Path = "dev",
    corpus: Path | None = None,
    root: Path | None = None,
) -> XorRetrieve:
    """Questions (a :data:`QUESTION_FILES` name or a path) and the passage file.

    Names are looked up under ``root`` (default ``<data_dir>/xor-retrieve/``); so is the
    corpus without ``corpus`` (see :func:`find_corpus`).
    """
    root = Path(root).expanduser() if root is not None else xor_root(data_dir)
    text = str(questions)
    if text in QUESTION_FILES:
        qpath, name = root / QUESTION_FILES[text], text
    else:
        qpath = Path(text).expanduser()
        if not qpath.is_file() and not qpath.name.endswith((".jsonl", ".jsonl.gz")):
            raise ConfigError(
                f"--questions {text}: not a questions file nor one of {', '.join(QUESTION_FILES)}"
            )
        name = qpath.name
    qs = read_questions(qpath, languages)
    cpath = find_corpus(root, corpus)
    return XorRetrieve(qs, qpath, cpath, name, sorted_languages({q.lang for q in qs}))

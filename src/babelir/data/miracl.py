"""MIRACL-format retrieval data: topics, qrels and a JSONL passage corpus per language.

Layout under the data dir (the file names of the MIRACL v1.0 release as mirrored by
castorini/anserini-tools, which ``babelir data fetch miracl`` downloads; the corpus shards
of the Hugging Face hub, which ``babelir data fetch miracl-corpus --languages ..`` does)::

    miracl/topics/topics.miracl-v1.0-<lang>-<split>.tsv   qid<TAB>query
    miracl/qrels/qrels.miracl-v1.0-<lang>-<split>.tsv     qid Q0 docid rel  (TREC)
    miracl/corpus/<lang>/*.jsonl[.gz]                     {"docid", "title", "text"}

The corpus (32.9M passages for English alone) is fetched per language, or put under
``miracl/corpus/`` by hand, or ``corpus=`` (``--corpus``) points at any folder holding
``<lang>/`` or the hub's ``miracl-corpus-v1.0-<lang>/`` subfolders. Files of one language
are read in name order, so the passage order (and the shard layout built from it) is
reproducible. A folder left incomplete by ``fetch`` (a ``.part`` file, or fewer shards
than the hub has) is refused rather than evaluated as a smaller corpus.

A passage is encoded as ``"{title} {text}"`` by default: MIRACL passages are Wikipedia
paragraphs whose meaning often depends on the article title, and scores reported with and
without it differ (castorini/miracl#18). ``passage_format`` changes the template.
"""

from __future__ import annotations

import re
import string
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from babelir.core.errors import ConfigError, DataError
from babelir.data.jsonl import UniqueIds, numbered_lines, parse_object
from babelir.data.registry import MIRACL_LANGUAGES
from babelir.data.types import Passage, parse_languages

DEFAULT_PASSAGE_FORMAT = "{title} {text}"
_VERSION = "miracl-v1.0"
#: Largest relevance grade accepted: trec_eval holds grades in a C integer, and a grade
#: beyond it ends in a SystemError inside pytrec_eval.
MAX_RELEVANCE = 1000
_INTEGER = re.compile(r"[+-]?[0-9]+")  # int() would also take "1_0" and non-ASCII digits


def check_passage_format(template: str, option: str = "--passage-format") -> str:
    """Validate a passage template: ``{title}`` and ``{text}`` fields only, as bare names.

    A conversion or format spec (``{text!r:>999999999999}``) would pad every passage to
    any width asked (a MemoryError deep in encoding), and attribute or index access
    (``{text.upper}``) is no template; ``option`` names where the template came from.
    """
    where = f"{option}: passage format {template!r}"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    fields = set()
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion is not None:
            raise ConfigError(
                f"{where} may only hold plain {{title}} and {{text}} fields, without a "
                f"conversion (!r) or format spec (:...)"
            )
        fields.add(name)
    bad = fields - {"title", "text"}
    if bad or "text" not in fields:
        found = ", ".join(repr(f"{{{b}}}") for b in sorted(bad)) or "no {text}"
        raise ConfigError(f"{where} must use {{text}} and may use {{title}} (found {found})")
    return template


def format_passage(p: Passage, template: str = DEFAULT_PASSAGE_FORMAT) -> str:
    """The text the passage encoder sees; an empty title leaves no stray space."""
    return template.format(title=p.title, text=p.text).strip()


# --------------------------------------------------------------------------- topics, qrels


def topics_path(root: Path, lang: str, split: str = "dev") -> Path:
    return root / "topics" / f"topics.{_VERSION}-{lang}-{split}.tsv"


def qrels_path(root: Path, lang: str, split: str = "dev") -> Path:
    return root / "qrels" / f"qrels.{_VERSION}-{lang}-{split}.tsv"


def _lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise DataError(
            f"{path}: {what} file not found (run 'babelir data fetch miracl', or point "
            f"--data-dir / BABELIR_DATA_DIR at a copy)"
        )
    try:
        # utf-8-sig: a byte-order mark would otherwise stick to the first qid
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield lineno, line
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_topics(path: Path) -> dict[str, str]:
    """``qid<TAB>query`` lines -> ``{qid: query}``; empty queries and repeats are errors."""
    out: dict[str, str] = {}
    for lineno, line in _lines(path, "topics"):
        qid, sep, query = line.partition("\t")
        qid, query = qid.strip(), query.strip()
        if not sep or not qid:
            raise DataError(f"{path}:{lineno}: expected 'qid<TAB>query'")
        if not query:
            raise DataError(f"{path}:{lineno}: empty query for qid {qid}")
        if qid in out:
            raise DataError(f"{path}:{lineno}: qid {qid} appears twice")
        out[qid] = query
    if not out:
        raise DataError(f"{path}: no topics")
    return out


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels (``qid Q0 docid rel``, tabs or spaces) -> ``{qid: {docid: rel}}``."""
    out: dict[str, dict[str, int]] = {}
    for lineno, line in _lines(path, "qrels"):
        parts = line.split()
        if len(parts) != 4:
            raise DataError(f"{path}:{lineno}: expected 'qid Q0 docid rel' (4 fields)")
        qid, _, docid, rel_text = parts
        if not _INTEGER.fullmatch(rel_text):
            raise DataError(f"{path}:{lineno}: relevance {rel_text!r} is not an integer")
        rel = int(rel_text)
        if abs(rel) > MAX_RELEVANCE:
            raise DataError(
                f"{path}:{lineno}: relevance {rel_text[:30]} is out of range "
                f"(-{MAX_RELEVANCE}..{MAX_RELEVANCE})"
            )
        judged = out.setdefault(qid, {})
        if judged.get(docid, rel) != rel:
            raise DataError(f"{path}:{lineno}: ({qid}, {docid}) judged twice, differently")
        judged[docid] = rel
    if not out:
        raise DataError(f"{path}: no qrels")
    return out


# --------------------------------------------------------------------------- corpus


def corpus_dir(corpus_root: Path, lang: str) -> Path:
    """``<root>/<lang>/`` or the hub's ``<root>/miracl-corpus-v1.0-<lang>/``."""
    for name in (lang, f"miracl-corpus-v1.0-{lang}"):
        if (corpus_root / name).is_dir():
            return corpus_root / name
    raise DataError(
        f"{corpus_root / lang}: no MIRACL corpus folder for '{lang}' (expected "
        f"<corpus>/{lang}/*.jsonl[.gz]; run 'babelir data fetch miracl-corpus --languages "
        f"{lang}', or pass --corpus)"
    )


def corpus_files(corpus_root: Path, lang: str) -> list[Path]:
    folder = corpus_dir(corpus_root, lang)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")) and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"{folder}: no *.jsonl or *.jsonl.gz corpus files")
    _check_fetched(folder, lang)
    return files


def _check_fetched(folder: Path, lang: str) -> None:
    """Refuse a folder ``babelir data fetch miracl-corpus`` left incomplete: a ``.part``
    shard, or (where its ``SHA256SUMS.local`` record is) fewer shards than the hub has."""
    from babelir.data.fetch import LOCAL_SUMS, miracl_shard_name
    from babelir.data.registry import MIRACL_CORPUS_SHARDS

    again = f"rerun 'babelir data fetch miracl-corpus --languages {lang}' to complete it"
    parts = sorted(p.name for p in folder.glob("*.part"))
    if parts:
        raise DataError(f"{folder / parts[0]}: an interrupted corpus fetch; {again}")
    if (folder / LOCAL_SUMS).is_file() and lang in MIRACL_CORPUS_SHARDS:
        n = MIRACL_CORPUS_SHARDS[lang]
        absent = [
            miracl_shard_name(i) for i in range(n) if not (folder / miracl_shard_name(i)).is_file()
        ]
        if absent:
            raise DataError(
                f"{folder}: {len(absent)} of {n} fetched shards missing ({absent[0]}, ...); {again}"
            )


def iter_jsonl_passages(
    files: Sequence[Path], lang: str = "", *, mixed: bool = False
) -> Iterator[Passage]:
    """Stream ``{"docid", "title", "text"[, "lang"]}`` lines; errors name the file and line.

    With ``lang``, ``files`` are one collection (a MIRACL language folder, an XOR-Retrieve
    corpus) of that language: a line whose own ``lang`` differs is refused (it would let
    one docid be indexed once per language written), so a docid occurs once in the
    collection (a repeat is refused naming both lines). Without ``lang``, or ``mixed``
    (a pooled file of several languages, ``lang`` only filling lines without one), a
    docid is unique per language. A passage with empty text is refused.
    """
    mixed = mixed or not lang
    unique = UniqueIds(lambda docid, lg: _docid_places(files, lang, mixed, lg, docid))
    for path in files:
        lineno = 0
        try:
            for lineno, line in numbered_lines(path):
                p = _passage(line, f"{path}:{lineno}", lang, mixed)
                unique.check(p.docid, p.lang)  # one language per collection unless mixed
                yield p
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: unreadable after line {lineno} ({e})") from None


def _docid_places(
    files: Sequence[Path], lang: str, mixed: bool, p_lang: str, docid: str
) -> list[str]:
    """The first two ``file:line`` places of (``p_lang``, ``docid``) in ``files``."""
    out = []
    for path in files:
        for lineno, line in numbered_lines(path):
            p = _passage(line, f"{path}:{lineno}", lang, mixed)
            if p.docid == docid and p.lang == p_lang:
                out.append(f"{path}:{lineno}")
                if len(out) == 2:
                    return out
    return out


def _passage(line: str, where: str, lang: str, mixed: bool = False) -> Passage:
    row = parse_object(line, where)
    docid = row.get("docid", row.get("_id"))
    if not isinstance(docid, str | int) or not str(docid).strip():
        raise DataError(f"{where}: missing or empty field 'docid'")
    text, title = row.get("text"), row.get("title", "")
    if not isinstance(text, str):
        raise DataError(f"{where}: field 'text' must be a string")
    if not text.strip():
        raise DataError(
            f"{where}: field 'text' is empty (a passage without text cannot be retrieved by "
            f"its content; remove the line)"
        )
    if not isinstance(title, str):
        raise DataError(f"{where}: field 'title' must be a string")
    own = row.get("lang", lang)
    if not isinstance(own, str):
        raise DataError(f"{where}: field 'lang' must be a string")
    if lang and not mixed and own != lang:
        raise DataError(
            f"{where}: field 'lang' is {own!r} in a corpus of language {lang!r} (one folder or "
            f"file is one collection, of one language)"
        )
    return Passage(str(docid), title, text, own)


# --------------------------------------------------------------------------- benchmark


@dataclass
class MiraclLanguage:
    """One language of a MIRACL-format benchmark: queries, judgements and corpus files."""

    lang: str
    split: str
    topics: dict[str, str]
    qrels: dict[str, dict[str, int]]
    topics_path: Path
    qrels_path: Path
    corpus_files: list[Path] = field(default_factory=list)

    def passages(self) -> Iterator[Passage]:
        return iter_jsonl_passages(self.corpus_files, self.lang)

    def judged_docids(self) -> set[str]:
        return {d for judged in self.qrels.values() for d in judged}


def miracl_root(data_dir: Path) -> Path:
    return Path(data_dir) / "miracl"


def load_miracl(
    data_dir: Path,
    languages: Sequence[str] | str | None = None,
    *,
    split: str = "dev",
    corpus: Path | None = None,
    require_corpus: bool = True,
    root: Path | None = None,
) -> list[MiraclLanguage]:
    """Topics, qrels and corpus files of the selected languages (default: all 18).

    ``root`` (the folder holding ``topics/`` and ``qrels/``) defaults to
    ``<data_dir>/miracl``, ``corpus`` to ``<root>/corpus``; with ``require_corpus=False`` a
    missing corpus is allowed (topics/qrels only).
    """
    root = Path(root).expanduser() if root is not None else miracl_root(data_dir)
    wanted = parse_languages(languages) or list(MIRACL_LANGUAGES)
    unknown = [x for x in wanted if x not in MIRACL_LANGUAGES]
    if unknown:
        raise ConfigError(
            f"MIRACL has no language {', '.join(unknown)} "
            f"(languages: {', '.join(MIRACL_LANGUAGES)})"
        )
    corpus_root = Path(corpus).expanduser() if corpus else root / "corpus"
    if require_corpus and not corpus_root.is_dir():
        raise DataError(
            f"{corpus_root}: MIRACL corpus folder not found (run 'babelir data fetch "
            f"miracl-corpus --languages {','.join(wanted)}', or pass --corpus with the layout "
            f"<corpus>/<lang>/*.jsonl.gz)"
        )
    out = []
    for lang in wanted:
        tp, qp = topics_path(root, lang, split), qrels_path(root, lang, split)
        files = corpus_files(corpus_root, lang) if require_corpus else []
        out.append(MiraclLanguage(lang, split, read_topics(tp), read_qrels(qp), tp, qp, files))
    return out

"""Parallel questions: translations of one question, without passages.

A parallel-question source gives x-y training pairs only (the question in X as the query,
its translation in Y as the positive), never same-language ones: a question paired with
itself teaches nothing. Three formats, told apart by their bytes (:func:`question_format`):

* ``mintaka`` - Mintaka's JSON: an array of ``{"id", "question", "translations": {LANG:
  text}}`` objects; ``question`` is English.
* ``jsonl`` - one ``{"id", "lang", "text"}`` object per line (``.jsonl`` or ``.jsonl.gz``);
  lines with the same ``id`` are translations of one question.
* ``aligned`` - a folder of line-aligned ``LANG.txt`` files (line k of each file is the
  same question), or a folder of such folders (XOR-TyDi's ``{ar,bn,...}-en/``).

Items come back with ``kind`` :data:`~babelir.data.types.QUESTION` and the source's own
ids; blank texts, a translation equal to another language's text, questions met earlier
in the same language and questions left in one language are skipped and counted.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from babelir.core.errors import DataError
from babelir.data.jsonl import check_text, loads, numbered_lines, parse_object
from babelir.data.types import LANG_CODE, QUESTION, ParallelItem, ParallelQA, Side

FORMATS = ("mintaka", "jsonl", "aligned")
#: How the formats are described in errors.
EXPECTED = (
    "Mintaka JSON (an array of {id, question, translations}), JSONL of {id, lang, text} "
    "lines, or a folder of line-aligned LANG.txt files"
)
_HEAD = 1 << 16
_GZIP = b"\x1f\x8b"


def question_format(path: Path) -> str | None:
    """The parallel-question format of ``path`` (:data:`FORMATS`) judged by its bytes (a
    folder by its ``LANG.txt`` files), or None when it is none of them."""
    if path.is_dir():
        return "aligned" if _aligned_groups(path) else None
    head = _head(path)
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    if re.match(r"\s*\[\s*\{", text):
        return "mintaka" if '"translations"' in text and '"question"' in text else None
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        row = json.loads(first)
    except (ValueError, RecursionError):
        return None
    if isinstance(row, dict) and {"id", "lang", "text"} <= set(row) and "query" not in row:
        return "jsonl"
    return None


def load_questions(path: Path, fmt: str | None = None) -> tuple[ParallelQA, dict[str, Any]]:
    """The parallel questions in ``path`` and the loader's counts (``format``,
    ``questions`` and, where any, ``blank``, ``same_text``, ``duplicates``, ``unpaired``).

    ``fmt`` None: sniffed (:func:`question_format`). Errors are one line naming the file
    and line.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    fmt = fmt or question_format(path)
    if fmt is None:
        raise DataError(f"{path}: not a parallel-question source (expected {EXPECTED})")
    counts: Counter[str] = Counter()
    if fmt == "mintaka":
        raw = _from_mintaka(path)
    elif fmt == "jsonl":
        raw = _from_jsonl(path)
    elif fmt == "aligned":
        raw = _from_aligned(path)
    else:
        raise DataError(f"{path}: unknown parallel-question format '{fmt}' ({', '.join(FORMATS)})")
    items = _clean(raw, counts)
    if not items:
        raise DataError(f"{path}: no question in two or more languages")
    stats: dict[str, Any] = {"format": fmt, "questions": len(items)}
    stats.update({k: v for k, v in sorted(counts.items()) if v})
    return ParallelQA(items, source=str(path)), stats


# --------------------------------------------------------------------------- cleaning


def _clean(raw: list[tuple[str, dict[str, str]]], counts: Counter[str]) -> list[ParallelItem]:
    """Items of two or more languages: blank texts, texts equal to another language's
    and questions already met in a language dropped (counted in ``counts``)."""
    seen: set[tuple[str, str]] = set()
    items = []
    for qid, texts in raw:
        sides: dict[str, Side] = {}
        kept: set[str] = set()
        for lang, text in texts.items():
            text = text.strip()
            if not text:
                counts["blank"] += 1
            elif text in kept:
                counts["same_text"] += 1  # a "translation" that is the other text
            else:
                kept.add(text)
                sides[lang] = Side(text, "")
        if any((lang, s.query) in seen for lang, s in sides.items()):
            counts["duplicates"] += 1  # the same question again (maybe translated anew)
            continue
        if len(sides) < 2:
            counts["unpaired"] += 1
            continue
        seen.update((lang, s.query) for lang, s in sides.items())
        items.append(ParallelItem(qid, sides, kind=QUESTION))
    return items


def _check_lang(lang: Any, where: object, what: str) -> str:
    """``lang`` if it is a language code; else a DataError at ``where`` (formatted only
    then: a Mintaka entry finds its line on demand)."""
    if not isinstance(lang, str) or not LANG_CODE.fullmatch(lang):
        raise DataError(
            f"{where}: {what}: {lang!r} is not a language code (lowercase ISO 639, e.g. en, "
            "pt, zh-Hans)"
        )
    return lang


# --------------------------------------------------------------------------- reading


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
        if head[:2] == _GZIP:
            with gzip.open(path, "rb") as g:
                head = g.read(_HEAD)
    except (OSError, EOFError, zlib.error):
        return b""
    return head


def _read_text(path: Path) -> str:
    """A (gzipped) UTF-8 file's text; a decoding error names its line."""
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None


def _element_line(text: str, index: int) -> int:
    """The line on which element ``index`` of the (valid) top-level JSON array starts."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    for k in range(index + 1):
        while text[pos] in " \t\r\n,":
            pos += 1
        if k == index:
            break
        _, pos = decoder.raw_decode(text, pos)
    return text.count("\n", 0, pos) + 1


class _Where:
    """``path:line`` of a Mintaka entry, its line found only when an error is written."""

    def __init__(self, path: Path, text: str, index: int) -> None:
        self.path, self.text, self.index = path, text, index

    def __str__(self) -> str:
        return f"{self.path}:{_element_line(self.text, self.index)}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _from_mintaka(path: Path) -> list[tuple[str, dict[str, str]]]:
    text = _read_text(path)
    doc = loads(text, str(path))
    if not isinstance(doc, list):
        raise DataError(
            f"{path}: expected a JSON array of Mintaka entries ({{id, question, translations}}), "
            f"got a JSON {type(doc).__name__}"
        )
    out = []
    ids: dict[str, int] = {}
    for k, entry in enumerate(doc):
        where = _Where(path, text, k)
        if not isinstance(entry, dict):
            raise DataError(f"{where}: entry {k} is not a JSON object")
        for key in ("id", "question", "translations"):
            if key not in entry:
                raise DataError(f"{where}: entry {k} has no '{key}'")
        qid = entry["id"]
        if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
            raise DataError(f"{where}: entry {k}: 'id' must be a non-empty string or integer")
        qid = str(qid)
        if qid in ids:
            raise DataError(f"{where}: id {qid!r} given twice (entries {ids[qid]} and {k})")
        ids[qid] = k
        translations = entry["translations"]
        if not isinstance(entry["question"], str):
            raise DataError(f"{where}: entry {k}: 'question' must be a string")
        if not isinstance(translations, dict) or not all(
            isinstance(v, str) for v in translations.values()
        ):
            raise DataError(f"{where}: entry {k}: 'translations' must map languages to strings")
        for lang in translations:
            _check_lang(lang, where, f"entry {k}: translations")
        if "en" in translations:
            raise DataError(
                f"{where}: entry {k}: 'translations' repeats 'en', the language of 'question'"
            )
        check_text(entry["question"], where, "question")
        check_text(translations, where, "translations")
        out.append((qid, {"en": entry["question"], **translations}))
    return out


def _from_jsonl(path: Path) -> list[tuple[str, dict[str, str]]]:
    items: dict[str, dict[str, str]] = {}
    first: dict[tuple[str, str], int] = {}
    lineno = 0
    try:
        for lineno, line in numbered_lines(path):
            where = f"{path}:{lineno}"
            row = parse_object(line, where)
            for key in ("id", "lang", "text"):
                if key not in row:
                    raise DataError(f"{where}: missing field '{key}'")
            if not isinstance(row["text"], str):
                raise DataError(f"{where}: field 'text' must be a string")
            qid, lang = str(row["id"]), _check_lang(row["lang"], where, "field 'lang'")
            if not qid.strip():
                raise DataError(f"{where}: field 'id' is empty")
            if (qid, lang) in first:
                raise DataError(
                    f"{where}: id {qid} has a second '{lang}' line (first on line "
                    f"{first[(qid, lang)]})"
                )
            first[(qid, lang)] = lineno
            items.setdefault(qid, {})[lang] = row["text"]
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        what = "truncated" if isinstance(e, EOFError) else "not a valid gzip file"
        raise DataError(f"{path}: {what} after line {lineno} ({e or 'unexpected end'})") from None
    return list(items.items())


def _lang_files(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted(folder.glob("*.txt"))
        if p.is_file() and LANG_CODE.fullmatch(p.stem)
    }


def _aligned_groups(path: Path) -> list[tuple[str | None, dict[str, Path]]]:
    """(sub-folder name or None, {lang: file}) per set of line-aligned files."""
    try:
        files = _lang_files(path)
        if len(files) >= 2:
            return [(None, files)]
        subs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    groups = [(sub.name, _lang_files(sub)) for sub in subs]
    return [(name, f) for name, f in groups if len(f) >= 2]


def _from_aligned(path: Path) -> list[tuple[str, dict[str, str]]]:
    groups = _aligned_groups(path)
    if not groups:
        raise DataError(f"{path}: no line-aligned LANG.txt files (two or more per folder)")
    out = []
    for name, files in groups:
        lines = {}
        for lang, f in files.items():
            text = _read_text(f)
            rows = text.split("\n")
            if rows and rows[-1] == "":
                rows.pop()  # the final newline ends the last line
            lines[lang] = [r.removesuffix("\r") for r in rows]
        sizes = {lang: len(rows) for lang, rows in lines.items()}
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"{files[lang].name} {n}" for lang, n in sizes.items())
            folder = files[next(iter(files))].parent
            raise DataError(f"{folder}: line-aligned files differ in length (lines: {shown})")
        for k in range(next(iter(sizes.values()))):
            qid = f"{name}:{k + 1}" if name else str(k + 1)
            out.append((qid, {lang: rows[k] for lang, rows in lines.items()}))
    return out

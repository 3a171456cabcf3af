"""JSON text to Python objects, with one-line errors that name the file and position.

``json.loads`` raises three kinds of error on hostile input: ``JSONDecodeError`` (with a
position), ``RecursionError`` on deeply nested arrays and ``ValueError`` on integers
longer than Python's digit limit (neither with a position). :func:`loads` turns all three
into :class:`~babelir.core.errors.DataError` naming line and column.

:func:`parse_object` also refuses identifier fields (``id``, ``docid``, ...) that are not a
string or an integer: ``"id": true`` would otherwise become the id ``'True'`` (Python's
``bool`` is an ``int``), and ``"id": 1.5`` or ``null`` would be stringified silently,
and any string holding a lone surrogate (``"\\ud800"``: valid JSON, not valid Unicode), which
pyarrow and the tokenizers fail on deep inside a run (:func:`check_text`).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from babelir.core.errors import DataError

_MAX_DEPTH = 200  # reported as the place where the nesting became too deep


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _too_deep_at(text: str) -> int:
    """Offset where bracket nesting (outside strings) first exceeds ``_MAX_DEPTH``."""
    depth, in_str, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return i
        elif ch in "]}":
            depth -= 1
    return 0


def loads(text: str, where: str, *, lines: bool = False) -> Any:
    """Parse ``text`` as JSON; ``where`` (a path, or "path:lineno" with ``lines``) prefixes
    any error, followed by the line and column (or the column only with ``lines``)."""

    def at(pos: int) -> str:
        line, col = _line_col(text, pos)
        return f"column {col}" if lines else f"line {line}, column {col}"

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: malformed JSON at {at(e.pos)}: {e.msg}") from None
    except RecursionError:
        raise DataError(
            f"{where}: JSON nested too deeply at {at(_too_deep_at(text))} "
            f"(more than {_MAX_DEPTH} levels of arrays/objects)"
        ) from None
    except ValueError:  # an integer longer than the interpreter's digit limit
        limit = sys.get_int_max_str_digits() or 4300
        m = re.search(rf"\d{{{limit + 1},}}", text)
        pos = at(m.start()) if m else "an unknown position"
        raise DataError(f"{where}: number too long at {pos} (more than {limit} digits)") from None


#: Fields that name a record in babelir's JSONL formats (corpus, training, saved rows).
ID_FIELDS = ("id", "docid", "_id", "question_id")


def check_id(value: Any, key: str, where: str) -> None:
    """Refuse an identifier that is neither a string nor an integer (booleans included:
    ``isinstance(True, int)`` holds, and ``str(True)`` would make a plausible id)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        shown = json.dumps(value)[:40]
        raise DataError(f"{where}: field '{key}' must be a string or an integer, not {shown}")


def _surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` (which UTF-8 cannot encode), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return text[e.start]
    return None


def check_text(value: Any, where: str, key: str) -> None:
    """Refuse a lone surrogate escape (``"\\ud800"``) anywhere in ``value`` (strings,
    nested lists and objects), naming the field: JSON allows it, but it is no Unicode
    text, and pyarrow or a tokenizer would fail on it with a traceback mid-run."""
    found = _find_surrogate(value, key)
    if found is not None:
        path, ch = found
        raise DataError(
            f"{where}: field '{path}' holds a lone surrogate escape (\\u{ord(ch):04x}), "
            f"which is not valid Unicode text"
        )


def _find_surrogate(value: Any, path: str) -> tuple[str, str] | None:
    """(path, character) of the first lone surrogate in ``value``, depth first; a loop,
    not recursion, as ``json.loads`` accepts nesting near the interpreter's limit."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            ch = _surrogate(item)
            if ch is not None:
                return where, ch
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", x) for i, x in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            for k in item:
                if _surrogate(k) is not None:
                    return f"{where} (a key)", _surrogate(k) or ""
            stack.extend((f"{where}.{k}", x) for k, x in reversed(list(item.items())))
    return None


def parse_object(line: str, where: str) -> dict[str, Any]:
    """Parse ``line`` as a JSON object; ``where`` ("path:lineno") prefixes any error.

    Identifier fields (:data:`ID_FIELDS`) present in the object must be strings or
    integers (:func:`check_id`), so no reader takes ``true`` or ``1.5`` as an id; no
    string may hold a lone surrogate (:func:`check_text`).
    """
    row = loads(line, where, lines=True)
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    for key in ID_FIELDS:
        if key in row:
            check_id(row[key], key, where)
    # Decoded UTF-8 holds no surrogates: only a \u escape can make one, so lines without
    # one (nearly all) skip the walk.
    if "\\u" in line:
        for key, value in row.items():
            if _surrogate(key) is not None:
                raise DataError(f"{where}: a field name holds a lone surrogate escape")
            check_text(value, where, key)
    return row


class UniqueIds:
    """Refuse an id met twice (within a scope, e.g. a language) in one stream of records.

    Only a 64-bit hash per record is kept (tens of bytes each, fine for corpora of tens of
    millions of passages); on a repeated hash ``locate(id, scope)`` rescans the input for
    the first two places the id occurs, so the error names both lines, and a collision of
    two different ids (fewer than two places found) is let through.
    """

    def __init__(self, locate: Callable[[str, str], list[str]], what: str = "docid") -> None:
        self._locate = locate
        self._what = what
        self._seen: set[int] = set()

    def check(self, ident: str, scope: str = "") -> None:
        key = hash((scope, ident))
        if key not in self._seen:
            self._seen.add(key)
            return
        places = self._locate(ident, scope)
        if len(places) >= 2:
            within = f" ({scope})" if scope else ""
            raise DataError(
                f"{self._what} {ident!r}{within} appears twice: {places[0]} and {places[1]} "
                f"({self._what}s must be unique: a repeated passage is indexed and scored twice)"
            )


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered non-blank lines of a (gzipped) UTF-8 file, decoded line by line.

    A text-mode reader decodes ahead in 8 KB blocks, so its errors come before the lines
    they belong to ("after line 0"); decoding each line names the line at fault.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start} of the line)"
                ) from None
            if line.strip():
                yield lineno, line

"""Data types shared by the dataset modules (LAReQA, parallel training data, MIRACL, mMARCO).

They live here, below every dataset module, so that no dataset module imports another
just for a type (``parallel`` and ``mmarco`` used to import each other).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from babelir.core.errors import ConfigError, DataError

#: A language code: ISO 639-1/-3 in lowercase, optionally a subtag (``zh-Hans``, ``pt-BR``).
LANG_CODE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?")

# --------------------------------------------------------------------------- selections


@dataclass(frozen=True)
class ArticleSelection:
    """Which articles (by position in a language file) to keep.

    Spec strings: ``all``; ``%4==0`` / ``%4!=0`` (position modulo N equals / differs from
    K, the usual held-out split); or indices and ranges ``0-11,20,30-35``. Ranges are kept
    as merged ``(lo, hi)`` intervals, never expanded, so ``0-999999999`` costs what ``0-1``
    costs.
    """

    spec: str = "all"
    modulus: int | None = None
    remainder: int | None = None
    negate: bool = False
    ranges: tuple[tuple[int, int], ...] | None = None

    @classmethod
    def parse(cls, spec: str | ArticleSelection | None) -> ArticleSelection:
        if isinstance(spec, ArticleSelection):
            return spec
        text = (spec or "all").strip().replace(" ", "")
        if text in ("all", "*", ""):
            return cls("all")
        m = re.fullmatch(r"%(\d{1,18})(==|!=)(\d{1,18})", text)
        if m:
            mod, op, rem = int(m.group(1)), m.group(2), int(m.group(3))
            if mod < 1 or rem >= mod:
                raise ConfigError(f"articles: '{spec}' needs N >= 1 and 0 <= K < N in %N==K")
            return cls(text, modulus=mod, remainder=rem, negate=op == "!=")
        spans: list[tuple[int, int]] = []
        for part in text.split(","):
            m = re.fullmatch(r"(\d{1,18})(?:-(\d{1,18}))?", part)
            if not m:
                raise ConfigError(
                    f"articles: cannot parse '{spec}' (use 'all', '%4==0', '%4!=0' or '0-11,20')"
                )
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise ConfigError(f"articles: empty range '{part}' in '{spec}'")
            spans.append((lo, hi))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return cls(text, ranges=tuple(merged))

    def selects(self, index: int) -> bool:
        if self.modulus is not None:
            hit = index % self.modulus == self.remainder
            return hit != self.negate
        if self.ranges is not None:
            return any(lo <= index <= hi for lo, hi in self.ranges)
        return True

    def __str__(self) -> str:
        return self.spec


def parse_languages(value: str | Sequence[str] | None) -> list[str] | None:
    """``"en,de"`` or a list -> ``["en", "de"]``; None/empty -> None (meaning all).

    A language given twice is refused: it would count its questions twice and invent a
    cross-language pair of a language with itself.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    langs = [str(x).strip() for x in items if str(x).strip()]
    twice = sorted({x for x in langs if langs.count(x) > 1})
    if twice:
        raise ConfigError(f"languages: {', '.join(twice)} given more than once in {value!r}")
    return langs or None


# --------------------------------------------------------------------------- passages


@dataclass(frozen=True, slots=True)
class Passage:
    """One corpus passage; ``lang`` is filled from its folder (or file) by the readers."""

    docid: str
    title: str
    text: str
    lang: str = ""


# --------------------------------------------------------------------------- parallel QA


@dataclass
class Side:
    """One language of a parallel item: its query, positive passage and hard negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


#: :attr:`ParallelItem.kind` of a QA item (a query and its passage per language).
QA = "qa"
#: :attr:`ParallelItem.kind` of a parallel question: translations of one question without
#: passages (each side's ``positive`` is empty); it only gives x-y pairs (question in X,
#: its translation in Y), never same-language ones.
QUESTION = "question"


@dataclass
class ParallelItem:
    """The same (query, passage) item in several languages, keyed by a shared ``id``.

    ``group``: the item's article (SQuAD-format sources set it), so that a validation split
    can hold out whole articles instead of questions about a paragraph seen in training.
    ``kind``: :data:`QA`, or :data:`QUESTION` for a parallel question without passages.
    """

    id: str
    sides: dict[str, Side] = field(default_factory=dict)
    group: str | None = None
    kind: str = QA


@dataclass
class ParallelQA:
    """Parallel training items from one source (a folder, a JSONL file, an mMARCO window)."""

    items: list[ParallelItem]
    source: str = ""

    @property
    def languages(self) -> list[str]:
        seen: dict[str, None] = {}
        for item in self.items:
            for lang in item.sides:
                seen.setdefault(lang, None)
        return sorted(seen)

    @property
    def ids(self) -> list[str]:
        return [x.id for x in self.items]

    @property
    def has_questions(self) -> bool:
        """Whether any item is a parallel question (:data:`QUESTION`)."""
        return any(item.kind == QUESTION for item in self.items)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.languages, 0)
        for item in self.items:
            for lang in item.sides:
                out[lang] += 1
        return out

    def select_languages(self, languages: Sequence[str]) -> ParallelQA:
        """Keep only ``languages``; a requested language with no data is an error."""
        counts = self.counts()
        for lang in languages:
            if counts.get(lang, 0) == 0:
                have = ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none"
                raise DataError(
                    f"training language '{lang}' has no data in {self.source} (have: {have})"
                )
        keep = set(languages)
        items = []
        for item in self.items:
            sides = {k: v for k, v in item.sides.items() if k in keep}
            if sides:
                items.append(ParallelItem(item.id, sides, item.group, item.kind))
        return ParallelQA(items, self.source)

"""mMARCO-format training data (unicamp-dl/mMARCO: MS MARCO passage ranking, translated).

Layout of the dataset repository, under ``<data_dir>/mmarco/`` or any folder (the leading
``data/`` is optional, ``google/`` may be ``v1/`` for the first release)::

    data/google/queries/train/<language>_queries.train.tsv   qid<TAB>query
    data/google/collections/<language>_collection.tsv        pid<TAB>passage
    data/triples.train.ids.small.tsv                         qid<TAB>positive pid<TAB>negative pid

``<language>`` is the English name (``german``, ``chinese``...); babelir uses ISO codes
(:data:`MMARCO_LANGUAGES`). Query and passage ids are shared by every translation, so a
query id is one parallel item across languages, as the batch samplers expect.

Streaming: nothing is loaded whole. The triples file is read line by line, and texts are
fetched by id through an on-disk offset index of each TSV (:class:`TsvLookup`: hashed ids
and byte offsets in two ``.npy`` files, built in one pass, cached under
``<cache_dir>/tsv-index/`` and memory-mapped). :meth:`MMarco.parallel` turns a window of
triples into a :class:`~babelir.data.parallel.ParallelQA` (memory grows with the window,
not with the 8.8M-passage collections or the 39.8M triples); :meth:`MMarco.chunks` yields
consecutive windows in one pass over the triples, for training on millions of pairs in
rounds of bounded memory::

    mm = MMarco.open(data_dir / "mmarco", languages=["de", "en", "zh"])
    for part in mm.chunks(chunk_triples=200_000):
        table = pair_table(part, cross=True, hard_negatives=True)  # -> ParallelBatchSampler
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from babelir.core.errors import ConfigError, DataError
from babelir.core.io import write_npy
from babelir.data.types import ParallelItem, ParallelQA, Passage, Side

#: ISO code -> the language's name in mMARCO file names.
MMARCO_LANGUAGES: dict[str, str] = {
    "ar": "arabic",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fr": "french",
    "hi": "hindi",
    "id": "indonesian",
    "it": "italian",
    "ja": "japanese",
    "nl": "dutch",
    "pt": "portuguese",
    "ru": "russian",
    "vi": "vietnamese",
    "zh": "chinese",
}
TRIPLES = "triples.train.ids.small.tsv"


def _key(ident: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(ident, digest_size=8).digest(), "little", signed=True)


class TsvLookup:
    """Random access to ``id<TAB>text`` lines by id, with memory flat in the file size.

    Ids are hashed to 64 bits (so any id string works); a lookup reads every line whose
    hash matches and checks its id, so a collision cannot return a wrong text. A repeated
    id resolves to its first line. Lines with an empty text are not indexed (missing).
    """

    def __init__(self, path: Path, cache: Path | None = None) -> None:
        from babelir.core.settings import cache_dir

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: file not found")
        st = self.path.stat()
        tag = hashlib.sha256(
            f"tsv-index-v1\0{self.path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()
        ).hexdigest()[:20]
        base = (cache or cache_dir() / "tsv-index") / f"{self.path.name}.{tag}"
        keys_file, offsets_file = Path(f"{base}.keys.npy"), Path(f"{base}.offsets.npy")
        if not (keys_file.is_file() and offsets_file.is_file()):
            keys, offsets = self._scan()
            write_npy(offsets_file, offsets)
            write_npy(keys_file, keys)  # written last: its presence marks a complete index
        self.keys = np.load(keys_file, mmap_mode="r")
        self.offsets = np.load(offsets_file, mmap_mode="r")
        self._file = open(self.path, "rb")  # noqa: SIM115 (kept open for lookups)

    def _scan(self) -> tuple[np.ndarray, np.ndarray]:
        keys: list[int] = []
        offsets: list[int] = []
        off = 0
        with open(self.path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                ident, sep, text = line.rstrip(b"\r\n").partition(b"\t")
                if line.strip():
                    if not sep or not ident.strip():
                        raise DataError(f"{self.path}:{lineno}: expected 'id<TAB>text'")
                    if text.strip():
                        keys.append(_key(ident.strip()))
                        offsets.append(off)
                off += len(line)
        k = np.asarray(keys, dtype=np.int64)
        o = np.asarray(offsets, dtype=np.int64)
        order = np.lexsort((o, k))  # by key, then file position: first line wins on repeats
        return k[order], o[order]

    def __len__(self) -> int:
        return len(self.keys)

    def _read(self, offset: int, raw: bytes) -> str | None:
        self._file.seek(offset)
        got, _, text = self._file.readline().rstrip(b"\r\n").partition(b"\t")
        if got.strip() != raw:
            return None  # a hash collision: another id's line
        try:
            return text.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DataError(f"{self.path}: the line at byte {offset} is not UTF-8") from None

    def get(self, ident: str) -> str | None:
        return self.get_many([ident]).get(ident)

    def get_many(self, idents: Iterable[str]) -> dict[str, str]:
        """Texts of the ids found (missing ids are left out), read in file order."""
        wanted = sorted(set(idents))
        raws = [x.encode() for x in wanted]
        keys = np.fromiter((_key(r) for r in raws), dtype=np.int64, count=len(raws))
        lo = np.searchsorted(self.keys, keys, side="left")
        hi = np.searchsorted(self.keys, keys, side="right")
        todo = sorted(
            (int(self.offsets[j]), i) for i in np.flatnonzero(hi > lo) for j in range(lo[i], hi[i])
        )
        found: dict[str, str] = {}
        for offset, i in todo:
            if wanted[i] not in found:
                text = self._read(offset, raws[i])
                if text is not None:
                    found[wanted[i]] = text
        return found

    def close(self) -> None:
        self._file.close()


def iter_collection(path: Path, lang: str) -> Iterator[Passage]:
    """Stream a ``pid<TAB>passage`` collection as passages (no title)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: collection file not found")
    lineno = 0
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                pid, sep, text = line.rstrip("\r\n").partition("\t")
                if not sep or not pid.strip():
                    raise DataError(f"{path}:{lineno}: expected 'pid<TAB>passage'")
                yield Passage(pid.strip(), "", text.strip(), lang)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text after line {lineno} ({e.reason})") from None


def iter_triples(
    path: Path, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, str, str, str]]:
    """``(line number, qid, positive pid, negative pid)`` for lines ``start <= i < stop``."""
    if not Path(path).is_file():
        raise DataError(f"{path}: training triples file not found")
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(itertools.islice(f, start, stop), start):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 3:
                raise DataError(f"{path}:{i + 1}: expected 'qid<TAB>positive<TAB>negative'")
            yield i + 1, parts[0], parts[1], parts[2]


@dataclass
class MMarcoStats:
    """What the last window of triples gave; a side is one (item, language)."""

    triples: int = 0
    items: int = 0
    sides: int = 0
    missing_query: dict[str, int] = field(default_factory=dict)
    missing_passage: dict[str, int] = field(default_factory=dict)
    items_without_sides: int = 0


@dataclass
class MMarco:
    """An mMARCO folder: per-language queries and collections, and the id triples."""

    root: Path
    base: Path
    translation: Path
    languages: list[str]
    split: str = "train"
    cache: Path | None = None
    stats: MMarcoStats = field(default_factory=MMarcoStats)
    _lookups: dict[Path, TsvLookup] = field(default_factory=dict, repr=False)

    @staticmethod
    def detect(root: Path) -> bool:
        return any(
            (root / b / t / "collections").is_dir() for b in ("data", ".") for t in ("google", "v1")
        )

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        languages: Sequence[str] | None = None,
        *,
        split: str = "train",
        cache: Path | None = None,
    ) -> MMarco:
        """Open ``root``; ``languages`` default to those with queries and a collection."""
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: mMARCO folder not found")
        base = root / "data" if (root / "data").is_dir() else root
        translation = next((base / t for t in ("google", "v1") if (base / t).is_dir()), None)
        if translation is None:
            raise DataError(f"{root}: not an mMARCO folder (no [data/]google/ or [data/]v1/)")
        mm = cls(root, base, translation, [], split, cache)
        if languages:
            for lang in languages:
                for path in (mm.queries_path(lang), mm.collection_path(lang)):
                    if not path.is_file():
                        raise DataError(f"{path}: mMARCO file for '{lang}' not found")
            mm.languages = list(languages)
        else:
            mm.languages = [
                c
                for c in MMARCO_LANGUAGES
                if mm.queries_path(c).is_file() and mm.collection_path(c).is_file()
            ]
            if not mm.languages:
                raise DataError(f"{translation}: no language has both queries and a collection")
        return mm

    @staticmethod
    def _name(lang: str) -> str:
        if lang not in MMARCO_LANGUAGES:
            raise ConfigError(f"mMARCO has no language '{lang}' ({', '.join(MMARCO_LANGUAGES)})")
        return MMARCO_LANGUAGES[lang]

    def queries_path(self, lang: str) -> Path:
        s = self.split
        return self.translation / "queries" / s / f"{self._name(lang)}_queries.{s}.tsv"

    def collection_path(self, lang: str) -> Path:
        return self.translation / "collections" / f"{self._name(lang)}_collection.tsv"

    def collection_languages(self) -> list[str]:
        return [c for c in MMARCO_LANGUAGES if self.collection_path(c).is_file()]

    @property
    def triples_path(self) -> Path:
        return self.base / TRIPLES

    def _lookup(self, path: Path) -> TsvLookup:
        if path not in self._lookups:
            self._lookups[path] = TsvLookup(path, self.cache)
        return self._lookups[path]

    def parallel(
        self, *, start: int = 0, max_triples: int = 100_000, negatives: int = 1
    ) -> ParallelQA:
        """One ParallelQA from triple lines ``start .. start + max_triples``.

        Triples of one query id become one item: its first positive, and up to
        ``negatives`` negatives that are not among its positives. A language whose query
        or passage text is missing (or empty) drops that side only; counts are in
        :attr:`stats`.
        """
        if max_triples < 1:
            raise ConfigError(f"max_triples must be >= 1, got {max_triples}")
        triples = iter_triples(self.triples_path, start, start + max_triples)
        return self._build(triples, negatives, start)

    def chunks(self, *, chunk_triples: int = 100_000, negatives: int = 1) -> Iterator[ParallelQA]:
        """Consecutive windows of ``chunk_triples`` triples as ParallelQA, in one file pass."""
        if chunk_triples < 1:
            raise ConfigError(f"chunk_triples must be >= 1, got {chunk_triples}")
        triples = iter_triples(self.triples_path)
        at = 0
        while window := list(itertools.islice(triples, chunk_triples)):
            yield self._build(window, negatives, at)
            at += len(window)

    def _build(
        self, triples: Iterable[tuple[int, str, str, str]], negatives: int, start: int
    ) -> ParallelQA:
        if negatives < 0:
            raise ConfigError(f"negatives must be >= 0, got {negatives}")
        groups: dict[str, tuple[list[str], list[str]]] = {}
        stats = self.stats = MMarcoStats()
        for _, qid, pos, neg in triples:
            stats.triples += 1
            positives, negs = groups.setdefault(qid, ([], []))
            if pos not in positives:
                positives.append(pos)
            if neg not in negs:
                negs.append(neg)
        chosen = {
            qid: (ps[0], [x for x in ns if x not in ps][:negatives])
            for qid, (ps, ns) in groups.items()
        }
        pids = {p for pos, negs in chosen.values() for p in (pos, *negs)}
        items = {qid: ParallelItem(qid) for qid in chosen}
        for lang in self.languages:
            queries = self._lookup(self.queries_path(lang)).get_many(chosen)
            texts = self._lookup(self.collection_path(lang)).get_many(pids)
            for qid, (pos, negs) in chosen.items():
                if qid not in queries:
                    stats.missing_query[lang] = stats.missing_query.get(lang, 0) + 1
                elif pos not in texts:
                    stats.missing_passage[lang] = stats.missing_passage.get(lang, 0) + 1
                else:
                    neg_texts = tuple(texts[x] for x in negs if x in texts)
                    items[qid].sides[lang] = Side(queries[qid], texts[pos], neg_texts)
                    stats.sides += 1
        kept = [item for item in items.values() if item.sides]
        stats.items, stats.items_without_sides = len(kept), len(items) - len(kept)
        where = f"{self.triples_path} (lines {start + 1}..{start + stats.triples})"
        if not kept:
            raise DataError(
                f"{where}: no item has query and positive texts in {', '.join(self.languages)}"
            )
        return ParallelQA(kept, source=where)

    def close(self) -> None:
        for lookup in self._lookups.values():
            lookup.close()
        self._lookups.clear()


def load_mmarco(
    root: str | os.PathLike[str],
    *,
    languages: Sequence[str] | None = None,
    max_triples: int = 100_000,
    start: int = 0,
    negatives: int = 1,
) -> ParallelQA:
    """One bounded window of mMARCO triples as ParallelQA (a convenience over MMarco)."""
    mm = MMarco.open(root, languages)
    try:
        return mm.parallel(start=start, max_triples=max_triples, negatives=negatives)
    finally:
        mm.close()

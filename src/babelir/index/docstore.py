"""Row -> passage lookup for search results, in SQLite (random access, no pickle)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from babelir.core.errors import DataError
from babelir.core.io import atomic_path
from babelir.data.miracl import Passage


class Docstore:
    """Row -> (docid, lang, title, text) in SQLite: random access without loading texts."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise DataError(f"{path}: docstore not found (rebuild the index)")
        self.path = path
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        # MAX over the integer primary key reads one b-tree path: a cheap check that the
        # file is a whole docstore, and its row count for the caller to compare.
        found = self._query("SELECT MAX(row) FROM docs").fetchone()[0]
        self.rows = 0 if found is None else int(found) + 1

    def _query(self, sql: str, params: Sequence[int] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.DatabaseError as e:  # truncated, overwritten, not a docstore
            raise DataError(
                f"{self.path}: not a readable docstore ({e}); rebuild the index"
            ) from None

    @staticmethod
    def build(path: Path, passages: Iterable[Passage], batch: int = 20_000) -> dict[str, int]:
        """Write the docstore atomically; returns rows per language."""
        counts: dict[str, int] = {}
        with atomic_path(path, suffix=".sqlite") as tmp:
            conn = sqlite3.connect(tmp)
            try:
                conn.execute("PRAGMA journal_mode=OFF")
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute(
                    "CREATE TABLE docs (row INTEGER PRIMARY KEY, docid TEXT NOT NULL, "
                    "lang TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL)"
                )
                rows: list[tuple[int, str, str, str, str]] = []
                for i, p in enumerate(passages):
                    rows.append((i, p.docid, p.lang, p.title, p.text))
                    counts[p.lang] = counts.get(p.lang, 0) + 1
                    if len(rows) == batch:
                        conn.executemany("INSERT INTO docs VALUES (?,?,?,?,?)", rows)
                        rows = []
                conn.executemany("INSERT INTO docs VALUES (?,?,?,?,?)", rows)
                conn.commit()
            finally:
                conn.close()
        return counts

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM docs").fetchone()[0])

    def get(self, rows: Sequence[int]) -> list[Passage | None]:
        wanted = [int(r) for r in rows if int(r) >= 0]
        found: dict[int, Passage] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            sql = f"SELECT row, docid, lang, title, text FROM docs WHERE row IN ({marks})"
            try:
                for row, docid, lang, title, text in self._query(sql, part):
                    found[row] = Passage(docid, title, text, lang)
            except sqlite3.DatabaseError as e:
                raise DataError(f"{self.path}: not a readable docstore ({e})") from None
        return [found.get(int(r)) for r in rows]

    def close(self) -> None:
        self._conn.close()

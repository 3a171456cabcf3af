"""A content-addressed on-disk store of embeddings, shared by ``evaluate`` and ``compare``.

The base model's embeddings of a benchmark are the same in every run, so they are
computed once: each row is stored under the sha256 of everything that determines it
(model fingerprint, prefix, max length, precision, text). Changing any of them simply
misses, so entries never go stale and need no invalidation.

Storage is one SQLite file in WAL mode rather than one file per text: millions of
passages would be millions of files, while SQLite gives batched look-ups, atomic
transactions (a process killed mid-write leaves the previous committed state, never a
half row) and safe concurrent writers across processes (a busy timeout serialises
them; racing writes of the same key store the same row, so either winner is right).

Each stored vector ends with a CRC32 of its key and float bytes. A row that fails it
(flipped bits on disk, a row from an older babelir without the checksum, a non-finite
value) is treated as missing, so the caller re-encodes it and the fresh row replaces it:
a damaged cache costs time, never wrong numbers.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from babelir.core.errors import BabelirError
from babelir.core.settings import cache_dir

_KEY_VERSION = b"babelir-emb-v1"
_BATCH = 500  # keys per SELECT; well under SQLite's bound-parameter limit
# A rowid table with 16 KiB pages: ~10 rows of 384 floats per page. WITHOUT ROWID spills
# such rows to overflow pages (measured: 3x the disk, 4-5x slower reads and writes).
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB NOT NULL)"
)
_PAGE_SIZE = 16384
_CRC = 4  # bytes of CRC32 after the float32 values


def _crc(key: bytes, floats: bytes) -> bytes:
    return zlib.crc32(floats, zlib.crc32(key)).to_bytes(_CRC, "little")


def _decode(key: bytes, dim: int, vec: bytes) -> np.ndarray | None:
    """The row stored under ``key``, or None if it fails its length, checksum or finiteness."""
    if len(vec) != 4 * dim + _CRC or _crc(key, vec[:-_CRC]) != vec[-_CRC:]:
        return None
    row = np.frombuffer(vec, dtype="<f4", count=dim)
    return row if np.isfinite(row).all() else None


class CacheError(BabelirError):
    """The embedding cache file cannot be opened or read."""


class CacheWarning(UserWarning):
    """The embedding cache cannot be opened or written: encoding goes on without it."""


def default_cache_path() -> Path:
    return cache_dir() / "embeddings.sqlite"


class EmbeddingCache:
    """Float32 embedding rows by content key, in one SQLite file.

    Safe to share between threads and processes; a forked child reopens its own
    connection. ``hits``/``misses`` count look-ups since creation; ``corrupt`` counts rows
    that failed their checksum (counted as misses, re-encoded and replaced by the caller).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 120.0):
        self.path = Path(path) if path is not None else default_cache_path()
        self.timeout = timeout
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self.read_only = False  # set when a write was refused: reads go on, writes stop
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn = self._open()
                break
            except sqlite3.OperationalError as exc:
                # Two processes creating the file at once: switching to WAL does not wait
                # on the busy handler, so the loser retries instead of failing.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise self._open_error(exc) from exc
                time.sleep(0.05)
            except (sqlite3.Error, OSError) as exc:
                raise self._open_error(exc) from exc
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _open_error(self, exc: BaseException) -> CacheError:
        """Why the file cannot be used: only a damaged file is worth deleting; a folder that
        cannot be written (read-only, not a folder) is not the file's fault."""
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            return CacheError(
                f"embedding cache {self.path} is damaged ({exc}); delete it to start afresh"
            )
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return CacheError(
            f"embedding cache {self.path} cannot be opened ({reason}); its folder must be "
            f"writable (or set BABELIR_CACHE_DIR, or pass --no-cache)"
        )

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # takes effect on a new file only
            conn.execute("PRAGMA journal_mode=WAL")  # falls back by itself where unsupported
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def key(
        fingerprint: str, prefix: str, max_length: int | None, precision: str, text: str
    ) -> bytes:
        """The 32-byte key of one embedding; NUL separators keep the fields unambiguous."""
        h = hashlib.sha256(_KEY_VERSION)
        for part in (fingerprint, prefix, str(max_length), precision):
            h.update(b"\0" + part.encode("utf-8", "surrogatepass"))
        h.update(b"\0" + text.encode("utf-8", "surrogatepass"))
        return h.digest()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Rows present for ``keys`` (missing keys are absent from the result)."""
        found: dict[bytes, np.ndarray] = {}
        bad = 0
        wanted = list(dict.fromkeys(keys))
        try:
            with self._lock:
                conn = self._connect()
                for i in range(0, len(wanted), _BATCH):
                    part = wanted[i : i + _BATCH]
                    marks = ",".join("?" * len(part))
                    rows = conn.execute(
                        f"SELECT key, dim, vec FROM emb WHERE key IN ({marks})", part
                    ).fetchall()
                    for key, dim, vec in rows:
                        row = _decode(bytes(key), int(dim), bytes(vec))
                        if row is None:
                            bad += 1
                        else:
                            found[bytes(key)] = row
        except sqlite3.Error as exc:
            raise CacheError(f"embedding cache {self.path}: cannot read ({exc})") from exc
        if bad:
            self.corrupt += bad
            warnings.warn(
                f"embedding cache {self.path}: {bad} rows failed their checksum; "
                f"re-encoding them",
                stacklevel=2,
            )
        self.hits += sum(k in found for k in keys)
        self.misses += sum(k not in found for k in keys)
        return found

    def put_many(self, keys: Sequence[bytes], rows: np.ndarray) -> None:
        """Store rows in one transaction: all of them become visible, or none.

        A cache that can be read but not written (a read-only file) only warns, once:
        the rows are encoded anyway, the cache is an optimisation.
        """
        rows = np.ascontiguousarray(rows, dtype="<f4")
        if rows.ndim != 2 or len(rows) != len(keys):
            raise ValueError(f"need one row per key, got {rows.shape} for {len(keys)} keys")
        if self.read_only:
            return
        data = []
        finite = np.isfinite(rows).all(axis=1)
        for i, k in enumerate(keys):
            if not finite[i]:
                continue  # never cache a NaN/inf row; the caller sees it and refuses it
            floats = rows[i].tobytes()
            data.append((k, rows.shape[1], floats + _crc(k, floats)))
        try:
            with self._lock:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # REPLACE: a row that failed its checksum is overwritten by the fresh one.
                    conn.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?)", data)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            if "readonly" not in str(exc):
                raise CacheError(f"embedding cache {self.path}: cannot write ({exc})") from exc
            self.read_only = True
            warnings.warn(
                f"embedding cache {self.path} is read-only ({exc}); new embeddings are not "
                "stored in it",
                CacheWarning,
                stacklevel=2,
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._connect().execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, object]:
        # Pickled into worker processes: they reopen the file instead of sharing a handle.
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["path"], timeout=state["timeout"])  # type: ignore[misc, arg-type]

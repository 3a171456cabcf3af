"""Every hash of files babelir takes, in one place.

* :func:`content_fingerprint` / :func:`fingerprint` / :func:`content_sha256`: SHA-256 of
  what a run reads (a file, or a folder's data files with their names), memoised per
  (path, size, mtime_ns) for the process: the cache keys of training runs, benchmarks and
  corpora, and the duplicate-source check.
* :func:`file_sha256`: the plain ``sha256sum`` of a file, to check pinned downloads.
* :func:`stat_fingerprint`: names, sizes and mtimes only, for corpora too large to read
  for a key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Bytes read per chunk.
CHUNK = 1 << 20

_FINGERPRINTS: dict[tuple[Any, ...], str] = {}


def fingerprint(path: Path) -> str:
    """SHA-256 of a source's bytes (a folder: of its files' names and bytes), for cache keys.

    Memoised for this process on every file's (path, size, mtime_ns): compare asks for the
    same files once per job; an edited file changes its stamp and is hashed again.
    """
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = []
    for p in files:
        st = p.stat()
        stamp.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    key = (str(path.resolve()), tuple(stamp))
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _hash_files(path, files)
    return _FINGERPRINTS[key]


def content_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes alone (its name left out): equal for a copy of it.
    Memoised as :func:`fingerprint` is."""
    st = path.stat()
    key = ("content", str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _hash_files(path, [path], names=False)
    return _FINGERPRINTS[key]


def content_fingerprint(path: Path) -> str:
    """SHA-256 of a file, or of a folder's data files with their relative names.

    Each file's hash is memoised per (path, size, mtime_ns) for the process
    (:func:`fingerprint`). Bookkeeping that never changes what
    is read is left out: hidden files and ``SHA256SUMS*`` (``babelir data verify`` writes
    ``SHA256SUMS.local`` into a dataset folder), so verifying data keeps the keys.
    """
    if not path.is_dir():
        return fingerprint(path)
    h = hashlib.sha256(b"babelir-content-v1\0")
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or p.name.startswith("SHA256SUMS"):
            continue
        if p.is_file():
            h.update(f"{rel.as_posix()}\0{fingerprint(p)}\0".encode())
    return h.hexdigest()


def _hash_files(path: Path, files: list[Path], *, names: bool = True) -> str:
    h = hashlib.sha256()
    for p in files:
        if names:
            h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode() + b"\0")
        _update(h, p)
    return h.hexdigest()


def _update(h: Any, path: Path) -> None:
    """Feed a file's bytes to ``h`` in chunks, so large files do not fill memory."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (what ``sha256sum`` prints), not memoised: for
    checking a download or a data file against its pinned sum."""
    h = hashlib.sha256()
    _update(h, path)
    return h.hexdigest()


def stat_fingerprint(paths: Sequence[Path]) -> str:
    """Hash of file names, sizes and mtimes, no bytes read: cheap detection of a changed
    corpus of many gigabytes (index shards, retrieval evaluation records)."""
    h = hashlib.sha256(b"babelir-files-v1\0")
    for p in paths:
        st = Path(p).stat()
        h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


__all__ = [
    "content_fingerprint",
    "content_sha256",
    "file_sha256",
    "fingerprint",
    "stat_fingerprint",
]

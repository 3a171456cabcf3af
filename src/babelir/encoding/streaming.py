"""Stream a corpus of any size through the encoder into one ``.npy`` at flat memory."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from babelir.core.errors import ConfigError
from babelir.encoding.encoder import embedding_dim, encode_texts
from babelir.encoding.options import EncodeOptions
from babelir.models.loading import memo_fingerprint

#: Texts per chunk of :func:`encode_to_disk`; sorting inside a chunk this size already
#: removes almost all padding, and memory stays bounded by it.
DEFAULT_CHUNK_SIZE = 8192


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        if not isinstance(text, str):
            raise ConfigError(f"texts must be strings, got {type(text).__name__}")
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@functools.cache
def _malloc_trim() -> Any:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(name).malloc_trim if name else None
    return None


def release_memory() -> None:
    """Hand freed heap back to the OS (glibc only; a no-op elsewhere).

    Batches of ever-different shapes fragment glibc's heap, which keeps the freed pages:
    measured, streaming 15k texts in chunks grew RSS by 340 MB without this, 6 MB with it.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _npy_header(rows: int, dim: int, size: int = 128) -> bytes:
    """A version-1.0 .npy header of a fixed byte size, so it can be rewritten in place."""
    body = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    pad = size - 10 - len(body) - 1
    if pad < 0:
        raise ConfigError(f"array of shape ({rows}, {dim}) is too large for an .npy header")
    return (
        b"\x93NUMPY\x01\x00"
        + (size - 10).to_bytes(2, "little")
        + (body + " " * pad + "\n").encode("latin1")
    )


def encode_to_disk(
    model: Any,
    texts: Iterable[str],
    path: str | os.PathLike[str],
    *,
    options: EncodeOptions = EncodeOptions(),
    prefix: str = "",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    desc: str | None = None,
    fingerprint: str | None = None,
) -> int:
    """Stream ``texts`` (any iterable, e.g. a file reader) into a float32 ``.npy`` at ``path``.

    Texts are read and encoded ``chunk_size`` at a time and appended with plain writes (not
    a memmap, whose dirty pages would count as resident memory), so peak memory does not
    grow with the corpus. The file appears atomically only when complete. Rows equal
    :func:`encode_texts` of the same texts and ``options``. Returns the number of rows.
    """
    from babelir.core.io import atomic_path

    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    cache = options.embedding_cache()
    opts = replace(options, cache=cache if cache is not None else False)  # open it once
    if cache is not None and fingerprint is None:
        fingerprint = memo_fingerprint(model)
    rows, dim = 0, embedding_dim(model)
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as f:
        f.write(_npy_header(0, dim))
        for chunk in _chunks(texts, chunk_size):
            emb = encode_texts(
                model,
                chunk,
                prefix=prefix,
                options=opts,
                desc=f"{desc or 'encoding'} {rows + len(chunk)}",
                fingerprint=fingerprint,
            )
            dim = emb.shape[1]
            f.write(np.ascontiguousarray(emb, dtype="<f4").tobytes())
            rows += len(chunk)
            del emb
            release_memory()
        f.seek(0)
        f.write(_npy_header(rows, dim))
        f.flush()
        os.fsync(f.fileno())
    return rows

"""Sharded, resumable, multi-process encoding of corpora too large for memory.

A corpus is a stream of ``(id, text)`` records cut into fixed-size shards in stream
order. Each shard is encoded with :func:`babelir.encoding.encoder.encode_texts` and written
atomically::

    <folder>/manifest.json          format and config; once every shard exists also the
                                    rows per shard, total rows and dimension
    <folder>/shard-00042.ids.json   the shard's ids (a JSON list), written first
    <folder>/shard-00042.npy        float32 [rows, dim], written last: present = done

Memory holds one shard of texts and embeddings whatever the corpus size. A run restarted
after a crash with the same arguments skips finished shards, after checking that their
ids still match the stream (a changed corpus is an error, never a silent mix) and that
the manifest's config (model fingerprint, prefix, passage format...) is the same.

Rank ``r`` of ``w`` processes encodes the shards ``i`` with ``i % w == r``. Every rank
reads the whole stream (parsing is cheap next to encoding), so all agree on the shard
boundaries without talking to each other, and whichever rank sees the last shard land
writes the manifest (identical bytes from any rank). Under ``torchrun`` the rank and world
size come from the environment or an initialised ``torch.distributed``; see
:mod:`babelir.core.distributed`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.distributed import barrier, init_distributed, rank_and_world, rank_device
from babelir.core.errors import BabelirError, ConfigError, DataError
from babelir.core.io import write_json, write_npy
from babelir.data.corpus import files_fingerprint
from babelir.encoding.encoder import encode_texts, model_device, resolve_precision
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.options import DEFAULT_SHARD_SIZE

__all__ = [
    "ShardSet",
    "barrier",
    "encode_shards",
    "files_fingerprint",
    "init_distributed",
    "rank_and_world",
    "rank_device",
]

SHARD_FORMAT = "babelir-shards-v1"
MANIFEST = "manifest.json"


# --------------------------------------------------------------------------- helpers


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def _chunks(records: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    chunk: list[tuple[str, str]] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise DataError(f"{path}: not valid JSON (delete the folder to start over)") from None
    if not isinstance(doc, dict) or doc.get("format") != SHARD_FORMAT:
        raise DataError(f"{path}: not a {SHARD_FORMAT} manifest")
    return doc


def _check_config(folder: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if diff:
        k = diff[0]
        raise ConfigError(
            f"{folder / MANIFEST}: shards were written with {k}={old.get(k)!r}, this run has "
            f"{k}={new.get(k)!r}; use another folder or delete this one"
        )


# --------------------------------------------------------------------------- shard sets


@dataclass
class ShardSet:
    """A complete shard folder: memory-mapped embeddings and their ids, shard by shard."""

    folder: Path
    config: dict[str, Any]
    rows: list[int]
    dim: int

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> ShardSet:
        folder = Path(folder)
        doc = _read_manifest(folder)
        if doc is None:
            raise DataError(f"{folder / MANIFEST}: no shard manifest (encode the corpus first)")
        if not doc.get("complete"):
            raise DataError(
                f"{folder / MANIFEST}: encoding is incomplete (rerun it to resume; every rank "
                f"of a multi-process run must finish)"
            )
        return cls(folder, doc["config"], [int(x) for x in doc["shards"]], int(doc["dim"]))

    @property
    def num_rows(self) -> int:
        return sum(self.rows)

    @property
    def num_shards(self) -> int:
        return len(self.rows)

    @property
    def offsets(self) -> np.ndarray:
        """Global row of each shard's first row, plus the total at the end."""
        return np.concatenate([[0], np.cumsum(self.rows)]).astype(np.int64)

    def vectors(self, i: int) -> np.ndarray:
        """Shard ``i``'s embeddings, memory-mapped (read lazily by the OS)."""
        return np.load(self.folder / f"{shard_name(i)}.npy", mmap_mode="r", allow_pickle=False)

    def ids(self, i: int) -> list[str]:
        return json.loads((self.folder / f"{shard_name(i)}.ids.json").read_text("utf-8"))

    def iter_vectors(self) -> Iterator[tuple[int, np.ndarray]]:
        """(global row offset, embeddings) per shard."""
        for i, off in enumerate(self.offsets[:-1].tolist()):
            yield off, self.vectors(i)

    def iter_ids(self) -> Iterator[str]:
        for i in range(self.num_shards):
            yield from self.ids(i)

    def ids_for(self, rows: np.ndarray) -> list[str]:
        """Ids of global ``rows`` (reading only the shards they fall in, once each)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = [""] * len(rows)
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for s in np.unique(shard_of).tolist():
            ids, base = self.ids(s), int(self.offsets[s])
            for k in np.flatnonzero(shard_of == s).tolist():
                out[k] = ids[int(rows[k]) - base]
        return out

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` distinct random rows and their vectors (float32), read shard by shard."""
        n = min(n, self.num_rows)
        rows = np.sort(np.random.default_rng(seed).choice(self.num_rows, n, replace=False))
        out = np.empty((n, self.dim), dtype=np.float32)
        offsets = self.offsets
        for i in range(self.num_shards):
            lo, hi = np.searchsorted(rows, offsets[i]), np.searchsorted(rows, offsets[i + 1])
            if hi > lo:
                out[lo:hi] = self.vectors(i)[rows[lo:hi] - offsets[i]]
        return rows, out

    def load_all(self) -> np.ndarray:
        """Every embedding in one array: for small corpora only."""
        return np.concatenate([np.asarray(v) for _, v in self.iter_vectors()], axis=0)


# --------------------------------------------------------------------------- encoding


@dataclass
class EncodeReport:
    """What one rank did; ``complete`` when every shard of the corpus exists."""

    folder: Path
    rank: int
    world_size: int
    shards_total: int
    shards_encoded: int
    shards_skipped: int
    rows_total: int
    rows_encoded: int
    seconds: float
    complete: bool

    @property
    def rows_per_s(self) -> float:
        return self.rows_encoded / self.seconds if self.seconds > 0 else 0.0


def _shard_done(folder: Path, i: int, ids: list[str]) -> bool:
    npy = folder / f"{shard_name(i)}.npy"
    if not npy.is_file():
        return False
    ids_file = folder / f"{shard_name(i)}.ids.json"
    try:
        stored = json.loads(ids_file.read_text("utf-8"))
        rows = np.load(npy, mmap_mode="r", allow_pickle=False).shape[0]
    except (OSError, ValueError):
        return False  # damaged (e.g. copied half-way): encode it again
    if stored != ids or rows != len(ids):
        raise DataError(
            f"{npy}: holds other passages than the corpus now gives for shard {i} (the corpus "
            f"or its order changed); use another folder or delete this one"
        )
    return True


def encode_shards(
    model: Any,
    records: Iterable[tuple[str, str]],
    folder: str | os.PathLike[str],
    *,
    options: EncodeOptions = EncodeOptions(),
    prefix: str = "",
    shard_size: int = DEFAULT_SHARD_SIZE,
    config: dict[str, Any] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> EncodeReport:
    """Encode ``(id, text)`` records into shards under ``folder`` (see module docstring).

    ``options`` says how to encode; its embedding cache is never used, as the shards are
    their own resumable cache. ``config`` (JSON values: model fingerprint, passage format, corpus
    fingerprint...) is stored in the manifest with the prefix, shard size and resolved
    precision, and must match on resume. ``records`` may be a one-shot iterator; it is not
    read at all when the folder is already complete. If reading ``records`` fails (a bad
    input line), what this call wrote is removed again, so no manifest of a corpus that
    cannot be read stays behind. Under an initialised process group all ranks wait for
    each other before returning.
    """
    if shard_size < 1:
        raise ConfigError(f"shard size must be >= 1, got {shard_size}")
    if rank is None or world_size is None:
        r, w = rank_and_world()
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in 0..{world_size - 1}")
    folder = Path(folder)
    # The resolved precision is part of the config: shards encoded in bf16 and fp32 must
    # not be mixed in one folder on resume.
    resolved = resolve_precision(options.precision, model_device(model))
    cfg = {"prefix": prefix, "shard_size": shard_size, "precision": resolved, **(config or {})}
    t0 = time.perf_counter()
    old = _read_manifest(folder)
    if old is not None:
        _check_config(folder, old["config"], cfg)
        if old.get("complete"):
            n = len(old["shards"])
            return EncodeReport(folder, rank, world_size, n, 0, n, sum(old["shards"]), 0, 0.0, True)
    created_folder = not folder.exists()
    written: list[Path] = []  # this call's files, removed again if the input is bad
    shard_opts = replace(options, show_progress=False, cache=False)

    bar = None
    if options.show_progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(unit="passage", desc=f"encoding {folder.name}", dynamic_ncols=True)
    n_shards = rows_total = encoded = skipped = rows_encoded = 0
    try:
        for i, chunk in enumerate(_chunks(records, shard_size)):
            n_shards, rows_total = i + 1, rows_total + len(chunk)
            if i % world_size != rank:
                continue
            ids = [str(x) for x, _ in chunk]
            if old is None and not (folder / MANIFEST).is_file():
                # Written once a first shard of input has been read: a corpus that fails
                # on its first lines leaves no manifest behind.
                folder.mkdir(parents=True, exist_ok=True)
                manifest = {"format": SHARD_FORMAT, "config": cfg, "complete": False}
                write_json(folder / MANIFEST, manifest)
                written.append(folder / MANIFEST)
            if _shard_done(folder, i, ids):
                skipped += 1
            else:
                emb = encode_texts(
                    model,
                    [t for _, t in chunk],
                    prefix=prefix,
                    options=shard_opts,
                    desc=shard_name(i),
                )
                for name in (f"{shard_name(i)}.ids.json", f"{shard_name(i)}.npy"):
                    written.append(folder / name)
                write_json(folder / f"{shard_name(i)}.ids.json", ids, indent=None)
                write_npy(folder / f"{shard_name(i)}.npy", np.asarray(emb, dtype=np.float32))
                encoded += 1
                rows_encoded += len(chunk)
                if on_shard is not None:
                    on_shard(i)
            if bar is not None:
                bar.update(len(chunk) * world_size)
    except BabelirError:
        _remove(written, folder if created_folder else None)
        raise
    finally:
        if bar is not None:
            bar.close()
    if n_shards == 0:
        raise DataError(f"{folder}: the corpus is empty (no passages to encode)")
    barrier()
    complete = _finish(folder, cfg, n_shards)
    return EncodeReport(
        folder,
        rank,
        world_size,
        n_shards,
        encoded,
        skipped,
        rows_total,
        rows_encoded,
        time.perf_counter() - t0,
        complete,
    )


def _remove(paths: Sequence[Path], folder: Path | None) -> None:
    """Delete ``paths`` and then ``folder`` if it is left empty (best effort)."""
    for p in reversed(paths):
        p.unlink(missing_ok=True)
    if folder is not None:
        with contextlib.suppress(OSError):  # not empty: another rank's files, or the user's
            folder.rmdir()


def _finish(folder: Path, cfg: dict[str, Any], n_shards: int) -> bool:
    """Write the complete manifest if every shard exists (any rank may; same bytes)."""
    rows, dim = [], 0
    for i in range(n_shards):
        npy = folder / f"{shard_name(i)}.npy"
        if not npy.is_file():
            return False
        shape = np.load(npy, mmap_mode="r", allow_pickle=False).shape
        rows.append(int(shape[0]))
        dim = int(shape[1])
    write_json(
        folder / MANIFEST,
        {
            "format": SHARD_FORMAT,
            "config": cfg,
            "complete": True,
            "num_rows": sum(rows),
            "dim": dim,
            "dtype": "float32",
            "shards": rows,
        },
    )
    return True

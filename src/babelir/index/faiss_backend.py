"""The FAISS backend: which index to build, exact and approximate search, recall check.

Index kinds (all inner product on L2-normalised embeddings, i.e. cosine):

* ``flat`` (default): exact. No index file: each shard is memory-mapped and searched with
  ``faiss.knn``, and the per-shard top-k are merged with ``faiss.ResultHeap``, so memory
  stays one shard whatever the corpus size.
* ``ivf``: ``IndexIVFFlat`` with ``nlist`` k-means cells (default ~4 sqrt(N)), trained on
  a sample, ``nprobe`` cells probed per query.
* ``hnsw``: ``IndexHNSWFlat`` with ``M`` links per node, ``efSearch`` at query time.
* any other string is a FAISS ``index_factory`` description (``"IVF4096,PQ32"``,
  ``"Flat"`` for an in-memory exact index, ...).

Approximate kinds are saved with ``faiss.write_index`` (atomically) and their recall@k
against exact search is measured and recorded. What a kind asks of the corpus is checked
before FAISS allocates or trains anything (:func:`check_corpus_size`): IVF cells need a
passage each (FAISS advises 39), a product quantizer with ``nbits`` bits ``2**nbits``
training points; a corpus too small is a one-line error naming the largest valid value,
not a RuntimeError from k-means or a MemoryError from a billion empty cells.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.errors import ConfigError, DataError
from babelir.core.io import atomic_path, write_json
from babelir.index.shards import ShardSet

INDEX_KINDS = ("flat", "ivf", "hnsw")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError("FAISS is not installed: pip install 'babelir[faiss]'") from None
    return faiss


@dataclass
class IndexSpec:
    """Which FAISS index to build and how to search it (None: a size-based default)."""

    kind: str = "flat"
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    train_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.kind.strip():
            raise ConfigError("index kind is empty (use flat, ivf, hnsw or a FAISS factory string)")
        for name in ("nlist", "nprobe", "train_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"index {name} must be >= 1, got {value}")
        if self.hnsw_m < 2 or self.ef_search < 1 or self.ef_construction < 1:
            raise ConfigError("index: hnsw M must be >= 2 and efSearch/efConstruction >= 1")

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    def resolved(self, num_rows: int) -> IndexSpec:
        """Fill size-dependent defaults: nlist ~ 4 sqrt(N) (>= 39 training points per cell)."""
        if self.kind != "ivf":
            return self
        nlist = self.nlist or max(1, min(int(4 * math.sqrt(num_rows)), num_rows // 39))
        nprobe = min(nlist, self.nprobe or max(1, nlist // 16))
        return IndexSpec(**{**asdict(self), "nlist": nlist, "nprobe": nprobe})

    def describe(self) -> dict[str, Any]:
        if self.kind == "ivf":
            return {"kind": "ivf", "nlist": self.nlist, "nprobe": self.nprobe}
        if self.kind == "hnsw":
            return {
                "kind": "hnsw",
                "M": self.hnsw_m,
                "efConstruction": self.ef_construction,
                "efSearch": self.ef_search,
            }
        if self.kind == "flat":
            return {"kind": "flat"}
        return {"kind": self.kind, "nprobe": self.nprobe, "efSearch": self.ef_search}


def exact_search(shards: ShardSet, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner product over every shard; rows are global, -1 pads short results."""
    faiss = _faiss()
    q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, shards.dim)
    if q.shape[0] == 0:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    heap = faiss.ResultHeap(q.shape[0], k, keep_max=True)
    for offset, vectors in shards.iter_vectors():
        kk = min(k, vectors.shape[0])
        scores, rows = faiss.knn(q, vectors, kk, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, np.where(rows >= 0, rows + offset, -1))
    heap.finalize()
    return heap.D, heap.I


def _set_search_params(index: Any, spec: IndexSpec) -> None:
    """nprobe / efSearch are search-time knobs: set them on whatever the index contains."""
    faiss = _faiss()
    ps = faiss.ParameterSpace()
    if spec.nprobe is not None and faiss.try_extract_index_ivf(index) is not None:
        ps.set_index_parameter(index, "nprobe", spec.nprobe)
    if spec.kind == "hnsw" or "HNSW" in spec.kind:
        # An HNSW coarse quantizer inside a factory index may not take the name: skip it.
        with contextlib.suppress(RuntimeError):
            ps.set_index_parameter(index, "efSearch", spec.ef_search)


#: FAISS k-means warns below this many training points per centroid.
POINTS_PER_CELL = 39


class IndexSettingsError(ConfigError):
    """Index settings the corpus cannot support, found once its size is known (after the
    shards are encoded: the caller keeps them, so a rerun with valid settings reuses them)."""


def _factory_cells(kind: str) -> int | None:
    """IVF cells of a factory string (``"IVF4096,PQ32"`` -> 4096), read before FAISS
    allocates them (``IVF1000000000`` would not fit in memory)."""
    m = re.search(r"\bIVF(\d+)", kind)
    return int(m.group(1)) if m else None


def _cells_error(option: str, cells: int, num_rows: int) -> IndexSettingsError:
    advised = max(1, num_rows // POINTS_PER_CELL)
    return IndexSettingsError(
        f"{option}: {cells} IVF cells need at least {cells} passages, the corpus has "
        f"{num_rows} (largest valid: {num_rows}; FAISS advises >= {POINTS_PER_CELL} per cell, "
        f"i.e. at most {advised})"
    )


def check_corpus_size(spec: IndexSpec, num_rows: int) -> None:
    """Refuse (IndexSettingsError) IVF cells the corpus cannot fill, before anything is
    built."""
    spec = spec.resolved(num_rows)
    if spec.kind == "ivf" and spec.nlist is not None and spec.nlist > num_rows:
        raise _cells_error(f"--nlist {spec.nlist}", spec.nlist, num_rows)
    cells = _factory_cells(spec.kind) if spec.kind not in INDEX_KINDS else None
    if cells is not None and cells > num_rows:
        raise _cells_error(f"--index {spec.kind!r}", cells, num_rows)


def check_spec(spec: IndexSpec, dim: int) -> None:
    """Parse a factory string for ``dim``-d vectors before the corpus is encoded, so a
    typo fails in seconds (cell counts too large to create just to check are left to
    :func:`check_corpus_size`, once the corpus size is known)."""
    if spec.kind in INDEX_KINDS or dim < 1:
        return
    cells = _factory_cells(spec.kind)
    if cells is not None and cells > 1 << 20:
        return
    faiss = _faiss()
    try:
        faiss.index_factory(dim, spec.kind, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()[-1]
        raise ConfigError(f"FAISS index factory string {spec.kind!r}: {msg}") from None


def _parts(index: Any) -> list[Any]:
    """``index`` and the indexes it wraps (pre-transform, HNSW storage), downcast."""
    faiss = _faiss()
    out, todo = [], [index]
    while todo:
        ix = faiss.downcast_index(todo.pop())
        out.append(ix)
        todo += [getattr(ix, a) for a in ("index", "storage") if getattr(ix, a, None) is not None]
    return out


def _check_training(index: Any, spec: IndexSpec, num_rows: int) -> None:
    """Refuse a product quantizer with more centroids than training points (FAISS's
    k-means cannot train ``2**nbits`` centroids from fewer points)."""
    for part in _parts(index):
        pq = getattr(part, "pq", None)
        ksub = int(getattr(pq, "ksub", 0) or 0)
        if ksub > num_rows:
            bits = max(1, int(math.log2(max(num_rows, 2))))
            raise IndexSettingsError(
                f"--index {spec.kind!r}: its product quantizer trains {ksub} centroids "
                f"({int(pq.nbits)} bits) and needs at least {ksub} passages, the corpus has "
                f"{num_rows} (largest valid: {bits} bits, e.g. 'PQ{int(pq.M)}x{bits}')"
            )


def build_faiss_index(shards: ShardSet, spec: IndexSpec, *, show_progress: bool = False) -> Any:
    """Train (on a sample) and fill an approximate FAISS index, shard by shard.

    The corpus size is checked against the index's needs first (:func:`check_corpus_size`);
    what FAISS still refuses while training or adding is a one-line ConfigError.
    """
    faiss = _faiss()
    n = shards.num_rows
    check_corpus_size(spec, n)
    spec = spec.resolved(n)
    d, ip = shards.dim, faiss.METRIC_INNER_PRODUCT
    try:
        if spec.kind == "ivf":
            assert spec.nlist is not None
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, spec.nlist, ip)
        elif spec.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, spec.hnsw_m, ip)
            index.hnsw.efConstruction = spec.ef_construction
        elif spec.kind == "flat":
            raise ConfigError("the flat index searches the shards directly; it has no FAISS file")
        else:
            try:
                index = faiss.index_factory(d, spec.kind, ip)
            except RuntimeError as e:
                msg = str(e).strip().splitlines()[-1]
                raise ConfigError(f"FAISS index factory string {spec.kind!r}: {msg}") from None
    except MemoryError:
        raise IndexSettingsError(f"--index {spec.kind!r}: not enough memory to create it") from None
    _check_training(index, spec, n)
    try:
        if not index.is_trained:
            # FAISS wants >= 39 points per k-means cell; 50 per cell, at least 20k, suffices.
            n_train = spec.train_size or max(50 * (spec.nlist or 256), 20_000)
            _, sample = shards.sample(n_train, seed=spec.seed)
            index.train(sample)
        for _, vectors in _progress(shards, show_progress, "indexing"):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    except (RuntimeError, MemoryError) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise IndexSettingsError(
            f"FAISS could not build {spec.kind!r} on {n} passages: {msg}"
        ) from None
    _set_search_params(index, spec)
    return index


def _progress(shards: ShardSet, show: bool, desc: str) -> Iterable[tuple[int, np.ndarray]]:
    if not show:
        return shards.iter_vectors()
    from tqdm.auto import tqdm

    return tqdm(shards.iter_vectors(), total=shards.num_shards, desc=desc, unit="shard")


#: Files up to this size get a SHA-256 in their record (verified on every load); larger
#: ones only their size: hashing tens of GB at each search would cost more than the load.
HASH_LIMIT = 2 << 30


def file_record(path: Path) -> dict[str, Any]:
    """``{"bytes", "sha256"}`` of a written index file (sha256 None above HASH_LIMIT)."""
    size = path.stat().st_size
    digest = None
    if size <= HASH_LIMIT:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"bytes": size, "sha256": digest}


def check_file(path: Path, record: dict[str, Any], what: str) -> None:
    """Refuse (DataError) a file whose size or hash differs from ``record`` (``what``
    names where the record is): truncation is caught by content, not left to FAISS."""
    if not path.is_file():
        raise DataError(f"{path}: FAISS index file not found")
    size = path.stat().st_size
    if size != record.get("bytes"):
        raise DataError(
            f"{path}: {size} bytes, {what} records {record.get('bytes')} (truncated or "
            f"replaced; rebuild the index)"
        )
    if record.get("sha256") and file_record(path)["sha256"] != record["sha256"]:
        raise DataError(f"{path}: content differs from the SHA-256 {what} records (rebuild it)")


def save_faiss(index: Any, path: Path) -> dict[str, Any]:
    """Write ``index`` atomically; returns its :func:`file_record`, for the caller's
    metadata (so a later load can tell a truncated file by its size and hash)."""
    faiss = _faiss()
    with atomic_path(path, suffix=".faiss") as tmp:
        faiss.write_index(index, str(tmp))
        record = file_record(tmp)
    return record


def load_faiss(
    path: Path, spec: IndexSpec | None = None, *, record: dict[str, Any] | None = None
) -> Any:
    """Read an index (``record``: its :func:`file_record`, checked first when given)."""
    faiss = _faiss()
    if not path.is_file():
        raise DataError(f"{path}: FAISS index file not found")
    if record is not None:
        check_file(path, record, "its metadata")
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, MemoryError) as e:
        why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: not a readable FAISS index ({why})") from None
    if spec is not None:
        _set_search_params(index, spec)
    return index


def approximate_search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def overlap_at_k(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean |approx top-k ∩ exact top-k| / |exact top-k| over queries (recall vs exact)."""
    vals = []
    for a, e in zip(approx[:, :k], exact[:, :k], strict=True):
        truth = set(e[e >= 0].tolist())
        if truth:
            vals.append(len(truth & set(a[a >= 0].tolist())) / len(truth))
    return float(np.mean(vals)) if vals else float("nan")


def recall_vs_exact(
    index: Any,
    shards: ShardSet,
    *,
    queries: np.ndarray | None = None,
    k: int = 100,
    num_queries: int = 500,
    seed: int = 1,
) -> dict[str, Any]:
    """recall@k of an approximate index against exact search.

    Without ``queries``, sampled corpus vectors serve as queries ("self" queries: each
    finds itself first, so this slightly flatters top-1 but not recall@100).
    """
    source = "queries"
    if queries is None:
        _, queries = shards.sample(num_queries, seed=seed)
        source = "corpus vectors"
    t0 = time.perf_counter()
    _, exact = exact_search(shards, queries, k)
    t1 = time.perf_counter()
    _, approx = approximate_search(index, queries, k)
    t2 = time.perf_counter()
    n = len(queries)
    return {
        "k": k,
        "recall": round(overlap_at_k(approx, exact, k), 4),
        "num_queries": n,
        "query_source": source,
        "exact_ms_per_query": round(1000 * (t1 - t0) / max(n, 1), 3),
        "approx_ms_per_query": round(1000 * (t2 - t1) / max(n, 1), 3),
    }


def cached_faiss_index(
    shards: ShardSet, spec: IndexSpec, *, show_progress: bool = False
) -> tuple[Any, Path]:
    """An approximate index of ``shards``, built once per shard folder and settings.

    Saved next to the shards under a name derived from the resolved settings, so another
    run with the same settings loads it instead of building it again.
    """
    spec = spec.resolved(shards.num_rows)
    tag = hashlib.sha256(json.dumps(spec.describe(), sort_keys=True).encode()).hexdigest()[:10]
    path = shards.folder / f"index-{spec.kind.replace(',', '_')}-{tag}.faiss"
    sidecar = path.with_suffix(".json")  # the file's size and hash: a cut file is rebuilt
    if path.is_file() and sidecar.is_file():
        try:
            record = json.loads(sidecar.read_text("utf-8"))
            check_file(path, record, str(sidecar))
            index = load_faiss(path, spec)
            if index.ntotal == shards.num_rows:
                return index, path
        except (ValueError, TypeError, AttributeError, DataError):
            pass  # unreadable, truncated or stale: a cache, so build it again
    index = build_faiss_index(shards, spec, show_progress=show_progress)
    record = save_faiss(index, path)
    write_json(sidecar, record)
    return index, path

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
against exact search is measured and recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelir.errors import ConfigError, DataError
from babelir.io import atomic_path
from babelir.shards import ShardSet

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


def build_faiss_index(shards: ShardSet, spec: IndexSpec, *, show_progress: bool = False) -> Any:
    """Train (on a sample) and fill an approximate FAISS index, shard by shard."""
    faiss = _faiss()
    spec = spec.resolved(shards.num_rows)
    d, ip = shards.dim, faiss.METRIC_INNER_PRODUCT
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
    if not index.is_trained:
        # FAISS wants >= 39 points per k-means cell; 50 per cell, at least 20k, suffices.
        n_train = spec.train_size or max(50 * (spec.nlist or 256), 20_000)
        _, sample = shards.sample(n_train, seed=spec.seed)
        index.train(sample)
    for _, vectors in _progress(shards, show_progress, "indexing"):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _set_search_params(index, spec)
    return index


def _progress(shards: ShardSet, show: bool, desc: str) -> Iterable[tuple[int, np.ndarray]]:
    if not show:
        return shards.iter_vectors()
    from tqdm.auto import tqdm

    return tqdm(shards.iter_vectors(), total=shards.num_shards, desc=desc, unit="shard")


def save_faiss(index: Any, path: Path) -> None:
    faiss = _faiss()
    with atomic_path(path, suffix=".faiss") as tmp:
        faiss.write_index(index, str(tmp))


def load_faiss(path: Path, spec: IndexSpec | None = None) -> Any:
    faiss = _faiss()
    if not path.is_file():
        raise DataError(f"{path}: FAISS index file not found")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        raise DataError(f"{path}: not a readable FAISS index ({str(e).splitlines()[-1]})") from None
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
    if path.is_file():
        return load_faiss(path, spec), path
    index = build_faiss_index(shards, spec, show_progress=show_progress)
    save_faiss(index, path)
    return index, path

"""Dense retrieval over encoded shards with FAISS, and a docstore to show the results.

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
against exact search is measured when built and recorded. LAReQA-size benchmarks do not
come here: they score the full similarity matrix (:mod:`babelir.evaluation.metrics`).

An index folder (``babelir index``) holds::

    shards/          embeddings + ids (babelir.shards): resumable, multi-process
    docstore.sqlite  row -> docid, lang, title, text (SQLite: no pickle, random access)
    index.faiss      approximate kinds only
    index.json       model, prefixes, passage format, kind and parameters, row counts per
                     language, recall vs exact; written last, so present = complete

Corpora (:func:`open_corpus`): MIRACL-format JSONL folders, mMARCO collections, LAReQA
benchmarks (one passage per candidate sentence) or a JSONL file; all languages pooled.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelir import __version__
from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT, Passage, format_passage
from babelir.errors import ConfigError, DataError
from babelir.io import atomic_path, write_json
from babelir.shards import ShardSet, barrier, encode_shards, files_fingerprint

INDEX_KINDS = ("flat", "ivf", "hnsw")
INDEX_META = "index.json"
FAISS_FILE = "index.faiss"
DOCSTORE = "docstore.sqlite"
SHARDS = "shards"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError("FAISS is not installed: pip install 'babelir[faiss]'") from None
    return faiss


# --------------------------------------------------------------------------- specs


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


# --------------------------------------------------------------------------- search


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


# --------------------------------------------------------------------------- docstore


class Docstore:
    """Row -> (docid, lang, title, text) in SQLite: random access without loading texts."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise DataError(f"{path}: docstore not found (rebuild the index)")
        self.path = path
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

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
        return int(self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def get(self, rows: Sequence[int]) -> list[Passage | None]:
        wanted = [int(r) for r in rows if int(r) >= 0]
        found: dict[int, Passage] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            sql = f"SELECT row, docid, lang, title, text FROM docs WHERE row IN ({marks})"
            for row, docid, lang, title, text in self._conn.execute(sql, part):
                found[row] = Passage(docid, title, text, lang)
        return [found.get(int(r)) for r in rows]

    def close(self) -> None:
        self._conn.close()


# --------------------------------------------------------------------------- corpora


@dataclass
class CorpusSource:
    """A stream of passages (all languages pooled, in a fixed order) and its files."""

    name: str
    languages: list[str]
    files: list[Path]
    reader: Callable[[], Iterator[Passage]]

    def passages(self) -> Iterator[Passage]:
        return self.reader()

    def fingerprint(self) -> str:
        return files_fingerprint(self.files)


def _miracl_source(root: Path, languages: list[str] | None) -> CorpusSource:
    from babelir.data.miracl import corpus_files, iter_jsonl_passages

    if languages is None:
        prefix = "miracl-corpus-v1.0-"
        languages = sorted(
            p.name.removeprefix(prefix) for p in root.iterdir() if p.is_dir() and p.name[0] != "."
        )
    per_lang = [(lang, corpus_files(root, lang)) for lang in languages]

    def read() -> Iterator[Passage]:
        for lang, files in per_lang:
            yield from iter_jsonl_passages(files, lang)

    return CorpusSource(str(root), languages, [f for _, fs in per_lang for f in fs], read)


def _mmarco_source(root: Path, languages: list[str] | None) -> CorpusSource:
    from babelir.data.mmarco import MMarco, iter_collection

    mm = MMarco.open(root)
    langs = languages or mm.collection_languages()
    paths = [(lang, mm.collection_path(lang)) for lang in langs]

    def read() -> Iterator[Passage]:
        for lang, path in paths:
            yield from iter_collection(path, lang)

    return CorpusSource(str(mm.root), langs, [p for _, p in paths], read)


def _lareqa_source(name: str, data_dir: Path, languages: list[str] | None) -> CorpusSource:
    from babelir.data.lareqa import load_benchmark

    bench = load_benchmark(name, data_dir, languages=languages)
    files = [bench.path / f"{lang}.json" for lang in bench.languages]

    def read() -> Iterator[Passage]:
        counters: dict[str, int] = {}
        for lang, sent in zip(bench.candidate_langs, bench.candidate_sentences, strict=True):
            k = counters[lang] = counters.get(lang, -1) + 1
            yield Passage(str(k), "", sent, lang)

    return CorpusSource(str(bench.path), bench.languages, files, read)


def _jsonl_source(path: Path, lang: str, languages: list[str] | None) -> CorpusSource:
    from babelir.data.miracl import iter_jsonl_passages

    def read() -> Iterator[Passage]:
        for p in iter_jsonl_passages([path], lang):
            if languages is None or p.lang in languages:
                yield p

    return CorpusSource(str(path), languages or [], [path], read)


def open_corpus(
    spec: str | os.PathLike[str],
    data_dir: Path,
    *,
    languages: Sequence[str] | None = None,
    lang: str = "und",
) -> CorpusSource:
    """A corpus by name (``miracl``, ``mmarco``, ``xquad-r``, ``mlqa-r``) or path.

    Paths: a ``.jsonl[.gz]`` file of ``{"docid", "title", "text"[, "lang"]}`` (``lang``
    fills missing languages); a folder of ``<lang>/*.jsonl[.gz]`` (MIRACL format); an
    mMARCO folder; a LAReQA folder of ``<lang>.json``.
    """
    from babelir.data.lareqa import KNOWN_BENCHMARKS
    from babelir.data.miracl import miracl_root

    langs = list(languages) if languages else None
    text = str(spec)
    if text == "miracl":
        root = miracl_root(data_dir) / "corpus"
        if not root.is_dir():
            raise DataError(
                f"{root}: no MIRACL corpus (it is not fetched; download miracl/miracl-corpus "
                f"into <data_dir>/miracl/corpus/<lang>/ or pass its folder)"
            )
        return _miracl_source(root, langs)
    if text == "mmarco":
        return _mmarco_source(data_dir / "mmarco", langs)
    if text in KNOWN_BENCHMARKS:
        return _lareqa_source(text, data_dir, langs)
    path = Path(text).expanduser()
    if path.is_file():
        if not path.name.endswith((".jsonl", ".jsonl.gz")):
            raise DataError(f"{path}: a corpus file must be .jsonl or .jsonl.gz")
        return _jsonl_source(path, lang, langs)
    if not path.is_dir():
        raise DataError(
            f"corpus {text!r}: not a known name (miracl, mmarco, xquad-r, mlqa-r) nor a file "
            f"or folder"
        )
    from babelir.data.mmarco import MMarco

    if MMarco.detect(path):
        return _mmarco_source(path, langs)
    if any(path.glob("*/*.jsonl")) or any(path.glob("*/*.jsonl.gz")):
        return _miracl_source(path, langs)
    if any(path.glob("*.json")):
        return _lareqa_source(str(path), data_dir, langs)
    raise DataError(
        f"{path}: not a corpus folder (expected <lang>/*.jsonl[.gz], an mMARCO layout, or "
        f"<lang>.json LAReQA files)"
    )


# --------------------------------------------------------------------------- index folders


@dataclass
class Hit:
    rank: int
    score: float
    row: int
    docid: str
    lang: str
    title: str
    text: str


@dataclass
class BuildReport:
    folder: Path
    meta: dict[str, Any] | None
    encode: Any = None
    timing_s: dict[str, float] = field(default_factory=dict)


def build_search_index(
    model: Any,
    corpus: CorpusSource,
    folder: str | os.PathLike[str],
    *,
    spec: IndexSpec | None = None,
    model_name: str = "",
    model_fingerprint: str = "",
    query_prefix: str = "",
    passage_prefix: str = "",
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    max_seq_length: int | None = None,
    shard_size: int = 50_000,
    batch_size: int = 64,
    overwrite: bool = False,
    show_progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> BuildReport:
    """Encode ``corpus`` into ``folder`` and build its docstore and index.

    Rerunning after a crash resumes the encoding. Under torchrun each rank encodes its
    shards; rank 0 (once all shards exist) writes the docstore and index, the other ranks
    return with ``meta=None``. ``overwrite`` rebuilds the docstore/index and keeps the
    shards when they were made with the same model, prefix and passage format.
    """
    from babelir.shards import rank_and_world

    spec = spec or IndexSpec()
    folder = Path(folder)
    meta_path = folder / INDEX_META
    r, w = rank_and_world()
    rank = r if rank is None else rank
    world_size = w if world_size is None else world_size
    if meta_path.exists() and not overwrite:
        raise ConfigError(f"{folder} already holds an index; pass --overwrite to rebuild it")
    config = {
        "model_fingerprint": model_fingerprint,
        "passage_format": passage_format,
        "max_seq_length": max_seq_length,
        "corpus": corpus.fingerprint(),
    }
    if overwrite and rank == 0:
        meta_path.unlink(missing_ok=True)
        _drop_stale_shards(folder / SHARDS, {"prefix": passage_prefix, **config})
    barrier()  # no rank starts encoding into shards rank 0 may still be deleting
    t0 = time.perf_counter()
    records = (
        (f"{p.lang}:{p.docid}", format_passage(p, passage_format)) for p in corpus.passages()
    )
    rep = encode_shards(
        model,
        records,
        folder / SHARDS,
        prefix=passage_prefix,
        shard_size=shard_size,
        batch_size=batch_size,
        config=config,
        rank=rank,
        world_size=world_size,
        show_progress=show_progress,
    )
    t1 = time.perf_counter()
    # Rank 0 finishes under a process group (encode_shards waited for all ranks); without
    # one, whichever rank saw the last shard land does.
    if not rep.complete or (rank != 0 and _process_group()):
        return BuildReport(folder, None, rep, {"encode": round(t1 - t0, 3)})
    shards = ShardSet.open(folder / SHARDS)
    counts = Docstore.build(folder / DOCSTORE, corpus.passages())
    if sum(counts.values()) != shards.num_rows:
        raise DataError(
            f"{corpus.name}: gave {sum(counts.values())} passages now but {shards.num_rows} "
            f"when encoded (the corpus changed while indexing)"
        )
    t2 = time.perf_counter()
    spec = spec.resolved(shards.num_rows)
    recall = None
    if spec.exact:
        (folder / FAISS_FILE).unlink(missing_ok=True)
    else:
        index = build_faiss_index(shards, spec, show_progress=show_progress)
        save_faiss(index, folder / FAISS_FILE)
        recall = recall_vs_exact(index, shards, k=min(100, shards.num_rows))
    t3 = time.perf_counter()
    meta = {
        "babelir_version": __version__,
        "model": model_name,
        "model_fingerprint": model_fingerprint,
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
        "passage_format": passage_format,
        "max_seq_length": max_seq_length,
        "corpus": corpus.name,
        "languages": counts,
        "num_rows": shards.num_rows,
        "dim": shards.dim,
        "index": spec.describe(),
        "recall_vs_exact": recall,
        "timing_s": {
            "encode": round(t1 - t0, 3),
            "docstore": round(t2 - t1, 3),
            "index": round(t3 - t2, 3),
        },
    }
    write_json(meta_path, meta)
    return BuildReport(folder, meta, rep, meta["timing_s"])


def _process_group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _drop_stale_shards(shards_dir: Path, config: dict[str, Any]) -> None:
    """Delete shards made with another model/prefix/format (``--overwrite``)."""
    manifest = shards_dir / "manifest.json"
    if not manifest.is_file():
        return
    try:
        old = json.loads(manifest.read_text("utf-8")).get("config", {})
    except ValueError:
        old = {}
    if any(old.get(k) != v for k, v in config.items()):
        shutil.rmtree(shards_dir)


class SearchIndex:
    """An index folder opened for queries (see module docstring)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> None:
        """Open ``folder``; ``nprobe`` / ``ef_search`` override the saved search settings."""
        self.folder = Path(folder)
        meta_path = self.folder / INDEX_META
        if not meta_path.is_file():
            raise DataError(
                f"{meta_path}: not an index folder, or its build did not finish (rerun "
                f"'babelir index' to resume)"
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text("utf-8"))
        saved = self.meta["index"]
        self.spec = IndexSpec(
            kind=saved["kind"],
            nlist=saved.get("nlist"),
            nprobe=nprobe or saved.get("nprobe"),
            hnsw_m=saved.get("M", 32),
            ef_search=ef_search or saved.get("efSearch") or 128,
        )
        self.shards = ShardSet.open(self.folder / SHARDS)
        self.docstore = Docstore(self.folder / DOCSTORE)
        self.faiss_index = (
            None if self.spec.exact else load_faiss(self.folder / FAISS_FILE, self.spec)
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if self.faiss_index is None:
            return exact_search(self.shards, queries, k)
        return approximate_search(self.faiss_index, queries, k)

    def hits(self, scores: np.ndarray, rows: np.ndarray) -> list[list[Hit]]:
        out = []
        for srow, rrow in zip(scores, rows, strict=True):
            docs = self.docstore.get(rrow.tolist())
            hits = []
            for s, r, doc in zip(srow.tolist(), rrow.tolist(), docs, strict=True):
                if r >= 0 and doc is not None:
                    hits.append(
                        Hit(len(hits) + 1, float(s), r, doc.docid, doc.lang, doc.title, doc.text)
                    )
            out.append(hits)
        return out

    def search_texts(
        self, model: Any, queries: Sequence[str], k: int = 10, *, batch_size: int = 64
    ) -> list[list[Hit]]:
        from babelir.encoding import encode_texts

        empty = [i for i, q in enumerate(queries) if not q.strip()]
        if empty:
            raise ConfigError(f"query {empty[0] + 1} is empty")
        q = encode_texts(
            model,
            list(queries),
            prefix=self.meta.get("query_prefix", ""),
            batch_size=batch_size,
            show_progress=False,
        )
        if q.shape[1] != self.shards.dim:
            raise ConfigError(
                f"the model gives {q.shape[1]}-d embeddings, the index holds {self.shards.dim}-d "
                f"ones (search with the model that built it: {self.meta.get('model')})"
            )
        return self.hits(*self.search(q, k))

    def close(self) -> None:
        self.docstore.close()

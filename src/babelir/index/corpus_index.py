"""Encode a corpus to shards -> make it searchable -> check the search against exact.

The one routine behind ``babelir index`` and the MIRACL evaluation, so both encode
with the same options, key their shards by the same config (a changed model, prefix,
passage format, truncation, precision or corpus never reuses stale shards) and measure
approximate search the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.distributed import in_process_group, rank_and_world
from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT, Passage, format_passage
from babelir.encoding.options import EncodeOptions
from babelir.index.faiss_backend import (
    IndexSpec,
    approximate_search,
    build_faiss_index,
    cached_faiss_index,
    exact_search,
    overlap_at_k,
    recall_vs_exact,
    save_faiss,
)
from babelir.index.shards import DEFAULT_SHARD_SIZE, EncodeReport, ShardSet, encode_shards


def shard_config(
    model: Any, *, model_fingerprint: str, passage_format: str, corpus_fingerprint: str
) -> dict[str, Any]:
    """What, besides prefix and precision (added by ``encode_shards``), shards depend on."""
    return {
        "model_fingerprint": model_fingerprint,
        "passage_format": passage_format,
        "max_seq_length": getattr(model, "max_seq_length", None),
        "corpus": corpus_fingerprint,
    }


@dataclass
class CorpusIndex:
    """A fully encoded corpus and the index that searches it (None: exact search)."""

    shards: ShardSet
    spec: IndexSpec
    faiss_index: Any | None
    encode: EncodeReport
    recall: dict[str, Any] | None = None
    timing_s: dict[str, float] = field(default_factory=dict)
    #: size and hash of the saved index file (``faiss_backend.file_record``), when saved
    faiss_file: dict[str, Any] | None = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, global rows) per query; rows are -1 where fewer than k exist."""
        if self.faiss_index is None:
            return exact_search(self.shards, queries, k)
        return approximate_search(self.faiss_index, queries, k)

    def check_recall(
        self, queries: np.ndarray | None = None, *, k: int = 100, num_queries: int = 500
    ) -> dict[str, Any] | None:
        """recall@k of the approximate index against exact search (None when exact).

        ``queries`` (their first ``num_queries``) or, without them, sampled corpus vectors.
        The result is kept in :attr:`recall`.
        """
        if self.faiss_index is None:
            return None
        k = min(k, self.shards.num_rows)
        if queries is not None:
            queries = queries[:num_queries]
        self.recall = recall_vs_exact(
            self.faiss_index, self.shards, queries=queries, k=k, num_queries=num_queries
        )
        return self.recall

    def search_checked(
        self, queries: np.ndarray, k: int, *, num_check: int = 200
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
        """:meth:`search`, plus recall@k against exact search of its first ``num_check``
        queries (None when exact), scored on the very rows returned: a second search of
        fewer queries may break ties differently."""
        t0 = time.perf_counter()
        scores, rows = self.search(queries, k)
        t1 = time.perf_counter()
        if self.faiss_index is None:
            return scores, rows, None
        n = min(num_check, len(queries))
        _, exact = exact_search(self.shards, queries[:n], k)
        t2 = time.perf_counter()
        self.recall = {
            "k": k,
            "recall": round(overlap_at_k(rows[:n], exact, k), 4),
            "num_queries": n,
            "query_source": "queries",
            "exact_ms_per_query": round(1000 * (t2 - t1) / max(n, 1), 3),
            "approx_ms_per_query": round(1000 * (t1 - t0) / max(len(queries), 1), 3),
        }
        return scores, rows, self.recall


def index_corpus(
    model: Any,
    passages: Iterable[Passage],
    shard_dir: str | os.PathLike[str],
    *,
    options: EncodeOptions,
    model_fingerprint: str,
    corpus_fingerprint: str,
    spec: IndexSpec | None = None,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    record_id: Callable[[Passage], str] = lambda p: p.docid,
    shard_size: int = DEFAULT_SHARD_SIZE,
    index_path: Path | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> CorpusIndex | None:
    """Encode ``passages`` into ``shard_dir`` and make them searchable.

    Encoding is resumable and split across torchrun ranks (:func:`encode_shards`, with
    ``options.passage_prefix``). Returns None on ranks that do not finish: under a process
    group only rank 0 goes on once every shard exists; without one, whichever rank saw the
    last shard land. An approximate ``spec`` is built from the shards and saved to
    ``index_path``, or, without one, cached next to the shards and reused by later runs.
    """
    spec = spec or IndexSpec()
    r, w = rank_and_world()
    rank = r if rank is None else rank
    world_size = w if world_size is None else world_size
    config = shard_config(
        model,
        model_fingerprint=model_fingerprint,
        passage_format=passage_format,
        corpus_fingerprint=corpus_fingerprint,
    )
    t0 = time.perf_counter()
    records = ((record_id(p), format_passage(p, passage_format)) for p in passages)
    rep = encode_shards(
        model,
        records,
        shard_dir,
        prefix=options.passage_prefix or "",
        options=options,
        shard_size=shard_size,
        config=config,
        rank=rank,
        world_size=world_size,
    )
    t1 = time.perf_counter()
    if not rep.complete or (rank != 0 and in_process_group()):
        return None
    shards = ShardSet.open(shard_dir)
    spec = spec.resolved(shards.num_rows)
    faiss_index, faiss_file = None, None
    if not spec.exact:
        if index_path is None:
            faiss_index, _ = cached_faiss_index(shards, spec, show_progress=options.show_progress)
        else:
            faiss_index = build_faiss_index(shards, spec, show_progress=options.show_progress)
            faiss_file = save_faiss(faiss_index, index_path)
    t2 = time.perf_counter()
    return CorpusIndex(
        shards,
        spec,
        faiss_index,
        rep,
        timing_s={"encode": round(t1 - t0, 3), "index": round(t2 - t1, 3)},
        faiss_file=faiss_file,
    )

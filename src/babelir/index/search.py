"""Query an index folder written by ``babelir index`` (see :mod:`babelir.index.layout`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from babelir.encoding import encode_texts
from babelir.errors import ConfigError, DataError
from babelir.index.docstore import Docstore
from babelir.index.faiss_backend import IndexSpec, approximate_search, exact_search, load_faiss
from babelir.index.layout import DOCSTORE, FAISS_FILE, INDEX_META, SHARDS
from babelir.options import EncodeOptions
from babelir.shards import ShardSet


@dataclass
class Hit:
    rank: int
    score: float
    row: int
    docid: str
    lang: str
    title: str
    text: str


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
        self,
        model: Any,
        queries: Sequence[str],
        k: int = 10,
        *,
        options: EncodeOptions = EncodeOptions(),
    ) -> list[list[Hit]]:
        """Encode ``queries`` as ``options`` say and return their top-k hits.

        The query prefix is the index's (the one its passages were paired with) unless
        ``options.query_prefix`` is set; no embedding cache, no progress bar.
        """
        empty = [i for i, q in enumerate(queries) if not q.strip()]
        if empty:
            raise ConfigError(f"query {empty[0] + 1} is empty")
        opts = replace(options, show_progress=False, cache=False)
        prefix = opts.query_prefix
        if prefix is None:
            prefix = self.meta.get("query_prefix", "")
        q = encode_texts(model, list(queries), prefix=prefix, options=opts)
        if q.shape[1] != self.shards.dim:
            raise ConfigError(
                f"the model gives {q.shape[1]}-d embeddings, the index holds {self.shards.dim}-d "
                f"ones (search with the model that built it: {self.meta.get('model')})"
            )
        return self.hits(*self.search(q, k))

    def close(self) -> None:
        self.docstore.close()

"""Query an index folder written by ``babelir index`` (see :mod:`babelir.index.layout`).

Opening checks the folder by content: index.json must parse and hold the fields search
needs, index.faiss must have the size and hash index.json recorded and as many vectors as
the shards. A truncated or swapped file is a one-line error naming it, never a silent
search over part of the corpus.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.errors import ConfigError, DataError
from babelir.data.jsonl import loads
from babelir.encoding.encoder import encode_texts
from babelir.encoding.options import EncodeOptions
from babelir.index.docstore import Docstore
from babelir.index.faiss_backend import IndexSpec, approximate_search, exact_search, load_faiss
from babelir.index.layout import DOCSTORE, FAISS_FILE, INDEX_META, SHARDS
from babelir.index.shards import ShardSet


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
        self.meta: dict[str, Any] = read_meta(meta_path)
        saved = self.meta["index"]
        try:
            self.spec = IndexSpec(
                kind=saved["kind"],
                nlist=saved.get("nlist"),
                nprobe=nprobe or saved.get("nprobe"),
                hnsw_m=saved.get("M", 32),
                ef_search=ef_search or saved.get("efSearch") or 128,
            )
        except (TypeError, ConfigError) as e:
            raise DataError(f"{meta_path}: field 'index' is malformed ({e})") from None
        self.shards = ShardSet.open(self.folder / SHARDS)
        if self.shards.num_rows != self.meta["num_rows"]:
            raise DataError(
                f"{self.folder / SHARDS}: {self.shards.num_rows} passages, {meta_path} records "
                f"{self.meta['num_rows']} (the folder was changed; rebuild the index)"
            )
        self.docstore = Docstore(self.folder / DOCSTORE)
        if self.docstore.rows != self.shards.num_rows:
            raise DataError(
                f"{self.docstore.path}: {self.docstore.rows} passages, the shards hold "
                f"{self.shards.num_rows} (truncated or replaced; rebuild the index)"
            )
        self.faiss_index = None
        if not self.spec.exact:
            path = self.folder / FAISS_FILE
            record = self.meta.get("faiss_file")  # None: an index built before it was recorded
            self.faiss_index = load_faiss(path, self.spec, record=record or None)
            if self.faiss_index.ntotal != self.shards.num_rows:
                raise DataError(
                    f"{path}: {self.faiss_index.ntotal} vectors, the index holds "
                    f"{self.shards.num_rows} passages (rebuild it with babelir index --overwrite)"
                )

    @property
    def num_rows(self) -> int:
        """Passages in the index: the most results a query can have."""
        return self.shards.num_rows

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) per query; ``k`` is clipped to :attr:`num_rows` (a larger k
        only pads with -1, and a huge one would allocate terabytes)."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        k = min(k, self.num_rows)
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


#: Fields of index.json that search reads, and their types.
_META_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": str,
    "model_fingerprint": str,
    "num_rows": int,
    "dim": int,
    "index": dict,
}


def read_meta(path: Path) -> dict[str, Any]:
    """index.json, parsed and checked: a truncated or edited file is a DataError naming
    it (and the field), not a JSONDecodeError or KeyError."""
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason}); rebuild the index") from None
    meta = loads(text, str(path))
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object (rebuild the index)")
    for key, kind in _META_FIELDS.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DataError(f"{path}: field '{key}' is missing or malformed (rebuild the index)")
    if not isinstance(meta["index"].get("kind"), str):
        raise DataError(f"{path}: field 'index.kind' is missing or malformed")
    msl = meta.get("max_seq_length")
    if msl is not None and (isinstance(msl, bool) or not isinstance(msl, int) or msl < 1):
        raise DataError(f"{path}: field 'max_seq_length' must be a positive integer or null")
    record = meta.get("faiss_file")
    if record is not None and not (
        isinstance(record, dict) and isinstance(record.get("bytes"), int)
    ):
        raise DataError(f"{path}: field 'faiss_file' is malformed (rebuild the index)")
    meta.setdefault("max_seq_length", None)
    return meta

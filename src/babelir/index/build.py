"""Build an index folder (``babelir index``): shards, docstore, FAISS index, index.json.

The folder layout is in :mod:`babelir.index.layout`; encoding and the FAISS index come
from :func:`babelir.index.corpus_index.index_corpus`, shared with the MIRACL evaluation.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babelir import __version__
from babelir.core.distributed import barrier, rank_and_world
from babelir.core.errors import BabelirError, ConfigError, DataError
from babelir.core.io import write_json
from babelir.data.corpus import CorpusSource
from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT
from babelir.encoding.encoder import (
    embedding_dim,
    encoder_settings,
    model_device,
    resolve_precision,
)
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.options import DEFAULT_SHARD_SIZE
from babelir.index.corpus_index import index_corpus, shard_config
from babelir.index.docstore import Docstore
from babelir.index.faiss_backend import IndexSettingsError, IndexSpec, check_spec
from babelir.index.layout import DOCSTORE, FAISS_FILE, INDEX_META, SHARDS


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
    options: EncodeOptions | None = None,
    spec: IndexSpec | None = None,
    model_name: str = "",
    model_fingerprint: str = "",
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
) -> BuildReport:
    """Encode ``corpus`` into ``folder`` and build its docstore and index.

    ``options`` (see :func:`babelir.encoding.encoder.load_encoder`) carries the prefixes, batch
    size and precision; the resolved precision is recorded in index.json. Rerunning after
    a crash resumes the encoding. Under torchrun each rank encodes its shards; rank 0 (once
    all shards exist) writes the docstore and index, the other ranks return with
    ``meta=None``. ``overwrite`` rebuilds the docstore/index and keeps the shards when they
    were made with the same model, prefix, precision and passage format. A corpus that
    fails to read leaves a folder this call created removed again.
    """
    opts = options or EncodeOptions()
    spec = spec or IndexSpec()
    folder = Path(folder)
    meta_path = folder / INDEX_META
    r, w = rank_and_world()
    rank = r if rank is None else rank
    world_size = w if world_size is None else world_size
    if meta_path.exists() and not overwrite:
        raise ConfigError(f"{folder} already holds an index; pass --overwrite to rebuild it")
    check_spec(spec, embedding_dim(model))  # a bad factory string fails before encoding
    if overwrite and rank == 0:
        meta_path.unlink(missing_ok=True)
        config = shard_config(
            model,
            model_fingerprint=model_fingerprint,
            passage_format=passage_format,
            corpus_fingerprint=corpus.fingerprint(),
        )
        resolved = resolve_precision(opts.precision, model_device(model))
        stale = {"prefix": opts.passage_prefix or "", "precision": resolved, **config}
        _drop_stale_shards(folder / SHARDS, stale)
    barrier()  # no rank starts encoding into shards rank 0 may still be deleting
    created = not folder.exists()
    try:
        built = index_corpus(
            model,
            corpus.passages(),
            folder / SHARDS,
            options=opts,
            model_fingerprint=model_fingerprint,
            corpus_fingerprint=corpus.fingerprint(),
            spec=spec,
            passage_format=passage_format,
            record_id=lambda p: f"{p.lang}:{p.docid}",
            shard_size=shard_size,
            index_path=folder / FAISS_FILE,
            rank=rank,
            world_size=world_size,
        )
    except BabelirError as e:
        if not _shards_complete(folder / SHARDS):
            if created:  # nothing of a corpus that cannot be read stays behind
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if isinstance(e, IndexSettingsError):  # refused once the corpus size is known
            raise IndexSettingsError(
                f"{e} (the encoded shards in {folder / SHARDS} are kept: rerun with a valid "
                f"setting to reuse them)"
            ) from None
        raise
    if built is None:
        return BuildReport(folder, None, None, {})
    shards = built.shards
    t0 = time.perf_counter()
    counts = Docstore.build(folder / DOCSTORE, corpus.passages())
    if sum(counts.values()) != shards.num_rows:
        raise DataError(
            f"{corpus.name}: gave {sum(counts.values())} passages now but {shards.num_rows} "
            f"when encoded (the corpus changed while indexing)"
        )
    t1 = time.perf_counter()
    if built.spec.exact:
        (folder / FAISS_FILE).unlink(missing_ok=True)
    recall = built.check_recall(k=100)
    t2 = time.perf_counter()
    meta = {
        "babelir_version": __version__,
        "model": model_name,
        "model_fingerprint": model_fingerprint,
        "query_prefix": opts.query_prefix or "",
        "passage_prefix": opts.passage_prefix or "",
        "passage_format": passage_format,
        "max_seq_length": getattr(model, "max_seq_length", None),
        "encoder": encoder_settings(model, options=opts),
        "corpus": corpus.name,
        "languages": counts,
        "num_rows": shards.num_rows,
        "dim": shards.dim,
        "index": built.spec.describe(),
        # size and hash of index.faiss: `babelir search` refuses a truncated or swapped file
        "faiss_file": None if built.spec.exact else built.faiss_file,
        "recall_vs_exact": recall,
        "timing_s": {
            "encode": built.timing_s["encode"],
            "docstore": round(t1 - t0, 3),
            "index": round(built.timing_s["index"] + t2 - t1, 3),
        },
    }
    write_json(meta_path, meta)
    return BuildReport(folder, meta, built.encode, meta["timing_s"])


def _shards_complete(shards_dir: Path) -> bool:
    from babelir.index.shards import ShardSet

    try:
        ShardSet.open(shards_dir)
    except (BabelirError, OSError, ValueError):
        return False
    return True


def _drop_stale_shards(shards_dir: Path, config: dict[str, Any]) -> None:
    """Delete shards made with another model/prefix/precision/format (``--overwrite``)."""
    manifest = shards_dir / "manifest.json"
    if not manifest.is_file():
        return
    try:
        old = json.loads(manifest.read_text("utf-8")).get("config", {})
    except ValueError:
        old = {}
    if any(old.get(k) != v for k, v in config.items()):
        shutil.rmtree(shards_dir)

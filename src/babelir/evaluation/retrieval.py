"""What the passage-retrieval evaluations (MIRACL, XOR-Retrieve, their BM25 rows) share.

Stage timings (metrics.json's ``timing_s``), the encoder record of a dense run, and the
sharded, resumable encoding of a corpus into a folder keyed by everything that changes
its vectors. Light at import (BM25 and the dry run use :class:`Stopwatch`): the encoder
and the index are imported by the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class Stopwatch:
    """Seconds per stage, rounded to the millisecond: ``lap("encode")`` closes the stage
    that began at the previous lap (or at construction)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round(now - self._last, 3)
        self._last = now


def encoder_record(model: Any, options: Any) -> dict[str, Any]:
    """The prefixes and encoder settings (resolved precision included) of a dense run,
    for metrics.json."""
    from babelir.encoding.encoder import encoder_settings

    return {
        "query_prefix": options.query_prefix or "",
        "passage_prefix": options.passage_prefix or "",
        "encoder": encoder_settings(model, options=options),
    }


def shard_folder(work_dir: Path, prefix: str, key: Mapping[str, Any]) -> Path:
    """``<work_dir>/<prefix>-<digest of key>``: one folder per encoding, reused by later
    runs with the same key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(work_dir) / f"{prefix}-{digest}"


def index_passages(
    model: Any,
    passages: Iterable[Any],
    work_dir: Path,
    prefix: str,
    *,
    options: Any,
    index: Any,
    shard_size: int,
    **identity: str,
) -> Any:
    """Encode (or reuse) ``passages`` into their shard folder and make them searchable
    (:func:`babelir.index.corpus_index.index_corpus`); None on ranks that do not search.

    ``identity`` (``model_fingerprint``, ``corpus_fingerprint``, ``passage_format``) is
    what the vectors depend on; with the passage prefix, resolved precision and truncation
    it keys the folder: a run in bf16 never resumes shards encoded in fp32.
    """
    from babelir.encoding.encoder import model_device, resolve_precision
    from babelir.index.corpus_index import index_corpus, shard_config

    resolved = resolve_precision(options.precision, model_device(model))
    key = {
        "prefix": options.passage_prefix or "",
        "precision": resolved,
        **shard_config(model, **identity),
    }
    folder = shard_folder(work_dir, prefix, key)
    return index_corpus(
        model, passages, folder, options=options, spec=index, shard_size=shard_size, **identity
    )

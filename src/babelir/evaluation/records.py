"""A stored LAReQA evaluation: metrics.json plus the per-query arrays the tests need.

``compare`` keeps one folder per (model, benchmark) evaluation; this module is the only
code that writes or reads those folders, through :class:`StoredEvaluation`.
``metrics.json`` is moved in last, so its presence means the folder is complete.
Evaluations stored before the language-preference measures lack their keys and arrays;
they still load, and the report shows those measures as missing for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.io import atomic_dir
from babelir.evaluation.lareqa import EvaluationResult, write_result
from babelir.evaluation.metrics import LareqaMetrics

DONE = "metrics.json"
PER_QUERY = "per_query.npz"


@dataclass(frozen=True)
class StoredEvaluation:
    """metrics.json's document and the per-query arrays of one evaluation."""

    folder: Path
    metrics: dict[str, Any]
    per_query: dict[str, np.ndarray]


def is_evaluated(folder: Path) -> bool:
    return (Path(folder) / DONE).is_file()


def save_evaluation(
    result: EvaluationResult, folder: Path, *, save_embeddings: bool = True
) -> StoredEvaluation:
    """Write metrics.json, per_query.npz (and the embeddings) into ``folder`` atomically."""
    m = result.metrics
    with atomic_dir(Path(folder)) as tmp:
        # with the embeddings any cell can be recomputed independently (and debiased)
        write_result(result, tmp, save_embeddings=save_embeddings)
        np.savez(
            tmp / PER_QUERY,
            pair_ap=m.pair_ap,
            multi_ap=m.multi_ap,
            rank_distance=m.rank_distance,
            question_blocks=m.question_blocks,
            multi_recall10=m.multi_recall10,
            question_ids=np.asarray(result.benchmark.question_ids, dtype=str),
            **lang_pref_arrays(m),
        )
    return load_evaluation(folder)


def lang_pref_arrays(m: LareqaMetrics) -> dict[str, np.ndarray]:
    """per_query.npz's language-preference arrays: ``lang_pref_k`` (K,) the cut-offs,
    ``lang_pref`` (nq, K) the per-question shares, ``lang_pref_expected`` (nq,) the
    language-blind share; none when the metrics have no language preference."""
    if not m.lang_pref:
        return {}
    ks = sorted(m.lang_pref)
    return {
        "lang_pref_k": np.asarray(ks, dtype=np.int64),
        "lang_pref": np.stack([m.lang_pref[k] for k in ks], axis=1),
        "lang_pref_expected": np.asarray(m.lang_pref_expected, dtype=np.float64),
    }


def load_evaluation(folder: Path) -> StoredEvaluation:
    folder = Path(folder)
    doc = json.loads((folder / DONE).read_text("utf-8"))
    with np.load(folder / PER_QUERY, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return StoredEvaluation(folder, doc, arrays)

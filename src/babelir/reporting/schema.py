"""The report's typed input: everything :func:`babelir.reporting.report.write_report` reads.

The caller (``babelir compare``) gathers evaluation records, run descriptions, learning
curves and provenance; the report never looks at the caller's configuration object, so
the report can be tested, and re-rendered, from plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from babelir.batches.strategies import StrategySpec

#: Keys of a learning-curve point; every value but ``step`` may be missing or ``None``.
CURVE_KEYS = ("val_loss", "val_mono_map", "val_cross_map", "val_multi_map")
#: Arrays an evaluation record's ``per_query`` must hold for the paired tests.
PER_QUERY_KEYS = ("pair_ap", "multi_ap", "question_blocks", "rank_distance", "question_ids")


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation: model ``label`` (trained with ``seed``; ``None`` for the base model)
    on ``benchmark`` (its display title), with the engine's metrics.json document and its
    per-query arrays (``per_query.npz``: :data:`PER_QUERY_KEYS`, plus ``multi_recall10``)."""

    label: str
    seed: int | None
    benchmark: str
    metrics: Mapping[str, Any]
    per_query: Mapping[str, np.ndarray]
    folder: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """One training run: its batch strategy ``spec`` (which names its row) and seed."""

    spec: StrategySpec
    seed: int
    key: str = ""
    folder: str = ""
    #: from the run's babelir-train.json: the precision it trained in, the seconds of its
    #: training loop (validation included) and the machine it ran on
    train_precision: str | None = None
    train_seconds: float | None = None
    machine: Mapping[str, Any] | None = None

    @property
    def label(self) -> str:
        """The run's row label (evaluation records of the run carry the same)."""
        return self.spec.label

    @property
    def strategy(self) -> str:
        return self.spec.name

    @property
    def alpha(self) -> float | None:
        return self.spec.alpha

    def to_record(self) -> dict[str, Any]:
        """The run as results.json stores it: the spec's fields beside its label."""
        return {
            "label": self.label,
            "strategy": self.strategy,
            "alpha": self.alpha,
            "precision": self.spec.precision,
            "seed": self.seed,
            "key": self.key,
            "folder": self.folder,
            "train_precision": self.train_precision,
            "train_seconds": self.train_seconds,
            "machine": dict(self.machine) if self.machine else None,
        }


@dataclass(frozen=True)
class RunCurve:
    """Validation curve of one training run.

    ``points`` are mappings ``{"step": int, "val_loss": float, "val_mono_map": float,
    "val_cross_map": float, "val_multi_map": float}`` (any value but ``step`` may be
    missing or ``None``), as recorded in ``babelir-train.json``; ``selected_step`` is the
    checkpoint kept by validation, if any.
    """

    label: str
    seed: int | None
    points: Sequence[Mapping[str, float | int | None]]
    selected_step: int | None = None


@dataclass(frozen=True)
class TrainingSetup:
    """What the report's first paragraph says about training (the same for every run).

    ``extra`` holds further settings shown as ``key value`` (e.g. checkpoint selection).
    """

    model: str | None
    data: str
    articles: str
    batch_size: int
    learning_rate: float
    max_seq_length: int
    max_steps: int | None = None
    epochs: float | None = None
    freeze_embeddings: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    """Where the numbers come from: versions, commit, timings, cache reuse, configuration.

    ``facts`` is compare's validation summary (``train_items``, ``train_languages`` and
    ``benchmarks``: title -> {num_questions, num_candidates, articles, languages}).
    ``t_start`` is the ``time.perf_counter()`` at the start of the run, for the total time.
    """

    versions: Mapping[str, str]
    git_commit: str | None
    timing_s: Mapping[str, float] = field(default_factory=dict)
    reused: Mapping[str, int] = field(default_factory=dict)
    config: Mapping[str, Any] | None = None
    raw_config: Mapping[str, Any] | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    steps: Sequence[Mapping[str, Any]] = ()
    t_start: float | None = None


@dataclass
class ReportInput:
    """Everything a comparison report needs.

    - ``reference``: the strategy whose models are tested against every other model
      (per-query and seed-level paired tests), e.g. ``"hybrid"``, or one row's label
      (``"hybrid (fp32)"`` in a precision study).
    - ``labels``: display order of the model rows (default: order of first appearance in
      ``evaluations``); rows not in ``runs`` (the base model, post-hoc rows such as
      ``"hybrid+lsar"``) appear in tables and plots but never decide a paper claim.
    - ``seeds``: the seeds the comparison asked for (default: those in ``runs``).
    - ``margin``: non-inferiority margin (mAP) for the claims "hybrid ~ x".
    - ``level``: confidence level of every interval.
    """

    name: str
    reference: str
    evaluations: list[EvalRecord]
    runs: list[RunInfo]
    provenance: Provenance
    #: passage-retrieval records (MIRACL, XOR-Retrieve): :mod:`babelir.reporting.retrieval`
    retrieval: list[EvalRecord] = field(default_factory=list)
    description: str = ""
    setup: TrainingSetup | None = None
    labels: list[str] | None = None
    seeds: list[int] | None = None
    curves: list[RunCurve] = field(default_factory=list)
    permutations: int = 10000
    bootstrap: int = 2000
    margin: float = 0.01
    level: float = 0.95
    #: merged rows (label, row, seed, weight, criterion, validation curve)
    merges: list[dict[str, Any]] = field(default_factory=list)

    def display_labels(self) -> list[str]:
        """Model labels in display order: ``labels`` first, then any others seen."""
        out = list(dict.fromkeys(self.labels or []))
        for e in [*self.evaluations, *self.retrieval]:
            if e.label not in out:
                out.append(e.label)
        return out

    def benchmarks(self) -> list[str]:
        """Benchmark titles in order of first appearance."""
        return list(dict.fromkeys(e.benchmark for e in self.evaluations))

    def all_seeds(self) -> list[int]:
        """The comparison's seeds (given, else those of the runs)."""
        if self.seeds is not None:
            return list(self.seeds)
        return list(dict.fromkeys(r.seed for r in self.runs))

"""The registered datasets a comparison reads, and fetching them (``babelir data fetch
--profile``): what ``make demo`` runs on a fresh machine before ``babelir compare``.

A training source or benchmark maps to the dataset of the registry
(:mod:`babelir.data.registry`) that holds its file or folder. A source read through its
stand-in (a missing official file, :data:`babelir.data.registry.STAND_INS`) needs the
stand-in's dataset instead; a user's own path maps to none (the dry run checks it). The
MIRACL passage corpus and XOR-Retrieve's files are left out: they are fetched on purpose
(tens of GB), never as a side effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babelir.compare.config import CompareConfig


@dataclass(frozen=True)
class Need:
    """One dataset a comparison reads, and which of its inputs needs it."""

    dataset: str
    why: str


def _dataset_of_file(path: str) -> str | None:
    """The dataset holding a file, or a folder of its files (the XOR translations)."""
    from babelir.data.registry import datasets

    folder = path.rstrip("/") + "/"
    for d in datasets().values():
        if any(f.path == path or f.path.startswith(folder) for f in d.files):
            return d.name
    return None


def _training_data(cfg: CompareConfig) -> list[Any]:
    """``train.data`` and every labelled variant's own sources (``add_data``, ``train.data``)."""
    from babelir.compare.config import StrategyEntry

    out = [cfg.train.get("data", "xquad-r")]
    for s in cfg.strategies:
        if isinstance(s, StrategyEntry):
            if "data" in s.train:
                out.append(s.train["data"])
            if s.add_data:
                out.append(s.add_data)
    return out


def needed_datasets(cfg: CompareConfig, root: Path) -> list[Need]:
    """The registered datasets ``cfg`` reads under data dir ``root``, in config order."""
    from babelir.data.registry import datasets
    from babelir.training.sources import apply_stand_ins, is_multi_source, parse_sources

    known = datasets()
    needs: dict[str, Need] = {}
    for data in _training_data(cfg):
        if is_multi_source(data):
            # the files the run will read: a stand-in where it replaces a missing file
            for spec in apply_stand_ins(parse_sources(data), root)[0]:
                name = _dataset_of_file(spec.file)
                if name is not None:
                    needs.setdefault(name, Need(name, f"training source {spec.label}"))
        elif isinstance(data, str) and data in known:
            needs.setdefault(data, Need(data, "training data"))
    for b in cfg.benchmarks:
        # the family's dataset (MIRACL: topics and qrels, not its corpus; XOR-Retrieve: none)
        name = b.family.dataset_of(b.name)
        if b.path is None and name in known:
            needs.setdefault(name, Need(name, f"benchmark {b.title()}"))
    return list(needs.values())


def fetch_needed(
    cfg: CompareConfig,
    root: Path,
    *,
    mirror: str | None = None,
    force: bool = False,
) -> list[tuple[Need, str]]:
    """Verify each needed dataset and fetch those that do not verify (all with ``force``).

    Returns (need, ``"verified"`` | ``"fetched"``) per dataset. A failed or mismatching
    download raises with one line and leaves nothing half-written (:func:`babelir.data.
    fetch.fetch`).
    """
    from babelir.data.fetch import fetch, verify

    out: list[tuple[Need, str]] = []
    for need in needed_datasets(cfg, root):
        if not force and verify(need.dataset, root).ok:
            out.append((need, "verified"))
            continue
        fetch(need.dataset, root, mirror=mirror, force=force)
        out.append((need, "fetched"))
    return out

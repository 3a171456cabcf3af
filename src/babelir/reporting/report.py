"""The comparison report: analysis, plots and rendering of a :class:`ReportInput`.

Input is plain typed data (:mod:`babelir.reporting.schema`): one evaluation record per
(model, seed, benchmark) with the engine's metrics.json document and per-query arrays,
the training runs, optional learning curves and provenance. Output (all written
atomically): ``report.md``, ``results.json``, ``results.csv`` and ``plots/*.png``. Every
number is the engine's; the report only aggregates and tests them.

    analysis.py  cells over seeds, per-query and seed-level paired tests
    claims.py    the verdict on the paper's four claims (decision rules)
    summary.py   Analysis: everything the report computes (analyse)
    markdown.py  report.md and results.csv text
    plots.py     PNG figures
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from babelir.core.io import write_json, write_text
from babelir.evaluation.measures import RANK_DISTANCE
from babelir.reporting import plots
from babelir.reporting.analysis import benchmarks, group
from babelir.reporting.markdown import render_csv, render_markdown
from babelir.reporting.schema import (
    EvalRecord,
    Provenance,
    ReportInput,
    RunCurve,
    RunInfo,
    TrainingSetup,
)
from babelir.reporting.summary import Analysis, analyse

__all__ = [
    "Analysis",
    "EvalRecord",
    "Provenance",
    "ReportInput",
    "RunCurve",
    "RunInfo",
    "TrainingSetup",
    "analyse",
    "write_report",
]

CURVES_PNG = "learning_curves.png"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _mean_pair_map(items: Sequence[EvalRecord]) -> dict[str, dict[str, float | None]]:
    langs = items[0].metrics["languages"]
    out: dict[str, dict[str, float | None]] = {}
    for a in langs:
        out[a] = {}
        for b in langs:
            vals = [e.metrics["per_pair_map"][a][b] for e in items]
            vals = [v for v in vals if v is not None]
            out[a][b] = float(np.mean(vals)) if vals else None
    return out


def make_plots(
    inp: ReportInput, analysis: Analysis, out_dir: Path
) -> tuple[list[tuple[str, str]], str | None]:
    """Heatmaps, delta heatmaps, rank-distance and zero-shot bars, learning curves.

    Returns (title, file name) of each plot and the learning-curve file name (or None).
    """
    made: list[tuple[str, str]] = []
    groups = group(inp.evaluations)
    order = inp.display_labels()
    cells = analysis.cells
    for bench in benchmarks(inp.evaluations):
        labels = [lab for lab in order if (bench, lab) in groups]
        langs = groups[(bench, labels[0])][0].metrics["languages"]
        slug = _slug(bench)
        maps = {lab: _mean_pair_map(groups[(bench, lab)]) for lab in labels}
        for lab in labels:
            p = plots.pair_heatmap(
                maps[lab],
                langs,
                f"{bench}: {lab} mAP per language pair",
                out_dir / f"{slug}-pairs-{_slug(lab)}.png",
            )
            made.append((f"{bench}: {lab} per-pair mAP", p.name))
        for ref in analysis.reference_labels:
            if ref not in maps:
                continue
            for lab in labels:
                if lab == ref:
                    continue
                p = plots.delta_heatmap(
                    maps[ref],
                    maps[lab],
                    langs,
                    f"{bench}: {ref} minus {lab} (mAP)",
                    out_dir / f"{slug}-delta-{_slug(f'{ref}-vs-{lab}')}.png",
                )
                made.append((f"{bench}: {ref} minus {lab}", p.name))
        rd: dict[str, plots.BarValue] = {}
        for lab in labels:
            c = cells[bench][lab][RANK_DISTANCE.label]
            lo, hi = c["ci"] if c["ci"] is not None else (None, None)
            rd[lab] = (c["mean"], lo, hi)
        p = plots.rank_distance_bars(
            rd, f"{bench}: rank distance (language bias)", out_dir / f"{slug}-rank-distance.png"
        )
        made.append((f"{bench}: rank distance", p.name))
        zs = {
            lab: {k: cells[bench][lab]["zero-shot"][k]["mean"] for k in ("mono", "cross", "multi")}
            for lab in labels
            if "zero-shot" in cells[bench][lab]
        }
        if zs:
            first = next(lab for lab in labels if "zero-shot" in cells[bench][lab])
            zl = ", ".join(cells[bench][first]["zero-shot"]["languages"])
            p = plots.zero_shot_bars(
                zs, f"{bench}: zero-shot languages ({zl})", out_dir / f"{slug}-zero-shot.png"
            )
            made.append((f"{bench}: zero-shot languages", p.name))
    curves = None
    if any(c.points for c in inp.curves):
        rank = {lab: i for i, lab in enumerate(order)}
        runs = sorted(inp.curves, key=lambda c: rank.get(c.label, len(rank)))
        curves = plots.learning_curves(runs, out_dir / CURVES_PNG).name
    return made, curves


def write_report(inp: ReportInput, output: Path) -> Path:
    """Write report.md, results.json, results.csv and plots/ into ``output``."""
    t0 = time.perf_counter()
    analysis = analyse(inp)
    made, curves = make_plots(inp, analysis, output / "plots")
    p = inp.provenance
    timing = dict(p.timing_s)
    timing["report"] = round(time.perf_counter() - t0, 2)
    if p.t_start is not None:
        timing["total"] = round(time.perf_counter() - p.t_start, 2)
    results = {
        "name": inp.name,
        "description": inp.description,
        "reference": inp.reference,
        "labels": inp.display_labels(),
        "seeds": inp.all_seeds(),
        "config": p.config,
        "raw_config": p.raw_config,
        "facts": p.facts,
        "versions": p.versions,
        "git_commit": p.git_commit,
        "runs": [r.to_record() for r in inp.runs],
        "reused": p.reused,
        "steps": list(p.steps),
        "timing_s": timing,
        "statistics": {
            "level": inp.level,
            "non_inferiority_margin": inp.margin,
            "permutations": inp.permutations,
            "bootstrap": inp.bootstrap,
        },
        "cells": analysis.cells,
        "paired_tests": analysis.tests,
        "seed_tests": analysis.seed_tests,
        "claims": analysis.claims,
        "debias": analysis.debias,
        "precision": analysis.precision,
        "merges": inp.merges,
        "beyond": analysis.beyond,
        "retrieval": analysis.retrieval,
        "verdict": analysis.verdict_lines(),
        "evaluations": [
            {
                "label": e.label,
                "seed": e.seed,
                "benchmark": e.benchmark,
                "folder": e.folder,
                "metrics": e.metrics,
            }
            for e in [*inp.evaluations, *inp.retrieval]
        ],
        "learning_curves": [vars(c) for c in inp.curves],
        "plots": [name for _, name in made] + ([curves] if curves else []),
    }
    write_text(output / "results.csv", render_csv(inp.evaluations, inp.runs, inp.retrieval))
    write_json(output / "results.json", results)
    write_text(output / "report.md", render_markdown(inp, analysis, made, curves))
    return output / "report.md"


"""The comparison report: tables laid out like the paper's, statistics, verdict, plots.

Input is what :func:`babelir.compare.run_compare` gathered: one entry per (model, seed,
benchmark) with the evaluation engine's metrics.json document and per-query arrays.
Output (all written atomically): ``report.md``, ``results.json``, ``results.csv`` and
``plots/*.png``. Every number is the engine's; this module only aggregates them.
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from babelir.io import write_json, write_text
from babelir.reporting.stats import (
    holm,
    mean_ci,
    paired_bootstrap_ci,
    paired_permutation_test,
    per_query_settings,
)

#: (key in results, how to read it from metrics.json, higher is better)
CELLS: list[tuple[str, tuple[str, ...], bool]] = [
    ("mono mAP", ("map", "mono"), True),
    ("cross mAP", ("map", "cross"), True),
    ("multi mAP", ("map", "multi"), True),
    ("mono R@1", ("recall", "mono@1"), True),
    ("cross R@1", ("recall", "cross@1"), True),
    ("multi R@10", ("recall", "multi@10"), True),
    ("rank distance", ("rank_distance",), False),
]
SETTINGS = [
    ("mono", "mono mAP", True),
    ("cross", "cross mAP", True),
    ("multi", "multi mAP", True),
    ("rank_distance", "rank distance", False),
]
SIGNIFICANCE = 0.05


def _get(doc: dict[str, Any], path: tuple[str, ...]) -> float | None:
    cur: Any = doc
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return None if cur is None else float(cur)


def _labels(evaluations: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for e in evaluations:
        if e["label"] not in out:
            out.append(e["label"])
    return out


def _benchmarks(evaluations: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for e in evaluations:
        if e["benchmark"] not in out:
            out.append(e["benchmark"])
    return out


def aggregate(evaluations: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """cells[benchmark][label][cell] = {"values", "mean", "ci"} over seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in evaluations:
        groups[(e["benchmark"], e["label"])].append(e)
    cells: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (bench, label), items in groups.items():
        row: dict[str, Any] = {}
        for name, path, _ in CELLS:
            values = [_get(e["metrics"], path) for e in items]
            values = [v for v in values if v is not None]
            m, lo, hi = mean_ci(values)
            row[name] = {"values": values, "mean": m, "ci": [lo, hi]}
        zs = [e["metrics"].get("zero_shot_languages") for e in items]
        if all(zs):
            row["zero-shot"] = {
                "languages": zs[0]["languages"],
                **{
                    k: dict(
                        zip(
                            ("mean", "low", "high"), mean_ci([z["map"][k] for z in zs]), strict=True
                        )
                    )
                    for k in ("mono", "cross", "multi")
                },
            }
        row["seeds"] = [e["seed"] for e in items]
        cells[bench][label] = row
    return cells


def _per_query(items: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-query setting values averaged over seeds."""
    per_seed = [
        per_query_settings(
            e["per_query"]["pair_ap"],
            e["per_query"]["multi_ap"],
            e["per_query"]["question_blocks"],
            e["per_query"]["rank_distance"],
        )
        for e in items
    ]
    return {k: np.mean([p[k] for p in per_seed], axis=0) for k in per_seed[0]}


def paired_tests(
    evaluations: list[dict[str, Any]],
    reference_labels: list[str],
    *,
    permutations: int = 10000,
    bootstrap: int = 2000,
) -> list[dict[str, Any]]:
    """Each reference model vs every other model, per benchmark and setting."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in evaluations:
        groups[(e["benchmark"], e["label"])].append(e)
    tests: list[dict[str, Any]] = []
    for bench in _benchmarks(evaluations):
        labels = [lab for (b, lab) in groups if b == bench]
        for ref in reference_labels:
            if (bench, ref) not in groups:
                continue
            ref_items = groups[(bench, ref)]
            ref_q = _per_query(ref_items)
            ref_ids = ref_items[0]["per_query"]["question_ids"]
            for other in labels:
                if other == ref:
                    continue
                other_items = groups[(bench, other)]
                if not np.array_equal(other_items[0]["per_query"]["question_ids"], ref_ids):
                    raise ValueError(f"{bench}: {ref} and {other} were scored on other questions")
                oth_q = _per_query(other_items)
                for setting, cell, higher in SETTINGS:
                    a, b = ref_q[setting], oth_q[setting]
                    diff, lo, hi = paired_bootstrap_ci(a, b, n_resamples=bootstrap)
                    p = paired_permutation_test(a, b, n_resamples=permutations)
                    seed_ci = _seed_diff_ci(ref_items, other_items, cell)
                    tests.append(
                        {
                            "benchmark": bench,
                            "reference": ref,
                            "baseline": other,
                            "setting": setting,
                            "higher_is_better": higher,
                            "mean_difference": diff,
                            "bootstrap_ci": [lo, hi],
                            "p_value": p,
                            "seed_ci": seed_ci,
                            "n_queries": int(np.sum(~np.isnan(a - b))),
                        }
                    )
    adjusted = holm([t["p_value"] for t in tests]) if tests else []
    for t, adj in zip(tests, adjusted, strict=True):
        t["p_holm"] = adj
        t["outcome"] = _outcome(t)
    return tests


def _seed_diff_ci(ref_items, other_items, cell) -> list[float] | None:
    """CI over seeds of the difference of cell values, when both have >= 2 seeds."""
    path = next(p for name, p, _ in CELLS if name == cell)
    ref = {e["seed"]: _get(e["metrics"], path) for e in ref_items}
    oth = {e["seed"]: _get(e["metrics"], path) for e in other_items}
    if len(ref) < 2:
        return None
    if set(oth) == set(ref):  # paired by seed
        diffs = [ref[s] - oth[s] for s in ref if ref[s] is not None and oth[s] is not None]
    elif len(oth) == 1:  # e.g. the base model: one value
        only = next(iter(oth.values()))
        diffs = [v - only for v in ref.values() if v is not None and only is not None]
    else:
        return None
    _, lo, hi = mean_ci(diffs)
    return [lo, hi]


def _outcome(t: dict[str, Any]) -> str:
    """'better', 'worse' or 'no significant difference', for the reference model."""
    if t["p_holm"] >= SIGNIFICANCE:
        return "no significant difference"
    sign = 1 if t["higher_is_better"] else -1
    lo, hi = (sign * x for x in t["bootstrap_ci"])
    lo, hi = min(lo, hi), max(lo, hi)
    seed = t["seed_ci"]
    if seed is not None:
        slo, shi = sorted(sign * x for x in seed)
    else:
        slo, shi = lo, hi
    if lo > 0 and slo > 0:
        return "better"
    if hi < 0 and shi < 0:
        return "worse"
    return "no significant difference"


# --------------------------------------------------------------------------- markdown


def _fmt(cell: dict[str, Any], digits: int, bold: bool) -> str:
    m = cell["mean"]
    if m is None or np.isnan(m):
        return "-"
    text = f"{m:.{digits}f}"
    if len(cell["values"]) > 1:
        text += f" ± {(cell['ci'][1] - cell['ci'][0]) / 2:.{digits}f}"
    return f"**{text}**" if bold else text


def _best(cells: dict[str, dict[str, Any]], name: str, higher: bool) -> str | None:
    vals = {
        lab: row[name]["mean"]
        for lab, row in cells.items()
        if row[name]["mean"] is not None and not np.isnan(row[name]["mean"])
    }
    if not vals:
        return None
    return (max if higher else min)(vals, key=vals.get)


def _table(cells, labels, benches, names, digits) -> str:
    head = "| model | " + " | ".join(f"{b} {n}" for b in benches for n in names) + " |"
    sep = "|---|" + "---|" * (len(benches) * len(names))
    rows = [head, sep]
    best = {
        (b, n): _best(cells[b], n, dict((c[0], c[2]) for c in CELLS)[n])
        for b in benches
        for n in names
    }
    for lab in labels:
        parts = []
        for b in benches:
            for n in names:
                row = cells[b].get(lab)
                parts.append(
                    "-"
                    if row is None
                    else _fmt(row[n], 1 if n == "rank distance" else digits, best[(b, n)] == lab)
                )
        rows.append(f"| {lab} | " + " | ".join(parts) + " |")
    return "\n".join(rows)


def verdict(tests: list[dict[str, Any]], reference_labels: list[str]) -> list[str]:
    """Plain-language sentences computed from the paired tests (never beyond them)."""
    lines = []
    by = defaultdict(list)
    for t in tests:
        by[(t["benchmark"], t["reference"], t["baseline"])].append(t)
    words = {
        "mono": "monolingual mAP",
        "cross": "cross-lingual mAP",
        "multi": "multilingual mAP",
        "rank_distance": "language bias (rank distance)",
    }
    for (bench, ref, base), ts in by.items():
        better = [words[t["setting"]] for t in ts if t["outcome"] == "better"]
        worse = [words[t["setting"]] for t in ts if t["outcome"] == "worse"]
        same = [words[t["setting"]] for t in ts if t["outcome"] == "no significant difference"]
        parts = []
        if better:
            parts.append("better on " + ", ".join(better))
        if worse:
            parts.append("worse on " + ", ".join(worse))
        if same:
            parts.append("not distinguishable on " + ", ".join(same))
        lines.append(f"- **{bench}, {ref} vs {base}**: " + "; ".join(parts) + ".")
    if not lines:
        lines.append("- No paired comparison was possible (the reference strategy is missing).")
    return lines


def _csv(evaluations: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    strategy = {(r["label"], r["seed"]): (r["strategy"], r["alpha"]) for r in runs}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "strategy", "alpha", "seed", "benchmark", "setting", "value"])
    for e in evaluations:
        strat, alpha = strategy.get((e["label"], e["seed"]), ("", ""))
        values = [(name, _get(e["metrics"], path)) for name, path, _ in CELLS]
        zs = e["metrics"].get("zero_shot_languages")
        if zs:
            langs = ",".join(zs["languages"])
            values += [
                (f"zero-shot ({langs}) {k} mAP", zs["map"][k]) for k in ("mono", "cross", "multi")
            ]
        for name, v in values:
            w.writerow(
                [
                    e["label"],
                    strat,
                    "" if alpha is None else alpha,
                    "" if e["seed"] is None else e["seed"],
                    e["benchmark"],
                    name,
                    "" if v is None else repr(v),
                ]
            )
    return buf.getvalue()


def _mean_pair_map(items: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    langs = items[0]["metrics"]["languages"]
    out: dict[str, dict[str, float | None]] = {}
    for a in langs:
        out[a] = {}
        for b in langs:
            vals = [e["metrics"]["per_pair_map"][a][b] for e in items]
            vals = [v for v in vals if v is not None]
            out[a][b] = float(np.mean(vals)) if vals else None
    return out


def _plots(evaluations, cells, reference_labels, out_dir: Path) -> list[tuple[str, str]]:
    """Heatmaps, delta heatmaps, rank-distance and zero-shot bars; returns (title, path)."""
    from babelir.reporting import plots

    made: list[tuple[str, str]] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in evaluations:
        groups[(e["benchmark"], e["label"])].append(e)
    for bench in _benchmarks(evaluations):
        labels = [lab for (b, lab) in groups if b == bench]
        langs = groups[(bench, labels[0])][0]["metrics"]["languages"]
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in bench)
        maps = {lab: _mean_pair_map(groups[(bench, lab)]) for lab in labels}
        for lab in labels:
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in lab)
            p = plots.pair_heatmap(
                maps[lab],
                langs,
                f"{bench}: {lab} mAP per language pair",
                out_dir / f"{slug}-pairs-{name}.png",
            )
            made.append((f"{bench}: {lab} per-pair mAP", p.name))
        for ref in reference_labels:
            if ref not in maps:
                continue
            for lab in labels:
                if lab == ref:
                    continue
                name = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{ref}-vs-{lab}")
                p = plots.delta_heatmap(
                    maps[ref],
                    maps[lab],
                    langs,
                    f"{bench}: {ref} minus {lab} (mAP)",
                    out_dir / f"{slug}-delta-{name}.png",
                )
                made.append((f"{bench}: {ref} minus {lab}", p.name))
        rd = {
            lab: (
                cells[bench][lab]["rank distance"]["mean"],
                *cells[bench][lab]["rank distance"]["ci"],
            )
            for lab in labels
        }
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
            zl = ", ".join(cells[bench][labels[0]]["zero-shot"]["languages"])
            p = plots.zero_shot_bars(
                zs, f"{bench}: zero-shot languages ({zl})", out_dir / f"{slug}-zero-shot.png"
            )
            made.append((f"{bench}: zero-shot languages", p.name))
    return made


def write_report(
    cfg: Any, evaluations: list[dict[str, Any]], meta: dict[str, Any], output: Path
) -> Path:
    """Write report.md, results.json, results.csv and plots/ into ``output``."""
    t0 = time.perf_counter()
    labels = _labels(evaluations)
    benches = _benchmarks(evaluations)
    cells = aggregate(evaluations)
    reference_labels = [r["label"] for r in meta["runs"] if r["strategy"] == cfg.reference]
    reference_labels = list(dict.fromkeys(reference_labels))
    tests = paired_tests(
        evaluations, reference_labels, permutations=cfg.permutations, bootstrap=cfg.bootstrap
    )
    plot_dir = output / "plots"
    made = _plots(evaluations, cells, reference_labels, plot_dir)

    seeds = cfg.seeds
    lines = [
        f"# babelir compare: {cfg.name}",
        "",
        f"Base model: `{cfg.model or 'multilingual-e5-small (offline build)'}`. "
        f"Training data: `{cfg.train.data}` (articles `{cfg.train.articles}`, languages "
        f"{', '.join(meta['facts'].get('train_languages', []))}; "
        f"{meta['facts'].get('train_items', '?')} items), {cfg.train.max_steps} steps x "
        f"batch {cfg.train.batch_size}, lr {cfg.train.learning_rate:g}, "
        f"max length {cfg.train.max_seq_length}"
        + (", frozen word embeddings" if cfg.train.freeze_embeddings else "")
        + ". "
        f"Seeds: {', '.join(map(str, seeds))}.",
        "",
        "Benchmarks: "
        + "; ".join(
            f"{k} ({v['num_questions']} questions, {v['num_candidates']} candidates, "
            f"articles {v['articles']}, {len(v['languages'])} languages)"
            for k, v in meta["facts"]["benchmarks"].items()
        )
        + ".",
        "",
        "## mAP (LAReQA: AP over the full ranking / number of relevant)",
        "",
        _table(cells, labels, benches, ["mono mAP", "cross mAP", "multi mAP"], 4),
        "",
        "## Recall and language bias (rank distance: lower is better)",
        "",
        _table(cells, labels, benches, ["mono R@1", "cross R@1", "multi R@10", "rank distance"], 4),
        "",
    ]
    if len(seeds) > 1:
        lines += [
            f"Cells are mean ± half-width of the 95% t-interval over {len(seeds)} seeds "
            "(the base model has one value). Bold marks the best mean.",
            "",
        ]
    else:
        lines += [
            "One seed: cells are single runs; see the paired tests for what differences "
            "the queries support. Bold marks the best value.",
            "",
        ]
    zs_rows = []
    for b in benches:
        for lab in labels:
            z = cells[b].get(lab, {}).get("zero-shot")
            if z:
                zs_rows.append(
                    f"| {b} | {lab} | {z['mono']['mean']:.4f} | "
                    f"{z['cross']['mean']:.4f} | {z['multi']['mean']:.4f} |"
                )
    if zs_rows:
        zl = next(
            cells[b][lab]["zero-shot"]["languages"]
            for b in benches
            for lab in labels
            if "zero-shot" in cells[b].get(lab, {})
        )
        lines += [
            f"## Zero-shot query languages ({', '.join(zl)}; never in training)",
            "",
            "| benchmark | model | mono mAP | cross mAP | multi mAP |",
            "|---|---|---|---|---|",
            *zs_rows,
            "",
        ]
    lines += [
        "## Paired tests (reference vs each other model, over queries)",
        "",
        "| benchmark | reference | vs | setting | difference | 95% bootstrap CI | p | "
        "p (Holm) | outcome |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in tests:
        d = 1 if t["setting"] == "rank_distance" else 4
        lines.append(
            f"| {t['benchmark']} | {t['reference']} | {t['baseline']} | {t['setting']} | "
            f"{t['mean_difference']:+.{d}f} | [{t['bootstrap_ci'][0]:+.{d}f}, "
            f"{t['bootstrap_ci'][1]:+.{d}f}] | {t['p_value']:.4f} | {t['p_holm']:.4f} | "
            f"{t['outcome']} |"
        )
    lines += [
        "",
        "Paired sign-flip permutation test on per-query values (mono: AP in the query's "
        "language; cross: mean AP over the other languages; multi: pooled AP; rank "
        f"distance), averaged over seeds; Holm-corrected over all {len(tests)} tests. "
        "An outcome is 'better' or 'worse' only if the corrected p < 0.05, the bootstrap "
        "interval excludes 0"
        + (" and the interval over seeds excludes 0" if len(seeds) > 1 else "")
        + ".",
        "",
        "## Verdict",
        "",
        *verdict(tests, reference_labels),
        "",
        "## Plots",
        "",
        *[f"- {title}: ![{title}](plots/{name})" for title, name in made],
        "",
        "## Provenance",
        "",
        f"babelir {meta['versions']['babelir']}, commit `{meta['git_commit']}`, torch "
        f"{meta['versions']['torch']}, transformers {meta['versions']['transformers']}, "
        f"sentence-transformers {meta['versions']['sentence_transformers']}. "
        "Wall time (s): "
        + ", ".join(f"{k} {v}" for k, v in meta["timing_s"].items())
        + f". Reused from cache: {meta['reused']['train']} training runs, "
        f"{meta['reused']['eval']} evaluations.",
        "",
    ]
    timing = dict(meta["timing_s"])
    timing["report"] = round(time.perf_counter() - t0, 2)
    if "t_start" in meta:
        timing["total"] = round(time.perf_counter() - meta["t_start"], 2)
    results = {
        **{k: v for k, v in meta.items() if k not in ("timing_s", "t_start")},
        "timing_s": timing,
        "cells": cells,
        "paired_tests": tests,
        "verdict": verdict(tests, reference_labels),
        "evaluations": [{k: v for k, v in e.items() if k != "per_query"} for e in evaluations],
        "plots": [name for _, name in made],
    }
    write_text(output / "results.csv", _csv(evaluations, meta["runs"]))
    write_json(output / "results.json", results)
    write_text(output / "report.md", "\n".join(lines))
    return output / "report.md"

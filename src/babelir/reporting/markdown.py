"""Rendering of a comparison report: ``report.md`` text and ``results.csv`` rows.

Pure functions of the typed input and the computed analysis; no statistics here (they
are in :mod:`babelir.reporting.analysis` and :mod:`babelir.reporting.claims`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from babelir.evaluation.families import DEFAULT_KIND, get_family
from babelir.evaluation.measures import LANG_PREF, LAREQA_ALL, Measure, measure
from babelir.reporting.analysis import TESTED
from babelir.reporting.beyond_verdict import beyond_markdown
from babelir.reporting.claims import claim_interval_text, seeds_needed_text
from babelir.reporting.debias_verdict import debias_markdown
from babelir.reporting.precision_verdict import precision_markdown
from babelir.reporting.schema import EvalRecord, ReportInput, RunInfo
from babelir.reporting.summary import Analysis

MAP_COLUMNS = ("mono mAP", "cross mAP", "multi mAP")
OTHER_COLUMNS = (
    "mono R@1",
    "cross R@1",
    "multi R@10",
    "rank distance",
    *(m.label for m in LANG_PREF),
)


def _missing(v: float | None) -> bool:
    return v is None or math.isnan(v)


def _cell(cell: Mapping[str, Any], m: Measure, bold: bool) -> str:
    """``mean`` or ``mean ± CI half-width`` over seeds, bold when best."""
    if _missing(cell["mean"]):
        return "-"
    text = m.format(cell["mean"])
    if cell.get("ci") is not None:
        text += f" ± {m.format((cell['ci'][1] - cell['ci'][0]) / 2)}"
    return f"**{text}**" if bold else text


def _best(rows: Mapping[str, Mapping[str, Any]], m: Measure) -> str | None:
    vals = {lab: row[m.label]["mean"] for lab, row in rows.items()}
    vals = {k: v for k, v in vals.items() if not _missing(v)}
    if not vals:
        return None
    return (max if m.higher_is_better else min)(vals, key=vals.__getitem__)


def metric_table(
    cells: Mapping[str, Mapping[str, Mapping[str, Any]]],
    labels: Sequence[str],
    benches: Sequence[str],
    columns: Sequence[str],
) -> str:
    """Rows = models, columns = benchmark x measure, best mean in bold."""
    ms = [measure(c) for c in columns]
    head = "| model | " + " | ".join(f"{b} {m.label}" for b in benches for m in ms) + " |"
    rows = [head, "|---|" + "---|" * (len(benches) * len(ms))]
    best = {(b, m.label): _best(cells[b], m) for b in benches for m in ms}
    # rows evaluated on none of these benchmarks (bm25: passage retrieval only) are left out
    for lab in [lab for lab in labels if any(lab in cells[b] for b in benches)]:
        parts = []
        for b in benches:
            for m in ms:
                row = cells[b].get(lab)
                parts.append(
                    "-" if row is None else _cell(row[m.label], m, best[(b, m.label)] == lab)
                )
        rows.append(f"| {lab} | " + " | ".join(parts) + " |")
    return "\n".join(rows)


def _setup_lines(inp: ReportInput) -> list[str]:
    facts = inp.provenance.facts
    seeds = inp.all_seeds()
    out = [f"# babelir compare: {inp.name}", ""]
    if inp.description:
        out += [inp.description.strip(), ""]
    s = inp.setup
    if s is not None:
        budget = f"{s.max_steps} steps" if s.max_steps is not None else f"{s.epochs:g} epochs"
        extra = "".join(f", {k} {v}" for k, v in s.extra.items())
        out += [
            f"Base model: `{s.model or 'multilingual-e5-small (offline build)'}`. "
            f"Training data: `{s.data}` (articles `{s.articles}`, languages "
            f"{', '.join(facts.get('train_languages', []))}; "
            f"{facts.get('train_items', '?')} items), {budget} x batch {s.batch_size}, "
            f"lr {s.learning_rate:g}, max length {s.max_seq_length}"
            + (", frozen word embeddings" if s.freeze_embeddings else "")
            + f"{extra}. Seeds: {', '.join(map(str, seeds))}.",
            "",
        ]
    if facts.get("benchmarks"):
        out += [
            "Benchmarks: "
            + "; ".join(_benchmark_fact(k, v) for k, v in facts["benchmarks"].items())
            + ".",
            "",
        ]
    regime = facts.get("regime") or {}
    inside = sorted(k for k, v in regime.items() if v == "in-domain")
    if inside:
        out += [
            f"In-domain: {', '.join(inside)} evaluates other articles of the training "
            "dataset, so these numbers do not measure zero-shot transfer (the paper's "
            "setting; see the zero-shot profile).",
            "",
        ]
    elif regime:
        out += [
            "Zero-shot: no benchmark is the training dataset, and no training or validation "
            "item is in a benchmark (checked by question id and normalised text).",
            "",
        ]
    return out


def _benchmark_fact(title: str, v: Mapping[str, Any]) -> str:
    """One benchmark's setup line, as its family describes an entry (a LAReQA summary
    has no ``kind``)."""
    n = len(v["languages"])
    langs = ", ".join(v["languages"]) if n <= 4 else f"{n} languages"
    return f"{title} ({get_family(v.get('kind', DEFAULT_KIND)).fact(v, langs)})"


def _zero_shot(cells, labels, benches) -> list[str]:
    rows, langs = [], None
    for b in benches:
        for lab in labels:
            z = cells[b].get(lab, {}).get("zero-shot")
            if z:
                langs = langs or z["languages"]
                rows.append(
                    f"| {b} | {lab} | {z['mono']['mean']:.4f} | "
                    f"{z['cross']['mean']:.4f} | {z['multi']['mean']:.4f} |"
                )
    if not rows:
        return []
    return [
        f"## Zero-shot query languages ({', '.join(langs)}; never in training)",
        "",
        "| benchmark | model | mono mAP | cross mAP | multi mAP |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def _ci(ci: Sequence[float] | None, m: Measure) -> str:
    if ci is None:
        return "-"
    return f"[{m.format(ci[0], signed=True)}, {m.format(ci[1], signed=True)}]"


def _seed_stats(cells, labels, benches, level: float) -> list[str]:
    """Mean, sd and t-interval over seeds of every cell of every multi-seed model."""
    pct = round(level * 100)
    rows = []
    for b in benches:
        for lab in labels:
            row = cells[b].get(lab)
            if row is None or len(set(row["seeds"])) < 2:
                continue
            for m in LAREQA_ALL:
                c = row[m.label]
                if c["ci"] is None:
                    continue
                lo, hi = c["ci"]
                rows.append(
                    f"| {b} | {lab} | {c['n']} | {m.label} | {m.format(c['mean'])} | "
                    f"{m.format(c['std'])} | [{m.format(lo)}, {m.format(hi)}] |"
                )
    head = ["## Seed-level statistics (training noise)", ""]
    if not rows:
        return [
            *head,
            "One seed per model: seed-level standard deviations and intervals are "
            "unavailable; the intervals below measure test-set noise only.",
            "",
        ]
    return [
        *head,
        f"| benchmark | model | seeds | metric | mean | sd | {pct}% t-interval |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _test_row(t: Mapping[str, Any], *cells: str) -> str:
    """A markdown row of a paired test: benchmark, reference, baseline, then ``cells``."""
    first = (t["benchmark"], t["reference"], t["baseline"])
    return "| " + " | ".join(map(str, [*first, *cells])) + " |"


def _diff(t: Mapping[str, Any], m: Measure) -> str:
    return m.format(t["mean_difference"], signed=True)


def _per_query_tests(tests: Sequence[Mapping[str, Any]], multi_seed: bool) -> list[str]:
    lines = [
        "## Paired tests (reference vs each other model, over queries)",
        "",
        "| benchmark | reference | vs | setting | difference | 95% bootstrap CI | p | "
        "p (Holm) | outcome |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in tests:
        m = measure(t["measure"])
        lines.append(_test_row(
            t, t["setting"], _diff(t, m), _ci(t["bootstrap_ci"], m), f"{t['p_value']:.4f}",
            f"{t['p_holm']:.4f}", t["outcome"],
        ))  # fmt: skip
    return [
        *lines,
        "",
        "Paired sign-flip permutation test on per-query values (mono: AP in the query's "
        "language; cross: mean AP over the other languages; multi: pooled AP; rank "
        "distance; lang_pref_excess@k: share of the pooled top k in the query's language "
        "minus a language-blind ranker's share, where the evaluations have it), averaged "
        f"over seeds; Holm-corrected over all {len(tests)} tests. "
        "An outcome is 'better' or 'worse' only if the corrected p < 0.05"
        + (", the bootstrap interval" if multi_seed else " and the bootstrap interval")
        + " excludes 0"
        + (" and the interval over seeds excludes 0" if multi_seed else "")
        + ". These intervals measure test-set noise (which questions), not training noise.",
        "",
    ]


def _seed_tests(seed_tests: Sequence[Mapping[str, Any]], level: float) -> list[str]:
    pct = round(level * 100)
    head = ["## Seed-level paired differences (reference vs each other model)", ""]
    tested = {m.label for m in TESTED}  # results.json has every measure
    rows = [t for t in seed_tests if t["ci"] is not None and t["measure"] in tested]
    if not rows:
        reasons = sorted({t["reason"] for t in seed_tests if t.get("reason")})
        why = "; ".join(reasons) or "seed-level interval unavailable (no comparison)"
        return [
            *head,
            f"{why[0].upper()}{why[1:]}: differences between models are judged on "
            "test-set noise only.",
            "",
        ]
    lines = [
        *head,
        f"| benchmark | reference | vs | metric | seeds | mean difference | sd | "
        f"{pct}% t-interval | p (paired t) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in rows:
        m = measure(t["measure"])
        lines.append(_test_row(
            t, t["measure"], str(t["n_seeds"]), _diff(t, m), m.format(t["std"]),
            _ci(t["ci"], m), f"{t['p_value']:.4f}",
        ))  # fmt: skip
    return [
        *lines,
        "",
        "Per-seed difference of the cell values of two models trained with the same seed "
        "(the base model, which has no seed, is subtracted from every seed), mean and "
        "Student t-interval with n - 1 degrees of freedom. Not multiplicity-corrected.",
        "",
    ]


def _claims(analysis: Analysis, margin: float, level: float) -> list[str]:
    pct = round(level * 100)
    if analysis.claims and all(v["missing"] for v in analysis.claims):
        # e.g. a precision study of hybrid alone: one line, not a table of "not tested"
        missing = sorted({m for v in analysis.claims for m in v["missing"]})
        return [
            "## Verdict on the paper's claims",
            "",
            f"Not tested: {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in this comparison, and every "
            "claim compares hybrid with them.",
            "",
        ]
    planned = any(v.get("seeds_to_resolve") for v in analysis.claims)
    head = f"| benchmark | claim | row | outcome | difference row - other, {pct}% CI (basis) |"
    lines = [
        "## Verdict on the paper's claims",
        "",
        head + (" seeds to resolve |" if planned else ""),
        "|---|---|---|---|---|" + ("---|" if planned else ""),
    ]
    for v in analysis.claims:
        m = measure(v["measure"])
        caveat = f" ({v['caveat']})" if v["caveat"] else ""
        lines.append(
            f"| {v['benchmark']} | {v['claim']}. {v['text']} | {v['model']} | "
            f"**{v['outcome']}**{caveat} | {claim_interval_text(v, m)} |"
            + (f" {seeds_needed_text(v) or '-'} |" if planned else "")
        )
    note = (
        [
            "",
            "Seeds to resolve: for a claim not resolved over seeds, the fewest seeds whose "
            f"{pct}% t-interval would decide it if the paired seed differences kept the "
            "mean and spread measured here (a planning estimate from few seeds, not a "
            "promise), and which way it would then go.",
        ]
        if planned
        else []
    )
    return [
        *lines,
        *note,
        "",
        f"Decision rules ({pct}% intervals of the difference hybrid - other). Claims 1-2 "
        f'("~", non-inferiority with margin {margin:g} mAP): supported if the lower bound '
        f"> -{margin:g}, contradicted if the upper bound < -{margin:g}, else not resolved. "
        'Claims 3-4 ("best" / "lowest", against x-x-mono and x-y): supported if every '
        "interval excludes 0 in hybrid's favour, contradicted if one excludes 0 in the "
        "other's favour, else not resolved. The deciding interval is over seeds (paired by "
        "seed, t with n - 1 df) when both models share >= 2 seeds; otherwise over queries "
        "(paired bootstrap), which measures test-set noise only. Only plain strategy rows "
        "count; the base model and post-hoc rows do not.",
        "",
    ]


def _lareqa_lines(inp: ReportInput, analysis: Analysis) -> list[str]:
    """The LAReQA sections: metric tables, seed statistics, tests, claims, debiasing."""
    cells, labels, benches = analysis.cells, inp.display_labels(), inp.benchmarks()
    multi_seed = len(inp.all_seeds()) > 1
    return [
        "## mAP (LAReQA: AP over the full ranking / number of relevant)",
        "",
        metric_table(cells, labels, benches, MAP_COLUMNS),
        "",
        "## Recall and language bias (rank distance, lang pref excess: lower is better)",
        "",
        metric_table(cells, labels, benches, OTHER_COLUMNS),
        "",
        "Language preference (pooled ranking): lang pref@k is the share of the top k in the "
        "query's language; lang pref excess@k subtracts a language-blind ranker's share "
        "(0: blind, > 0: prefers the query's language; lower is less biased). '-' in these "
        "columns: an evaluation stored before these measures existed.",
        "",
        (
            f"Cells are mean ± half-width of the {round(inp.level * 100)}% t-interval over "
            f"{len(inp.all_seeds())} seeds (models with one value show it alone). Bold "
            "marks the best mean."
            if multi_seed
            else "One seed: cells are single runs; see the paired tests for what differences "
            "the queries support. Bold marks the best value."
        ),
        "",
        *_zero_shot(cells, labels, benches),
        *_seed_stats(cells, labels, benches, inp.level),
        *_per_query_tests(analysis.tests, multi_seed),
        *_seed_tests(analysis.seed_tests, inp.level),
        *_claims(analysis, inp.margin, inp.level),
        *debias_markdown(analysis.debias, inp.level),
        *precision_markdown(analysis.precision, inp.level),
        *beyond_markdown(analysis.beyond, inp.merges, inp.level),
        "### Reference vs each model (per-query tests)",
        "",
        *analysis.pairwise,
        "",
    ]


def render_markdown(
    inp: ReportInput, analysis: Analysis, plots: Sequence[tuple[str, str]], curves: str | None
) -> str:
    """The whole report.md; ``plots`` are (title, file name) under plots/, ``curves`` the
    learning-curve plot's file name (or ``None``)."""
    from babelir.reporting import retrieval

    labels, p = inp.display_labels(), inp.provenance
    passages = retrieval.render(analysis.retrieval, labels, inp.retrieval, inp.level)
    lareqa = _lareqa_lines(inp, analysis) if inp.benchmarks() else []
    lines = [*_setup_lines(inp), *lareqa, *passages]
    if curves:
        lines += [
            "## Learning curves",
            "",
            "Validation loss and mAP vs training step, one line per strategy (mean over "
            "seeds, band min..max; a star marks the checkpoint kept by validation).",
            "",
            f"![learning curves](plots/{curves})",
            "",
        ]
    lines += [
        "## Plots",
        "",
        *[f"- {title}: ![{title}](plots/{name})" for title, name in plots],
        "",
        "## Provenance",
        "",
        f"babelir {p.versions.get('babelir')}, commit `{p.git_commit}`, torch "
        f"{p.versions.get('torch')}, transformers {p.versions.get('transformers')}, "
        f"sentence-transformers {p.versions.get('sentence_transformers')}. "
        "Wall time (s): "
        + ", ".join(f"{k} {v}" for k, v in p.timing_s.items())
        + f". Reused from cache: {p.reused.get('train', 0)} training runs, "
        + (f"{p.reused['merge']} merges, " if p.reused.get("merge") else "")
        + f"{p.reused.get('eval', 0)} evaluations.",
        "",
    ]
    return "\n".join(lines)


def render_csv(
    evaluations: Sequence[EvalRecord],
    runs: Sequence[RunInfo],
    retrieval: Sequence[EvalRecord] = (),
) -> str:
    """Long-format rows: model, strategy, alpha, seed, benchmark, setting, value (LAReQA
    settings, then the passage-retrieval measures)."""
    from babelir.reporting.retrieval import csv_rows

    strategy = {(r.label, r.seed): (r.strategy, r.alpha) for r in runs}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "strategy", "alpha", "seed", "benchmark", "setting", "value"])
    rows: list[tuple[EvalRecord, str, float | None]] = []
    for e in evaluations:
        # a measure an evaluation predates has no row; an undefined one an empty value
        values = [(m.label, m.get(e.metrics)) for m in LAREQA_ALL if m.present(e.metrics)]
        zs = e.metrics.get("zero_shot_languages")
        if zs:
            langs = ",".join(zs["languages"])
            values += [
                (f"zero-shot ({langs}) {k} mAP", zs["map"][k]) for k in ("mono", "cross", "multi")
            ]
        rows.extend((e, name, v) for name, v in values)
    rows.extend(csv_rows(retrieval))
    for e, name, v in rows:
        strat, alpha = strategy.get((e.label, e.seed), ("", ""))
        seed = "" if e.seed is None else e.seed
        value = "" if v is None else repr(v)
        w.writerow([e.label, strat, "" if alpha is None else alpha, seed, e.benchmark, name, value])
    return buf.getvalue()

"""The report's passage-retrieval section: MIRACL and XOR-Retrieve rows, tests, claims.

Records are :class:`~babelir.reporting.schema.EvalRecord` whose ``metrics`` are the
family's metrics.json (``benchmark``: ``miracl`` or ``xor-retrieve``) and whose
``per_query`` holds ``query_ids`` and one array per measure key (nDCG@10 / R@100 per
MIRACL query, 0/1 R@2kt / R@5kt per XOR question). The statistics are those of the
LAReQA section (:mod:`babelir.reporting.analysis`): cells over seeds with t-intervals,
per-query sign-flip permutation tests and bootstrap intervals of the reference strategy
against every other row (Holm over this section's tests), and seed-level differences.

Claims map where the paper's settings do: MIRACL queries and passages share a language,
so it tests claim 1 (hybrid ~ x-x-mono, monolingual); XOR-Retrieve questions in 7
languages retrieve English passages, so it tests claim 2 (hybrid ~ x-y, cross-lingual).
Claims 3 and 4 need a multilingual candidate pool, which neither has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from babelir.evaluation.families import BenchmarkFamily, retrieval_family
from babelir.evaluation.measures import Measure
from babelir.reporting.analysis import benchmarks, group, paired_tests, seed_summary
from babelir.reporting.claims import Claim, evaluate_claims
from babelir.reporting.schema import EvalRecord, RunInfo


def family(rec: EvalRecord) -> BenchmarkFamily:
    """The retrieval family of a record (its metrics.json's ``benchmark``)."""
    try:
        return retrieval_family(rec.metrics.get("benchmark"))
    except ValueError as e:
        raise ValueError(f"{rec.benchmark}: {e}") from None


def measures(rec: EvalRecord) -> tuple[Measure, ...]:
    return family(rec).measures


def claim(rec: EvalRecord) -> Claim:
    """The paper's claim the record's family tests (module docstring)."""
    c = family(rec).claim
    assert c is not None, rec.benchmark
    return Claim(c.id, c.text, c.measure, c.kind, c.others)  # type: ignore[arg-type]


def cells(records: Sequence[EvalRecord], level: float = 0.95) -> dict[str, Any]:
    """``cells[bench][label]``: per measure the seed summary of the macro value, and the
    per-language mean over seeds of every measure."""
    out: dict[str, Any] = defaultdict(dict)
    for (bench, label), items in group(records).items():
        ms = measures(items[0])
        row: dict[str, Any] = {"seeds": [e.seed for e in items], "per_language": {}}
        for m in ms:
            pairs = [(e.seed, m.get(e.metrics)) for e in items]
            pairs = [(s, v) for s, v in pairs if v is not None]
            row[m.label] = {
                "values": [v for _, v in pairs],
                "seeds": [s for s, _ in pairs],
                **seed_summary([v for _, v in pairs], level),
            }
        langs = list(items[0].metrics.get("per_language") or {})
        for lang in langs:
            row["per_language"][lang] = {
                m.label: float(np.mean([e.metrics["per_language"][lang][m.key] for e in items]))
                for m in ms
            }
        out[bench][label] = row
    return dict(out)


def per_query(items: Sequence[EvalRecord], m: Measure) -> tuple[np.ndarray, np.ndarray]:
    """(query ids, values averaged over seeds) of one row; every seed must have scored
    the same queries in the same order."""
    ids = items[0].per_query["query_ids"]
    for e in items[1:]:
        if not np.array_equal(e.per_query["query_ids"], ids):
            raise ValueError(f"{e.benchmark}: {e.label} seeds were scored on other queries")
    return ids, np.mean([np.asarray(e.per_query[m.key], dtype=float) for e in items], axis=0)


def _paired(a: Sequence[EvalRecord], b: Sequence[EvalRecord], m: Measure):
    ia, qa = per_query(a, m)
    ib, qb = per_query(b, m)
    if not np.array_equal(ia, ib):
        raise ValueError(
            f"{a[0].benchmark}: {a[0].label} and {b[0].label} were scored on other queries"
        )
    return qa, qb


def tests(
    records: Sequence[EvalRecord], reference_labels: Sequence[str], **settings: Any
) -> list[dict[str, Any]]:
    """Per-query tests of each reference row against every other row, every measure of
    the family (:func:`babelir.reporting.analysis.paired_tests`, whose ``permutations``,
    ``bootstrap`` and ``level`` are ``settings``); Holm-corrected over the tests of this
    section."""
    return paired_tests(records, reference_labels, measures=measures, paired=_paired, **settings)


def claims(
    records: Sequence[EvalRecord], runs: Sequence[RunInfo], **settings: Any
) -> list[dict[str, Any]]:
    """The mapped claim of each benchmark (module docstring), decided as the LAReQA
    claims are (:func:`babelir.reporting.claims.evaluate_claims`, whose ``margin``,
    ``bootstrap`` and ``level`` are ``settings``): over seeds with >= 2 shared seeds, else
    over queries (test-set noise)."""
    out: list[dict[str, Any]] = []
    for bench in benchmarks(records):
        mine = [e for e in records if e.benchmark == bench]
        out += evaluate_claims(mine, runs, claims=(claim(mine[0]),), paired=_paired, **settings)
    return out


def analyse(
    records: Sequence[EvalRecord],
    runs: Sequence[RunInfo],
    reference_labels: Sequence[str],
    *,
    permutations: int = 10000,
    bootstrap: int = 2000,
    level: float = 0.95,
    margin: float = 0.01,
) -> dict[str, Any]:
    """Everything the section shows (``{}`` without retrieval records): results.json's
    ``retrieval``."""
    if not records:
        return {}
    return {
        "cells": cells(records, level),
        "paired_tests": tests(
            records, reference_labels, permutations=permutations, bootstrap=bootstrap, level=level
        ),
        "claims": claims(records, runs, margin=margin, bootstrap=bootstrap, level=level),
    }


# --------------------------------------------------------------------------- rendering


def _cell(c: Mapping[str, Any], m: Measure, bold: bool) -> str:
    if c["mean"] is None:
        return "-"
    text = m.format(c["mean"])
    if c.get("ci") is not None:
        text += f" ± {m.format((c['ci'][1] - c['ci'][0]) / 2)}"
    return f"**{text}**" if bold else text


def _table(rows: Mapping[str, Any], labels: Sequence[str], ms: Sequence[Measure]) -> list[str]:
    order = [lab for lab in labels if lab in rows] + [lab for lab in rows if lab not in labels]
    langs = list(rows[order[0]]["per_language"])
    primary = ms[0]
    head = (
        "| model | "
        + " | ".join(f"{m.label} (macro)" for m in ms)
        + " | "
        + " | ".join(f"{lang} {primary.label}" for lang in langs)
        + " |"
    )
    lines = [head, "|---|" + "---|" * (len(ms) + len(langs))]
    best = {}
    for m in ms:
        vals = {lab: rows[lab][m.label]["mean"] for lab in order}
        vals = {k: v for k, v in vals.items() if v is not None}
        best[m.label] = max(vals, key=vals.__getitem__) if vals else None
    for lab in order:
        r = rows[lab]
        parts = [_cell(r[m.label], m, best[m.label] == lab) for m in ms]
        parts += [primary.format(r["per_language"][lang][primary.label]) for lang in langs]
        lines.append(f"| {lab} | " + " | ".join(parts) + " |")
    return lines


def render(
    section: Mapping[str, Any],
    labels: Sequence[str],
    records: Sequence[EvalRecord],
    level: float = 0.95,
) -> list[str]:
    """Markdown lines of the section: per benchmark its table, then the tests and claims."""
    if not section:
        return []
    from babelir.evaluation.measures import measure
    from babelir.reporting.claims import claim_interval_text

    pct = round(level * 100)
    out = ["## Passage retrieval (MIRACL, XOR-Retrieve)", ""]
    for bench, rows in section["cells"].items():
        first = next(e for e in records if e.benchmark == bench)
        fam = family(first)
        assert fam.describe is not None, bench
        out += [f"### {bench}", "", f"{fam.describe(first.metrics)}.", ""]
        out += [*_table(rows, labels, fam.measures), ""]
        if first.metrics.get("corpus_limit"):
            out += [
                f"Only the first {first.metrics['corpus_limit']} passages of the corpus were "
                "searched (corpus_limit): these are not the task's numbers.",
                "",
            ]
    out += [
        f"Cells: mean ± half-width of the {pct}% t-interval over seeds where a row has "
        "several; bm25 and base have no seed. Per-language columns show the first measure.",
        "",
    ]
    if section["paired_tests"]:
        out += [
            "| benchmark | reference | vs | metric | difference | 95% bootstrap CI | "
            "p | p (Holm) | outcome |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in section["paired_tests"]:
            m = measure(t["measure"])
            lo, hi = t["bootstrap_ci"]
            out.append(
                f"| {t['benchmark']} | {t['reference']} | {t['baseline']} | {t['measure']} | "
                f"{m.format(t['mean_difference'], signed=True)} | "
                f"[{m.format(lo, signed=True)}, {m.format(hi, signed=True)}] | "
                f"{t['p_value']:.4f} | {t['p_holm']:.4f} | {t['outcome']} |"
            )
        out += [
            "",
            "Paired sign-flip permutation tests over queries (values averaged over seeds), "
            f"Holm-corrected over these {len(section['paired_tests'])} tests; 'better' / "
            "'worse' also need the bootstrap interval (and, with seeds, the interval over "
            "seeds) to exclude 0.",
            "",
        ]
    for v in section["claims"]:
        m = measure(v["measure"])
        caveat = f" ({v['caveat']})" if v["caveat"] else ""
        out.append(
            f"- **{v['benchmark']}, claim {v['claim']}** ({v['text']}; row `{v['model']}`): "
            f"**{v['outcome']}**{caveat}. {pct}% CI of {v['model']} - other: "
            f"{claim_interval_text(v, m)}; non-inferiority margin {v['margin']:g}."
        )
    if section["claims"]:
        out += [
            "",
            "Claims 3 (best multilingual) and 4 (lowest language bias) need a candidate pool "
            "in several languages; MIRACL and XOR-Retrieve have none, so only the LAReQA "
            "benchmarks test them.",
            "",
        ]
    return out


def csv_rows(records: Sequence[EvalRecord]) -> list[tuple[EvalRecord, str, float | None]]:
    """(record, measure label, macro value) rows for results.csv."""
    return [(e, m.label, m.get(e.metrics)) for e in records for m in measures(e)]

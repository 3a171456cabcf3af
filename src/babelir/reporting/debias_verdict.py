"""What post-hoc debiasing buys next to batch composition (rows such as ``hybrid+lsar``).

For every model row R that has a debiased row ``R+method``, the difference
``R+method - R`` on monolingual mAP (the cost), multilingual mAP and rank distance (the
gains), with the same deciding intervals as the paper's claims (over seeds when both
share >= 2 seeds, else over queries). Then, per benchmark, which row is best on
multilingual mAP and on rank distance, and whether that is post-hoc debiasing alone
(``base+method``), training alone, or both (``trained+method``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from babelir.evaluation.measures import MONO_MAP, MULTI_MAP, RANK_DISTANCE, Measure
from babelir.reporting.analysis import group
from babelir.reporting.claims import difference
from babelir.reporting.schema import EvalRecord

EFFECTS: tuple[Measure, ...] = (MONO_MAP, MULTI_MAP, RANK_DISTANCE)


def _mean(items: Sequence[EvalRecord], m: Measure) -> float:
    values = [m.get(e.metrics) for e in items]
    return sum(v for v in values if v is not None) / max(1, len(values))


def _kind(label: str) -> str:
    base, _, method = label.partition("+")
    if not method:
        return "base model" if base == "base" else "training alone"
    return "post-hoc alone" if base == "base" else "training + post-hoc"


def debias_effects(
    evaluations: Sequence[EvalRecord], *, bootstrap: int = 2000, level: float = 0.95
) -> list[dict[str, Any]]:
    """Per benchmark: each ``R+method`` against ``R``, and the best rows overall."""
    groups = group(evaluations)
    out: list[dict[str, Any]] = []
    for bench in dict.fromkeys(e.benchmark for e in evaluations):
        labels = [lab for (b, lab) in groups if b == bench]
        pairs = [(lab, lab.partition("+")[0]) for lab in labels if "+" in lab]
        pairs = [(d, s) for d, s in pairs if s in labels]
        if not pairs:
            continue
        effects = []
        for debiased, source in pairs:
            row = {"row": debiased, "source": source}
            for m in EFFECTS:
                row[m.label] = difference(
                    groups[(bench, debiased)], groups[(bench, source)], m,
                    bootstrap=bootstrap, level=level,
                )  # fmt: skip
            effects.append(row)
        best = {}
        for m in (MULTI_MAP, RANK_DISTANCE):
            sign = 1 if m.higher_is_better else -1
            winner = max(labels, key=lambda lab, m=m, s=sign: s * _mean(groups[(bench, lab)], m))
            source = winner.partition("+")[0]
            mono_cost = None
            if source != winner and source in labels:
                mono_cost = _mean(groups[(bench, winner)], MONO_MAP) - _mean(
                    groups[(bench, source)], MONO_MAP
                )
            best[m.label] = {
                "row": winner,
                "kind": _kind(winner),
                "value": _mean(groups[(bench, winner)], m),
                "mono_vs_source": mono_cost,
            }
        out.append({"benchmark": bench, "effects": effects, "best": best})
    return out


def _fmt(m: Measure, c: dict[str, Any]) -> str:
    lo, hi = c["ci"]
    basis = f"{c['n']} seeds" if c["basis"] == "seeds" else f"{c['n']} queries"
    return (
        f"{m.format(c['difference'], signed=True)} "
        f"[{m.format(lo, signed=True)}, {m.format(hi, signed=True)}] ({basis})"
    )


def debias_sentences(results: Sequence[dict[str, Any]]) -> list[str]:
    """Plain-language verdict lines: who wins multi mAP and rank distance, at what cost."""
    lines = []
    for r in results:
        for m in (MULTI_MAP, RANK_DISTANCE):
            b = r["best"][m.label]
            cost = (
                f"; its monolingual mAP vs {b['row'].partition('+')[0]}: "
                f"{MONO_MAP.format(b['mono_vs_source'], signed=True)}"
                if b["mono_vs_source"] is not None
                else ""
            )
            lines.append(
                f"{r['benchmark']}: best {m.label} is **{b['row']}** ({b['kind']}, "
                f"{m.format(b['value'])}){cost}."
            )
    return lines


def debias_markdown(results: Sequence[dict[str, Any]], level: float) -> list[str]:
    if not results:
        return []
    pct = round(level * 100)
    lines = [
        "## Post-hoc debiasing",
        "",
        f"Debiased row minus its source row, {pct}% CI (basis). A positive multi mAP and a "
        "negative rank distance are gains; the monolingual column is the cost.",
        "",
        "| benchmark | row | vs | " + " | ".join(m.label for m in EFFECTS) + " |",
        "|---|---|---|" + "---|" * len(EFFECTS),
    ]
    for r in results:
        for e in r["effects"]:
            cells = " | ".join(_fmt(m, e[m.label]) for m in EFFECTS)
            lines.append(f"| {r['benchmark']} | {e['row']} | {e['source']} | {cells} |")
    lines += ["", *[f"- {s}" for s in debias_sentences(results)], ""]
    return lines

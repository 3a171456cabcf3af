"""Does a row keep the base model's monolingual quality and beat the reference elsewhere?

The question of recipes that go beyond the paper's (weight-space merges, extra parallel
questions, another alpha): fine-tuning for cross-lingual retrieval costs monolingual mAP,
so a better recipe must keep monolingual mAP against the untrained base model while
gaining on the reference (plain hybrid) in cross-lingual and multilingual mAP.

For every row that is neither the base model, the reference nor a plain strategy row
(merged rows such as ``hybrid+merge(auto)`` and labelled recipe variants), per benchmark,
three seed-level differences (paired by seed, t-interval with n - 1 df, the base model
subtracted from every seed):

* mono mAP, row - base: ``kept`` if the interval's lower bound is above -margin and its
  upper bound is >= 0 (no loss resolved, none beyond the margin); ``small loss`` if a loss
  is resolved but stays inside the margin; ``lost`` if the interval lies below 0 and reaches
  past -margin; else ``not resolved``.
* cross and multi mAP, row - reference: ``better`` if the interval lies above 0,
  ``worse`` if below, else ``not resolved``.

The row's outcome holds ("keeps mono and beats the reference on cross and multi") only
if mono is ``kept`` and both others are ``better``; otherwise the sentence names the part
that did not hold. Fewer than 2 shared seeds decide nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from babelir.evaluation.measures import CROSS_MAP, MONO_MAP, MULTI_MAP
from babelir.reporting.analysis import group, seed_difference, seed_interval_table
from babelir.reporting.schema import EvalRecord

KEPT, SMALL_LOSS, LOST = "kept", "small loss", "lost"
BETTER, WORSE, NOT_RESOLVED = "better", "worse", "not resolved"


def decide_kept(ci: Sequence[float] | None, margin: float) -> str:
    """mono mAP, row minus base: the rule of the module docstring."""
    if ci is None:
        return NOT_RESOLVED
    lo, hi = ci
    if lo > -margin:
        return KEPT if hi >= 0 else SMALL_LOSS
    if hi < 0:
        return LOST
    return NOT_RESOLVED


def decide_gain(ci: Sequence[float] | None) -> str:
    """cross or multi mAP, row minus reference."""
    if ci is None:
        return NOT_RESOLVED
    lo, hi = ci
    return BETTER if lo > 0 else WORSE if hi < 0 else NOT_RESOLVED


def beyond_effects(
    evaluations: Sequence[EvalRecord],
    rows: Sequence[str],
    reference: str,
    *,
    margin: float = 0.01,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """One entry per (benchmark, row) of ``rows`` that has both the base and the reference."""
    groups = group(evaluations)
    out = []
    for bench in dict.fromkeys(e.benchmark for e in evaluations):
        base, ref = groups.get((bench, "base")), groups.get((bench, reference))
        if base is None or ref is None:
            continue
        for row in rows:
            items = groups.get((bench, row))
            if items is None:
                continue
            mono = seed_difference(items, base, MONO_MAP, level)
            cross = seed_difference(items, ref, CROSS_MAP, level)
            multi = seed_difference(items, ref, MULTI_MAP, level)
            parts = {
                "mono mAP vs base": {**mono, "decision": decide_kept(mono["ci"], margin)},
                f"cross mAP vs {reference}": {**cross, "decision": decide_gain(cross["ci"])},
                f"multi mAP vs {reference}": {**multi, "decision": decide_gain(multi["ci"])},
            }
            decisions = [p["decision"] for p in parts.values()]
            out.append(
                {
                    "benchmark": bench,
                    "row": row,
                    "reference": reference,
                    "margin": margin,
                    "level": level,
                    "measures": parts,
                    "holds": decisions == [KEPT, BETTER, BETTER],
                }
            )
    return out


def _interval(v: dict[str, Any]) -> str:
    if v["ci"] is None:
        return v.get("reason") or "no interval"
    lo, hi = v["ci"]
    return f"{v['mean_difference']:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def beyond_sentences(effects: Sequence[dict[str, Any]]) -> list[str]:
    """One line per row: the outcome as measured, or which part did not hold."""
    lines = []
    for e in effects:
        (mono_k, mono), (cross_k, cross), (multi_k, multi) = e["measures"].items()
        evidence = "; ".join(f"{k} {_interval(v)}" for k, v in e["measures"].items())
        if e["holds"]:
            head = (
                f"keeps monolingual mAP against the base model and beats {e['reference']} "
                "on cross and multi mAP"
            )
        else:
            failed = [
                f"{k}: {v['decision']}"
                for k, v, ok in (
                    (mono_k, mono, KEPT),
                    (cross_k, cross, BETTER),
                    (multi_k, multi, BETTER),
                )
                if v["decision"] != ok
            ]
            head = "does not hold (" + "; ".join(failed) + ")"
        lines.append(
            f"- **{e['benchmark']}, {e['row']}**: {head}; {evidence} (seed-level, paired by "
            "seed)."
        )
    return lines


def beyond_markdown(
    effects: Sequence[dict[str, Any]], merges: Sequence[dict[str, Any]], level: float
) -> list[str]:
    """The report section (merged rows' lambdas, then the verdict table); empty without
    such rows."""
    lines: list[str] = []
    if merges:
        lines += [
            "## Weight-space merges with the base model (WiSE-FT)",
            "",
            "| row | seed | lambda | picked by | validation curve (lambda: val mAP) |",
            "|---|---|---|---|---|",
        ]
        for m in merges:
            curve = ", ".join(
                f"{p['weight']:g}: {p['val_map']:.4f}" for p in m["curve"]
                if p.get("val_map") is not None
            )
            how = (
                "best mean validation mAP (mono, cross, multi) on the run's training-side "
                "validation items" if m["criterion"] else "fixed"
            )  # fmt: skip
            if m.get("tolerance") is not None:
                how = f"smallest lambda within {m['tolerance']:g} of the {how}"
            lines.append(
                f"| {m['label']} | {m['seed']} | {m['weight']:g} | {how} | {curve or '-'} |"
            )
        lines += [
            "",
            "lambda 0 is the base model, 1 the trained row. No benchmark item is among the "
            "validation items (checked disjoint by id and text when the run was trained).",
            "",
        ]
    if not effects:
        return lines
    lines += ["## Beyond the paper: keep monolingual mAP, gain cross and multi", ""]
    lines += seed_interval_table(
        ("benchmark", "row", "comparison"),
        (((e["benchmark"], e["row"], k), v) for e in effects for k, v in e["measures"].items()),
        level,
    )
    lines += [
        "",
        f"Row minus base (mono) or minus {effects[0]['reference']} (cross, multi), paired by "
        f"seed. Mono is kept if the interval's lower bound is above -{effects[0]['margin']:g} "
        "and no loss is resolved (upper bound >= 0); cross and multi are better if the "
        "interval lies above 0.",
        "",
        *beyond_sentences(effects),
        "",
    ]
    return lines


__all__ = [
    "BETTER",
    "KEPT",
    "LOST",
    "NOT_RESOLVED",
    "SMALL_LOSS",
    "WORSE",
    "beyond_effects",
    "beyond_markdown",
    "beyond_sentences",
    "decide_gain",
    "decide_kept",
]

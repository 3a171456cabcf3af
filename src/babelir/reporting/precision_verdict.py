"""Does the training precision change quality? Rows that differ only in precision.

A precision study (profile ``precision-study``) trains one recipe once per precision and
seed, e.g. ``hybrid (fp32)`` and ``hybrid (bf16)``. For every such group of runs (same
strategy and alpha, another precision), the first-listed precision is the reference and
each other row is compared with it, per benchmark, on mono, cross and multi mAP: the mean
of the per-seed differences ``other - reference`` (paired by seed) and its t-interval
(n - 1 df), which includes training noise.

Decision, an equivalence rule with compare's non-inferiority margin ``m`` (0.01 mAP):

* ``equivalent``: the interval lies inside (-m, +m), on every measure of the benchmark
  counted separately;
* ``different``: the interval excludes 0 and is not inside (-m, +m);
* ``not resolved``: anything else, including fewer than 2 shared seeds.

A comparison is ``different`` if any of its measures is, ``equivalent`` if all are, else
``not resolved``.

``auto`` may train in the other precision only where every measure of every benchmark is
``equivalent`` (:data:`babelir.precision.resolver.CPU_TRAIN_AUTO`). Each row also carries the mean
seconds of its training loops, as each run recorded them, with the machine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from statistics import mean
from typing import Any

from babelir.evaluation.measures import CROSS_MAP, MONO_MAP, MULTI_MAP, Measure
from babelir.reporting.analysis import group, seed_difference, seed_interval_table
from babelir.reporting.schema import EvalRecord, RunInfo

MEASURES: tuple[Measure, ...] = (MONO_MAP, CROSS_MAP, MULTI_MAP)
EQUIVALENT = "equivalent"
DIFFERENT = "different"
NOT_RESOLVED = "not resolved"


def decide(ci: Sequence[float] | None, margin: float) -> str:
    """The rule of the module docstring for one interval of ``other - reference``."""
    if ci is None:
        return NOT_RESOLVED
    lo, hi = ci
    if -margin < lo and hi < margin:
        return EQUIVALENT
    if lo > 0 or hi < 0:  # resolved, and not inside the margin
        return DIFFERENT
    return NOT_RESOLVED


def outcome(decisions: Sequence[str]) -> str:
    """One comparison's outcome from its measures' decisions: different if any measure
    is, equivalent only if every one is, else not resolved."""
    if DIFFERENT in decisions:
        return DIFFERENT
    return EQUIVALENT if all(d == EQUIVALENT for d in decisions) else NOT_RESOLVED


def _precision(run: RunInfo) -> str:
    return run.spec.precision or run.train_precision or "train.precision"


def precision_groups(runs: Sequence[RunInfo]) -> list[list[str]]:
    """Row labels that differ only in training precision, reference first, in run order."""
    by: dict[tuple[str, float | None], dict[str, str]] = defaultdict(dict)
    for r in runs:
        by[(r.spec.name, r.spec.alpha)].setdefault(r.label, _precision(r))
    return [list(rows) for rows in by.values() if len(set(rows.values())) > 1]


def precision_effects(
    evaluations: Sequence[EvalRecord],
    runs: Sequence[RunInfo],
    *,
    margin: float = 0.01,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """One entry per (benchmark, reference row, other row): intervals, decisions, times."""
    groups = group(evaluations)
    info = defaultdict(list)
    for r in runs:
        info[r.label].append(r)
    out: list[dict[str, Any]] = []
    for rows in precision_groups(runs):
        ref = rows[0]
        for other in rows[1:]:
            for bench in dict.fromkeys(e.benchmark for e in evaluations):
                if (bench, ref) not in groups or (bench, other) not in groups:
                    continue
                measures = {}
                for m in MEASURES:
                    d = seed_difference(groups[(bench, other)], groups[(bench, ref)], m, level)
                    measures[m.label] = {**d, "decision": decide(d["ci"], margin)}
                decisions = [v["decision"] for v in measures.values()]
                out.append(
                    {
                        "benchmark": bench,
                        "reference": ref,
                        "row": other,
                        "reference_precision": _precision(info[ref][0]),
                        "precision": _precision(info[other][0]),
                        "margin": margin,
                        "level": level,
                        "measures": measures,
                        "outcome": outcome(decisions),
                        "train_seconds": {
                            lab: _mean_seconds(info[lab]) for lab in (ref, other)
                        },
                        "machines": _machines([*info[ref], *info[other]]),
                    }
                )
    return out


def _machines(runs: Sequence[RunInfo]) -> list[str]:
    return sorted({str(r.machine.get("cpu")) for r in runs if r.machine})


def _mean_seconds(runs: Sequence[RunInfo]) -> float | None:
    seconds = [r.train_seconds for r in runs if r.train_seconds is not None]
    return mean(seconds) if seconds else None


def precision_sentences(effects: Sequence[dict[str, Any]]) -> list[str]:
    """One verdict line per comparison, for the report's verdict and results.json."""
    lines = []
    for e in effects:
        parts = []
        for label, v in e["measures"].items():
            if v["ci"] is None:
                parts.append(f"{label} {v['reason']}")
            else:
                lo, hi = v["ci"]
                parts.append(f"{label} {v['mean_difference']:+.4f} [{lo:+.4f}, {hi:+.4f}]")
        lines.append(
            f"- **{e['benchmark']}, {e['row']} vs {e['reference']}** (training precision, "
            f"{e['row']} minus {e['reference']}, paired by seed): {e['outcome']} "
            f"(equivalence margin ±{e['margin']:g} mAP); " + "; ".join(parts) + "."
        )
    return lines


def precision_markdown(effects: Sequence[dict[str, Any]], level: float) -> list[str]:
    """The report section, empty without a precision comparison."""
    if not effects:
        return []
    lines = ["## Training precision (rows that differ only in precision)", ""]
    lines += seed_interval_table(
        ("benchmark", "row", "vs", "metric"),
        (
            ((e["benchmark"], e["row"], e["reference"], label), v)
            for e in effects
            for label, v in e["measures"].items()
        ),
        level,
    )
    lines += [
        "",
        f"Difference = row minus reference, per seed (both trained from the same seed), mean "
        f"and Student t-interval (n - 1 df). Equivalent: the interval lies inside "
        f"±{effects[0]['margin']:g} mAP; different: it excludes 0 and is not inside the margin; "
        "else not resolved. `auto` may train in another precision only where every measure is "
        "equivalent.",
        "",
    ]
    seen = set()
    for e in effects:
        key = (e["reference"], e["row"])
        if key in seen:
            continue
        seen.add(key)
        t = e["train_seconds"]
        if t[e["reference"]] and t[e["row"]]:
            lines.append(
                f"Training loop (validation included), mean over the seeds' runs that trained "
                f"in one go (a resumed run records its last part only): {e['reference']} "
                f"{t[e['reference']]:.1f} s, {e['row']} "
                f"{t[e['row']]:.1f} s ({t[e['row']] / t[e['reference']]:.2f}x the time); "
                f"machine: {', '.join(e['machines']) or 'not recorded'}."
            )
    lines.append("")
    return lines


__all__ = [
    "DIFFERENT",
    "EQUIVALENT",
    "NOT_RESOLVED",
    "decide",
    "outcome",
    "precision_effects",
    "precision_groups",
    "precision_markdown",
    "precision_sentences",
]

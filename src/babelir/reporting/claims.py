"""The verdict on the paper's four claims, per benchmark, by explicit decision rules.

The paper (Elmahdy et al. 2024) claims that hybrid batch training

1. matches X-X-mono on monolingual mAP,
2. matches X-Y on cross-lingual mAP,
3. is best on multilingual mAP (against X-X-mono and X-Y),
4. has the lowest language bias (rank distance, against X-X-mono and X-Y).

Each claim gets ``supported``, ``contradicted`` or ``not resolved at this budget`` from an
interval of the difference d = hybrid - other (95% by default):

* "~" claims (1, 2), non-inferiority with margin ``m`` (default 0.01 mAP): supported if
  the lower bound of d > -m; contradicted if its upper bound < -m; else not resolved.
  (Hybrid clearly *better* is supported too: the claim is that nothing is lost.)
* "best"/"lowest" claims (3, 4): supported if against every other strategy the interval
  excludes 0 in hybrid's favour; contradicted if against some other it excludes 0 in
  that strategy's favour; else not resolved. (Requiring every interval is an
  intersection-union test: no multiplicity correction is needed for "supported".)

Which interval decides: with >= 2 seeds shared by both models, the t-interval over the
per-seed differences (n - 1 df), which includes training noise; otherwise the paired
bootstrap interval over questions, which measures test-set noise only, and the verdict
says so. Only the rows of training runs count, chosen by their run's strategy spec (a
``hybrid`` run at any alpha); the base model and post-hoc rows such as ``hybrid+lsar``
are no training runs, so never decide a claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from babelir.evaluation.measures import CROSS_MAP, MONO_MAP, MULTI_MAP, RANK_DISTANCE, Measure
from babelir.reporting.analysis import (
    PairedValues,
    group,
    lareqa_paired,
    seed_difference,
)
from babelir.reporting.schema import EvalRecord, RunInfo
from babelir.reporting.stats import paired_bootstrap_ci, seeds_to_resolve

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_RESOLVED = "not resolved at this budget"
NOT_TESTED = "not tested"
ONE_SEED = "1 seed: test-set noise only"


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims about ``subject`` against ``others`` on ``measure``."""

    id: str
    text: str
    measure: Measure
    kind: Literal["non-inferior", "best"]
    others: tuple[str, ...]
    subject: str = "hybrid"


CLAIMS: tuple[Claim, ...] = (
    Claim("1", "hybrid ~ x-x-mono on mono mAP", MONO_MAP, "non-inferior", ("x-x-mono",)),
    Claim("2", "hybrid ~ x-y on cross mAP", CROSS_MAP, "non-inferior", ("x-y",)),
    Claim("3", "hybrid best on multi mAP", MULTI_MAP, "best", ("x-x-mono", "x-y")),
    Claim("4", "hybrid lowest rank distance", RANK_DISTANCE, "best", ("x-x-mono", "x-y")),
)


def plain_rows(strategy: str, runs: Sequence[RunInfo]) -> list[str]:
    """Labels of the rows trained with ``strategy`` (one per alpha or precision compared),
    in run order; a run's exact label (``hybrid (fp32)``) names that row alone.

    Decided by each run's spec: post-hoc rows like ``hybrid+lsar`` are no runs, and
    labelled recipe variants (``hybrid + parallel questions``) are no plain rows, so
    neither is among them unless named exactly.
    """
    exact = [r.label for r in runs if r.label == strategy]
    plain = [r for r in runs if r.spec.name == strategy and r.spec.custom_label is None]
    if exact and not plain:
        return list(dict.fromkeys(exact))
    return list(dict.fromkeys(r.label for r in plain))


def difference(
    a: Sequence[EvalRecord],
    b: Sequence[EvalRecord],
    m: Measure,
    *,
    bootstrap: int,
    level: float,
    paired: PairedValues = lareqa_paired,
) -> dict[str, Any]:
    """The deciding interval of a - b: over seeds if >= 2 shared seeds, else over queries
    (``paired`` gives the per-query values)."""
    seed = seed_difference(a, b, m, level)
    if seed["ci"] is not None:
        return {
            "difference": seed["mean_difference"],
            "ci": seed["ci"],
            "basis": "seeds",
            "n": seed["n_seeds"],
            "std": seed["std"],
            "caveat": None,
        }
    qa, qb = paired(a, b, m)
    diff, lo, hi = paired_bootstrap_ci(qa, qb, n_resamples=bootstrap, level=level)
    n_seeds = len({e.seed for e in a})
    caveat = ONE_SEED if n_seeds < 2 else "seeds not paired: test-set noise only"
    return {"difference": diff, "ci": [lo, hi], "basis": "queries", "n": len(qa), "caveat": caveat}


def decide(claim: Claim, comparisons: Sequence[dict[str, Any]], margin: float) -> str:
    """Apply the claim's decision rule (module docstring) to its comparisons' intervals."""
    if not comparisons:
        return NOT_TESTED
    if claim.kind == "non-inferior":
        (c,) = comparisons
        sign = 1 if claim.measure.higher_is_better else -1
        lo, hi = sorted(sign * x for x in c["ci"])
        if lo > -margin:
            return SUPPORTED
        if hi < -margin:
            return CONTRADICTED
        return NOT_RESOLVED
    favour = []
    for c in comparisons:
        sign = 1 if claim.measure.higher_is_better else -1
        lo, hi = sorted(sign * x for x in c["ci"])
        if hi < 0:
            return CONTRADICTED
        favour.append(lo > 0)
    return SUPPORTED if all(favour) else NOT_RESOLVED


def seeds_needed(
    claim: Claim, comparisons: Sequence[dict[str, Any]], margin: float, level: float
) -> dict[str, Any] | None:
    """For a claim left not resolved over seeds: how many seeds the measured spread would
    need to decide it, and which way (the measured means taken as the truth).

    Non-inferiority: the interval must clear -margin on the side the mean is on. "Best":
    the interval of every comparison must exclude 0 (supported), or that of one comparison
    whose mean favours the other strategy (contradicted: the fewest such). None when the
    deciding intervals are not over seeds. ``n`` is None past
    :data:`babelir.reporting.stats.MAX_PLANNED_SEEDS` or for a mean on the boundary.
    """
    if not comparisons or any(c["basis"] != "seeds" or c.get("std") is None
                              for c in comparisons):
        return None
    sign = 1 if claim.measure.higher_is_better else -1
    if claim.kind == "non-inferior":
        (c,) = comparisons
        d = sign * c["difference"]
        towards = SUPPORTED if d > -margin else CONTRADICTED
        return {"n": seeds_to_resolve(c["std"], abs(d + margin), level), "towards": towards}
    need = {c["vs"]: seeds_to_resolve(c["std"], abs(c["difference"]), level)
            for c in comparisons}
    against = [c["vs"] for c in comparisons if sign * c["difference"] < 0]
    if against:
        ns = [need[v] for v in against if need[v] is not None]
        return {"n": min(ns) if ns else None, "towards": CONTRADICTED}
    if any(n is None for n in need.values()):
        return {"n": None, "towards": SUPPORTED}
    return {"n": max(need.values()), "towards": SUPPORTED}


def evaluate_claims(
    evaluations: Sequence[EvalRecord],
    runs: Sequence[RunInfo],
    *,
    margin: float = 0.01,
    bootstrap: int = 2000,
    level: float = 0.95,
    claims: Sequence[Claim] = CLAIMS,
    paired: PairedValues = lareqa_paired,
) -> list[dict[str, Any]]:
    """One verdict per (benchmark, claim, hybrid row): outcome, rule and intervals."""
    groups = group(evaluations)
    benches = list(dict.fromkeys(e.benchmark for e in evaluations))
    out: list[dict[str, Any]] = []
    for bench in benches:
        for claim in claims:
            subjects = [s for s in plain_rows(claim.subject, runs) if (bench, s) in groups]
            for subject in subjects or [claim.subject]:
                comparisons: list[dict[str, Any]] = []
                missing: list[str] = [] if (bench, subject) in groups else [subject]
                for other in claim.others if not missing else ():
                    rows = [r for r in plain_rows(other, runs) if (bench, r) in groups]
                    if not rows:
                        missing.append(other)
                    for row in rows:
                        comparisons.append(
                            {
                                "vs": row,
                                **difference(
                                    groups[(bench, subject)],
                                    groups[(bench, row)],
                                    claim.measure,
                                    bootstrap=bootstrap,
                                    level=level,
                                    paired=paired,
                                ),
                            }
                        )
                result = NOT_TESTED if missing else decide(claim, comparisons, margin)
                planned = (
                    seeds_needed(claim, comparisons, margin, level)
                    if result == NOT_RESOLVED
                    else None
                )
                caveats = sorted({c["caveat"] for c in comparisons if c["caveat"]})
                out.append(
                    {
                        "benchmark": bench,
                        "claim": claim.id,
                        "text": claim.text,
                        "model": subject,
                        "measure": claim.measure.label,
                        "kind": claim.kind,
                        "margin": margin if claim.kind == "non-inferior" else None,
                        "level": level,
                        "outcome": result,
                        "comparisons": comparisons,
                        "missing": missing,
                        "caveat": "; ".join(caveats) or None,
                        "seeds_to_resolve": planned,
                    }
                )
    return out


def claim_interval_text(verdict: dict[str, Any], m: Measure) -> str:
    """The deciding interval(s) of a verdict, e.g. ``-0.0031 [-0.0080, +0.0018] vs x-y``."""
    if verdict["missing"]:
        return " and ".join(verdict["missing"]) + " not in this comparison"
    parts = []
    for c in verdict["comparisons"]:
        lo, hi = c["ci"]
        basis = f"{c['n']} seeds" if c["basis"] == "seeds" else f"{c['n']} queries"
        parts.append(
            f"{m.format(c['difference'], signed=True)} "
            f"[{m.format(lo, signed=True)}, {m.format(hi, signed=True)}] vs {c['vs']} ({basis})"
        )
    return "; ".join(parts)


def seeds_needed_text(verdict: dict[str, Any]) -> str:
    """``"~7 seeds (towards supported)"`` for a planned claim; ``""`` when none is."""
    planned = verdict.get("seeds_to_resolve")
    if not planned:
        return ""
    from babelir.reporting.stats import MAX_PLANNED_SEEDS

    towards = planned["towards"].split(" ")[0]
    if planned["n"] is None:
        return f"more than {MAX_PLANNED_SEEDS} seeds"
    return f"~{planned['n']} seeds (towards {towards})"


def claim_sentence(verdict: dict[str, Any], m: Measure) -> str:
    """One plain-language line per verdict, with the interval that decides it."""
    rule = (
        f"non-inferiority margin {verdict['margin']:g}"
        if verdict["kind"] == "non-inferior"
        else "every interval must exclude 0"
    )
    caveat = f" ({verdict['caveat']})" if verdict["caveat"] else ""
    planned = seeds_needed_text(verdict)
    return (
        f"- **{verdict['benchmark']}, claim {verdict['claim']}** ({verdict['text']}; "
        f"row `{verdict['model']}`): **{verdict['outcome']}**{caveat}. "
        f"{m.label} difference {verdict['model']} - other, "
        f"{round(verdict['level'] * 100):d}% CI: {claim_interval_text(verdict, m)}; {rule}."
        + (f" The measured seed spread would need {planned} to decide it." if planned else "")
    )

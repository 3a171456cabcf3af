"""The report's numbers: cells over seeds, per-query and seed-level paired tests.

Two sources of noise are measured separately:

* **test-set noise** (which questions happen to be in the benchmark): paired tests over
  queries (sign-flip permutation test, percentile bootstrap CI, Holm over the report);
* **training noise** (what another seed would have given): mean, standard deviation and
  t-interval over seeds of every cell, and of the per-seed difference of two models
  trained with the same seeds (paired by seed, n - 1 degrees of freedom).

Everything here is computation on :class:`~babelir.reporting.schema.EvalRecord`; no
rendering and no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sstats

from babelir.evaluation.measures import LANG_PREF, LAREQA, LAREQA_ALL, Measure
from babelir.reporting.schema import EvalRecord
from babelir.reporting.stats import (
    holm,
    mean_ci,
    paired_bootstrap_ci,
    paired_permutation_test,
    per_query_settings,
)

#: Measures with per-query values that the per-query tests cover. Of language preference
#: only the excess: per query it is the raw share minus a constant both models share, so
#: testing both would repeat the same test (and weaken Holm's correction of the others).
TESTED: tuple[Measure, ...] = (
    *(m for m in LAREQA if m.setting is not None),
    *(m for m in LANG_PREF if m.key.startswith("lang_pref_excess@")),
)
SIGNIFICANCE = 0.05

Groups = dict[tuple[str, str], list[EvalRecord]]


def group(evaluations: Sequence[EvalRecord]) -> Groups:
    """Records by (benchmark, label), in order of appearance."""
    out: Groups = defaultdict(list)
    for e in evaluations:
        out[(e.benchmark, e.label)].append(e)
    return dict(out)


def benchmarks(evaluations: Sequence[EvalRecord]) -> list[str]:
    return list(dict.fromkeys(e.benchmark for e in evaluations))


def seed_summary(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """n, mean, sample standard deviation and t-interval of values over seeds.

    With one value the standard deviation and the interval are ``None`` (unavailable,
    not zero): one seed says nothing about training noise.
    """
    x = [float(v) for v in values if v is not None and not np.isnan(v)]
    if not x:
        return {"n": 0, "mean": None, "std": None, "ci": None}
    m, lo, hi = mean_ci(x, level)
    if len(x) < 2:
        return {"n": 1, "mean": m, "std": None, "ci": None}
    return {"n": len(x), "mean": m, "std": float(np.std(x, ddof=1)), "ci": [lo, hi]}


def aggregate(
    evaluations: Sequence[EvalRecord], level: float = 0.95
) -> dict[str, dict[str, dict[str, Any]]]:
    """``cells[benchmark][label][measure label]`` = values, seeds, n, mean, std, ci.

    ``ci`` is the t-interval over seeds, ``None`` with one seed. Also ``"seeds"`` and,
    when every record has them, the ``"zero-shot"`` languages' mean mAPs. A measure that
    some record lacks (stored before the measure existed) is missing for the whole cell
    (``n`` 0), never a mean over the seeds that have it.
    """
    cells: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (bench, label), items in group(evaluations).items():
        row: dict[str, Any] = {}
        for m in LAREQA_ALL:
            if not all(m.present(e.metrics) for e in items):
                row[m.label] = {"values": [], "seeds": [], **seed_summary([], level)}
                continue
            pairs = [(e.seed, m.get(e.metrics)) for e in items]
            pairs = [(s, v) for s, v in pairs if v is not None]
            row[m.label] = {
                "values": [v for _, v in pairs],
                "seeds": [s for s, _ in pairs],
                **seed_summary([v for _, v in pairs], level),
            }
        zs = [e.metrics.get("zero_shot_languages") for e in items]
        if all(zs):
            row["zero-shot"] = {
                "languages": zs[0]["languages"],
                **{
                    k: dict(
                        zip(
                            ("mean", "low", "high"),
                            mean_ci([z["map"][k] for z in zs], level),
                            strict=True,
                        )
                    )
                    for k in ("mono", "cross", "multi")
                },
            }
        row["seeds"] = [e.seed for e in items]
        cells[bench][label] = row
    return dict(cells)


#: per_query.npz's language-preference arrays (absent from evaluations stored before).
LANG_PREF_ARRAYS = ("lang_pref_k", "lang_pref", "lang_pref_expected")


def _lang_pref_arrays(e: EvalRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A record's (cut-offs, per-question shares, language-blind shares)."""
    ks, shares, expected = (np.asarray(e.per_query[name]) for name in LANG_PREF_ARRAYS)
    return ks, shares, expected


def per_query(items: Sequence[EvalRecord]) -> dict[str, np.ndarray]:
    """Per-query setting values (mono, cross, multi, rank_distance and, when every record
    has their arrays with the same cut-offs, lang_pref@k and lang_pref_excess@k),
    averaged over seeds."""
    first = items[0].per_query
    with_pref = all(
        all(k in e.per_query for k in LANG_PREF_ARRAYS)
        and np.array_equal(e.per_query["lang_pref_k"], first["lang_pref_k"])
        for e in items
    )
    per_seed = [
        per_query_settings(
            e.per_query["pair_ap"],
            e.per_query["multi_ap"],
            e.per_query["question_blocks"],
            e.per_query["rank_distance"],
            _lang_pref_arrays(e) if with_pref else None,
        )
        for e in items
    ]
    return {k: np.mean([p[k] for p in per_seed], axis=0) for k in per_seed[0]}


def check_same_questions(bench: str, a: Sequence[EvalRecord], b: Sequence[EvalRecord]) -> None:
    """Paired tests need both models scored on the same questions in the same order."""
    if not np.array_equal(a[0].per_query["question_ids"], b[0].per_query["question_ids"]):
        raise ValueError(f"{bench}: {a[0].label} and {b[0].label} were scored on other questions")


def seed_difference(
    a_items: Sequence[EvalRecord],
    b_items: Sequence[EvalRecord],
    m: Measure,
    level: float = 0.95,
) -> dict[str, Any]:
    """Seed-level difference a - b of one measure: paired by seed, t-interval (n - 1 df).

    Pairs are the seeds both models were trained with; a model without a seed (the base
    model, deterministic) is compared with every seed of the other. With fewer than two
    pairs ``ci`` is ``None`` and ``reason`` says why.
    """
    a = {e.seed: m.get(e.metrics) for e in a_items}
    b = {e.seed: m.get(e.metrics) for e in b_items}
    if list(b) == [None] and None not in a:
        b = dict.fromkeys(a, b[None])
    elif list(a) == [None] and None not in b:
        a = dict.fromkeys(b, a[None])
    seeds = [s for s in a if s in b and a[s] is not None and b[s] is not None]
    diffs = [float(a[s] - b[s]) for s in seeds]  # type: ignore[operator]
    out: dict[str, Any] = {"n_seeds": len(diffs), "seeds": seeds, "differences": diffs}
    if len(diffs) < 2:
        why = "1 seed" if len(diffs) == 1 else "no common seed"
        return {
            **out,
            "mean_difference": diffs[0] if diffs else None,
            "std": None,
            "ci": None,
            "p_value": None,
            "reason": f"seed-level interval unavailable ({why})",
        }
    s = seed_summary(diffs, level)
    d = np.asarray(diffs)
    if np.all(d == d[0]):
        p = 1.0 if d[0] == 0 else 0.0
    else:
        p = float(sstats.ttest_1samp(d, 0.0).pvalue)
    return {**out, "mean_difference": s["mean"], "std": s["std"], "ci": s["ci"], "p_value": p}


#: (records of a, records of b, measure) -> their paired per-query values, averaged over
#: seeds, in the same question order.
PairedValues = Callable[[Sequence[EvalRecord], Sequence[EvalRecord], Measure], tuple[Any, Any]]


def lareqa_paired(a: Sequence[EvalRecord], b: Sequence[EvalRecord], m: Measure):
    """The LAReQA setting ``m.setting`` of both rows, from their per_query.npz arrays."""
    check_same_questions(a[0].benchmark, a, b)
    return per_query(a)[m.setting], per_query(b)[m.setting]  # type: ignore[index]


def reference_pairs(
    evaluations: Sequence[EvalRecord], reference_labels: Sequence[str]
) -> Iterator[tuple[str, str, str, list[EvalRecord], list[EvalRecord]]]:
    """(benchmark, reference, other, their records) for each reference row against every
    other row of each benchmark, in display order."""
    groups = group(evaluations)
    for bench in benchmarks(evaluations):
        labels = [lab for (b, lab) in groups if b == bench]
        for ref in reference_labels:
            if (bench, ref) not in groups:
                continue
            for other in labels:
                if other != ref:
                    yield bench, ref, other, groups[(bench, ref)], groups[(bench, other)]


def paired_tests(
    evaluations: Sequence[EvalRecord],
    reference_labels: Sequence[str],
    *,
    permutations: int = 10000,
    bootstrap: int = 2000,
    level: float = 0.95,
    measures: Callable[[EvalRecord], Sequence[Measure]] = lambda e: TESTED,
    paired: PairedValues | None = None,
) -> list[dict[str, Any]]:
    """Per-query tests of each reference model vs every other model, per benchmark.

    Sign-flip permutation p-value and bootstrap CI over questions (per-query values
    averaged over seeds), Holm-corrected over all tests; ``seed_ci`` adds the seed-level
    interval when both sides allow one. ``measures`` (of a benchmark's first record) and
    ``paired`` default to LAReQA's tested settings and per-query arrays; the passage-
    retrieval section passes its own. A measure whose per-query values either side lacks
    (``paired`` returns ``None`` for them: evaluations stored before the measure) is left
    out of the tests and of Holm's correction.
    """
    if paired is None:  # LAReQA: each row's settings computed once, not once per pair
        memo: dict[int, dict[str, np.ndarray]] = {}

        def settings(items: Sequence[EvalRecord]) -> dict[str, np.ndarray]:
            if id(items) not in memo:
                memo[id(items)] = per_query(items)
            return memo[id(items)]

        def paired(a: Sequence[EvalRecord], b: Sequence[EvalRecord], m: Measure):
            check_same_questions(a[0].benchmark, a, b)
            return settings(a).get(m.setting), settings(b).get(m.setting)  # type: ignore[arg-type]

    tests: list[dict[str, Any]] = []
    for bench, ref, other, ref_items, other_items in reference_pairs(evaluations, reference_labels):
        for m in measures(ref_items[0]):
            a, b = paired(ref_items, other_items, m)
            if a is None or b is None:
                continue
            diff, lo, hi = paired_bootstrap_ci(a, b, n_resamples=bootstrap, level=level)
            p = paired_permutation_test(a, b, n_resamples=permutations)
            seed = seed_difference(ref_items, other_items, m, level)
            tests.append(
                {
                    "benchmark": bench,
                    "reference": ref,
                    "baseline": other,
                    "setting": m.setting,
                    "measure": m.label,
                    "higher_is_better": m.higher_is_better,
                    "mean_difference": diff,
                    "bootstrap_ci": [lo, hi],
                    "p_value": p,
                    "seed_ci": seed["ci"],
                    "seed_mean_difference": seed["mean_difference"],
                    "n_seeds": seed["n_seeds"],
                    "n_queries": int(np.sum(~np.isnan(np.asarray(a) - np.asarray(b)))),
                }
            )
    adjusted = holm([t["p_value"] for t in tests]) if tests else []
    for t, adj in zip(tests, adjusted, strict=True):
        t["p_holm"] = adj
        t["outcome"] = outcome(t)
    return tests


def seed_tests(
    evaluations: Sequence[EvalRecord],
    reference_labels: Sequence[str],
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Seed-level differences (paired by seed) of each reference model vs every other
    model, for every measure both have; entries without an interval carry ``reason``."""
    out: list[dict[str, Any]] = []
    for bench, ref, other, ref_items, other_items in reference_pairs(evaluations, reference_labels):
        for m in LAREQA_ALL:
            if not all(m.present(e.metrics) for e in [*ref_items, *other_items]):
                continue  # stored before the measure existed: not compared
            d = seed_difference(ref_items, other_items, m, level)
            out.append(
                {
                    "benchmark": bench,
                    "reference": ref,
                    "baseline": other,
                    "measure": m.label,
                    "higher_is_better": m.higher_is_better,
                    **d,
                }
            )
    return out


def outcome(t: dict[str, Any]) -> str:
    """'better', 'worse' or 'no significant difference', for the reference model.

    'better'/'worse' needs the Holm-corrected p < 0.05, the bootstrap interval to exclude
    0 and, when there is one, the seed-level interval to exclude 0 on the same side.
    """
    if t["p_holm"] >= SIGNIFICANCE:
        return "no significant difference"
    sign = 1 if t["higher_is_better"] else -1
    lo, hi = sorted(sign * x for x in t["bootstrap_ci"])
    seed = t["seed_ci"]
    slo, shi = sorted(sign * x for x in seed) if seed is not None else (lo, hi)
    if lo > 0 and slo > 0:
        return "better"
    if hi < 0 and shi < 0:
        return "worse"
    return "no significant difference"


def pairwise_verdict(tests: Sequence[dict[str, Any]]) -> list[str]:
    """One plain-language line per (benchmark, reference, other model) from the tests."""
    by: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for t in tests:
        by[(t["benchmark"], t["reference"], t["baseline"])].append(t)
    words = {
        "mono": "monolingual mAP",
        "cross": "cross-lingual mAP",
        "multi": "multilingual mAP",
        "rank_distance": "language bias (rank distance)",
        **{
            m.setting: f"language preference excess@{m.key.rsplit('@', 1)[1]}"
            for m in LANG_PREF
            if m.key.startswith("lang_pref_excess@")
        },
    }
    lines = []
    for (bench, ref, base), ts in by.items():
        parts = []
        for kind, verb in (
            ("better", "better on "),
            ("worse", "worse on "),
            ("no significant difference", "not distinguishable on "),
        ):
            names = [words[t["setting"]] for t in ts if t["outcome"] == kind]
            if names:
                parts.append(verb + ", ".join(names))
        lines.append(f"- **{bench}, {ref} vs {base}**: " + "; ".join(parts) + ".")
    if not lines:
        lines.append("- No paired comparison was possible (the reference strategy is missing).")
    return lines


def seed_interval_table(
    heads: Sequence[str], rows: Iterable[tuple[Sequence[str], Mapping[str, Any]]], level: float
) -> list[str]:
    """A markdown table of seed-level differences with a decision per row: the ``heads``
    columns, then seeds, mean difference, the t-interval and the decision of each
    :func:`seed_difference` result ``v`` (with its ``decision``) beside its ``lead`` cells."""
    cols = [*heads, "seeds", "mean difference", f"{round(level * 100)}% t-interval", "decision"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for lead, v in rows:
        ci = "-" if v["ci"] is None else f"[{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]"
        diff = "-" if v["mean_difference"] is None else f"{v['mean_difference']:+.4f}"
        lines.append("| " + " | ".join([*lead, str(v["n_seeds"]), diff, ci, v["decision"]]) + " |")
    return lines


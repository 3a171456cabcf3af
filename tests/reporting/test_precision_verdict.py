"""The training-precision verdict: equivalence rule and seed pairing, hand-computed."""

from __future__ import annotations

import pytest
from scipy import stats

from babelir.batches.strategies import StrategySpec
from babelir.reporting.precision_verdict import (
    DIFFERENT,
    EQUIVALENT,
    NOT_RESOLVED,
    decide,
    outcome,
    precision_effects,
    precision_groups,
    precision_markdown,
    precision_sentences,
)
from babelir.reporting.schema import EvalRecord, RunInfo


@pytest.mark.parametrize(
    ("ci", "expected"),
    [
        ((-0.004, 0.006), EQUIVALENT),  # inside +-0.01
        ((0.002, 0.008), EQUIVALENT),  # excludes 0 but within the margin: equivalent
        ((-0.03, -0.012), DIFFERENT),  # excludes 0, past -m
        ((0.005, 0.02), DIFFERENT),  # excludes 0, reaches past +m
        ((-0.02, 0.005), NOT_RESOLVED),  # contains 0 and reaches past the margin
        ((-0.01, 0.0), NOT_RESOLVED),  # the bound on the margin is not inside it
        (None, NOT_RESOLVED),
    ],
)
def test_decision_rule(ci, expected):
    assert decide(ci, 0.01) == expected


def _spec(precision: str | None, alpha_in_label: bool = False) -> StrategySpec:
    return StrategySpec("hybrid", 0.5, alpha_in_label=alpha_in_label, precision=precision)


def _rec(label: str, seed: int, mono: float, cross: float, multi: float) -> EvalRecord:
    metrics = {"map": {"mono": mono, "cross": cross, "multi": multi}}
    return EvalRecord(label, seed, "b", metrics, {})


def test_seed_paired_differences_and_interval_by_hand():
    fp32, bf16 = _spec("fp32"), _spec("bf16")
    runs = [
        RunInfo(fp32, s, train_seconds=t, machine={"cpu": "X"}, train_precision="fp32")
        for s, t in ((0, 100.0), (1, 110.0), (2, 90.0))
    ] + [
        RunInfo(bf16, s, train_seconds=t, machine={"cpu": "X"}, train_precision="bf16")
        for s, t in ((0, 50.0), (1, 60.0), (2, 40.0))
    ]
    runs.append(RunInfo(StrategySpec("x-y"), 0))  # no precision twin: not compared
    assert precision_groups(runs) == [["hybrid (fp32)", "hybrid (bf16)"]]
    # bf16 - fp32 per seed: multi +0.002, -0.001, +0.002; mono 0; cross -0.05, -0.04, -0.06
    evals = [
        _rec("hybrid (fp32)", 0, 0.5, 0.40, 0.300),
        _rec("hybrid (fp32)", 1, 0.6, 0.41, 0.310),
        _rec("hybrid (fp32)", 2, 0.7, 0.42, 0.320),
        _rec("hybrid (bf16)", 0, 0.5, 0.35, 0.302),
        _rec("hybrid (bf16)", 1, 0.6, 0.37, 0.309),
        _rec("hybrid (bf16)", 2, 0.7, 0.36, 0.322),
        _rec("x-y", 0, 0.1, 0.1, 0.1),
    ]
    (e,) = precision_effects(evals, runs, margin=0.01, level=0.95)
    assert (e["reference"], e["row"], e["precision"]) == ("hybrid (fp32)", "hybrid (bf16)", "bf16")
    multi = e["measures"]["multi mAP"]
    d = [0.002, -0.001, 0.002]
    mean = sum(d) / 3
    sd = (sum((x - mean) ** 2 for x in d) / 2) ** 0.5
    half = stats.t.ppf(0.975, 2) * sd / 3**0.5
    assert multi["mean_difference"] == pytest.approx(mean)
    assert multi["ci"] == pytest.approx([mean - half, mean + half])
    assert multi["decision"] == EQUIVALENT  # [-0.0029, +0.0049]
    assert e["measures"]["mono mAP"]["decision"] == EQUIVALENT
    assert e["measures"]["cross mAP"]["decision"] == DIFFERENT  # [-0.075, -0.025]
    assert e["outcome"] == DIFFERENT  # one measure resolved outside the margin decides
    assert e["train_seconds"] == {"hybrid (fp32)": 100.0, "hybrid (bf16)": 50.0}
    text = "\n".join(precision_markdown([e], 0.95))
    assert "| b | hybrid (bf16) | hybrid (fp32) | cross mAP | 3 | -0.0500 |" in text
    assert "hybrid (bf16) 50.0 s (0.50x the time); machine: X." in text
    (line,) = precision_sentences([e])
    assert "different (equivalence margin ±0.01 mAP)" in line and "cross mAP -0.0500" in line


def test_outcome_of_a_comparison():
    assert outcome([EQUIVALENT, EQUIVALENT, EQUIVALENT]) == EQUIVALENT
    assert outcome([EQUIVALENT, NOT_RESOLVED, EQUIVALENT]) == NOT_RESOLVED
    assert outcome([NOT_RESOLVED, DIFFERENT, EQUIVALENT]) == DIFFERENT


def test_one_seed_is_not_resolved_and_no_twin_no_section():
    runs = [RunInfo(_spec("fp32"), 0), RunInfo(_spec("bf16"), 0)]
    evals = [_rec("hybrid (fp32)", 0, 0.5, 0.4, 0.3), _rec("hybrid (bf16)", 0, 0.5, 0.4, 0.3)]
    (e,) = precision_effects(evals, runs)
    assert e["outcome"] == NOT_RESOLVED
    assert e["measures"]["multi mAP"]["reason"] == "seed-level interval unavailable (1 seed)"
    plain = [RunInfo(_spec(None), 0), RunInfo(StrategySpec("x-y"), 0)]
    assert precision_effects(evals, plain) == [] and precision_markdown([], 0.95) == []

"""The comparison report on synthetic results: seed-level statistics, the verdict on the
paper's claims by its decision rules, rendering, and the files write_report produces."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from babelir.batches.strategies import StrategySpec
from babelir.evaluation.measures import LAREQA, MONO_MAP, RANK_DISTANCE, measure
from babelir.reporting.analysis import aggregate, seed_difference
from babelir.reporting.claims import (
    CLAIMS,
    CONTRADICTED,
    NOT_RESOLVED,
    NOT_TESTED,
    ONE_SEED,
    SUPPORTED,
    decide,
    evaluate_claims,
    plain_rows,
    seeds_needed,
    seeds_needed_text,
)
from babelir.reporting.report import write_report
from babelir.reporting.schema import EvalRecord, Provenance, ReportInput, RunCurve, RunInfo
from babelir.reporting.stats import MAX_PLANNED_SEEDS, seeds_to_resolve

LANGS = ["de", "en", "zh"]
BENCH = "xquad-r"


def _record(
    label: str,
    seed: int | None,
    *,
    mono: float,
    cross: float,
    multi: float,
    rd: float,
    noise: float = 0.0,
    n_per_lang: int = 20,
    rng_seed: int = 0,
    bench: str = BENCH,
) -> EvalRecord:
    """A record whose metrics.json cells are exactly the means of its per-query arrays."""
    rng = np.random.default_rng(rng_seed)
    n_lang = len(LANGS)
    blocks = np.repeat(np.arange(n_lang), n_per_lang)
    nq = len(blocks)
    pair_ap = np.full((nq, n_lang), cross) + noise * rng.standard_normal((nq, n_lang))
    pair_ap[np.arange(nq), blocks] = mono + noise * rng.standard_normal(nq)
    multi_ap = multi + noise * rng.standard_normal(nq)
    rank = rd + 100 * noise * rng.standard_normal(nq)
    ppm = {
        a: {b: float(pair_ap[blocks == i, j].mean()) for j, b in enumerate(LANGS)}
        for i, a in enumerate(LANGS)
    }
    metrics = {
        "languages": LANGS,
        "map": {
            "mono": float(np.mean([ppm[a][a] for a in LANGS])),
            "cross": float(np.mean([ppm[a][b] for a in LANGS for b in LANGS if a != b])),
            "multi": float(multi_ap.mean()),
        },
        "recall": {"mono@1": mono - 0.1, "cross@1": cross - 0.1, "multi@10": multi + 0.1},
        "rank_distance": float(rank.mean()),
        "per_pair_map": ppm,
    }
    per_query = {
        "pair_ap": pair_ap,
        "multi_ap": multi_ap,
        "question_blocks": blocks,
        "rank_distance": rank,
        "question_ids": np.asarray([f"q{i % n_per_lang}" for i in range(nq)]),
    }
    return EvalRecord(label, seed, bench, metrics, per_query)


def _runs(labels: dict[str, str], seeds: list[int]) -> list[RunInfo]:
    """Runs of one-alpha comparisons: each strategy's row is its plain name."""
    runs = [RunInfo(StrategySpec(st, alpha_in_label=False), s) for s in seeds for st in labels]
    assert [r.label for r in runs] == [lab for _ in seeds for lab in labels]
    return runs


STRATS = {"x-x-mono": "x-x-mono", "x-y": "x-y", "hybrid": "hybrid"}


def _by_claim(verdicts: list[dict]) -> dict[str, str]:
    return {v["claim"]: v["outcome"] for v in verdicts}


def test_clear_seed_level_differences_decide_every_claim():
    """3 seeds, small training noise: hybrid +.03 on mono (supported), -.05 on cross
    (contradicted), best on multi and lowest rank distance (supported)."""
    evals = []
    for s, jitter in zip([0, 1, 2], [-0.002, 0.0, 0.002], strict=True):
        evals += [
            _record("x-x-mono", s, mono=0.80 + jitter, cross=0.60, multi=0.50, rd=150),
            _record("x-y", s, mono=0.75, cross=0.72 - jitter, multi=0.55, rd=120 + 10 * jitter),
            _record("hybrid", s, mono=0.83 - jitter, cross=0.67 + jitter, multi=0.60, rd=100),
        ]
    verdicts = evaluate_claims(evals, _runs(STRATS, [0, 1, 2]), bootstrap=200)
    assert _by_claim(verdicts) == {
        "1": SUPPORTED,
        "2": CONTRADICTED,
        "3": SUPPORTED,
        "4": SUPPORTED,
    }
    for v in verdicts:
        assert v["caveat"] is None
        assert all(c["basis"] == "seeds" and c["n"] == 3 for c in v["comparisons"])
    mono = next(v for v in verdicts if v["claim"] == "1")["comparisons"][0]
    assert mono["difference"] == pytest.approx(0.03, abs=1e-9)
    assert mono["ci"][0] > 0.0  # hybrid - x-x-mono interval over seeds


def _equal_means_large_seed_noise() -> list[EvalRecord]:
    """3 seeds of every strategy: equal means, a large spread over seeds (each strategy
    takes the values 0.70-0.78 in a different seed order)."""
    evals = []
    for s, (a, b, c) in enumerate([(0.70, 0.74, 0.72), (0.74, 0.70, 0.76), (0.78, 0.78, 0.74)]):
        evals += [
            _record("x-x-mono", s, mono=a, cross=b, multi=c, rd=100 + 1000 * (a - 0.74)),
            _record("x-y", s, mono=b, cross=c, multi=a, rd=100 + 1000 * (b - 0.74)),
            _record("hybrid", s, mono=c, cross=a, multi=b, rd=100 + 1000 * (c - 0.74)),
        ]
    return evals


def test_identical_distributions_over_seeds_are_not_resolved():
    """Equal means, large seed noise: every interval straddles 0 and the margin."""
    evals = _equal_means_large_seed_noise()
    verdicts = evaluate_claims(evals, _runs(STRATS, [0, 1, 2]), bootstrap=200)
    assert set(_by_claim(verdicts).values()) == {NOT_RESOLVED}


def test_one_seed_falls_back_to_queries_with_a_caveat():
    clear = [
        _record("x-x-mono", 0, mono=0.70, cross=0.50, multi=0.40, rd=200, noise=0.02),
        _record("x-y", 0, mono=0.68, cross=0.62, multi=0.45, rd=150, noise=0.02, rng_seed=1),
        _record("hybrid", 0, mono=0.75, cross=0.63, multi=0.50, rd=120, noise=0.02, rng_seed=2),
    ]
    verdicts = evaluate_claims(clear, _runs(STRATS, [0]), bootstrap=500)
    assert set(_by_claim(verdicts).values()) == {SUPPORTED}
    for v in verdicts:
        assert v["caveat"] == ONE_SEED
        assert all(c["basis"] == "queries" and c["n"] == 60 for c in v["comparisons"])
    # independent draws from one distribution, much noise: nothing is resolved
    same = [
        _record(lab, 0, mono=0.7, cross=0.6, multi=0.5, rd=100, noise=0.3, rng_seed=i)
        for i, lab in enumerate(STRATS)
    ]
    verdicts = evaluate_claims(same, _runs(STRATS, [0]), bootstrap=500)
    assert set(_by_claim(verdicts).values()) == {NOT_RESOLVED}


def test_decision_rules_at_their_edges():
    mono, best_rd = CLAIMS[0], CLAIMS[3]
    assert decide(mono, [{"ci": [-0.009, 0.02]}], 0.01) == SUPPORTED
    assert decide(mono, [{"ci": [-0.011, 0.02]}], 0.01) == NOT_RESOLVED
    assert decide(mono, [{"ci": [-0.05, -0.011]}], 0.01) == CONTRADICTED
    assert decide(mono, [{"ci": [-0.05, -0.011]}], 0.03) == NOT_RESOLVED  # wider margin
    assert decide(mono, [], 0.01) == NOT_TESTED
    # rank distance: lower is better, so hybrid - other < 0 favours hybrid
    assert decide(best_rd, [{"ci": [-30, -5]}, {"ci": [-9, -1]}], 0.01) == SUPPORTED
    assert decide(best_rd, [{"ci": [-30, -5]}, {"ci": [-9, 1]}], 0.01) == NOT_RESOLVED
    assert decide(best_rd, [{"ci": [-30, -5]}, {"ci": [2, 9]}], 0.01) == CONTRADICTED


def test_seed_statistics_and_pairing():
    evals = [
        _record("hybrid", s, mono=m, cross=0.6, multi=0.5, rd=100)
        for s, m in [(0, 0.70), (1, 0.72), (2, 0.74)]
    ] + [_record("base", None, mono=0.65, cross=0.5, multi=0.3, rd=300)]
    cells = aggregate(evals)[BENCH]
    cell = cells["hybrid"]["mono mAP"]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(0.72)
    assert cell["std"] == pytest.approx(0.02)
    half = 4.302652729911275 * 0.02 / np.sqrt(3)  # t(0.975, 2)
    assert cell["ci"] == pytest.approx([0.72 - half, 0.72 + half])
    assert cells["base"]["mono mAP"]["std"] is None and cells["base"]["mono mAP"]["ci"] is None
    hyb = [e for e in evals if e.label == "hybrid"]
    base = [e for e in evals if e.label == "base"]
    d = seed_difference(hyb, base, MONO_MAP)  # the seedless base is subtracted from each
    assert d["n_seeds"] == 3 and d["differences"] == pytest.approx([0.05, 0.07, 0.09])
    one = seed_difference(hyb[:1], base, MONO_MAP)
    assert one["ci"] is None and "unavailable (1 seed)" in one["reason"]


def test_plain_rows_come_from_the_runs_specs():
    runs = [
        RunInfo(StrategySpec("hybrid", 0.4), 0),
        RunInfo(StrategySpec("hybrid", 0.6), 0),
        RunInfo(StrategySpec("x-y"), 0),
        RunInfo(StrategySpec("hybrid", 0.4), 1),
    ]
    assert plain_rows("hybrid", runs) == ["hybrid (alpha=0.4)", "hybrid (alpha=0.6)"]
    assert plain_rows("x-y", runs) == ["x-y"]
    assert plain_rows("x-x-mono", runs) == []
    assert runs[0].to_record() == {
        "label": "hybrid (alpha=0.4)", "strategy": "hybrid", "alpha": 0.4, "precision": None,
        "seed": 0, "key": "", "folder": "", "train_precision": None, "train_seconds": None,
        "machine": None,
    }  # fmt: skip
    # a precision study names one row by its label; the strategy still names all of them
    study = [
        RunInfo(StrategySpec("hybrid", alpha_in_label=False, precision=p), 0)
        for p in ("fp32", "bf16")
    ]
    assert plain_rows("hybrid (fp32)", study) == ["hybrid (fp32)"]
    assert plain_rows("hybrid", study) == ["hybrid (fp32)", "hybrid (bf16)"]


def test_post_hoc_rows_never_decide_a_claim():
    """A hybrid+lsar row better than everything is shown but is no hybrid training run."""
    evals = []
    for s in (0, 1):
        evals += [
            _record("x-x-mono", s, mono=0.80, cross=0.60, multi=0.50, rd=150),
            _record("x-y", s, mono=0.75, cross=0.72, multi=0.55, rd=120),
            _record("hybrid", s, mono=0.70, cross=0.60, multi=0.40, rd=200),
            _record("hybrid+lsar", s, mono=0.90, cross=0.90, multi=0.90, rd=10),
        ]
    verdicts = evaluate_claims(evals, _runs(STRATS, [0, 1]), bootstrap=200)
    assert {v["model"] for v in verdicts} == {"hybrid"}
    assert _by_claim(verdicts)["3"] == CONTRADICTED


def test_measure_registry_reads_metrics_json():
    rec = _record("x", 0, mono=0.8, cross=0.6, multi=0.5, rd=123.0)
    assert [m.label for m in LAREQA] == [
        "mono mAP",
        "cross mAP",
        "multi mAP",
        "mono R@1",
        "cross R@1",
        "multi R@10",
        "rank distance",
    ]
    assert MONO_MAP.get(rec.metrics) == pytest.approx(0.8)
    assert measure("rank distance") is RANK_DISTANCE is measure("rank_distance")
    assert RANK_DISTANCE.format(123.04) == "123.0" and MONO_MAP.format(None) == "-"
    assert MONO_MAP.get({"map": {}}) is None
    with pytest.raises(KeyError, match="unknown measure"):
        measure("ndcg@5")


def _curves(labels: list[str], seeds: list[int]) -> list[RunCurve]:
    out = []
    for lab_i, lab in enumerate(labels):
        for s in seeds:
            pts = [
                {
                    "step": step,
                    "val_loss": 2.0 / (1 + step / 10) + 0.01 * s,
                    "val_mono_map": 0.6 + 0.002 * step + 0.01 * lab_i,
                    "val_cross_map": None if step == 0 else 0.5 + 0.002 * step,
                }
                for step in range(0, 60, 10)
            ]
            out.append(RunCurve(lab, s, pts, selected_step=50))
    return out


def _input(seeds: list[int], *, curves: bool) -> ReportInput:
    labels = {**STRATS, "hybrid+lsar": "hybrid"}
    evals = [_record("base", None, mono=0.7, cross=0.5, multi=0.3, rd=300)]
    for s in seeds:
        for i, lab in enumerate(labels):
            evals.append(
                _record(
                    lab,
                    s,
                    mono=0.75 + 0.01 * i,
                    cross=0.6,
                    multi=0.45 + 0.01 * i,
                    rd=150 - 10 * i,
                    noise=0.05,
                    rng_seed=10 * s + i,
                )
            )
    return ReportInput(
        name="synthetic",
        description="Synthetic results for the report tests.",
        reference="hybrid",
        evaluations=evals,
        runs=_runs(STRATS, seeds),  # compare's runs: hybrid+lsar is a row, not a run
        provenance=Provenance(
            versions={
                "babelir": "0",
                "torch": "t",
                "transformers": "x",
                "sentence_transformers": "s",
            },
            git_commit="abc1234",
            timing_s={"train": 1.0},
            reused={"train": 0, "eval": 0},
            facts={
                "benchmarks": {
                    BENCH: {
                        "num_questions": 60,
                        "num_candidates": 30,
                        "articles": "0",
                        "languages": LANGS,
                    }
                }
            },
        ),
        labels=["base", "x-x-mono", "x-y", "hybrid", "hybrid+lsar"],
        curves=_curves(list(STRATS), seeds) if curves else [],
        permutations=200,
        bootstrap=200,
    )


def test_write_report_renders_verdict_seed_stats_and_curves(tmp_path: Path):
    inp = _input([0, 1, 2], curves=True)
    report = write_report(inp, tmp_path)
    text = report.read_text()
    assert report == tmp_path / "report.md"
    for heading in (
        "## mAP",
        "## Seed-level statistics (training noise)",
        "## Paired tests",
        "## Seed-level paired differences",
        "## Verdict on the paper's claims",
        "## Learning curves",
        "## Plots",
        "## Provenance",
    ):
        assert heading in text
    assert "![learning curves](plots/learning_curves.png)" in text
    assert (tmp_path / "plots" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "| hybrid+lsar |" in text  # post-hoc rows are shown ...
    results = json.loads((tmp_path / "results.json").read_text())
    assert {v["model"] for v in results["claims"]} == {"hybrid"}  # ... but decide nothing
    assert len(results["claims"]) == 4
    assert results["runs"][2] == {
        "label": "hybrid", "strategy": "hybrid", "alpha": 0.5, "precision": None, "seed": 0,
        "key": "", "folder": "", "train_precision": None, "train_seconds": None,
        "machine": None,
    }  # fmt: skip
    assert results["precision"] == []  # no rows that differ only in precision
    for v in results["claims"]:
        assert v["outcome"] in (SUPPORTED, CONTRADICTED, NOT_RESOLVED)
        assert f"| {v['claim']}. {v['text']} | hybrid | **{v['outcome']}**" in text
        assert all(c["basis"] == "seeds" for c in v["comparisons"])
    assert results["verdict"][0].startswith(f"- **{BENCH}, claim 1**")
    assert results["cells"][BENCH]["hybrid"]["mono mAP"]["std"] is not None
    assert any(t["ci"] is not None for t in results["seed_tests"])
    assert "learning_curves.png" in results["plots"]
    for name in results["plots"]:
        assert (tmp_path / "plots" / name).is_file()
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert {r["model"] for r in rows} == {"base", "x-x-mono", "x-y", "hybrid", "hybrid+lsar"}
    assert len(rows) == (1 + 4 * 3) * len(LAREQA)


def test_one_seed_report_says_what_is_unavailable(tmp_path: Path):
    write_report(_input([0], curves=False), tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "Seed-level interval unavailable (1 seed)" in text
    assert f"({ONE_SEED})" in text
    assert "## Learning curves" not in text
    assert not (tmp_path / "plots" / "learning_curves.png").exists()


def test_terminal_table_uses_the_registry():
    from rich.console import Console

    from babelir.reporting.tables import metrics_table

    m = {
        **_record("x", 0, mono=0.8, cross=0.6, multi=0.5, rd=123.44).metrics,
        "model": "x",
        "benchmark": BENCH,
        "num_questions": 60,
        "num_candidates": 30,
        "articles": "0",
        "candidate_mode": "sentence",
        "per_language": {
            lang: {"mono_map": 0.8, "multi_map": 0.5, "rank_distance": None} for lang in LANGS
        },
    }
    console = Console(record=True, width=200)
    console.print(metrics_table(m))
    text = console.export_text()
    for mm in LAREQA:
        assert mm.label in text
    assert "123.4" in text and "0.8000" in text


def test_debias_effects_name_the_winner_and_its_monolingual_cost():
    from babelir.reporting.debias_verdict import debias_effects, debias_sentences

    recs = [
        _record("base", None, mono=0.80, cross=0.60, multi=0.30, rd=300, noise=0.01),
        _record("base+lsar", None, mono=0.79, cross=0.62, multi=0.50, rd=150, noise=0.01),
        _record("hybrid", 0, mono=0.81, cross=0.70, multi=0.58, rd=120, noise=0.01),
        _record("hybrid+lsar", 0, mono=0.80, cross=0.70, multi=0.60, rd=110, noise=0.01),
    ]
    (res,) = debias_effects(recs, bootstrap=200)
    eff = {e["row"]: e for e in res["effects"]}
    assert eff["base+lsar"]["source"] == "base"
    lo, hi = eff["base+lsar"]["multi mAP"]["ci"]
    assert 0.19 < lo <= hi < 0.21  # +0.2 on multi, decided over queries (no seeds)
    assert eff["base+lsar"]["multi mAP"]["basis"] == "queries"
    best = res["best"]
    assert best["multi mAP"]["row"] == "hybrid+lsar"
    assert best["multi mAP"]["kind"] == "training + post-hoc"
    assert best["multi mAP"]["mono_vs_source"] == pytest.approx(-0.01, abs=0.005)
    lines = debias_sentences([res])
    assert any("best multi mAP is **hybrid+lsar**" in s for s in lines)


# ------------------------------------------- stats: independent check against scipy.stats


def _shifted_noise(n: int, z: float, seed: int) -> np.ndarray:
    """n paired differences whose mean is exactly ``z`` standard errors from 0."""
    x = np.random.default_rng(seed).standard_normal(n)
    return x - x.mean() + z * x.std(ddof=1) / np.sqrt(n)


@pytest.mark.parametrize("n", [11, 200])
def test_sign_flip_test_agrees_with_scipy_permutation_test(n):
    # the hand-written test is kept for its seeded p-values; scipy is the independent
    # reference: exact below 2^n <= n_resamples (n = 11), Monte Carlo otherwise
    from scipy import stats as sstats

    from babelir.reporting.stats import paired_permutation_test

    d = _shifted_noise(n, 2.0, seed=n)
    b = np.random.default_rng(99).random(n)
    ours = paired_permutation_test(b + d, b, n_resamples=20000, seed=0)
    ref = sstats.permutation_test(
        (d,),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=9999,
        alternative="two-sided",
        rng=np.random.default_rng(1),
    ).pvalue
    assert 0.01 < ref < 0.2  # a p-value where a wrong convention would show
    se = np.sqrt(ref * (1 - ref) * (1 / 20000 + (0 if n == 11 else 1 / 9999)))
    assert abs(ours - ref) < 5 * se + 1e-4


def test_paired_bootstrap_ci_agrees_with_scipy_bootstrap():
    from scipy import stats as sstats

    from babelir.reporting.stats import paired_bootstrap_ci

    n = 300
    rng = np.random.default_rng(5)
    b = rng.random(n)
    a = b + 0.03 + 0.2 * rng.standard_normal(n)
    a_nan = a.copy()
    a_nan[[3, 50]] = np.nan  # dropped pairs: scipy gets the remaining ones
    keep = ~np.isnan(a_nan)
    mean, lo, hi = paired_bootstrap_ci(a_nan, b, n_resamples=4000, level=0.9, seed=0)
    ref = sstats.bootstrap(
        (a[keep], b[keep]),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        method="percentile",
        confidence_level=0.9,
        n_resamples=4000,
        rng=np.random.default_rng(7),
    )
    assert mean == pytest.approx(float(np.mean(a[keep] - b[keep])), abs=1e-12)
    tol = 0.25 * ref.standard_error  # Monte Carlo error of a 5% quantile at B = 4000
    assert abs(lo - ref.confidence_interval.low) < tol
    assert abs(hi - ref.confidence_interval.high) < tol
    assert hi - lo > 10 * tol  # the tolerance is small against the interval itself


# ------------------------------------------ seeds to resolve an unresolved claim (#31)



def test_seeds_to_resolve_by_hand():
    # t(0.975, 5) = 2.5706, t(0.975, 6) = 2.4469: half-widths 1.0494 at n = 6 and
    # 0.9248 at n = 7 for std 1, so a target of 1 needs 7 seeds.
    assert seeds_to_resolve(1.0, 1.0) == 7
    # t(0.975, 1) = 12.706: 12.706 * 0.1 / sqrt(2) = 0.898 < 1 -> 2 seeds already
    assert seeds_to_resolve(0.1, 1.0) == 2
    assert seeds_to_resolve(0.0, 0.5) == 2  # no spread
    assert seeds_to_resolve(1.0, 0.0) is None  # mean on the boundary: never
    assert seeds_to_resolve(1.0, 0.01) is None  # past MAX_PLANNED_SEEDS
    assert seeds_to_resolve(float("nan"), 1.0) is None


def test_unresolved_claims_carry_a_seed_estimate():
    """Hybrid - x-x-mono mono mAP per seed: +0.02, +0.02, -0.04 (mean 0, sd 0.034641).
    Non-inferiority needs the lower bound above -0.01: t(n-1) * 0.034641 / sqrt(n) < 0.01,
    first true at n = 49 (t(0.975, 48) = 2.0106: 0.00995; n = 48: t = 2.0117, 0.01006)."""
    evals = _equal_means_large_seed_noise()
    verdicts = {v["claim"]: v for v in evaluate_claims(evals, _runs(STRATS, [0, 1, 2]),
                                                        bootstrap=200)}
    one = verdicts["1"]
    assert one["outcome"] == NOT_RESOLVED
    assert one["seeds_to_resolve"] == {"n": 49, "towards": SUPPORTED}
    assert seeds_needed_text(one) == "~49 seeds (towards supported)"


def test_best_claims_need_every_interval_or_one_against():
    claim = next(c for c in CLAIMS if c.id == "3")  # multi mAP, higher is better
    sd = {"basis": "seeds", "std": 1.0, "n": 3}
    # both means favour hybrid: every interval must exclude 0, so the larger need counts
    both = [{"vs": "x-x-mono", "difference": 1.0, **sd}, {"vs": "x-y", "difference": 2.0, **sd}]
    assert seeds_needed(claim, both, 0.01, 0.95) == {"n": 7, "towards": SUPPORTED}
    # one mean against hybrid: that interval alone would contradict the claim
    against = [{"vs": "x-x-mono", "difference": 1.0, **sd},
               {"vs": "x-y", "difference": -1.0, **sd}]
    assert seeds_needed(claim, against, 0.01, 0.95)["towards"].startswith("contradicted")
    assert seeds_needed(claim, against, 0.01, 0.95)["n"] == 7
    # over queries (one seed): no seed estimate
    assert seeds_needed(claim, [{**both[0], "basis": "queries"}], 0.01, 0.95) is None
    far = {"seeds_to_resolve": {"n": None, "towards": SUPPORTED}}
    assert seeds_needed_text(far) == f"more than {MAX_PLANNED_SEEDS} seeds"
    assert seeds_needed_text({"seeds_to_resolve": None}) == ""


def test_the_report_shows_the_estimate_column():
    from types import SimpleNamespace

    from babelir.reporting.markdown import _claims

    analysis = SimpleNamespace(claims=[
            {"benchmark": "b", "claim": "1", "text": "t", "model": "hybrid", "measure": "mono_map",
             "outcome": NOT_RESOLVED, "caveat": None, "missing": [],
             "comparisons": [{"vs": "x-x-mono", "difference": 0.0, "ci": [-0.02, 0.02],
                              "basis": "seeds", "n": 3}],
             "seeds_to_resolve": {"n": 12, "towards": SUPPORTED}},
    ])
    lines = _claims(analysis, 0.01, 0.95)  # type: ignore[arg-type]
    assert lines[2].endswith("seeds to resolve |")
    assert lines[4].endswith("| ~12 seeds (towards supported) |")
    assert any("planning estimate" in line for line in lines)


@pytest.mark.parametrize("std,target", [(0.01, 0.005), (0.02, 0.003), (0.005, 0.004)])
def test_the_estimate_is_the_first_n_whose_interval_fits(std, target):
    """Cross-check: the returned n fits and n - 1 does not (scipy's t quantiles)."""
    from scipy import stats

    n = seeds_to_resolve(std, target)
    assert n is not None

    def half(k: int) -> float:
        return stats.t.ppf(0.975, k - 1) * std / k**0.5

    assert half(n) < target
    assert n == 2 or half(n - 1) >= target

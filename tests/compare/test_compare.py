"""`babelir compare`: config validation, end to end on a tiny model, caching, statistics."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import average_precision_score
from testkit.cli import call, compare_dry_run
from testkit.compare import LANGS, tiny_compare_config

from babelir.batches.strategies import StrategySpec
from babelir.compare import PROFILES, describe, load_config, prepare, run_compare, validate
from babelir.compare.config import CompareConfig
from babelir.core.errors import BabelirError, ConfigError
from babelir.data.lareqa import load_benchmark
from babelir.reporting.analysis import outcome
from babelir.reporting.stats import holm, mean_ci, paired_permutation_test


def _write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _base_cfg(data_dir: Path, model: str | None = None) -> dict:
    return tiny_compare_config(data_dir, model)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(colour="red"), "colour: unknown key"),
        (lambda c: c["train"].update(stepz=3), "train.stepz: unknown key"),
        (lambda c: c.update(strategies=["x-x-mono", "x-q"]), "strategy: unknown 'x-q'"),
        (lambda c: c.update(alphas=[0.5, 1.5]), r"alphas\[1\]: Input should be less than or eq"),
        (
            lambda c: c.update(benchmarks=[{"path": "/no/such/mlqa-r"}]),
            "benchmarks.path: /no/such/mlqa-r is not a folder",
        ),
        (lambda c: c["benchmarks"][0].update(articles="1"), "train/eval overlap"),
        (lambda c: c["benchmarks"][0].update(languages=["en", "xx"]), "'xx' is absent"),
        (lambda c: c["train"].update(batch_size=64), "distinct items"),
    ],
)
def test_bad_config_fails_before_training(change, message, tmp_path, shared_data_dir):
    cfg = _base_cfg(shared_data_dir)
    change(cfg)
    with pytest.raises(ConfigError, match=message):
        parsed, _ = load_config(config_file=_write(tmp_path, cfg))
        validate(parsed)


def test_profiles_parse_and_bad_files_are_named(tmp_path):
    for name in PROFILES:
        cfg, _ = load_config(profile=name)
        assert cfg.name == name
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        load_config(profile="fast")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line"):
        load_config(config_file=bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(config_file=tmp_path / "missing.yaml")


def test_compare_end_to_end_on_a_tiny_model(tmp_path, shared_data_dir, tiny_dir):
    cfg, raw = load_config(config_file=_write(tmp_path, _base_cfg(shared_data_dir, str(tiny_dir))))
    out = tmp_path / "cmp"
    phases: list[str] = []
    report = run_compare(
        cfg, out, show_progress=False, on_phase=lambda w, d, t: phases.append(w), raw_config=raw
    )
    # the plan first, then 3 trainings and 4 evaluations (base + 3)
    assert phases[0] == "planned 3 training + 4 eval jobs" and len(phases) == 1 + 3 + 4
    text = report.read_text()
    for heading in (
        "## mAP",
        "## Recall and language bias",
        "## Paired tests",
        "## Verdict",
        "## Plots",
        "## Provenance",
    ):
        assert heading in text
    assert "| base |" in text and "| hybrid |" in text
    results = json.loads((out / "results.json").read_text())
    for key in (
        "config",
        "versions",
        "git_commit",
        "timing_s",
        "cells",
        "paired_tests",
        "verdict",
        "evaluations",
        "runs",
    ):
        assert key in results
    assert set(results["timing_s"]) >= {"validate", "train", "evaluate", "report", "total"}
    assert {t["baseline"] for t in results["paired_tests"]} == {"base", "x-x-mono", "x-y"}
    for name in results["plots"]:
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["model"] for r in rows} == {"base", "x-x-mono", "x-y", "hybrid"}

    # The report's numbers are the engine's: recompute one cell from saved embeddings
    # with scikit-learn (hybrid, queries en -> candidates de).
    ev = next(e for e in results["evaluations"] if e["label"] == "hybrid")
    folder = Path(ev["folder"])
    q = np.load(folder / "questions.npy")
    c = np.load(folder / "candidates.npy")
    bench = load_benchmark("xquad-r", shared_data_dir, languages=LANGS, articles="0")
    de = np.array([lang == "de" for lang in bench.candidate_langs])
    aps = []
    for i, (qid, lang) in enumerate(zip(bench.question_ids, bench.question_langs, strict=True)):
        if lang != "en":
            continue
        labels = np.array([qid in r for r in bench.candidate_relevant_ids])[de]
        aps.append(average_precision_score(labels, (c[de] @ q[i])))
    cell = ev["metrics"]["per_pair_map"]["en"]["de"]
    assert cell == pytest.approx(float(np.mean(aps)), abs=1e-6)
    csv_cell = next(r for r in rows if r["model"] == "hybrid" and r["setting"] == "multi mAP")
    assert float(csv_cell["value"]) == pytest.approx(ev["metrics"]["map"]["multi"])

    # Re-running reuses every finished training run and evaluation.
    again = run_compare(cfg, out, show_progress=False)
    assert again == report
    reused = json.loads((out / "results.json").read_text())["reused"]
    assert reused == {"train": 3, "eval": 4}


def test_interrupted_training_resumes(tmp_path, shared_data_dir, tiny_dir, monkeypatch):
    """A run whose training died mid-way continues from its checkpoint on the re-run."""
    import babelir.training.trainer as train_mod

    cfg_dict = _base_cfg(shared_data_dir, str(tiny_dir))
    cfg_dict["strategies"] = ["hybrid"]
    cfg_dict["train"]["max_steps"] = 20  # save_steps = 10: one checkpoint before the crash
    cfg, _ = load_config(config_file=_write(tmp_path, cfg_dict))
    out = tmp_path / "cmp"
    real_save = train_mod.save_model

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_model", crash)
    with pytest.raises(KeyboardInterrupt):
        run_compare(cfg, out, show_progress=False)
    run_dir = next((out / "runs").iterdir())
    assert not (run_dir / "babelir-train.json").exists()  # no half-finished model claimed
    assert (run_dir / "checkpoints").is_dir()
    monkeypatch.setattr(train_mod, "save_model", real_save)
    run_compare(cfg, out, show_progress=False)
    info = json.loads((run_dir / "babelir-train.json").read_text())
    assert info["resumed_from"] is not None and info["global_steps"] == 20


@pytest.mark.parametrize("profile", PROFILES)
def test_every_shipped_profile_validates_and_plans(profile, tmp_path, shared_data_dir, monkeypatch):
    """A dry run of each profile: every strategy checked against its own pair table."""
    import babelir.compare.plan as plan_mod

    monkeypatch.setattr(plan_mod, "base_identity", lambda model: "test-base")  # no model build
    cfg, _ = load_config(profile=profile)
    cfg.data_dir = str(shared_data_dir)
    if profile.startswith("paper") and not (
        shared_data_dir / "training" / "squad-v1.1-train-full"
    ).is_dir():
        with pytest.raises(BabelirError, match="babelir data fetch"):
            prepare(cfg, tmp_path / "out")  # the fetched paper-regime data is absent here
        return
    plan, facts = prepare(cfg, tmp_path / "out")
    lines = describe(plan, facts)
    assert len(plan.train_jobs) == sum(len(cfg.seeds_of(v)) for v in cfg.variants())
    for job in plan.train_jobs:  # each job line names its strategy, seed and step budget
        assert any(
            job.label in line and f"seed {job.seed}" in line and "pair rows" in line
            for line in lines
        )
    assert facts["validation"]["items"] > 0  # every profile validates on a held-out slice
    assert set(facts["strategies"]) == {job.label for job in plan.train_jobs}


#: Run folders (label slug, seed, training key) under a fixed base identity: existing output
#: folders are reused only while these stay the same. Keys of CACHE_FORMAT 3 hold the SHA-256
#: of the training files (here the shared data's xquad-r folder), not their paths.
PINNED_TRAIN = {
    "data": "xquad-r", "articles": "%4!=0", "batch_size": 8, "max_steps": 20,
    "learning_rate": 2e-5,
}  # fmt: skip
PINNED_RUNS = [
    (
        {"strategies": ["x-x-mono", "x-y", "hybrid"]},
        [
            ("x-x-mono", "x-x-mono-s0-4c627b7f"),
            ("x-y", "x-y-s0-156d1cb5"),
            ("hybrid", "hybrid-s0-c38c0df4"),
        ],
    ),
    (
        {
            "strategies": ["x-x-mono", "hybrid", "en-en", "x-x"],
            "alphas": [0.25, 1],  # an int alpha: the same run as 1.0
            "seeds": [0, 3],
        },
        [
            ("x-x-mono", "x-x-mono-s0-4c627b7f"),
            ("hybrid (alpha=0.25)", "hybrid-alpha0.25-s0-a5b14c3c"),
            ("hybrid (alpha=1)", "hybrid-alpha1-s0-cef45cf5"),
            ("en-en", "en-en-s0-b57910ac"),
            ("x-x", "x-x-s0-3a43305f"),
            ("x-x-mono", "x-x-mono-s3-c9f634f5"),
            ("hybrid (alpha=0.25)", "hybrid-alpha0.25-s3-e006d7ab"),
            ("hybrid (alpha=1)", "hybrid-alpha1-s3-c5268f75"),
            ("en-en", "en-en-s3-02d12050"),
            ("x-x", "x-x-s3-d209cdc8"),
        ],
    ),
    (  # one alpha-mixing row is plain "hybrid" whatever its alpha; its key still has it
        {"strategies": ["x-y", {"strategy": "hybrid", "alpha": 0.3}]},
        [("x-y", "x-y-s0-156d1cb5"), ("hybrid", "hybrid-s0-835dacf0")],
    ),
]


@pytest.mark.parametrize(("extra", "expected"), PINNED_RUNS)
def test_labels_and_run_folders_match_earlier_runs(extra, expected, shared_data_dir, monkeypatch):
    import babelir.compare.plan as plan_mod

    monkeypatch.setattr(plan_mod, "base_identity", lambda model: "test-base")
    # keys hold the precision as resolved here (fp32 on a CPU; bf16 on most GPUs)
    monkeypatch.setattr(plan_mod, "resolved_precisions", lambda cfg, tcfg: ("fp32", "fp32"))
    monkeypatch.setenv("BABELIR_DATA_DIR", str(shared_data_dir))  # data_dir unset: not in keys
    cfg = CompareConfig.model_validate({"train": PINNED_TRAIN, **extra})
    plan = plan_mod.make_plan(cfg, Path("out"))
    assert [(j.label, j.folder.name) for j in plan.train_jobs] == expected
    assert [r.label for r in plan.eval_jobs if r.train_key] == [label for label, _ in expected]


@pytest.mark.parametrize("alpha", [0.0, 1e-05, 0.25, 0.3, 1 / 3, 0.5, 1.0, 1])
def test_strategy_spec_label_and_slug_are_the_legacy_strings(alpha):
    spec = StrategySpec("HYBRID", alpha)
    assert spec.name == "hybrid" and spec.alpha == float(alpha)
    assert spec.label == f"hybrid (alpha={alpha:g})"
    legacy = spec.label.replace(" ", "").replace("(", "-").replace(")", "").replace("=", "")
    assert spec.slug == legacy  # how compare/plan.py named run folders from the label
    plain = StrategySpec("hybrid", alpha, alpha_in_label=False)
    assert (plain.label, plain.slug, plain.alpha) == ("hybrid", "hybrid", float(alpha))
    assert StrategySpec("x-y", alpha) == StrategySpec("x-y")  # alpha only where it mixes
    assert StrategySpec("x-y", alpha).label == StrategySpec("x-y").slug == "x-y"


def test_one_alpha_range_check_everywhere():
    from babelir.batches.sampler import ParallelBatchSampler
    from babelir.training.config import TrainConfig

    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="alpha: Input should be"):
            StrategySpec("hybrid", bad)
        with pytest.raises(ConfigError, match="alpha: Input should be"):
            ParallelBatchSampler({"id": ["a", "b"]}, 2, strategy="hybrid", alpha=bad)
        with pytest.raises(ConfigError, match="alpha: Input should be"):  # one error type
            TrainConfig(alpha=bad)
        with pytest.raises(ValueError, match=r"alphas\.0\n  Input should be"):
            CompareConfig.model_validate({"alphas": [bad]})
    assert StrategySpec("hybrid").alpha == 0.5 == TrainConfig().alpha


def _dry_run(capsys, profile: str, data_dir: Path, out: Path):
    """``babelir compare --dry-run`` in this process (the CLI's own exit code and output;
    a subprocess would add ~10 s of imports per call)."""
    from types import SimpleNamespace

    code, out_text, err = call(
        capsys, "compare", "--profile", profile, "--dry-run", "--data-dir", str(data_dir),
        "--output", str(out),
    )  # fmt: skip
    return SimpleNamespace(returncode=code, stdout=out_text, stderr=err)


def test_zero_shot_profile_plans_the_full_xquad_r_from_training_side_data(
    shared_data_dir, tmp_path, capsys
):
    r = _dry_run(capsys, "zero-shot", shared_data_dir, tmp_path / "zs")
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert out.count("on xquad-r (13090 questions x 13014 candidates)") == 4  # base + 3
    assert "training items per language: ar " in out and "th " in out
    assert "held-out articles of the training sources" in out
    assert "answers: exact 2110, paragraph 1176" in out  # pt: per-case counts
    assert "WARNING" not in out  # about one epoch: no over-fitting warning
    assert not (tmp_path / "zs").exists()


def test_paper_profiles_name_the_fetch_when_their_data_is_absent(
    shared_data_dir, tmp_path, capsys
):
    """The paper regime trains on the full SQuAD-train translations, which these machines
    cannot download; without them the dry run is one line saying what to fetch."""
    if (shared_data_dir / "training" / "squad-v1.1-train-full").exists():
        pytest.skip("the full SQuAD-train files are present: the dry run would succeed")
    for profile in ("paper", "paper-lite"):
        r = _dry_run(capsys, profile, shared_data_dir, tmp_path / profile)
        assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
        assert "babelir data fetch " in r.stderr  # mlqa-r or squad-train-LANG
        assert "Traceback" not in r.stderr
        assert not (tmp_path / profile).exists()


def test_dry_run_warns_past_ten_epochs(shared_data_dir, tmp_path, capsys):
    code, out, err = compare_dry_run(
        capsys, tmp_path,
        "name: long\nseeds: [0]\nstrategies: [x-y, hybrid]\n"
        "train: {data: xquad-r, languages: [en, de], articles: '1-3', batch_size: 8, "
        "max_steps: 400, val_articles: none}\n"
        "benchmarks: [{name: xquad-r, languages: [en, de], articles: '0'}]\n",
        shared_data_dir,
    )  # fmt: skip
    assert code == 0, out + err
    assert re.search(r"WARNING: (x-y|hybrid) makes \d+ passes over its \d+ pair rows", out), out


def test_dry_run_refuses_a_training_source_that_overlaps_a_benchmark(shared_data_dir, tmp_path,
                                                                     capsys):
    """XQuAD's English file is SQuAD dev, the questions XQuAD-R is built from: a leak."""
    code, _, err = compare_dry_run(
        capsys, tmp_path,
        "name: leak\nseeds: [0]\nstrategies: [hybrid]\n"
        "train: {data: ['en:training/squad-v1.1-train-en/first10-articles.json', "
        "'de:xquad/xquad.de.json'], batch_size: 8, max_steps: 2}\n"
        "benchmarks: [{name: xquad-r, languages: [en, de]}]\n",
        shared_data_dir,
    )  # fmt: skip
    assert code == 2, err
    assert "overlaps an evaluation benchmark: xquad-r: 1190 items" in err
    assert "by id" in err and "by question text" in err and "--drop-overlap" in err


def test_stats_hand_computed():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0
    assert m - lo == pytest.approx(hi - m)
    assert hi - m == pytest.approx(4.302652729911275 * 1.0 / np.sqrt(3))  # t(0.975, 2)
    assert mean_ci([0.5]) == (0.5, 0.5, 0.5)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    a = np.linspace(0, 1, 50)
    assert paired_permutation_test(a, a) == 1.0
    assert paired_permutation_test(a + 0.1, a, n_resamples=999) == pytest.approx(1 / 1000)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(200)
    assert paired_permutation_test(noise, np.zeros(200)) > 0.05


def test_verdict_never_claims_an_unsupported_win():
    t = {"higher_is_better": True, "p_holm": 0.2, "bootstrap_ci": [0.01, 0.03], "seed_ci": None}
    assert outcome(t) == "no significant difference"  # corrected p too large
    t.update(p_holm=0.01, bootstrap_ci=[-0.01, 0.03])
    assert outcome(t) == "no significant difference"  # interval includes 0
    t.update(bootstrap_ci=[0.01, 0.03], seed_ci=[-0.02, 0.05])
    assert outcome(t) == "no significant difference"  # seeds disagree
    t.update(seed_ci=[0.005, 0.04])
    assert outcome(t) == "better"
    t.update(higher_is_better=False)  # rank distance: a positive difference is worse
    assert outcome(t) == "worse"


def test_compare_precision_reaches_the_encoder_and_debias_rows(
    tmp_path, shared_data_dir, tiny_dir, monkeypatch
):
    """evaluation.precision arrives at the forward pass; debias adds '+lsar' rows."""
    from babelir.encoding import encoder as encoding

    calls: list[str] = []
    forward = encoding._forward

    def spy(model, texts, precision, device):
        calls.append(precision)
        return forward(model, texts, precision, device)

    monkeypatch.setattr(encoding, "_forward", spy)
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))  # no embedding-cache hits
    raw = _base_cfg(shared_data_dir, str(tiny_dir))
    raw["strategies"] = ["hybrid"]
    raw["evaluation"]["precision"] = "bf16"  # evaluations; validation follows train's fp32
    raw["debias"] = ["lsar"]
    raw["debias_fit_per_language"] = 20
    raw["train"].update(eval_steps=1, select="best-val-map", precision="fp32")
    cfg, _ = load_config(config_file=_write(tmp_path, raw))
    out = tmp_path / "cmp"
    run_compare(cfg, out, show_progress=False)
    assert set(calls) == {"fp32", "bf16"}
    results = json.loads((out / "results.json").read_text())
    for e in results["evaluations"]:
        assert e["metrics"]["encoder"]["precision_requested"] == "bf16"
    labels = {e["label"] for e in results["evaluations"]}
    assert labels == {"base", "hybrid", "base+lsar", "hybrid+lsar"}
    by = {e["label"]: e["metrics"] for e in results["evaluations"]}
    assert by["hybrid+lsar"]["debias"]["method"] == "lsar"
    assert by["hybrid+lsar"]["map"]["multi"] != by["hybrid"]["map"]["multi"]
    # the trained run kept the step its validation chose, and the curve reached the report
    run = next((out / "runs").iterdir())
    info = json.loads((run / "babelir-train.json").read_text())
    assert [p["step"] for p in info["curve"]] == [0, 1, 2]
    best = max(info["curve"], key=lambda p: p["val_map"])
    assert info["selection"]["step"] == best["step"]
    assert "learning_curves.png" in results["plots"]


def test_base_model_fits_are_shared_across_outputs(shared_data_dir, monkeypatch, tmp_path):
    """The base model's debias fit is keyed by its weights and data and kept in the user
    cache, so a second comparison (another output folder) reuses it; a trained model's
    fit stays with its own output."""
    import babelir.compare.plan as plan_mod

    monkeypatch.setattr(plan_mod, "base_identity", lambda model: "test-base")
    monkeypatch.setenv("BABELIR_DATA_DIR", str(shared_data_dir))
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    cfg = CompareConfig.model_validate(
        {"train": PINNED_TRAIN, "strategies": ["x-y"], "debias": ["lsar"]}
    )
    fits = {}
    for out in ("a", "b"):
        plan = plan_mod.make_plan(cfg, tmp_path / out)
        fits[out] = {j.label: j.fit_folder for j in plan.eval_jobs if j.debias}
    assert fits["a"]["base+lsar"] == fits["b"]["base+lsar"]
    assert fits["a"]["base+lsar"].parent == tmp_path / "cache" / "debias"
    assert fits["a"]["x-y+lsar"].parent == tmp_path / "a" / "debias"

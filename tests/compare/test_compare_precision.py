"""Per-variant training precision in compare: the precision study (issue 19).

A ``strategies:`` entry may set its own training precision, so one comparison trains the
same recipe in fp32 and in bf16 and the report pairs them by seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from testkit.compare import tiny_compare_config

from babelir.batches.strategies import StrategySpec
from babelir.compare import load_config, prepare, run_compare
from babelir.compare.config import CompareConfig
from babelir.core.errors import ConfigError

STUDY = [{"strategy": "hybrid", "precision": "fp32"}, {"strategy": "hybrid", "precision": "bf16"}]


def _cfg(data_dir: Path, model: str | None = None, **extra) -> dict:
    study = {"seeds": [0, 1], "strategies": [dict(s) for s in STUDY], "reference": "hybrid (fp32)"}
    cfg = tiny_compare_config(data_dir, model, **{**study, **extra})
    cfg["evaluation"]["precision"] = "fp32"
    return cfg


def _load(tmp_path: Path, cfg: dict) -> CompareConfig:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(config_file=path)[0]


def test_precision_label_and_slug():
    plain = StrategySpec("hybrid", alpha_in_label=False)
    bf16 = StrategySpec("hybrid", alpha_in_label=False, precision="bf16")
    assert (bf16.label, bf16.slug, plain.label, plain.slug) == (
        "hybrid (bf16)", "hybrid-bf16", "hybrid", "hybrid"
    )  # fmt: skip
    spec = StrategySpec("hybrid", 0.3, precision="fp32")
    assert (spec.label, spec.slug) == ("hybrid (alpha=0.3, fp32)", "hybrid-alpha0.3-fp32")
    assert StrategySpec("x-y", precision="bf16").slug == "x-y-bf16"
    assert StrategySpec("hybrid", 0.3, alpha_in_label=False, precision="bf16").slug == "hybrid-bf16"
    with pytest.raises(ConfigError, match="'int8' is no training precision"):
        StrategySpec("hybrid", precision="int8")


def test_variants_carry_their_precision_and_alpha_stays_out_of_the_label(shared_data_dir):
    cfg = CompareConfig.model_validate(
        {"strategies": [*STUDY, "x-y"], "alphas": [0.5], "data_dir": str(shared_data_dir)}
    )
    assert [v.label for v in cfg.variants()] == ["hybrid (fp32)", "hybrid (bf16)", "x-y"]
    tcfgs = [cfg.train_config(v, 0) for v in cfg.variants()]
    assert [t.precision for t in tcfgs] == ["fp32", "bf16", "auto"]  # x-y: train.precision
    two = CompareConfig.model_validate({"strategies": STUDY, "alphas": [0.3, 0.7]})
    assert [v.label for v in two.variants()] == [
        "hybrid (alpha=0.3, fp32)",
        "hybrid (alpha=0.7, fp32)",
        "hybrid (alpha=0.3, bf16)",
        "hybrid (alpha=0.7, bf16)",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["strategies"].append({"strategy": "x-y", "precision": "int8"}),
            "int8 is for evaluation",
        ),
        (
            lambda c: c["strategies"].append({"strategy": "x-y", "precision": "fp64"}),
            "strategies: entry 2: precision: Input should be",
        ),
        (lambda c: c.update(reference="hybrid (fp16)"), "reference: 'hybrid \\(fp16\\)' is not"),
    ],
)
def test_bad_precision_entries_are_refused_at_load(change, message, tmp_path, shared_data_dir):
    cfg = _cfg(shared_data_dir)
    change(cfg)
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, cfg)


def test_the_plan_keys_folders_and_refusals(tmp_path, shared_data_dir, monkeypatch):
    import babelir.compare.plan as plan_mod

    monkeypatch.setattr(plan_mod, "base_identity", lambda model: "test-base")
    monkeypatch.setenv("BABELIR_CPU_FLAGS", "avx2")  # a CPU that emulates bf16
    plan, facts = prepare(_load(tmp_path, _cfg(shared_data_dir)), tmp_path / "out")
    jobs = [(j.label, j.seed, j.precision, j.train_config.precision) for j in plan.train_jobs]
    assert jobs == [
        ("hybrid (fp32)", 0, "fp32", "fp32"),
        ("hybrid (bf16)", 0, "bf16", "bf16"),
        ("hybrid (fp32)", 1, "fp32", "fp32"),
        ("hybrid (bf16)", 1, "bf16", "bf16"),
    ]
    assert len({j.key for j in plan.train_jobs}) == 4
    assert [j.folder.name.rsplit("-", 1)[0] for j in plan.train_jobs[:2]] == [
        "hybrid-fp32-s0",
        "hybrid-bf16-s0",
    ]
    note = "hybrid (bf16) trains in bf16 without native bf16"
    assert any(n.startswith(note) and "on fp32 kernels" in n for n in facts["notes"])
    monkeypatch.setenv("BABELIR_BF16_KERNELS", "onednn")
    _, facts = prepare(_load(tmp_path, _cfg(shared_data_dir)), tmp_path / "out")
    assert any(n.startswith(note) and "oneDNN" in n for n in facts["notes"])
    monkeypatch.setenv("BABELIR_CPU_FLAGS", "avx512_bf16")
    _, facts = prepare(_load(tmp_path, _cfg(shared_data_dir)), tmp_path / "out")
    assert not any("native bf16" in n for n in facts["notes"])

    # fp16 on a CPU is refused for the variant that asks for it, naming it
    bad = _cfg(shared_data_dir, strategies=[*STUDY, {"strategy": "hybrid", "precision": "fp16"}])
    with pytest.raises(ConfigError, match=r"strategies \(hybrid \(fp16\)\)\.precision: fp16"):
        prepare(_load(tmp_path, bad), tmp_path / "out")
    # an entry that repeats the train section's precision trains the same model twice
    twin = _cfg(shared_data_dir, strategies=["hybrid", STUDY[0]], reference="hybrid")
    twin["train"]["precision"] = "fp32"
    with pytest.raises(ConfigError, match=r"hybrid \(fp32\) and hybrid train the same model"):
        prepare(_load(tmp_path, twin), tmp_path / "out")


def test_precision_study_end_to_end_on_a_tiny_model(tmp_path, shared_data_dir, tiny_dir):
    cfg = _load(tmp_path, _cfg(shared_data_dir, str(tiny_dir)))
    out = tmp_path / "cmp"
    report = run_compare(cfg, out, show_progress=False)
    results = json.loads((out / "results.json").read_text())
    runs = {(r["label"], r["seed"]): r for r in results["runs"]}
    assert set(runs) == {(lab, s) for lab in ("hybrid (fp32)", "hybrid (bf16)") for s in (0, 1)}
    for (label, _), run in runs.items():
        info = json.loads((Path(run["folder"]) / "babelir-train.json").read_text())
        assert run["precision"] == info["train_precision"] == label[8:12]
    # the two precisions trained different weights from the same seed
    weights = {
        label: (Path(runs[(label, 0)]["folder"]) / "model.safetensors").read_bytes()
        for label in ("hybrid (fp32)", "hybrid (bf16)")
    }
    assert weights["hybrid (fp32)"] != weights["hybrid (bf16)"]
    by = {(e["label"], e["seed"]): e["metrics"]["map"] for e in results["evaluations"]}
    # the seed-paired difference (reference fp32 minus bf16) with its interval, 2 seeds
    seed = [
        t
        for t in results["seed_tests"]
        if t["baseline"] == "hybrid (bf16)" and t["measure"] == "multi mAP"
    ]
    assert len(seed) == 1 and seed[0]["reference"] == "hybrid (fp32)"
    assert seed[0]["n_seeds"] == 2 and seed[0]["ci"] is not None
    diffs = [by[("hybrid (fp32)", s)]["multi"] - by[("hybrid (bf16)", s)]["multi"] for s in (0, 1)]
    assert seed[0]["mean_difference"] == pytest.approx(sum(diffs) / 2)
    # the precision verdict: bf16 minus fp32, paired by seed, with the runs' times
    (effect,) = results["precision"]
    assert (effect["reference"], effect["row"]) == ("hybrid (fp32)", "hybrid (bf16)")
    assert effect["measures"]["multi mAP"]["mean_difference"] == pytest.approx(
        -seed[0]["mean_difference"]
    )
    assert all(effect["train_seconds"].values())
    assert all(r["machine"]["cpu"] for r in results["runs"])
    assert any("training precision" in line for line in results["verdict"])
    # only the reference row is tested against the others: no reversed duplicate
    assert {t["reference"] for t in results["paired_tests"]} == {"hybrid (fp32)"}
    # no x-x-mono / x-y rows: the paper's claims are not tested, and the report says why
    assert {v["outcome"] for v in results["claims"]} == {"not tested"}
    text = report.read_text()
    assert "| hybrid (bf16) |" in text
    assert "Not tested: x-x-mono and x-y are not in this comparison" in text
    assert "## Training precision" in text and "**not tested**" not in text


def test_a_resumed_run_gives_no_training_time():
    """Its record times the last part only, which would flatter its precision's mean."""
    from types import SimpleNamespace

    from babelir.compare.runner import _run_info

    job = SimpleNamespace(spec=StrategySpec("hybrid"), seed=0, key="k", folder=Path("f"))
    doc = {"train_precision": "bf16", "timing_s": {"train": 12.5}, "machine": {"cpu": "X"}}
    assert _run_info(job, doc).train_seconds == 12.5
    resumed = _run_info(job, {**doc, "resumed_from": "f/checkpoints/checkpoint-40"})
    assert resumed.train_seconds is None and resumed.train_precision == "bf16"

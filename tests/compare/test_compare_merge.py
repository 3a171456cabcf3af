"""Compare's merged rows (WiSE-FT, lambda picked on validation), labelled recipe variants
and the "Beyond the paper" verdict (issue 32)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from testkit.compare import tiny_compare_config

from babelir.batches.strategies import StrategySpec
from babelir.compare import load_config, run_compare
from babelir.core.errors import ConfigError
from babelir.models.merge import MERGE_RECORD
from babelir.reporting.beyond_verdict import (
    BETTER,
    KEPT,
    LOST,
    NOT_RESOLVED,
    SMALL_LOSS,
    WORSE,
    beyond_effects,
    beyond_sentences,
    decide_gain,
    decide_kept,
)
from babelir.reporting.claims import plain_rows
from babelir.reporting.schema import EvalRecord, RunInfo


def _load(tmp_path: Path, cfg: dict):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(config_file=path)


def test_merged_rows_end_to_end_lambda_from_validation(tmp_path, shared_data_dir, tiny_dir):
    cfg = tiny_compare_config(
        shared_data_dir,
        str(tiny_dir),
        seeds=[0, 1],
        strategies=[
            "hybrid",
            {"strategy": "hybrid", "label": "hybrid-lr", "train": {"learning_rate": 2e-3},
             "seeds": [0]},
        ],
        merge=[{"of": ["hybrid"], "weights": "auto", "grid": [0.0, 0.5, 1.0]},
               {"of": ["hybrid"], "weights": [0.5]}],
    )  # fmt: skip
    cfg["train"].update(articles="1-2", val_articles="2")
    config, _ = _load(tmp_path, cfg)
    out = tmp_path / "cmp"
    phases: list[str] = []
    run_compare(config, out, show_progress=False, on_phase=lambda w, d, t: phases.append(w))
    assert sum(p.startswith("merge hybrid+merge(auto)") for p in phases) == 2  # one per seed
    assert sum(p.startswith("merge hybrid+merge(0.5)") for p in phases) == 2
    results = json.loads((out / "results.json").read_text())
    assert {m["seed"] for m in results["merges"]} == {0, 1}
    assert [m["weight"] for m in results["merges"] if m["label"] == "hybrid+merge(0.5)"] == [
        0.5, 0.5
    ]
    for m in (m for m in results["merges"] if m["label"] == "hybrid+merge(auto)"):
        curve = m["curve"]
        assert [p["weight"] for p in curve] == [0.0, 0.5, 1.0]
        best = max(p["val_map"] for p in curve)
        # the chosen lambda is the grid's best on validation, the smallest among ties
        assert m["weight"] == min(p["weight"] for p in curve if p["val_map"] == best)
        folder = next(Path(e["folder"]) for e in results["evaluations"]
                      if e["label"] == "hybrid+merge(auto)" and e["seed"] == m["seed"])  # fmt: skip
        assert folder.is_dir()
    merged = sorted((out / "merges").iterdir())
    assert len(merged) == 4 and all((d / MERGE_RECORD).is_file() for d in merged)
    # labelled variant: its own row and seeds, not a plain hybrid row in the claims
    labels = {(e["label"], e["seed"]) for e in results["evaluations"]}
    assert ("hybrid-lr", 0) in labels and ("hybrid-lr", 1) not in labels
    rows = {b["row"] for b in results["beyond"]}
    assert rows == {"hybrid-lr", "hybrid+merge(auto)", "hybrid+merge(0.5)"}
    text = (out / "report.md").read_text()
    assert "## Weight-space merges with the base model" in text
    assert "## Beyond the paper" in text
    # a re-run reuses the merges
    run_compare(config, out, show_progress=False)
    assert json.loads((out / "results.json").read_text())["reused"]["merge"] == 4
    # --force redoes them too
    run_compare(config, out, show_progress=False, force=True)
    assert "merge" not in json.loads((out / "results.json").read_text())["reused"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(strategies=[{"strategy": "hybrid", "add_data": ["x"]}]),
         "give the entry a 'label:'"),
        (lambda c: c.update(merge={"of": ["nope"]}), "merge.of: 'nope' is no trained row"),
        (lambda c: c.update(strategies=["hybrid", {"strategy": "x-y", "label": "hybrid"}]),
         "labelled alike"),
        (lambda c: c.update(strategies=[{"strategy": "x-y", "label": "a", "seeds": [7]}]),
         "seed 7 is not in seeds"),
        (lambda c: c.update(merge={"weights": [0.5, 0.5]}), "distinct values"),
        (lambda c: c.update(merge={"weights": [1.5]}), r"weights\[0\]: 1.5 is no lambda"),
        (lambda c: c.update(merge={"weights": [0.5], "tolerance": 0.01}), "only with weights"),
        (lambda c: c.update(merge=[{"of": ["hybrid"]}, {"of": ["x"]}]), "'x' is no trained"),
    ],
)  # fmt: skip
def test_bad_variant_and_merge_configs_are_named(change, message, tmp_path, shared_data_dir):
    cfg = tiny_compare_config(shared_data_dir)
    change(cfg)
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, cfg)


def test_add_data_appends_sources_and_train_overrides(shared_data_dir):
    from babelir.compare.config import CompareConfig

    en = "en:training/squad-v1.1-train-en/first10-articles.json"
    mintaka = "parallel:training/mintaka/mintaka_dev.json"
    cfg = tiny_compare_config(
        shared_data_dir,
        strategies=["x-y", {"strategy": "x-y", "label": "x-y + questions", "add_data": [mintaka],
                            "train": {"learning_rate": 5e-4}}],
    )  # fmt: skip
    cfg["train"] = {"data": [en], "batch_size": 4, "max_steps": 2}
    config = CompareConfig.model_validate(cfg)
    plain, variant = config.variants()
    assert variant.label == "x-y + questions" and variant.slug == "x-y-questions"
    assert config.train_config(plain, 0).train_data == [en]
    tcfg = config.train_config(variant, 0)
    assert tcfg.train_data == [en, mintaka] and tcfg.learning_rate == 5e-4
    assert config.train_config(plain, 0).learning_rate != 5e-4


def test_plain_rows_leave_out_labelled_variants():
    runs = [RunInfo(StrategySpec("hybrid", alpha_in_label=False), 0),
            RunInfo(StrategySpec("hybrid", 0.5, custom_label="hybrid+pq"), 0)]  # fmt: skip
    assert plain_rows("hybrid", runs) == ["hybrid"]
    assert plain_rows("hybrid+pq", runs) == ["hybrid+pq"]


def test_decisions_hand_computed():
    m = 0.01
    assert decide_kept((-0.004, 0.002), m) == KEPT
    assert decide_kept((-0.008, -0.001), m) == SMALL_LOSS
    assert decide_kept((-0.015, -0.011), m) == LOST
    assert decide_kept((-0.015, -0.001), m) == LOST
    assert decide_kept((-0.015, 0.003), m) == NOT_RESOLVED
    assert decide_kept(None, m) == NOT_RESOLVED
    assert decide_gain((0.001, 0.01)) == BETTER
    assert decide_gain((-0.01, -0.001)) == WORSE
    assert decide_gain((-0.01, 0.001)) == NOT_RESOLVED


def _rec(label: str, seed: int | None, mono: float, cross: float, multi: float) -> EvalRecord:
    metrics = {"map": {"mono": mono, "cross": cross, "multi": multi}}
    return EvalRecord(label, seed, "b", metrics, {})


def test_beyond_effects_seed_intervals_hand_computed():
    evals = [_rec("base", None, 0.80, 0.60, 0.30)]
    for s, d in enumerate((0.000, 0.002, 0.004)):
        evals.append(_rec("hybrid", s, 0.79, 0.68, 0.55))
        evals.append(_rec("m", s, 0.800 + d, 0.69 + d, 0.56 + d))
    (e,) = beyond_effects(evals, ["m"], "hybrid", margin=0.01)
    mono, cross, multi = e["measures"].values()
    # differences 0, .002, .004: mean .002, sd .002, t(0.975, 2) = 4.3027
    half = 4.302653 * 0.002 / np.sqrt(3)
    assert mono["mean_difference"] == pytest.approx(0.002)
    assert mono["ci"] == pytest.approx([0.002 - half, 0.002 + half])
    assert mono["decision"] == KEPT
    assert cross["mean_difference"] == pytest.approx(0.012) and cross["decision"] == BETTER
    assert multi["decision"] == BETTER and e["holds"]
    assert "keeps monolingual mAP" in beyond_sentences([e])[0]
    # one seed: nothing is decided, and the sentence says which part did not hold
    (one,) = beyond_effects(evals[:3], ["m"], "hybrid")
    assert not one["holds"] and "not resolved" in beyond_sentences([one])[0]


def test_data_fetch_needs_cover_variant_sources_and_source_folders(shared_data_dir):
    """`babelir data fetch --profile zero-shot-beyond` gets the parallel questions a
    labelled variant adds, the XOR translations given as their folder included."""
    from babelir.compare.data_needs import needed_datasets

    cfg, _ = load_config(profile="zero-shot-beyond")
    needs = {n.dataset: n.why for n in needed_datasets(cfg, shared_data_dir)}
    assert needs["mintaka"].endswith("mintaka_dev.json")
    assert needs["xor-tydi-question-translations"].endswith("xor-tydi-question-translations")
    assert {"arcd", "xquad-r"} <= set(needs)

"""Regression tests for issue 21's compare cases: content-keyed caches (2c), benchmark
dedupe and leaks, corrupted cached evaluations and runs (8c), resample bounds.

Keys are checked on plans alone (no training: the base identity is fixed); the cache
repair tests run compare end to end on a tiny random model.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from testkit.cli import compare_dry_run
from testkit.compare import LANGS

import babelir.compare.plan as plan_mod
from babelir.compare import load_config, run_compare, validate
from babelir.compare.config import CompareConfig
from babelir.compare.plan import make_plan, unique_benchmarks
from babelir.core.errors import ConfigError
from babelir.data.parallel import from_lareqa
from babelir.reporting.stats import MAX_RESAMPLES, paired_bootstrap_ci, paired_permutation_test


@pytest.fixture
def fixed_base(monkeypatch):
    monkeypatch.setattr(plan_mod, "base_identity", lambda model: "test-base")  # no model build


def _data_dir(root: Path, fixture: Path, edit: bool = False) -> Path:
    """A data dir whose xquad-r is the fixture's files (one of them edited if asked)."""
    folder = root / "xquad-r"
    folder.mkdir(parents=True)
    for f in fixture.iterdir():
        shutil.copyfile(f, folder / f.name)
    if edit:
        doc = json.loads((folder / "en.json").read_text("utf-8"))
        q = doc["data"][0]["paragraphs"][0]["qas"][0]
        q["question"] = q["question"] + " (edited)"
        (folder / "en.json").write_text(json.dumps(doc), "utf-8")
    return root


def _plan(train: dict, data_dir: Path | None = None, **extra):
    cfg = CompareConfig.model_validate(
        {
            "strategies": ["hybrid"],
            "train": {"batch_size": 4, "max_steps": 2, **train},
            "benchmarks": [{"name": "xquad-r", "languages": LANGS}],
            **({"data_dir": str(data_dir)} if data_dir else {}),
            **extra,
        }
    )
    plan = make_plan(cfg, Path("out"))
    return plan.train_jobs[0].key, plan.eval_jobs[0].key, plan


# --- 2c: keys by content ---------------------------------------------------------------


def test_edited_training_jsonl_is_a_new_run(tmp_path, fixed_base, shared_data_dir):
    """Single-source JSONL: the key holds the file's SHA-256, not its path."""
    jsonl = tmp_path / "train.jsonl"
    rows = [{"id": f"q{i}", "lang": "en", "query": f"q {i}", "positive": f"p {i}"}
            for i in range(8)]  # fmt: skip
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    first, _, _ = _plan({"data": str(jsonl)}, shared_data_dir)
    assert _plan({"data": str(jsonl)}, shared_data_dir)[0] == first  # unchanged: reused
    rows[0]["positive"] = "another passage"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    assert _plan({"data": str(jsonl)}, shared_data_dir)[0] != first


def test_another_data_dir_with_other_files_retrains_and_reevaluates(
    tmp_path, fixed_base, shared_data_dir, monkeypatch
):
    fixture = shared_data_dir / "fixtures" / "xquad-r"
    same_a = _data_dir(tmp_path / "a", fixture)
    same_b = _data_dir(tmp_path / "b", fixture)
    other = _data_dir(tmp_path / "c", fixture, edit=True)
    keys = {}
    for name, root in (("a", same_a), ("b", same_b), ("c", other)):
        monkeypatch.setenv("BABELIR_DATA_DIR", str(root))  # data_dir unset: the env decides
        keys[name] = _plan({"data": "xquad-r", "languages": LANGS})[:2]
    assert keys["a"] == keys["b"]  # the same files under another path: reused
    train_c, eval_c = keys["c"]
    assert train_c != keys["a"][0] and eval_c != keys["a"][1]


def test_a_checksum_file_written_by_data_verify_keeps_the_keys(
    tmp_path, fixed_base, shared_data_dir
):
    root = _data_dir(tmp_path / "d", shared_data_dir / "fixtures" / "xquad-r")
    before = _plan({"data": "xquad-r", "languages": LANGS}, root)[:2]
    (root / "xquad-r" / "SHA256SUMS.local").write_text("abc  en.json\n")
    assert _plan({"data": "xquad-r", "languages": LANGS}, root)[:2] == before


def test_cache_format_is_in_every_key(fixed_base, shared_data_dir, monkeypatch):
    before = _plan({"data": "xquad-r"}, shared_data_dir)[:2]
    monkeypatch.setattr(plan_mod, "CACHE_FORMAT", plan_mod.CACHE_FORMAT + 1)
    after = _plan({"data": "xquad-r"}, shared_data_dir)[:2]
    assert before[0] != after[0] and before[1] != after[1]


# --- 2c: a benchmark given twice ---------------------------------------------------------


def test_a_repeated_benchmark_is_evaluated_once_with_a_note(fixed_base, shared_data_dir):
    bench = {"name": "xquad-r", "languages": ["en", "de"], "articles": "0"}
    copy = {"path": str(shared_data_dir / "xquad-r"), "languages": ["en", "de"], "articles": "0"}
    *_, plan = _plan({"data": "xquad-r"}, shared_data_dir, benchmarks=[bench, bench, copy])
    assert [e.label for e in plan.eval_jobs] == ["base", "hybrid"]  # one benchmark
    kept, notes = unique_benchmarks(plan.config, shared_data_dir)
    assert len(kept) == 1 and len(notes) == 2
    assert notes[0].startswith("benchmarks[1] (xquad-r) repeats benchmarks[0]")


def test_two_benchmarks_under_one_title_are_refused(fixed_base, shared_data_dir):
    a = {"name": "xquad-r", "languages": ["en", "de"], "articles": "0"}
    b = {"name": "xquad-r", "languages": ["en", "de"], "articles": "4"}
    with pytest.raises(ConfigError, match=r"benchmarks\[1\] and benchmarks\[0\] are both titled"):
        _plan({"data": "xquad-r"}, shared_data_dir, benchmarks=[a, b])


def test_cli_benchmark_twice_is_one_benchmark(tmp_path, shared_data_dir, capsys, monkeypatch):
    monkeypatch.setattr(plan_mod, "base_identity", lambda model: "test-base")
    mlqa = str(shared_data_dir / "fixtures" / "mlqa-r")
    code, out, err = compare_dry_run(capsys, tmp_path, yaml.safe_dump({
        "name": "twice", "strategies": ["hybrid"],
        "train": {"data": "xquad-r", "languages": ["en", "de"], "articles": "1-3",
                  "batch_size": 4, "max_steps": 2, "val_articles": "none"},
        "benchmarks": [{"name": "xquad-r", "languages": ["en", "de"], "articles": "0"}],
    }), shared_data_dir, "--benchmark", mlqa, "--benchmark", mlqa)  # fmt: skip
    assert code == 0, err
    assert "NOTE: benchmarks[2] (mlqa-r) repeats benchmarks[1] (mlqa-r): evaluated once" in out
    assert out.count(" on mlqa-r (") == 2  # base + hybrid, not twice each


# --- 2c: leaks in single-source runs ----------------------------------------------------


def _leak_cfg(tmp_path: Path, data_dir: Path, train: dict, bench: dict) -> CompareConfig:
    raw = {"name": "leak", "strategies": ["hybrid"], "data_dir": str(data_dir),
           "train": {"batch_size": 4, "max_steps": 2, "val_articles": "none", **train},
           "benchmarks": [bench]}  # fmt: skip
    path = tmp_path / "leak.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(config_file=path)[0]


def test_a_benchmark_copied_from_the_training_folder_is_a_leak(tmp_path, shared_data_dir):
    copy = tmp_path / "copy"
    copy.mkdir()
    for lang in ("en", "de"):
        shutil.copyfile(shared_data_dir / "xquad-r" / f"{lang}.json", copy / f"{lang}.json")
    cfg = _leak_cfg(
        tmp_path, shared_data_dir,
        {"data": "xquad-r", "languages": ["en", "de"], "articles": "1-2"},
        {"path": str(copy), "languages": ["en", "de"], "articles": "2"},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"overlap"):
        validate(cfg)
    # disjoint articles of the copy: accepted, and named in-domain (same files)
    cfg.benchmarks[0].articles = "0"
    assert validate(cfg)["regime"] == {"copy": "in-domain"}


def test_training_jsonl_built_from_the_evaluation_questions_is_a_leak(tmp_path, shared_data_dir):
    bench = from_lareqa("xquad-r", shared_data_dir, languages=["en", "de"], articles="0")
    jsonl = tmp_path / "from-eval.jsonl"
    with jsonl.open("w", encoding="utf-8") as f:
        for it in bench.items:  # new ids: found by text alone
            for lang, side in it.sides.items():
                f.write(json.dumps({"id": "copy-" + it.id, "lang": lang, "query": side.query,
                                    "positive": side.positive}) + "\n")  # fmt: skip
    cfg = _leak_cfg(
        tmp_path, shared_data_dir, {"data": str(jsonl)},
        {"name": "xquad-r", "languages": ["en", "de"], "articles": "0"},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"overlaps .*by question text"):
        validate(cfg)


# --- 8c: resample bounds ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["permutations", "bootstrap"])
def test_huge_resample_counts_are_refused_at_load(key, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"{key}: 1000000000000\n")
    with pytest.raises(ConfigError, match=rf"{key}: Input should be less than or equal to"):
        load_config(config_file=path)
    path.write_text(f"{key}: {MAX_RESAMPLES}\n")
    assert getattr(load_config(config_file=path)[0], key) == MAX_RESAMPLES


def test_stats_refuse_unbounded_resamples_before_allocating():
    a = [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match=r"n_resamples must be in 1\.\.1000000"):
        paired_permutation_test(a, [0, 0, 0], n_resamples=10**12)
    with pytest.raises(ValueError, match="n_resamples must be in"):
        paired_bootstrap_ci(a, [0, 0, 0], n_resamples=10**12)


# --- 8c: corrupted cached evaluations and runs ----------------------------------------------


def test_corrupt_caches_are_recomputed_with_a_warning(
    tmp_path, shared_data_dir, tiny_dir, caplog
):
    raw = {
        "name": "t", "model": str(tiny_dir), "data_dir": str(shared_data_dir),
        "strategies": ["hybrid"],
        "train": {"data": "xquad-r", "languages": LANGS, "articles": "1-2", "batch_size": 4,
                  "max_steps": 2, "max_seq_length": 32, "learning_rate": 1e-3},
        "evaluation": {"max_seq_length": 32, "batch_size": 32},
        "benchmarks": [{"name": "xquad-r", "languages": LANGS, "articles": "0"}],
        "debias": ["lsar"], "debias_fit_per_language": 10,
        "permutations": 200, "bootstrap": 200,
    }  # fmt: skip
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg, _ = load_config(config_file=path)
    out = tmp_path / "cmp"
    run_compare(cfg, out, show_progress=False)
    n_evals = len(list((out / "evals").iterdir()))  # base, hybrid and their +lsar rows
    results = json.loads((out / "results.json").read_text())
    by_label = {e["label"]: e["metrics"]["map"]["multi"] for e in results["evaluations"]}
    folders = {p.name.rsplit("-", 1)[0]: p for p in (out / "evals").iterdir()}
    base = folders["base"]
    hybrid = next(p for k, p in folders.items() if k.startswith("hybrid-") and "+" not in k)
    debiased = next(p for k, p in folders.items() if k.startswith("hybrid") and "+lsar" in k)

    metrics = base / "metrics.json"
    metrics.write_bytes(metrics.read_bytes()[:40])  # truncated
    (hybrid / "per_query.npz").unlink()  # deleted
    (debiased / "metrics.json").unlink()  # recomputed, so its cached fit is read
    for fit in (out / "debias").iterdir():
        (fit / "debias.json").write_text("{")  # truncated cached fits
    caplog.set_level(logging.WARNING, logger="babelir.compare.runner")
    run_compare(cfg, out, show_progress=False)
    again = json.loads((out / "results.json").read_text())
    assert again["reused"] == {"train": 1, "eval": n_evals - 3}
    labels = {e["label"]: e["metrics"]["map"]["multi"] for e in again["evaluations"]}
    assert labels == pytest.approx(by_label)  # the same numbers, recomputed
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert f"{base}" in warned and f"{hybrid}" in warned and "recomputing" in warned
    assert "the cached debias fit" in warned

    # weights cut short: trained again; a truncated per_query.npz and embeddings re-scored
    run = next((out / "runs").iterdir())
    for path in (run / "model.safetensors", base / "per_query.npz", hybrid / "candidates.npy"):
        path.write_bytes(path.read_bytes()[:1000])
    caplog.clear()
    run_compare(cfg, out, show_progress=False)
    third = json.loads((out / "results.json").read_text())
    assert third["reused"] == {"train": 0, "eval": n_evals - 2}
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "the trained model" in warned and f"{base}" in warned and f"{hybrid}" in warned
    assert json.loads((run / "babelir-train.json").read_text())["global_steps"] == 2
    labels = {e["label"]: e["metrics"]["map"]["multi"] for e in third["evaluations"]}
    assert labels == pytest.approx(by_label)

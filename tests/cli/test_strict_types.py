"""Strict types in every schema (issue 21, case 8) and ``babelir batches`` bounds (case 9).

YAML booleans are no integers, seeds fit 32 bits, floats are finite, and what the dry run
can check on this machine (precision, model folder) it checks; the same on the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from testkit.cli import call

import babelir.models.loading as loading
from babelir.compare import load_config, validate
from babelir.compare.plan import local_model
from babelir.core.errors import ConfigError
from babelir.core.schema import SEED_MAX
from babelir.training.config import TrainConfig


def _load(tmp_path: Path, doc: dict | str):
    path = tmp_path / "c.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), "utf-8")
    return load_config(config_file=path)[0]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("seeds: [true]", r"seeds\[0\]: Input should be a valid integer"),
        ("seeds: [1000000000000000000000000000000]", r"seeds\[0\]: Input should be less than"),
        (f"seeds: [{SEED_MAX + 1}]", r"seeds\[0\]: Input should be less than or equal to 42949"),
        ("seeds: [-1]", r"seeds\[0\]: Input should be greater than or equal to 0"),
        ("seeds: ['3']", r"seeds\[0\]: Input should be a valid integer"),
        ("alphas: [true]", r"alphas\[0\]: Input should be a valid number"),
        ("margin: .nan", "margin: Input should be a finite number"),
        ("debias_fit_per_language: true", "debias_fit_per_language: Input should be a valid int"),
        ("train: {learning_rate: .inf}", "train.learning_rate: Input should be a finite number"),
        ("train: {batch_size: true}", "train.batch_size: Input should be a valid integer"),
        ("train: {max_steps: '100'}", "train.max_steps: Input should be a valid integer"),
        ("train: {scale: 1.0e+308}", "train.scale: Input should be less than or equal to 1000"),
        ("train: {symmetric: 1}", "train.symmetric: Input should be a valid boolean"),
        ("evaluation: {batch_size: true}", "batch_size must be a positive integer, got True"),
    ],
)
def test_yaml_values_are_strictly_typed(doc, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, doc)


def test_yaml_floats_without_a_dot_are_floats(tmp_path):
    cfg = _load(tmp_path, f"seeds: [0, {SEED_MAX}]\ntrain: {{learning_rate: 3e-5}}\nalphas: [1]\n")
    assert cfg.seeds == [0, SEED_MAX] and cfg.alphas == [1.0]
    assert cfg.train_config(cfg.variants()[0], 0).learning_rate == pytest.approx(3e-5)


@pytest.mark.parametrize("section", ["evaluation", "train"])
def test_dry_run_refuses_fp16_on_a_cpu(section, tmp_path, shared_data_dir, monkeypatch):
    monkeypatch.setattr(loading, "default_device", lambda: "cpu")  # this machine, on a GPU too
    cfg = _load(tmp_path, {"data_dir": str(shared_data_dir), section: {"precision": "fp16"}})
    with pytest.raises(ConfigError, match=rf"{section}\.precision: fp16 is only supported on CUDA"):
        validate(cfg)


def test_dry_run_refuses_a_model_folder_that_does_not_exist(tmp_path, shared_data_dir):
    for missing in (str(tmp_path / "no-such-model"), "./runs/nope", "a/b/c"):
        cfg = _load(tmp_path, {"data_dir": str(shared_data_dir), "model": missing})
        with pytest.raises(ConfigError, match=r"model: model path .* does not exist"):
            validate(cfg)
    # a hub id (name or org/name, no folder here) is fetched at the first job: not refused
    assert local_model("intfloat/multilingual-e5-small") is None
    assert local_model(str(tmp_path)) == tmp_path


def _one_line(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--seed", str(SEED_MAX + 1)], ["--seed", "less than or equal to 4294967295"]),
        (["--seed", "-1"], ["--seed", "greater than or equal to 0"]),
        (["--lr", "inf"], ["--lr", "finite"]),
        (["--scale", "1e308"], ["--scale", "less than or equal to 1000"]),
        (["--warmup-ratio", "nan"], ["--warmup-ratio", "finite"]),
    ],
)
def test_train_options_are_checked_before_any_work(args, words, tmp_path, capsys):
    code, _, err = call(capsys, "train", "-o", str(tmp_path / "m"), *args)
    _one_line(code, err, *words)
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 trains on CUDA")
def test_train_fp16_on_a_cpu_is_refused_not_recorded(tmp_path, capsys):
    code, _, err = call(capsys, "train", "-o", str(tmp_path / "m"), "--precision", "fp16")
    _one_line(code, err, "fp16 is only supported on CUDA")
    assert not (tmp_path / "m" / "babelir-train.json").exists()


def _batches(capsys, tmp_path: Path, fixture: Path, *args: str) -> tuple[int, str, str]:
    return call(capsys, "batches", "-o", str(tmp_path / "b.jsonl"), "--train-data", str(fixture),
                "--languages", "en,de,zh", "--batch-size", "4", *args)  # fmt: skip


def test_batches_seed_is_bounded(tmp_path, capsys, shared_data_dir):
    fixture = shared_data_dir / "fixtures" / "xquad-r"
    code, _, err = _batches(capsys, tmp_path, fixture, "--seed", str(2**64))
    _one_line(code, err, "--seed", "4294967295")


def test_batches_refuses_more_than_the_data_gives_and_streams(tmp_path, capsys, shared_data_dir):
    from babelir.batches.sampler import ParallelBatchSampler
    from babelir.cli.train import MAX_BATCH_PASSES
    from babelir.training.data import build_training_data

    fixture = shared_data_dir / "fixtures" / "xquad-r"
    code, _, err = _batches(capsys, tmp_path, fixture, "--num-batches", str(10**12))
    _one_line(code, err, "--num-batches: 1000000000000 is past what the data gives", "at most")
    assert not (tmp_path / "b.jsonl").exists()

    cfg = TrainConfig(train_data=str(fixture), languages=["en", "de", "zh"], batch_size=4,
                      val_articles="none")  # fmt: skip
    table = build_training_data(cfg).table
    per_pass = ParallelBatchSampler(table, 4).batches_per_pass
    limit = per_pass * MAX_BATCH_PASSES
    assert f"at most {limit} ({MAX_BATCH_PASSES} passes)" in err
    code, _, err = _batches(capsys, tmp_path, fixture, "--num-batches", str(limit + 1))
    assert code == 2

    n = 3 * per_pass  # several passes: streamed line by line, the same batches as describe
    code, _, err = _batches(capsys, tmp_path, fixture, "--num-batches", str(n), "--seed", "7")
    assert code == 0, err
    lines = (tmp_path / "b.jsonl").read_text("utf-8").splitlines()
    sampler = ParallelBatchSampler(table, 4, seed=7, num_batches=n)
    assert [json.loads(line) for line in lines] == sampler.describe(n, table)
    assert [p.name for p in tmp_path.iterdir()] == ["b.jsonl"]  # no temporary file left

"""Hardening round 3 (issue 34), training side: a fresh start never deletes an unfinished
run's checkpoints; a resume compares the resolved precision and records allowed changes."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

import babelir.training.trainer as trainer_mod
from babelir.data.parallel import from_lareqa
from babelir.errors import ConfigError
from babelir.io import DiskSpaceError
from babelir.training.checkpoints import latest_checkpoint
from babelir.training.trainer import MARKER, TrainConfig, train

LANGS = ["en", "de", "zh"]


@pytest.fixture(scope="module")
def fixture_dir(shared_data_dir: Path) -> Path:
    return shared_data_dir / "fixtures" / "xquad-r"


@pytest.fixture(scope="module")
def tiny_dir(fixture_dir: Path, tmp_path_factory) -> Path:
    data = from_lareqa(fixture_dir, languages=LANGS)
    texts = [t for item in data.items for s in item.sides.values() for t in (s.query, s.positive)]
    root = tmp_path_factory.mktemp("tiny3")
    make_tiny_model(root / "build", texts).save(str(root / "model"))
    return root / "model"


def _cfg(out: Path, tiny_dir: Path, fixture_dir: Path, **kw) -> TrainConfig:
    base = dict(
        output=out, model=str(tiny_dir), train_data=str(fixture_dir), languages=LANGS,
        batch_size=4, max_steps=4, save_steps=1, max_seq_length=32, learning_rate=1e-3,
        logging_steps=1,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _interrupted(out: Path, tiny_dir: Path, fixture_dir: Path, monkeypatch, **kw) -> None:
    """A run stopped at step 3 (disk full), its checkpoints 1 and 2 complete."""
    real_save = torch.save

    def filling_save(obj, f, *args, **kwargs):
        if "checkpoint-3" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling_save)
    with pytest.raises(DiskSpaceError):
        train(_cfg(out, tiny_dir, fixture_dir, **kw), show_progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert latest_checkpoint(out / "checkpoints").name == "checkpoint-2"


def test_a_fresh_start_refuses_to_delete_an_unfinished_runs_checkpoints(
    tmp_path, tiny_dir, fixture_dir, monkeypatch, capsys
):
    out = tmp_path / "out"
    _interrupted(out, tiny_dir, fixture_dir, monkeypatch)
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    with pytest.raises(ConfigError, match=r"unfinished run's checkpoints are in .*checkpoints "
                       r"\(latest checkpoint-2\): pass --resume .* or --overwrite"):
        train(_cfg(out, tiny_dir, fixture_dir), show_progress=False)
    code, _, err = call(
        capsys, "train", "--model", str(tiny_dir), "--train-data", str(fixture_dir),
        "--languages", "en,de,zh", "--batch-size", "4", "--max-steps", "4",
        "--max-seq-length", "32", "--quiet", "--output", str(out),
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err and "--overwrite" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # untouched

    # --overwrite: the old checkpoints survive a new run that fails before it finishes
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        if "checkpoint-2" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(DiskSpaceError):
        train(_cfg(out, tiny_dir, fixture_dir, overwrite=True), show_progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert latest_checkpoint(out / "checkpoints.replaced").name == "checkpoint-2"
    # ... and are deleted once one finishes
    train(_cfg(out, tiny_dir, fixture_dir, overwrite=True), show_progress=False)
    assert (out / MARKER).is_file() and not (out / "checkpoints.replaced").exists()


def test_resume_compares_the_resolved_precision_and_records_allowed_changes(
    tmp_path, tiny_dir, fixture_dir, monkeypatch
):
    """auto meant fp32 when the run started and bf16 where it resumes: refused, not a
    silent switch; with --allow-config-change the record says what changed at which step."""
    out = tmp_path / "out"
    monkeypatch.setattr(trainer_mod, "train_precision", lambda cfg: "fp32")
    _interrupted(out, tiny_dir, fixture_dir, monkeypatch, precision="auto")
    monkeypatch.setattr(trainer_mod, "train_precision", lambda cfg: "bf16")
    with pytest.raises(ConfigError, match=r"precision \('fp32' -> 'bf16'\)"):
        train(_cfg(out, tiny_dir, fixture_dir, precision="auto", resume=True),
              show_progress=False)
    monkeypatch.setattr(trainer_mod, "train_precision", lambda cfg: "fp32")  # cheap on CPU
    train(
        _cfg(out, tiny_dir, fixture_dir, precision="auto", resume=True, learning_rate=2e-3,
             allow_config_change=True),
        show_progress=False,
    )
    info = json.loads((out / MARKER).read_text())
    assert info["resumed_from"].endswith("checkpoint-2")
    assert info["config_changes"] == [
        {"step": 2, "fields": {"learning_rate": [0.001, 0.002]}}
    ]

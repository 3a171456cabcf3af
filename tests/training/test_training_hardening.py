"""Hardening round 2 (issue 21), training side: disk full, corrupt checkpoints, non-finite
runs, unusable output paths and Ctrl-C, each ending in one line and a resumable run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

import babelir.training.trainer as trainer_mod
from babelir.core.errors import BabelirError, ConfigError
from babelir.core.io import DiskSpaceError, atomic_dir, atomic_path, write_bytes, write_text
from babelir.data.parallel import from_lareqa
from babelir.training.checkpoints import (
    COMPLETE,
    FiniteGuard,
    TrainingDiverged,
    latest_checkpoint,
    verify,
)
from babelir.training.trainer import MARKER, TrainConfig, train

LANGS = ["en", "de", "zh"]
Usage = namedtuple("Usage", "total used free")


@pytest.fixture(scope="module")
def fixture_dir(shared_data_dir: Path) -> Path:
    return shared_data_dir / "fixtures" / "xquad-r"


@pytest.fixture(scope="module")
def tiny_dir(fixture_dir: Path, tmp_path_factory) -> Path:
    data = from_lareqa(fixture_dir, languages=LANGS)
    texts = [t for item in data.items for s in item.sides.values() for t in (s.query, s.positive)]
    root = tmp_path_factory.mktemp("tiny")
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


def _cli_args(out: Path, tiny_dir: Path, fixture_dir: Path, *extra: str) -> list[str]:
    return [
        "train", "--model", str(tiny_dir), "--train-data", str(fixture_dir),
        "--languages", "en,de,zh", "--batch-size", "4", "--max-steps", "4",
        "--max-seq-length", "32", "--logging-steps", "1", "--quiet", "--output", str(out),
        *extra,
    ]  # fmt: skip


def _one_line_error(code: int, err: str, *names: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    # the message is the last line (progress bars may share it through \r and escapes)
    line = err.rstrip("\n").rsplit("\n", 1)[-1]
    assert "error: " in line and line.count("error:") == 1, err
    for name in names:
        assert name in line, line


def _fake_free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - free, free))


# --- the guarded write path (babelir.core.io) ------------------------------------------------


def test_a_write_that_cannot_fit_is_refused_before_it_starts(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "big.bin"
    _fake_free(monkeypatch, 100)
    with pytest.raises(DiskSpaceError, match=r"not enough disk space in .*sub: big\.bin needs"):
        write_bytes(target, b"x" * 4096)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        Exception("Error while serializing: I/O error: No space left on device (os error 28)"),
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 205888 vs 2"),
    ],
    ids=["errno", "safetensors", "torch"],
)
def test_a_full_disk_mid_write_keeps_the_old_file_and_is_one_line(error, tmp_path, monkeypatch):
    target = tmp_path / "weights.bin"
    write_text(target, "old")
    _fake_free(monkeypatch, 1000)  # what a full disk leaves
    with pytest.raises(DiskSpaceError) as exc, atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise error
    assert str(tmp_path) in str(exc.value) and "weights.bin" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]  # temp file removed


def test_other_write_errors_are_not_taken_for_a_full_disk(tmp_path):
    # torch's zip-writer message with plenty of space left is some other failure
    with pytest.raises(RuntimeError, match="unexpected pos"), atomic_path(tmp_path / "f") as tmp:
        tmp.write_bytes(b"x")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 2")
    with pytest.raises(ValueError), atomic_dir(tmp_path / "d") as tmp:
        raise ValueError("bad value")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_building_a_folder_removes_it(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    full = pytest.raises(DiskSpaceError, match=r"disk full in .* while writing model")
    with full, atomic_dir(dest) as tmp:
        (tmp / "part.bin").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in dest.iterdir()] == ["old.txt"]


# --- checkpoints and the final save: disk full (case 3) --------------------------------


def test_disk_full_during_a_checkpoint_keeps_the_previous_one_and_resumes(
    tmp_path, tiny_dir, fixture_dir, monkeypatch
):
    real_save = torch.save

    def filling_save(obj, f, *args, **kwargs):
        if "checkpoint-3" in str(f):
            Path(f).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling_save)
    out = tmp_path / "out"
    with pytest.raises(DiskSpaceError) as exc:
        train(_cfg(out, tiny_dir, fixture_dir), show_progress=False)
    msg = str(exc.value)
    assert str(out / "checkpoints") in msg and "checkpoint-3" in msg and "--resume" in msg
    ckpts = out / "checkpoints"
    assert not (ckpts / "checkpoint-3").exists()  # the partial folder is gone
    assert verify(ckpts / "checkpoint-2") is None  # the previous one intact
    assert latest_checkpoint(ckpts).name == "checkpoint-2"
    assert not (out / MARKER).exists()

    monkeypatch.setattr(torch, "save", real_save)  # space freed
    train(_cfg(out, tiny_dir, fixture_dir, resume=True), show_progress=False)
    info = json.loads((out / MARKER).read_text())
    assert info["resumed_from"].endswith("checkpoint-2") and info["global_steps"] == 4


def test_a_checkpoint_that_cannot_fit_is_refused_before_writing(
    tmp_path, tiny_dir, fixture_dir, monkeypatch
):
    _fake_free(monkeypatch, 10_000)  # the tiny model's checkpoint is ~0.5 MiB
    out = tmp_path / "out"
    with pytest.raises(
        DiskSpaceError, match=r"not enough disk space in .*checkpoints: checkpoint-1"
    ):
        train(_cfg(out, tiny_dir, fixture_dir), show_progress=False)
    assert not (out / "checkpoints" / "checkpoint-1").exists()


def test_disk_full_during_the_final_save_keeps_the_checkpoints(
    tmp_path, tiny_dir, fixture_dir, monkeypatch
):
    from sentence_transformers import SentenceTransformer

    real_save = SentenceTransformer.save

    def filling_save(self, path, *args, **kwargs):
        if ".model-pending" not in str(path):  # checkpoints save fine, the final save fails
            return real_save(self, path, *args, **kwargs)
        Path(path, "model.safetensors").write_bytes(b"partial")
        raise Exception("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(SentenceTransformer, "save", filling_save)
    out = tmp_path / "out"
    cfg = _cfg(out, tiny_dir, fixture_dir, max_steps=2, save_steps=2)
    with pytest.raises(
        DiskSpaceError, match=r"disk full in .*out while writing the model.*--resume"
    ):
        train(cfg, show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]  # nothing half-saved
    assert latest_checkpoint(out / "checkpoints").name == "checkpoint-2"

    monkeypatch.setattr(SentenceTransformer, "save", real_save)
    train(_cfg(out, tiny_dir, fixture_dir, max_steps=2, save_steps=2, resume=True))
    info = json.loads((out / MARKER).read_text())
    assert info["resumed_from"].endswith("checkpoint-2")  # saved from it, nothing retrained
    assert (out / "model.safetensors").stat().st_size > 1000


def _can_mount_tmpfs(where: Path) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    try:
        ok = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(where)],
            capture_output=True, timeout=10,
        ).returncode == 0  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return ok


def test_a_real_small_tmpfs_fills_up_and_resume_finishes(tmp_path, tiny_dir, fixture_dir):
    """The issue's reproduction: ``--save-steps 1`` on a small tmpfs (needs root to mount)."""
    fs = tmp_path / "fs"
    if not _can_mount_tmpfs(fs):
        pytest.skip("cannot mount a tmpfs here (not root); the injected-ENOSPC tests cover it")
    try:
        out = fs / "out"
        with pytest.raises(DiskSpaceError, match=rf"{fs}.*checkpoint-\d.*--resume") as exc:
            train(_cfg(out, tiny_dir, fixture_dir, max_steps=6), show_progress=False)
        assert "\n" not in str(exc.value)
        last = latest_checkpoint(out / "checkpoints")
        assert last is not None and verify(last) is None
        subprocess.run(["mount", "-o", "remount,size=20m", str(fs)], check=True)
        train(_cfg(out, tiny_dir, fixture_dir, max_steps=6, resume=True), show_progress=False)
        info = json.loads((out / MARKER).read_text())
        assert info["resumed_from"] == str(last) and info["global_steps"] == 6
    finally:
        subprocess.run(["umount", str(fs)], capture_output=True)


# --- checkpoint completeness by content (case 4) ----------------------------------------


def test_a_truncated_checkpoint_is_skipped_for_the_previous_one(
    tmp_path, tiny_dir, fixture_dir, caplog
):
    out = tmp_path / "out"
    cfg = _cfg(out, tiny_dir, fixture_dir, save_steps=2, keep_checkpoints=True)
    train(cfg, show_progress=False)
    ckpts = out / "checkpoints"
    doc = json.loads((ckpts / "checkpoint-4" / COMPLETE).read_text())
    assert (
        doc["files"]["optimizer.pt"]["size"] > 0
        and len(doc["files"]["optimizer.pt"]["sha256"]) == 64
    )
    opt = ckpts / "checkpoint-4" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])  # truncated after it was marked complete

    caplog.set_level("WARNING")
    assert latest_checkpoint(ckpts).name == "checkpoint-2"
    assert "skipping corrupt checkpoint" in caplog.text and "checkpoint-4" in caplog.text
    assert "optimizer.pt is 100 bytes" in caplog.text

    train(_cfg(out, tiny_dir, fixture_dir, save_steps=2, resume=True), show_progress=False)
    info = json.loads((out / MARKER).read_text())
    assert info["resumed_from"].endswith("checkpoint-2") and info["global_steps"] == 4


def test_same_size_other_content_is_corrupt_and_none_left_is_one_line(
    tmp_path, tiny_dir, fixture_dir, capsys
):
    out = tmp_path / "out"
    train(_cfg(out, tiny_dir, fixture_dir, max_steps=2, save_steps=2, keep_checkpoints=True))
    ckpt = out / "checkpoints" / "checkpoint-2"
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert verify(ckpt) == "model.safetensors differs from the marker (SHA-256)"
    with pytest.raises(ConfigError, match=r"no intact checkpoint in .*checkpoint-2 is corrupt"):
        latest_checkpoint(out / "checkpoints")
    code, _, err = call(
        capsys, *_cli_args(out, tiny_dir, fixture_dir, "--max-steps", "2", "--resume")
    )
    _one_line_error(code, err, "checkpoint-2", "corrupt", "--resume")


# --- non-finite loss or weights (case 2b) ------------------------------------------------


def test_a_diverging_run_stops_naming_the_step_and_saves_no_model(
    tmp_path, tiny_dir, fixture_dir
):
    out = tmp_path / "out"
    # scale=1e308 no longer gets this far: the config bounds it (tests/cli/test_strict_types.py)
    with pytest.raises(ConfigError, match="scale"):  # one error type for every schema
        _cfg(out, tiny_dir, fixture_dir, scale=1e308)
    with pytest.raises(TrainingDiverged, match=r"not finite|loss is nan") as exc:
        train(_cfg(out, tiny_dir, fixture_dir, max_steps=6, save_steps=100, learning_rate=1e30))
    assert "at step " in str(exc.value)
    assert not (out / MARKER).exists() and not (out / "model.safetensors").exists()


def test_lr_inf_on_the_cli_is_one_line_and_saves_nothing(tmp_path, tiny_dir, fixture_dir, capsys):
    out = tmp_path / "out"
    code, _, err = call(capsys, *_cli_args(out, tiny_dir, fixture_dir, "--lr", "inf"))
    _one_line_error(code, err)
    assert "step" in err or "lr" in err  # diverged at a step, or refused as a value
    assert not (out / MARKER).exists() and not (out / "model.safetensors").exists()


def test_non_finite_weights_are_caught_before_a_checkpoint():
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.bias[1] = float("inf")
    state = type("S", (), {"global_step": 7, "max_steps": 10})()
    control = type("C", (), {"should_save": True})()
    with pytest.raises(TrainingDiverged, match="weight bias is not finite at step 7"):
        FiniteGuard().on_step_end(None, state, control, model=model)
    control.should_save = False  # no save at this step: not checked (weights are big)
    FiniteGuard().on_step_end(None, state, control, model=model)
    with pytest.raises(TrainingDiverged, match="at step 7"):  # but before a validation
        FiniteGuard(validate_every=7).on_step_end(None, state, control, model=model)


# --- unusable output paths (case 6) -----------------------------------------------------


def test_checkpoints_as_a_file_and_output_under_a_file_are_one_line(
    tmp_path, tiny_dir, fixture_dir, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoints").write_text("not a folder")
    with pytest.raises(ConfigError, match="checkpoints is a file"):
        train(_cfg(out, tiny_dir, fixture_dir, resume=True))
    code, _, err = call(capsys, *_cli_args(out, tiny_dir, fixture_dir, "--resume"))
    _one_line_error(code, err, str(out / "checkpoints"))
    code, _, err = call(capsys, *_cli_args(out, tiny_dir, fixture_dir))
    _one_line_error(code, err, str(out / "checkpoints"))

    blocker = tmp_path / "plain.txt"
    blocker.write_text("x")
    code, _, err = call(capsys, *_cli_args(blocker / "model", tiny_dir, fixture_dir))
    _one_line_error(code, err, str(blocker), "is a file")
    assert issubclass(ConfigError, BabelirError)


# --- Ctrl-C -----------------------------------------------------------------------------

SIGINT_SCRIPT = """
import os, signal, sys
from transformers import Trainer
from babelir.cli.main import main

real = Trainer._maybe_log_save_evaluate

def step(self, *args, **kwargs):
    if self.state.global_step == 3:  # a real SIGINT, as Ctrl-C sends, in the middle of a run
        os.kill(os.getpid(), signal.SIGINT)
    return real(self, *args, **kwargs)

Trainer._maybe_log_save_evaluate = step
main(sys.argv[1:])
"""


def test_ctrl_c_writes_a_checkpoint_exits_130_and_resumes(tmp_path, tiny_dir, fixture_dir):
    script = tmp_path / "sigint.py"
    script.write_text(textwrap.dedent(SIGINT_SCRIPT))
    out = tmp_path / "out"
    args = _cli_args(
        out, tiny_dir, fixture_dir, "--max-steps", "6", "--save-steps", "100", "--lr", "1e-3"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 130, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "interrupted at step 4" in run.stderr and "--resume" in run.stderr
    assert run.stderr.rstrip().endswith("error: interrupted")  # the CLI's last word
    ckpts = out / "checkpoints"
    assert latest_checkpoint(ckpts).name == "checkpoint-4"  # the step after the signal
    assert verify(ckpts / "checkpoint-4") is None and not (out / MARKER).exists()

    cfg = _cfg(out, tiny_dir, fixture_dir, max_steps=6, save_steps=100, resume=True)
    train(cfg, show_progress=False)
    info = json.loads((out / MARKER).read_text())
    assert info["resumed_from"].endswith("checkpoint-4") and info["global_steps"] == 6
    assert [h["step"] for h in info["log_history"] if "loss" in h] == [1, 2, 3, 4, 5, 6]

# --- hardening round 3 (issue 34): a fresh start never deletes an unfinished run's
# checkpoints; a resume compares the resolved precision and records allowed changes


def _disk_full_at(step: int, cfg: TrainConfig, monkeypatch) -> None:
    """Train ``cfg`` with the disk full when checkpoint ``step`` is written."""
    real_save = torch.save

    def filling_save(obj, f, *args, **kwargs):
        if f"checkpoint-{step}" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling_save)
    with pytest.raises(DiskSpaceError):
        train(cfg, show_progress=False)
    monkeypatch.setattr(torch, "save", real_save)


def _interrupted(out: Path, tiny_dir: Path, fixture_dir: Path, monkeypatch, **kw) -> None:
    """A run stopped at step 3 (disk full), its checkpoints 1 and 2 complete."""
    _disk_full_at(3, _cfg(out, tiny_dir, fixture_dir, **kw), monkeypatch)
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
    code, _, err = call(capsys, *_cli_args(out, tiny_dir, fixture_dir))
    _one_line_error(code, err, "unfinished run", "--overwrite")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # untouched

    # --overwrite: the old checkpoints survive a new run that fails before it finishes
    _disk_full_at(2, _cfg(out, tiny_dir, fixture_dir, overwrite=True), monkeypatch)
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

"""Crash-safe checkpoints: complete ones are marked and verified, unsafe runs stop.

transformers writes ``checkpoint-N`` file by file (weights, then optimizer, scheduler, RNG
and trainer state); a crash in between leaves a folder that looks like a checkpoint but
cannot be resumed. babelir writes ``babelir-checkpoint.json`` into the folder after the
trainer has finished it (``on_save``), so only marked folders count as checkpoints;
unmarked ones are reported and skipped. The marker records each file's size and SHA-256,
so a checkpoint damaged after it was written (a truncated ``optimizer.pt``) is reported as
corrupt and skipped too, and the run's configuration, so ``--resume`` with other settings
is refused instead of silently mixing two runs.

The writes themselves are guarded (:func:`guard_checkpoint_saves`): free space checked
first, a full disk removes the partial folder and stops the run with one line, leaving
the previous complete checkpoint to resume from. :class:`FiniteGuard` stops a run whose
loss or weights stop being finite before anything non-finite is checkpointed or saved,
and :class:`InterruptCheckpoint` turns Ctrl-C into "finish this step, checkpoint, stop".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from babelir.core.errors import BabelirError, ConfigError
from babelir.core.io import disk_guard, write_json

COMPLETE = "babelir-checkpoint.json"
#: Ends the disk-full messages of checkpoint and model writes: what to do next.
RESUME_HINT = "; free some space, then run the same command with --resume"
log = logging.getLogger(__name__)


class TrainingDiverged(BabelirError):
    """The loss or the weights are no longer finite numbers (NaN or infinity)."""


def _step(path: Path) -> int:
    return int(path.name.split("-")[-1])


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file in a checkpoint folder (the marker excluded)."""
    return {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != COMPLETE
    }


def verify(checkpoint: Path) -> str | None:
    """Why a marked checkpoint cannot be trusted, or None when its files match the marker.

    Sizes are compared first (cheap, and what a truncation changes), then hashes. Markers
    written before babelir recorded files (no ``files`` key) are taken at their word.
    """
    try:
        doc = json.loads((checkpoint / COMPLETE).read_text("utf-8"))
        files = doc.get("files")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return f"its marker {COMPLETE} is unreadable"
    if files is None:
        return None
    for name, want in files.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["size"]:
            return f"{name} is {size} bytes, the marker recorded {want['size']}"
    for name, want in files.items():
        if _sha256(checkpoint / name) != want["sha256"]:
            return f"{name} differs from the marker (SHA-256)"
    return None


def latest_checkpoint(folder: Path, *, warn: bool = True) -> Path | None:
    """The highest-numbered complete, intact checkpoint in ``folder``.

    Incomplete (unmarked) checkpoints are skipped; so are corrupt ones (files that do not
    match the marker), each reported in one warning line. If every marked checkpoint is
    corrupt, there is nothing safe to resume: a one-line error.
    """
    if not folder.is_dir():
        return None
    ckpts = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    complete = sorted((p for p in ckpts if (p / COMPLETE).is_file()), key=_step, reverse=True)
    best = None
    corrupt: list[tuple[Path, str]] = []
    for p in complete:
        problem = verify(p)
        if problem is None:
            best = p
            break
        corrupt.append((p, problem))
        if warn:
            log.warning("skipping corrupt checkpoint %s: %s", p, problem)
    if best is None and corrupt:
        p, problem = corrupt[0]
        raise ConfigError(
            f"--resume: no intact checkpoint in {folder}: {p.name} is corrupt ({problem})"
            + (f" and {len(corrupt) - 1} more" if len(corrupt) > 1 else "")
            + "; drop --resume to start over"
        )
    skipped = sorted((p for p in ckpts if not (p / COMPLETE).is_file()), key=_step)
    if warn and skipped and (best is None or _step(skipped[-1]) > _step(best)):
        names = ", ".join(p.name for p in skipped)
        log.warning("skipping incomplete checkpoint(s) %s (a crash during the write)", names)
    return best


def check_resume(
    checkpoint: Path, identity: dict[str, Any], allow_change: bool
) -> dict[str, list[Any]]:
    """Refuse to resume a checkpoint written with another configuration.

    ``identity`` holds the resolved training precision (``bf16``, not ``auto``), so a run
    started where ``auto`` meant bf16 is not silently continued in fp32. With
    ``allow_change`` the differences are returned (``{field: [before, now]}``) and
    warned about, for the run record; otherwise they are refused in one line.
    """
    doc = json.loads((checkpoint / COMPLETE).read_text("utf-8"))
    saved = doc.get("identity", {})
    differ = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    shown = ", ".join(f"{k} ({saved.get(k)!r} -> {identity.get(k)!r})" for k in differ[:4])
    if differ and not allow_change:
        raise ConfigError(
            f"--resume: {checkpoint} was written with other settings: {shown}; "
            "pass --allow-config-change to continue anyway, or drop --resume to start over"
        )
    if differ:
        log.warning(
            "--allow-config-change: resuming %s with other settings: %s", checkpoint, shown
        )
    return {k: [saved.get(k), identity.get(k)] for k in differ}


def unfinished_run(folder: Path) -> Path | None:
    """The latest complete checkpoint in ``folder`` (checked without warnings), if any:
    an interrupted run a fresh start must not delete unasked."""
    if not folder.is_dir():
        return None
    marked = [p for p in folder.glob(f"checkpoint-*/{COMPLETE}") if p.is_file()]
    return max((p.parent for p in marked), key=_step) if marked else None


class CompleteCheckpoint(TrainerCallback):
    """Mark a checkpoint complete once the trainer has written all of it."""

    def __init__(self, identity: dict[str, Any], extra: Any = None) -> None:
        self.identity = identity
        self.extra = extra  # a callable returning more JSON to store (e.g. the curve)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                doc = {"step": state.global_step, "identity": self.identity}
                if self.extra is not None:
                    doc.update(self.extra())
                doc["files"] = manifest(folder)
                with disk_guard(folder, what=f"{folder.name}/{COMPLETE}", hint=RESUME_HINT):
                    write_json(folder / COMPLETE, doc)
        return control


def checkpoint_bytes(trainer: Any, folder: Path) -> int:
    """About how many bytes the next checkpoint takes: the last complete one's files,
    else the weights plus AdamW's two fp32 moments per trainable weight, plus 5% and
    64 KiB (tokenizer, scheduler, RNG and trainer state); the write itself is guarded too."""
    done = sorted(folder.glob(f"checkpoint-*/{COMPLETE}"), key=lambda p: _step(p.parent))
    for marker in reversed(done):
        try:
            files = json.loads(marker.read_text("utf-8")).get("files")
        except (OSError, ValueError):
            continue
        if files:
            return sum(int(f["size"]) for f in files.values())
    params = list(trainer.model.parameters())
    weights = sum(p.numel() * p.element_size() for p in params)
    moments = sum(2 * 4 * p.numel() for p in params if p.requires_grad)
    return int((weights + moments) * 1.05) + 2**16


def guard_checkpoint_saves(trainer: Any) -> None:
    """Make the trainer's checkpoint writes disk-safe (wraps its ``_save_checkpoint``).

    Before a write: the free space is checked against :func:`checkpoint_bytes`, and a
    stale marker in the target folder (a checkpoint rewritten after a resume) is removed,
    so the folder is not taken as complete while it is being rewritten. When the write
    fails (for a full disk: torch's ``inline_container`` error, safetensors' ``No space
    left on device``), the partial folder is removed; a full disk stops the run with a
    :class:`babelir.core.io.DiskSpaceError` naming the folder; the previous complete checkpoint
    is untouched (transformers rotates old checkpoints only after a write succeeds).
    """
    original = trainer._save_checkpoint

    def save_checkpoint(model: Any, trial: Any = None) -> None:
        if not trainer.args.should_save:  # other ranks under DDP: nothing to write
            return original(model, trial)
        run_dir = Path(trainer.args.output_dir)
        folder = run_dir / f"checkpoint-{trainer.state.global_step}"
        # An existing folder here is a corrupt or incomplete one newer than the resumed
        # checkpoint (resume takes the latest intact one): never worth keeping.
        (folder / COMPLETE).unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        with disk_guard(
            run_dir, need=checkpoint_bytes(trainer, run_dir), what=folder.name, hint=RESUME_HINT,
            cleanup=lambda: shutil.rmtree(folder, ignore_errors=True),
        ):  # fmt: skip
            original(model, trial)

    trainer._save_checkpoint = save_checkpoint


def first_non_finite(model: Any) -> str | None:
    """The name of the first parameter holding a NaN or an infinity, or None."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if not bool(torch.isfinite(p).all()):
                return name
    return None


class FiniteGuard(TrainerCallback):
    """Stop the run at the first non-finite loss or weight (``--lr inf``, a huge scale).

    :meth:`watch_loss` checks each step's loss as the trainer computes it (transformers
    would otherwise replace a NaN loss by the running mean and carry on); the callback
    checks the weights at every step that writes a checkpoint, every ``validate_every``
    steps (before the validation measures them) and at the last step. Either stops the
    run with :class:`TrainingDiverged` naming the step, so nothing non-finite is
    validated, checkpointed or saved as a finished model.
    """

    def __init__(self, validate_every: int | None = None) -> None:
        self.validate_every = validate_every

    def watch_loss(self, trainer: Any) -> None:
        """Wrap ``trainer.training_step`` (forward + backward of one batch) to check its loss."""
        import torch

        original = trainer.training_step

        def training_step(*args: Any, **kwargs: Any) -> Any:
            loss = original(*args, **kwargs)
            if not bool(torch.isfinite(loss).all()):
                raise TrainingDiverged(
                    f"training diverged: the loss is {float(loss.float().mean())} at step "
                    f"{trainer.state.global_step + 1}; nothing was saved as a model; "
                    "lower --lr or --scale"
                )
            return loss

        trainer.training_step = training_step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step, every = state.global_step, self.validate_every
        due = control.should_save or step >= state.max_steps or bool(every and step % every == 0)
        if model is not None and due:
            bad = first_non_finite(model)
            if bad is not None:
                raise TrainingDiverged(
                    f"training diverged: weight {bad} is not finite at step "
                    f"{state.global_step}; nothing was saved as a model; lower --lr or --scale"
                )
        return control


class InterruptCheckpoint(TrainerCallback):
    """Ctrl-C during training: finish the step, write a checkpoint, stop (then exit 130).

    Used as a context manager around ``trainer.train()``: it installs a SIGINT handler
    that only records the request; at the end of the step the trainer is told to log,
    save and stop, so the checkpoint is a consistent step boundary that ``--resume``
    continues from. A second Ctrl-C interrupts at once (the previous handler is back).
    Only in the main thread of a single-process run: under torchrun the ranks would see
    the signal at different steps and wait for each other forever.
    """

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous: Any = signal.default_int_handler

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)
        log.warning(
            "interrupted: finishing this step and writing a checkpoint (Ctrl-C again to abort)"
        )

    def __enter__(self) -> InterruptCheckpoint:
        single = int(os.environ.get("WORLD_SIZE", "1")) == 1
        if single and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._handler)
            # None: a handler installed outside Python; Ctrl-C again then raises as usual
            self._previous = signal.default_int_handler if previous is None else previous
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, self._previous)
        self._installed = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_log = control.should_save = control.should_training_stop = True
        return control


def whole_run_loss(log_history: list[dict[str, Any]]) -> float:
    """Mean training loss over every step of the run, resumed parts included.

    transformers' ``training_loss`` covers only the steps since the last resume; the
    logged losses are window means, so weighting each by its window length gives the
    mean over the whole run.
    """
    total = steps = 0.0
    last = 0
    for h in log_history:
        if "loss" in h and "step" in h:
            window = h["step"] - last
            if window > 0:
                total += float(h["loss"]) * window
                steps += window
            last = h["step"]
    return total / steps if steps else float("nan")

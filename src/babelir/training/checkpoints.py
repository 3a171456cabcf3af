"""Crash-safe checkpoints: complete ones are marked, resume refuses a changed configuration.

transformers writes ``checkpoint-N`` file by file (weights, then optimizer, scheduler, RNG
and trainer state); a crash in between leaves a folder that looks like a checkpoint but
cannot be resumed. babelir writes ``babelir-checkpoint.json`` into the folder after the
trainer has finished it (``on_save``), so only marked folders count as checkpoints;
unmarked ones are reported and skipped. The marker also records the run's configuration,
so ``--resume`` with other settings is refused instead of silently mixing two runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from babelir.errors import ConfigError
from babelir.io import write_json

COMPLETE = "babelir-checkpoint.json"
log = logging.getLogger(__name__)


def _step(path: Path) -> int:
    return int(path.name.split("-")[-1])


def latest_checkpoint(folder: Path, *, warn: bool = True) -> Path | None:
    """The highest-numbered complete checkpoint in ``folder`` (incomplete ones skipped)."""
    if not folder.is_dir():
        return None
    ckpts = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    complete = [p for p in ckpts if (p / COMPLETE).is_file()]
    best = max(complete, key=_step, default=None)
    skipped = sorted((p for p in ckpts if p not in complete), key=_step)
    if warn and skipped and (best is None or _step(skipped[-1]) > _step(best)):
        names = ", ".join(p.name for p in skipped)
        log.warning("skipping incomplete checkpoint(s) %s (a crash during the write)", names)
    return best


def check_resume(checkpoint: Path, identity: dict[str, Any], allow_change: bool) -> None:
    """Refuse to resume a checkpoint written with another configuration."""
    doc = json.loads((checkpoint / COMPLETE).read_text("utf-8"))
    saved = doc.get("identity", {})
    differ = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if differ and not allow_change:
        shown = ", ".join(f"{k} ({saved.get(k)!r} -> {identity.get(k)!r})" for k in differ[:4])
        raise ConfigError(
            f"--resume: {checkpoint} was written with other settings: {shown}; "
            "pass --allow-config-change to continue anyway, or drop --resume to start over"
        )


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
                write_json(folder / COMPLETE, doc)
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

"""Train a retriever with controlled batch composition on sentence-transformers.

The model, loss, optimizer, schedule, checkpointing and multi-GPU (DDP through
accelerate) are sentence-transformers' ``SentenceTransformerTrainer``; babelir adds the
pair table (:func:`babelir.data.parallel.pair_table`), the batch sampler
(:class:`babelir.batches.sampler.ParallelBatchSampler`) that decides which batches the model
sees (x-x-mono, x-y, hybrid (Elmahdy et al., arXiv 2408.10536), x-x or en-en), a
validation split with checkpoint selection (:mod:`babelir.training.validation`) and
crash-safe resume (:mod:`babelir.training.checkpoints`).

Example::

    from babelir.training import TrainConfig, train
    train(TrainConfig(strategy="hybrid", alpha=0.5, train_data="xquad-r",
                      articles="%4!=0", output="runs/hybrid", max_steps=100))
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from babelir import __version__
from babelir.core.errors import ConfigError
from babelir.encoding.cache import EmbeddingCache
from babelir.precision.emulated_bf16 import bf16_kernels, kernels_for
from babelir.precision.resolver import machine, resolve, trainer_flags
from babelir.training.checkpoints import (
    CompleteCheckpoint,
    FiniteGuard,
    InterruptCheckpoint,
    check_resume,
    guard_checkpoint_saves,
    latest_checkpoint,
    unfinished_run,
    whole_run_loss,
)
from babelir.training.config import TrainConfig
from babelir.training.data import TrainingData, build_training_data, loss_columns
from babelir.training.save import MARKER, is_trained, save_model
from babelir.training.validation import ValidationRecord, ValidationSet

log = logging.getLogger(__name__)

__all__ = [
    "MARKER",
    "TrainConfig",
    "TrainingData",
    "build_training_data",
    "check_output",
    "is_trained",
    "latest_checkpoint",
    "train",
]


def _train_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"  # as ``use_cpu`` below says


def train_precision(cfg: TrainConfig) -> str:
    """The precision this run trains in (:func:`babelir.precision.resolver.resolve`, "train"): on
    the device the trainer uses (CUDA when present, as ``use_cpu`` below says)."""
    return resolve(cfg.precision, _train_device(), "train")


def _cpu_distributed() -> bool:
    """Launched by torchrun with several processes and no GPU."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


class SamplerFactory:
    """The callable the trainer calls to build our batch sampler (ST's documented hook).

    A class rather than a ``functools.partial`` so that pickling it (transformers saves
    the training arguments into every checkpoint) does not copy the whole pair table.
    """

    def __init__(self, cfg: TrainConfig, table: dict[str, list[str]]) -> None:
        self.strategy = cfg.strategy
        self.alpha = cfg.alpha
        self.language_temperature = cfg.language_temperature
        self.table = table

    def __call__(self, dataset: Any, **kwargs: Any):
        from babelir.batches.sampler import ParallelBatchSampler

        return ParallelBatchSampler(
            dataset,
            **kwargs,
            strategy=self.strategy,
            alpha=self.alpha,
            language_temperature=self.language_temperature,
            metadata=self.table,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "table": None}

    def __repr__(self) -> str:
        return f"SamplerFactory(strategy={self.strategy!r}, alpha={self.alpha})"


def _make_loss(cfg: TrainConfig, model):
    from sentence_transformers.sentence_transformer import losses

    # symmetric = query->passage and passage->query terms, each normalised on its own:
    # sentence-transformers 6's replacement for its deprecated *Symmetric* losses
    sym = (
        {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"}
        if cfg.symmetric
        else {}
    )
    if cfg.loss == "cached-mnrl":
        return losses.CachedMultipleNegativesRankingLoss(
            model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size, **sym
        )
    loss = losses.MultipleNegativesRankingLoss(model, scale=cfg.scale, **sym)
    if cfg.length_sorted:
        # Same embeddings and gradients as one padded block, without computing padding
        # (halves the step time of multilingual-e5-small at batch 32 on a CPU).
        from babelir.training.fast import LengthSortedLoss

        loss = LengthSortedLoss(loss)
    return loss


def _tokenize_once(trainer, model) -> None:
    """Tokenize each training text once, not once per epoch (same tensors, tested).

    Bounded to 100k cached texts (measured ~1 KB per 25-token text with tensor overhead,
    so ~0.1-0.3 GB at most); texts beyond that are tokenized as usual.
    """
    from babelir.training.fast import PretokenizedPreprocess

    collator = getattr(trainer, "data_collator", None)
    if collator is not None and hasattr(collator, "preprocess_fn"):
        collator.preprocess_fn = PretokenizedPreprocess.for_model(model, max_entries=100_000)


def _tokenize_stats(trainer) -> dict[str, int] | None:
    pre = getattr(getattr(trainer, "data_collator", None), "preprocess_fn", None)
    if not hasattr(pre, "hits"):
        return None
    return {"texts_reused": pre.hits, "texts_tokenized": pre.misses}


def freeze_word_embeddings(model) -> int:
    """Stop training the token-embedding matrix; returns the parameters frozen.

    In multilingual-e5-small the 250k x 384 matrix is 96M of its 118M parameters, and
    most rows get no gradient in a batch anyway; freezing it removes their optimizer state.
    """
    frozen = 0
    for module in model.modules():
        emb = getattr(module, "word_embeddings", None)
        if isinstance(emb, torch.nn.Embedding):
            emb.weight.requires_grad_(False)
            frozen += emb.weight.numel()
    return frozen


def check_output(cfg: TrainConfig) -> None:
    """Fail before any work when the output cannot be written."""
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output: {out} exists and is not a folder")
    ckpts = out / "checkpoints"
    if ckpts.exists() and not ckpts.is_dir():
        raise ConfigError(f"--output: {ckpts} is a file; babelir keeps checkpoints there")
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"--output: {parent} is a file, so {out} cannot be created")
    if parent is not None and not os.access(parent, os.W_OK):
        raise ConfigError(f"--output: {parent} is not writable")


class Validator(TrainerCallback):
    """Validate every ``every`` steps, in the training precision; keep the best weights.

    The curve and the best weights live in a :class:`ValidationRecord`: in memory while
    training, written next to the checkpoints when one is saved (``on_save``, before the
    checkpoint is marked complete), so a resumed run keeps them.
    """

    def __init__(
        self, vset: ValidationSet, cfg: TrainConfig, model: Any, prefixes: tuple[str, str],
        every: int, folder: Path, precision: str = "fp32",
    ) -> None:  # fmt: skip
        self.vset, self.cfg, self.model, self.prefixes = vset, cfg, model, prefixes
        self.every, self.precision = every, precision
        self.record = ValidationRecord(folder, cfg.select)
        self.seconds = 0.0

    @property
    def curve(self) -> list[dict[str, Any]]:
        return self.record.curve

    @property
    def best(self) -> dict[str, Any] | None:
        return self.record.best

    def restore(self, upto_step: int) -> None:
        self.record.restore(upto_step)

    def measure(self, step: int) -> None:
        if self.record.has(step):
            return
        t0 = time.perf_counter()
        point = {"step": step}
        point.update(
            self.vset.measure(
                self.model,
                query_prefix=self.prefixes[0],
                passage_prefix=self.prefixes[1],
                scale=self.cfg.scale,
                precision=self.precision,
                # the untrained model is the same for every run of a comparison: cached
                cache=EmbeddingCache() if step == 0 else None,
            )
        )
        # not Trainer's load_best_model_at_end: it needs a checkpoint per eval, can't pick step 0
        self.record.add(point, self.model)
        self.seconds += time.perf_counter() - t0
        log.info("validation at step %d: %s", step, point)

    def timing(self) -> dict[str, float]:
        """Seconds by part, for the run record."""
        parts = {**self.vset.timing_s, **self.record.timing_s}
        return {f"validation_{k}": round(v, 2) for k, v in parts.items()}

    def load_best(self) -> None:
        """Put the best validated weights into the model (trainable parameters only)."""
        self.record.load_best(self.model)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step == 0:
            self.measure(0)  # the base model: where every curve starts
        return control

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if state.is_world_process_zero and (step % self.every == 0 or step == state.max_steps):
            self.measure(step)
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # before CompleteCheckpoint marks the checkpoint
            self.record.persist()
        return control


def _eval_every(cfg: TrainConfig, steps_per_epoch: int) -> int:
    if cfg.eval_steps:
        return cfg.eval_steps
    total = cfg.max_steps or max(1, round((cfg.epochs or 1) * steps_per_epoch))
    return max(1, total // 8)


def train(cfg: TrainConfig, *, show_progress: bool = True) -> Path:
    """Train one retriever with a batch strategy; the output is a sentence-transformers folder.

    Each step draws one batch from :class:`babelir.batches.sampler.ParallelBatchSampler`
    (monolingual or cross-lingual as ``cfg.strategy`` and ``cfg.alpha`` say) and applies
    the in-batch contrastive loss; validation on held-out training items picks the kept
    checkpoint (``cfg.select``). Interrupted runs resume from their last checkpoint.

    Args:
        cfg: everything that defines the run (:class:`babelir.training.config.TrainConfig`).
        show_progress: show progress bars.

    Returns:
        The output folder: a model loadable with ``SentenceTransformer(path)``, with
        ``babelir-train.json`` (config, validation curve, timings, machine) and a card.

    References:
        Hybrid batch training: arXiv 2408.10536.

    Example:
        >>> import babelir
        >>> cfg = babelir.TrainConfig(output="runs/hybrid", strategy="hybrid", alpha=0.5,
        ...                           train_data=["en:qa-en.json", "de:qa-de.json"])
        >>> babelir.train(cfg)
        PosixPath('runs/hybrid')"""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    from babelir.models.loading import load_model, resolve_prefixes

    check_output(cfg)
    precision = train_precision(cfg)  # an unavailable precision fails before any work
    train_device = _train_device()
    output = Path(cfg.output)
    ckpt_dir = output / "checkpoints"
    # the checkpoint identity holds the resolved precision (auto means bf16 on one CPU and
    # fp32 on another): a resume on another kind is refused, not silently changed
    identity = {**cfg.identity(), "precision": precision}
    resume_from = latest_checkpoint(ckpt_dir) if cfg.resume else None
    config_changes: dict[str, list[Any]] = {}
    if resume_from is not None:  # before loading anything: a changed config is refused
        config_changes = check_resume(resume_from, identity, cfg.allow_config_change)
    _refuse_unfinished(cfg, ckpt_dir)
    t0 = time.perf_counter()
    td = build_training_data(cfg)
    dataset = loss_columns(Dataset.from_dict(td.table))
    factory = SamplerFactory(cfg, td.table)
    # Build one sampler up front: bad data (too few items for a batch, en-en without
    # English...) fails here, before the model is loaded.
    probe = factory(dataset, batch_size=cfg.batch_size, drop_last=True, seed=cfg.seed)

    model = load_model(cfg.model, device=cfg.device, max_seq_length=cfg.max_seq_length)
    qp, pp = resolve_prefixes(cfg.model, model, cfg.query_prefix, cfg.passage_prefix)
    frozen = freeze_word_embeddings(model) if cfg.freeze_embeddings else 0
    loss = _make_loss(cfg, model)

    set_aside = _set_aside_unfinished(cfg, ckpt_dir)
    if not cfg.resume and ckpt_dir.exists():  # no complete checkpoint left in it
        shutil.rmtree(ckpt_dir)
    validator = None
    if td.val is not None and cfg.eval_steps != 0:
        vset = ValidationSet.from_data(td.val, cfg.batch_size, max_items=cfg.val_items)
        every = _eval_every(cfg, len(probe))
        validator = Validator(vset, cfg, model, (qp, pp), every, ckpt_dir, precision)
        if resume_from is not None:
            validator.restore(int(resume_from.name.split("-")[-1]))
    elif cfg.select != "last":
        raise ConfigError(f"select: '{cfg.select}' needs validation (eval_steps is 0)")
    prompts = {"query": qp, "positive": pp}
    if "negative" in dataset.column_names:
        prompts["negative"] = pp
    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=cfg.batch_size,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        num_train_epochs=cfg.epochs if cfg.epochs is not None else 1.0,
        learning_rate=cfg.learning_rate,
        warmup_steps=float(cfg.warmup_ratio),  # a float < 1 is a ratio in transformers 5
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without CUDA, torchrun's processes must still form a (gloo) DDP group.
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if _cpu_distributed() else None,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        batch_sampler=factory,
        prompts={k: v for k, v in prompts.items() if v},
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        # windows that end at every checkpoint, so a resumed run logs the same windows
        logging_steps=math.gcd(cfg.logging_steps, cfg.save_steps),
        report_to="none",
        dataloader_drop_last=True,
        disable_tqdm=not show_progress,
        **trainer_flags(precision),  # bf16 on a CPU: accelerate's CPU autocast
    )
    interrupt, finite = InterruptCheckpoint(), FiniteGuard(validator.every if validator else None)
    # in this order: Ctrl-C asks for a save, the weights are checked before validation
    # and any write, the validation is recorded before the step's checkpoint is marked
    callbacks: list[TrainerCallback] = [interrupt, finite, CompleteCheckpoint(identity)]
    if validator is not None:
        callbacks.insert(2, validator)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=loss, callbacks=callbacks
    )
    _tokenize_once(trainer, model)
    guard_checkpoint_saves(trainer)  # space checked, a full disk is one line
    finite.watch_loss(trainer)
    t1 = time.perf_counter()
    if _finished(resume_from, cfg):
        # Crashed after the last step but before the model was saved: nothing to redo.
        model = load_model(str(resume_from), device=cfg.device, max_seq_length=cfg.max_seq_length)
        state = json.loads((resume_from / "trainer_state.json").read_text())
        global_step, log_history = int(state["global_step"]), state["log_history"]
        if validator is not None:
            validator.model = model
    else:
        # bf16 on a CPU without native bf16: its matmuls (forward, backward, validation)
        # on fp32 kernels, same numerics ~13x faster than oneDNN's emulation
        with interrupt, bf16_kernels(precision, train_device):
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if interrupt.requested:  # stopped at a step boundary with a checkpoint: exit 130
            log.warning(
                "interrupted at step %d: checkpoint written in %s; run the same command "
                "with --resume to continue", trainer.state.global_step, ckpt_dir,
            )  # fmt: skip
            raise KeyboardInterrupt
        global_step, log_history = int(trainer.state.global_step), trainer.state.log_history
        if resume_from is None and not any("loss" in h for h in log_history):
            log_history = [*log_history, {"loss": result.training_loss, "step": global_step}]
    t2 = time.perf_counter()

    selection: dict[str, Any] = {"select": cfg.select, "step": global_step, "point": None}
    if validator is not None and validator.best is not None:
        validator.load_best()
        selection.update(step=validator.best["step"], point=validator.best)
    info = {
        "babelir_version": __version__,
        "config": cfg.to_dict(),
        "base_model": cfg.model or "multilingual-e5-small",
        "train_items": len(td.data.items),
        "train_languages": td.data.languages,
        "train_articles": td.train_articles,
        "validation": td.validation_record(),
        "sources": td.sources,
        "dropped_for_overlap": td.overlaps,
        "pair_rows": len(dataset),
        "batches_per_epoch": len(probe),
        "global_steps": global_step,
        "frozen_parameters": frozen,
        "train_precision": precision,
        "train_bf16_kernels": kernels_for(precision, train_device),
        "machine": machine(),
        "query_prefix": qp,
        "passage_prefix": pp,
        "train_loss": whole_run_loss(log_history),
        "train_loss_covers": "every logged step of the run, resumed parts included",
        "log_history": log_history,
        "selection": selection,
        "curve": validator.curve if validator else [],
        "timing_s": {
            "prepare": round(t1 - t0, 2),
            "train": round(t2 - t1, 2),
            "validation": round(validator.seconds, 2) if validator else 0.0,
            **(validator.timing() if validator else {}),
        },
        "tokenization": _tokenize_stats(trainer),
        "resumed_from": str(resume_from) if resume_from else None,
    }
    if config_changes:  # --allow-config-change: what changed, at which step
        step = int(resume_from.name.split("-")[-1]) if resume_from else 0
        info["config_changes"] = [{"step": step, "fields": config_changes}]
    if trainer.is_world_process_zero():  # under torchrun only rank 0 writes
        save_model(model, output, info)
        if not cfg.keep_checkpoints:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        if set_aside is not None:  # --overwrite: the new run has finished
            shutil.rmtree(set_aside, ignore_errors=True)
    log.info("saved %s", output)
    return output


def _refuse_unfinished(cfg: TrainConfig, ckpt_dir: Path) -> None:
    """A fresh start (no --resume) over an interrupted run's complete checkpoints is
    refused in one line, before any work, unless --overwrite."""
    found = None if cfg.resume else unfinished_run(ckpt_dir)
    if found is not None and not cfg.overwrite:
        raise ConfigError(
            f"an unfinished run's checkpoints are in {ckpt_dir} (latest {found.name}): pass "
            "--resume to continue it, or --overwrite to start over"
        )


def _set_aside_unfinished(cfg: TrainConfig, ckpt_dir: Path) -> Path | None:
    """With --overwrite, an interrupted run's checkpoints moved to ``checkpoints.replaced``
    just before training starts, and deleted only when the new run has finished: never
    deleted before the new run has its own."""
    if cfg.resume or unfinished_run(ckpt_dir) is None:
        return None
    aside = ckpt_dir.with_name("checkpoints.replaced")
    if aside.exists():  # an earlier --overwrite that never finished: its copy is older
        shutil.rmtree(aside)
    ckpt_dir.rename(aside)
    log.warning("--overwrite: set %s aside as %s until the new run finishes", ckpt_dir, aside)
    return aside


def _finished(checkpoint: Path | None, cfg: TrainConfig) -> bool:
    if checkpoint is None or cfg.max_steps is None:
        return False
    return int(checkpoint.name.split("-")[-1]) >= cfg.max_steps

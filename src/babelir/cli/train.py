"""`babelir train` and `babelir batches`: hybrid batch training and its batches.

Their options are derived from :class:`babelir.training.config.TrainConfig`: defaults,
ranges, choices and help are written there once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from babelir.cli.app import app, console
from babelir.cli.schema import cli_name_of, schema_command
from babelir.core.errors import ConfigError
from babelir.core.schema import build, options
from babelir.training.config import TrainConfig

#: Every training option but the output folder, which ``train`` declares itself.
TRAIN_OPTIONS = [o.name for o in options(TrainConfig) if o.has_cli and o.name != "output"]
#: ``batches`` writes at most this many passes over the data's items (an epoch budget:
#: past it every item repeats 100 times, and 10**12 batches would run for days).
MAX_BATCH_PASSES = 100
BATCH_OPTIONS = [
    "strategy", "alpha", "train_data", "data_dir", "languages", "articles", "batch_size",
    "seed", "hard_negatives", "language_temperature", "on_missing_answer", "parallel_share",
]  # fmt: skip


def _config(values: dict[str, Any]) -> TrainConfig:
    return build(TrainConfig, values, cli_name_of(TrainConfig))


@schema_command(app, TrainConfig, TRAIN_OPTIONS)
def train(
    values: dict[str, Any],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Fine-tune an encoder with x-x-mono, x-y, hybrid, x-x or en-en batches.

    Works under torchrun for multi-GPU (DDP): every rank sees the same batch type at
    each step and disjoint items.
    """
    from babelir.training.trainer import check_output
    from babelir.training.trainer import train as run_training

    cfg = _config({**values, "output": output})
    check_output(cfg)  # before any data or model is loaded
    path = run_training(cfg, show_progress=not quiet)
    console.print(
        f"model written to {path} (load with SentenceTransformer('{path}'))", markup=False
    )


@schema_command(app, TrainConfig, BATCH_OPTIONS)
def batches(
    values: dict[str, Any],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.")],
    num_batches: Annotated[int, typer.Option(help="How many batches to write (>= 1).")] = 10,
    epoch: Annotated[int, typer.Option(help="Epoch (set_epoch) to draw from (>= 0).")] = 0,
) -> None:
    """Write the batches a training run would see, one JSON line per batch.

    Each line: {"step", "type": "mono"|"cross", "pairs": [{"id", "query_lang",
    "passage_lang"}, ...]}. With parallel-question sources each pair also has "origin"
    ("qa" or "question"), and the x-y pairs written are counted per language pair.
    """
    import json

    from tqdm.auto import tqdm

    from babelir.batches.sampler import ParallelBatchSampler
    from babelir.core.io import atomic_path
    from babelir.training.data import build_training_data

    if output.is_dir():
        raise ConfigError(f"--output: {output} is a folder; give a file name")
    if num_batches < 1:
        raise ConfigError(f"--num-batches: must be >= 1, got {num_batches}")
    if epoch < 0:
        raise ConfigError(f"--epoch: must be >= 0, got {epoch}")
    cfg = _config({**values, "val_articles": "none"})  # batches shows the training pool
    table = build_training_data(cfg).table
    args = dict(
        batch_size=cfg.batch_size, seed=cfg.seed, strategy=cfg.strategy, alpha=cfg.alpha,
        language_temperature=cfg.language_temperature, parallel_share=cfg.parallel_share,
    )  # fmt: skip
    per_pass = ParallelBatchSampler(table, **args).batches_per_pass  # type: ignore[arg-type]
    limit = max(per_pass, 1) * MAX_BATCH_PASSES
    if num_batches > limit:
        raise ConfigError(
            f"--num-batches: {num_batches} is past what the data gives: {per_pass} batches "
            f"of {cfg.batch_size} per pass over its items, at most {limit} "
            f"({MAX_BATCH_PASSES} passes)"
        )
    sampler = ParallelBatchSampler(table, **args, num_batches=num_batches)  # type: ignore[arg-type]
    sampler.set_epoch(epoch)
    mono = written = 0
    xy: dict[str, dict[str, int]] = {}  # "X-Y" -> origin -> x-y pairs written
    # streamed: one line per batch as drawn, the file takes its name when complete
    with atomic_path(output, suffix=".jsonl") as tmp, open(tmp, "w", encoding="utf-8") as f:
        drawn = sampler.iter_describe(num_batches, table)
        for row in tqdm(drawn, total=num_batches, desc="batches", unit="batch", leave=False):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            mono += row["type"] == "mono"
            written += 1
            for p in row["pairs"] if row["type"] == "cross" and "origin" in table else ():
                by = xy.setdefault("-".join(sorted((p["query_lang"], p["passage_lang"]))), {})
                by[p["origin"]] = by.get(p["origin"], 0) + 1
    console.print(
        f"wrote {written} batches ({mono} mono, {written - mono} cross) to {output}",
        markup=False,
    )
    if "origin" in table:
        share = sampler.parallel_share
        console.print(
            "x-y pairs written per language pair (both directions), from QA data / from "
            "parallel questions"
            + (f" (parallel_share {share:g})" if share is not None else "")
            + ":" + ("" if xy else " none"),
            markup=False,
            soft_wrap=True,
        )
        for pair, by in sorted(xy.items()):
            console.print(
                f"  {pair}: {by.get('qa', 0)} QA / {by.get('question', 0)} parallel questions",
                markup=False,
                soft_wrap=True,
            )

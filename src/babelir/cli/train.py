"""`babelir train` and `babelir batches`: hybrid batch training and its batches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from babelir.cli.app import ArticlesOpt, DataDirOpt, ModelOpt, app, console

StrategyOpt = Annotated[
    str,
    typer.Option(
        "--strategy",
        "-s",
        help="Batch composition: x-x-mono (one language per batch), x-y (query and passage "
        "in different languages), hybrid (x-x-mono with probability alpha, else x-y), "
        "x-x (same-language pairs, languages mixed), en-en (English only).",
    ),
]
AlphaOpt = Annotated[
    float, typer.Option("--alpha", help="hybrid: probability that a batch is x-x-mono.")
]
TrainDataOpt = Annotated[
    str,
    typer.Option(
        "--train-data",
        help="Parallel QA data: a LAReQA-format benchmark name (xquad-r) or folder, an "
        "mMARCO-layout folder (or 'mmarco' under the data dir), or a JSONL file of "
        "{id, lang, query, positive[, negatives]} lines.",
    ),
]
TrainLanguagesOpt = Annotated[
    str | None,
    typer.Option(
        "--languages",
        "-l",
        help="Training languages, comma-separated (default: the paper's nine, "
        "ar,de,en,es,hi,ru,th,tr,zh, where present).",
    ),
]


def _langs(value: str | None) -> list[str] | None:
    from babelir.data.lareqa import parse_languages

    return parse_languages(value)


@app.command()
def train(
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    model: ModelOpt = None,
    strategy: StrategyOpt = "hybrid",
    alpha: AlphaOpt = 0.5,
    train_data: TrainDataOpt = "xquad-r",
    data_dir: DataDirOpt = None,
    languages: TrainLanguagesOpt = None,
    articles: ArticlesOpt = "all",
    eval_articles: Annotated[
        str | None,
        typer.Option(help="Held-out articles; training fails if they overlap --articles."),
    ] = None,
    passage: Annotated[
        str, typer.Option(help="Positive passage: 'sentence' (answer sentence) or 'paragraph'.")
    ] = "sentence",
    max_triples: Annotated[
        int, typer.Option(help="mMARCO: how many training triples to read.")
    ] = 100_000,
    batch_size: Annotated[int, typer.Option(help="Pairs per batch (per device).")] = 32,
    max_steps: Annotated[
        int | None, typer.Option(help="Optimizer steps (default 100 unless --epochs).")
    ] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs instead of --max-steps.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 3e-5,
    warmup_ratio: Annotated[float, typer.Option(help="Linear warmup share of steps.")] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    max_seq_length: Annotated[int, typer.Option(help="Truncate inputs to this many tokens.")] = 128,
    loss: Annotated[
        str, typer.Option(help="mnrl (InfoNCE, in-batch negatives) or cached-mnrl (GradCache).")
    ] = "mnrl",
    scale: Annotated[float, typer.Option(help="Similarity scale (1 / temperature).")] = 20.0,
    symmetric: Annotated[bool, typer.Option(help="Also score passage -> query.")] = False,
    hard_negatives: Annotated[
        bool, typer.Option(help="Add one hard negative per pair (other paragraph sentences).")
    ] = False,
    mini_batch_size: Annotated[int, typer.Option(help="cached-mnrl chunk size.")] = 16,
    freeze_embeddings: Annotated[
        bool, typer.Option(help="Freeze the word-embedding matrix (no optimizer state).")
    ] = False,
    length_sorted: Annotated[
        bool,
        typer.Option(
            help="mnrl: encode each batch in length-sorted chunks (same gradients, "
            "no padding work)."
        ),
    ] = True,
    language_temperature: Annotated[
        float | None,
        typer.Option(help="Mono batches pick language L with p ~ n_L^(1/T); default uniform."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and initialisation.")] = 0,
    query_prefix: Annotated[str | None, typer.Option(help="Query prefix (model default).")] = None,
    passage_prefix: Annotated[
        str | None, typer.Option(help="Passage prefix (model default).")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16, fp16.")
    ] = "auto",
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 500,
    resume: Annotated[
        bool, typer.Option(help="Continue from the latest checkpoint in OUTPUT/checkpoints.")
    ] = False,
    keep_checkpoints: Annotated[
        bool, typer.Option(help="Keep checkpoints after training.")
    ] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda ... (default: auto).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Fine-tune an encoder with x-x-mono, x-y, hybrid, x-x or en-en batches.

    Works under torchrun for multi-GPU (DDP): every rank sees the same batch type at
    each step and disjoint items.
    """
    from babelir.training.train import TrainConfig
    from babelir.training.train import train as run_train

    cfg = TrainConfig(
        output=output,
        model=model,
        strategy=strategy,
        alpha=alpha,
        train_data=train_data,
        data_dir=str(data_dir) if data_dir else None,
        languages=_langs(languages),
        articles=articles,
        eval_articles=eval_articles,
        passage=passage,
        max_triples=max_triples,
        batch_size=batch_size,
        max_steps=max_steps if max_steps is not None or epochs is not None else 100,
        epochs=epochs,
        learning_rate=lr,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        max_seq_length=max_seq_length,
        loss=loss,
        scale=scale,
        symmetric=symmetric,
        hard_negatives=hard_negatives,
        mini_batch_size=mini_batch_size,
        freeze_embeddings=freeze_embeddings,
        length_sorted=length_sorted,
        language_temperature=language_temperature,
        seed=seed,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        precision=precision,
        save_steps=save_steps,
        resume=resume,
        keep_checkpoints=keep_checkpoints,
        device=device,
    )
    path = run_train(cfg, show_progress=not quiet)
    console.print(f"model written to {path} (load with SentenceTransformer('{path}'))")


@app.command()
def batches(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.")],
    strategy: StrategyOpt = "hybrid",
    alpha: AlphaOpt = 0.5,
    train_data: TrainDataOpt = "xquad-r",
    data_dir: DataDirOpt = None,
    languages: TrainLanguagesOpt = None,
    articles: ArticlesOpt = "all",
    batch_size: Annotated[int, typer.Option(help="Pairs per batch.")] = 32,
    num_batches: Annotated[int, typer.Option(help="How many batches to write.")] = 10,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    epoch: Annotated[int, typer.Option(help="Epoch (set_epoch) to draw from.")] = 0,
    hard_negatives: Annotated[bool, typer.Option(help="Rows need a hard negative.")] = False,
    language_temperature: Annotated[
        float | None, typer.Option(help="As in `babelir train`.")
    ] = None,
) -> None:
    """Write the batches a training run would see, one JSON line per batch.

    Each line: {"step", "type": "mono"|"cross", "pairs": [{"id", "query_lang",
    "passage_lang"}, ...]}.
    """
    from babelir.io import write_jsonl
    from babelir.sampling import ParallelBatchSampler, describe_batches
    from babelir.training.train import TrainConfig, build_training_data

    cfg = TrainConfig(
        strategy=strategy,
        alpha=alpha,
        train_data=train_data,
        data_dir=str(data_dir) if data_dir else None,
        languages=_langs(languages),
        articles=articles,
        batch_size=batch_size,
        hard_negatives=hard_negatives,
        language_temperature=language_temperature,
        seed=seed,
    )
    cfg.validate()
    _, table = build_training_data(cfg)
    sampler = ParallelBatchSampler(
        table,
        batch_size=batch_size,
        seed=seed,
        strategy=strategy,
        alpha=alpha,
        language_temperature=language_temperature,
        num_batches=max(num_batches, 1),
    )
    sampler.set_epoch(epoch)
    rows = describe_batches(sampler, table, num_batches)
    write_jsonl(output, rows)
    mono = sum(r["type"] == "mono" for r in rows)
    console.print(f"wrote {len(rows)} batches ({mono} mono, {len(rows) - mono} cross) to {output}")

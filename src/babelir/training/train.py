"""Train a retriever with controlled batch composition on sentence-transformers.

The model, loss, optimizer, schedule, checkpointing and multi-GPU (DDP through
accelerate) are sentence-transformers' ``SentenceTransformerTrainer``; babelir adds the
pair table (:func:`babelir.data.parallel.pair_table`) and the batch sampler
(:class:`babelir.sampling.ParallelBatchSampler`) that decides which batches the model
sees: x-x-mono, x-y, hybrid (Elmahdy et al., arXiv 2408.10536), x-x or en-en.

Example::

    from babelir.training import TrainConfig, train
    train(TrainConfig(strategy="hybrid", alpha=0.5, train_data="xquad-r",
                      articles="%4!=0", output="runs/hybrid", max_steps=100))
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from babelir import __version__
from babelir.errors import ConfigError
from babelir.io import atomic_dir, write_json, write_text
from babelir.sampling import STRATEGIES

LOSSES = ("mnrl", "cached-mnrl")
MARKER = "babelir-train.json"


@dataclass
class TrainConfig:
    """Everything that defines a training run (and its cache key in ``compare``)."""

    output: str | Path = "runs/model"
    model: str | None = None
    strategy: str = "hybrid"
    alpha: float = 0.5
    train_data: str = "xquad-r"
    data_dir: str | None = None
    languages: list[str] | None = None
    articles: str = "all"
    eval_articles: str | None = None  # when given, checked disjoint from ``articles``
    passage: str = "sentence"
    max_triples: int = 100_000  # mMARCO: training triples read (a window, streamed)
    batch_size: int = 32
    max_steps: int | None = 100
    epochs: float | None = None
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_seq_length: int = 128
    loss: str = "mnrl"
    scale: float = 20.0
    symmetric: bool = False
    hard_negatives: bool = False
    mini_batch_size: int = 16
    freeze_embeddings: bool = False
    length_sorted: bool = True  # mnrl: encode each batch in length-sorted chunks
    language_temperature: float | None = None
    seed: int = 0
    query_prefix: str | None = None
    passage_prefix: str | None = None
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (mixed precision on CUDA)
    save_steps: int = 500
    logging_steps: int = 10
    resume: bool = False
    keep_checkpoints: bool = False
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy: unknown '{self.strategy}' (valid: {', '.join(STRATEGIES)})"
            )
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"alpha: must be in [0, 1], got {self.alpha}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss: unknown '{self.loss}' (valid: {', '.join(LOSSES)})")
        if self.batch_size < 2:
            raise ConfigError(
                f"batch_size: in-batch negatives need at least 2, got {self.batch_size}"
            )
        if (self.max_steps is None) == (self.epochs is None):
            raise ConfigError("give exactly one of max_steps and epochs")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps: must be >= 1, got {self.max_steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"epochs: must be > 0, got {self.epochs}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision: unknown '{self.precision}' (auto, fp32, bf16, fp16)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output"] = str(self.output)
        return d


def _mixed_precision(precision: str) -> dict[str, bool]:
    """bf16/fp16 autocast only on CUDA; on CPU the trainer runs fp32."""
    if not torch.cuda.is_available() or precision == "fp32":
        return {"bf16": False, "fp16": False}
    if precision == "fp16":
        return {"bf16": False, "fp16": True}
    bf16_ok = torch.cuda.is_bf16_supported()
    if precision == "bf16" and not bf16_ok:
        raise ConfigError("precision: bf16 requested but this GPU does not support it")
    return {"bf16": bf16_ok, "fp16": not bf16_ok}


def _cpu_distributed() -> bool:
    """Launched by torchrun with several processes and no GPU."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def build_training_data(cfg: TrainConfig):
    """Load the parallel data and flatten it into the sampler's pair table."""
    from babelir.data.lareqa import ArticleSelection, check_disjoint, resolve_benchmark_dir
    from babelir.data.parallel import PAPER_TRAIN_LANGUAGES, load_parallel, pair_table
    from babelir.settings import data_dir as resolve_data_dir

    data_dir = resolve_data_dir(cfg.data_dir)
    langs = cfg.languages
    data = load_parallel(
        cfg.train_data,
        data_dir,
        languages=langs,
        articles=cfg.articles,
        passage=cfg.passage,
        max_triples=cfg.max_triples,
    )
    if langs is None:
        default = [x for x in PAPER_TRAIN_LANGUAGES if x in data.languages]
        data = data.select_languages(default or data.languages)
    if cfg.eval_articles is not None and not Path(str(cfg.train_data)).is_file():
        from babelir.data.lareqa import load_benchmark

        _, folder = resolve_benchmark_dir(cfg.train_data, data_dir)
        held = load_benchmark(
            folder,
            data_dir,
            languages=data.languages,
            articles=ArticleSelection.parse(cfg.eval_articles),
        )
        check_disjoint(
            data.ids, held.question_ids, f"articles {cfg.articles} vs {cfg.eval_articles}"
        )
    cross = cfg.strategy in ("x-y", "hybrid")
    table = pair_table(data, cross=cross, hard_negatives=cfg.hard_negatives, seed=cfg.seed)
    return data, table


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
        from babelir.sampling import ParallelBatchSampler

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


def latest_checkpoint(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    ckpts = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _finished(checkpoint: Path | None, cfg: TrainConfig) -> bool:
    if checkpoint is None or cfg.max_steps is None:
        return False
    return int(checkpoint.name.split("-")[-1]) >= cfg.max_steps


def is_trained(output: Path) -> bool:
    return (Path(output) / MARKER).is_file()


def train(cfg: TrainConfig, *, show_progress: bool = True) -> Path:
    """Train one model; returns the output folder (a sentence-transformers model)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    from babelir.models.loading import load_model, resolve_prefixes
    from babelir.sampling import loss_columns

    cfg.validate()
    output = Path(cfg.output)
    t0 = time.perf_counter()
    data, table = build_training_data(cfg)
    dataset = loss_columns(Dataset.from_dict(table))
    factory = SamplerFactory(cfg, table)
    # Build one sampler up front: bad data (too few items for a batch, en-en without
    # English...) fails here, before the model is loaded.
    probe = factory(dataset, batch_size=cfg.batch_size, drop_last=True, seed=cfg.seed)

    model = load_model(cfg.model, device=cfg.device, max_seq_length=cfg.max_seq_length)
    qp, pp = resolve_prefixes(cfg.model, model, cfg.query_prefix, cfg.passage_prefix)
    frozen = freeze_word_embeddings(model) if cfg.freeze_embeddings else 0
    loss = _make_loss(cfg, model)

    ckpt_dir = output / "checkpoints"
    resume_from = latest_checkpoint(ckpt_dir) if cfg.resume else None
    if not cfg.resume and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
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
        logging_steps=cfg.logging_steps,
        report_to="none",
        dataloader_drop_last=True,
        disable_tqdm=not show_progress,
        **_mixed_precision(cfg.precision),
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    _tokenize_once(trainer, model)
    t1 = time.perf_counter()
    if _finished(resume_from, cfg):
        # Crashed after the last step but before the model was saved: nothing to redo.
        model = load_model(str(resume_from), device=cfg.device, max_seq_length=cfg.max_seq_length)
        state = json.loads((resume_from / "trainer_state.json").read_text())
        global_step, log_history = int(state["global_step"]), state["log_history"]
        losses = [h["loss"] for h in log_history if "loss" in h]
        train_loss = float(sum(losses) / len(losses)) if losses else float("nan")
    else:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        global_step, log_history = int(trainer.state.global_step), trainer.state.log_history
        train_loss = float(result.training_loss)
    t2 = time.perf_counter()

    info = {
        "babelir_version": __version__,
        "config": cfg.to_dict(),
        "base_model": cfg.model or "multilingual-e5-small",
        "train_items": len(data.items),
        "train_languages": data.languages,
        "pair_rows": len(dataset),
        "batches_per_epoch": len(probe),
        "global_steps": global_step,
        "frozen_parameters": frozen,
        "query_prefix": qp,
        "passage_prefix": pp,
        "train_loss": train_loss,
        "log_history": log_history,
        "timing_s": {"prepare": round(t1 - t0, 2), "train": round(t2 - t1, 2)},
        "tokenization": _tokenize_stats(trainer),
        "resumed_from": str(resume_from) if resume_from else None,
    }
    if trainer.is_world_process_zero():  # under torchrun only rank 0 writes
        _save_model(model, output, info)
        if not cfg.keep_checkpoints:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
    logging.getLogger(__name__).info("saved %s", output)
    return output


def _save_model(model, output: Path, info: dict[str, Any]) -> None:
    """Save the model files into ``output`` atomically, then the marker (last)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / MARKER).unlink(missing_ok=True)
    with atomic_dir(output / ".model-pending") as tmp:
        model.save(str(tmp))
        _keep_pooler_off(tmp)
        write_text(tmp / "README.md", model_card(info))
    pending = output / ".model-pending"
    for item in pending.iterdir():
        dest = output / item.name
        if dest.is_dir() and item.is_dir():
            shutil.rmtree(dest)
        os.replace(item, dest)
    pending.rmdir()
    write_json(output / MARKER, info)


def _keep_pooler_off(folder: Path) -> None:
    """Tell transformers not to build a (random, unused) pooler the weights lack.

    sentence-transformers' save drops the base folder's ``add_pooling_layer: false``;
    without it every load of a BERT/XLM-R body without pooler weights prints a
    missing-weights report. Mean pooling never uses that layer.
    """
    from safetensors import safe_open

    weights, st_cfg, hf_cfg = (
        folder / n for n in ("model.safetensors", "sentence_bert_config.json", "config.json")
    )
    if not (weights.is_file() and st_cfg.is_file() and hf_cfg.is_file()):
        return
    if json.loads(hf_cfg.read_text())["model_type"] not in ("bert", "roberta", "xlm-roberta"):
        return
    with safe_open(str(weights), "np") as f:
        if any("pooler" in k for k in f.keys()):  # noqa: SIM118 (safe_open has no __iter__)
            return
    doc = json.loads(st_cfg.read_text())
    doc.setdefault("model_kwargs", {})["add_pooling_layer"] = False
    write_json(st_cfg, doc)


def model_card(info: dict[str, Any]) -> str:
    cfg = info["config"]
    alpha = f", alpha = {cfg['alpha']}" if cfg["strategy"] == "hybrid" else ""
    rows = [
        ("base model", info["base_model"]),
        ("strategy", f"{cfg['strategy']}{alpha}"),
        ("training data", f"{cfg['train_data']} (articles {cfg['articles']})"),
        ("languages", ", ".join(info["train_languages"])),
        ("items / pair rows", f"{info['train_items']} / {info['pair_rows']}"),
        ("steps x batch size", f"{info['global_steps']} x {cfg['batch_size']}"),
        (
            "loss",
            f"{cfg['loss']} (scale {cfg['scale']}, symmetric {cfg['symmetric']}, "
            f"hard negatives {cfg['hard_negatives']})",
        ),
        (
            "optimizer",
            f"AdamW lr {cfg['learning_rate']}, warmup {cfg['warmup_ratio']}, "
            f"weight decay {cfg['weight_decay']}",
        ),
        ("max length", str(cfg["max_seq_length"])),
        ("frozen word embeddings", str(cfg["freeze_embeddings"])),
        ("prefixes", f"query {info['query_prefix']!r}, passage {info['passage_prefix']!r}"),
        ("seed", str(cfg["seed"])),
        ("final train loss", f"{info['train_loss']:.4f}"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        "---\nlibrary_name: sentence-transformers\ntags:\n- babelir\n- sentence-similarity\n"
        "- multilingual\n---\n\n"
        f"# Multilingual retriever trained with babelir ({cfg['strategy']} batches)\n\n"
        "Trained with [babelir](https://github.com/) hybrid batch training "
        "(Elmahdy et al., arXiv 2408.10536): each batch is monolingual (x-x-mono) or "
        "cross-lingual (x-y), chosen per batch.\n\n"
        f"| setting | value |\n|---|---|\n{table}\n\n"
        "Load it with `SentenceTransformer(path)` and prefix inputs as above; evaluate it "
        "with `babelir evaluate --model path`.\n\n"
        f"```json\n{json.dumps(cfg, indent=2)}\n```\n"
    )

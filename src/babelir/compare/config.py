"""The schema of ``babelir compare``: a YAML profile or file, validated in one pass.

The ``train:`` section accepts exactly the YAML keys of
:class:`babelir.training.config.TrainConfig` (its defaults, ranges and help apply), and
``evaluation:`` the encoding fields of :class:`babelir.encoding.options.EncodeOptions`; the rest
(strategies, seeds, benchmarks, statistics) is defined here. Unknown keys are errors,
types are strict (``seeds: [true]`` is no seed 1) and floats finite; YAML floats written
``3e-5`` are floats (PyYAML alone reads them as strings).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from babelir.batches.strategies import DEFAULT_ALPHA, Alpha, StrategySpec, get_strategy
from babelir.core.errors import ConfigError
from babelir.core.schema import Seed, format_validation
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.families import (
    DEFAULT_KIND,
    FAMILY_KEYS,
    FAMILY_TABLE,
    RETRIEVAL_FAMILIES,
    BenchmarkFamily,
    get_family,
)
from babelir.evaluation.options import CorpusLimit, RetrievalOptions, TopK
from babelir.precision.vocabulary import TrainingPrecision
from babelir.reporting.stats import MAX_RESAMPLES
from babelir.training.config import TrainConfig, from_yaml_section

PROFILES = (
    "zero-shot-quick",
    "zero-shot",
    "zero-shot-study",
    "zero-shot-beyond",
    "smoke",
    "in-domain-quick",
    "in-domain-study",
    "precision-study",
    "paper",
    "paper-lite",
)
#: ``babelir compare`` without --profile (and ``make demo``): the paper's zero-shot regime.
DEFAULT_PROFILE = "zero-shot-quick"
#: Names the in-domain profiles had before the zero-shot default; old commands still run.
PROFILE_ALIASES = {"quick": "in-domain-quick", "study": "in-domain-study"}
EVAL_KEYS = ("batch_size", "max_seq_length", "precision", "max_tokens")
DEBIAS_METHODS = ("lsar", "center", "lir")


class _Strict(BaseModel):
    # strict: no bool-to-int or str-to-number coercion; no inf/nan floats
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, plus YAML 1.2 floats without a dot (``3e-5``, ``1E4``):
    PyYAML takes those for strings, which a strict ``learning_rate`` would refuse."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with :class:`_Loader`'s floats."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


#: Benchmark families a comparison evaluates (:data:`babelir.evaluation.families.FAMILY_TABLE`):
#: LAReQA pools (mAP, rank distance), MIRACL (monolingual passage retrieval, nDCG@10 /
#: R@100) and XOR-Retrieve (cross-lingual, R@kt).
BENCHMARK_KINDS = tuple(FAMILY_TABLE)
RETRIEVAL_KINDS = tuple(f.kind for f in RETRIEVAL_FAMILIES)


class BenchmarkSpec(_Strict):
    """One benchmark of the comparison; its ``kind`` picks the family's table row, which
    says which keys it takes (:meth:`_kind_fields`).

    ``kind: lareqa`` (default): a known ``name`` under the data dir or a ``path``.
    ``kind: miracl``: topics and qrels of ``split`` under ``<data_dir>/miracl`` (``path``:
    another folder of that layout) and the passage ``corpus`` (default
    ``<data_dir>/miracl/corpus``, as ``babelir data fetch miracl-corpus`` lays it out);
    ``bm25`` (default true) adds the BM25 row. ``kind: xor-retrieve``: the questions
    ``split`` (``dev``, ``dev-v1.0``, ``train`` or a .jsonl path) and the passage
    ``corpus`` file, optionally its first ``corpus_limit`` passages (CPU trials); ``bm25:
    true`` adds a BM25 row over untranslated questions (held in memory: default false).
    The retrieval keys are :class:`~babelir.evaluation.options.RetrievalOptions` fields
    (their ranges, and their defaults through :meth:`retrieval`); None here means "the
    default", so the dump (hashed into cache keys) is what it always was.
    """

    kind: Literal[BENCHMARK_KINDS] = DEFAULT_KIND  # type: ignore[valid-type]
    name: str | None = None
    path: str | None = None
    label: str | None = None
    languages: list[str] | None = None
    articles: str = "all"
    candidates: Literal["sentence", "sentence+context"] = "sentence"
    split: str | None = None
    corpus: str | None = None
    corpus_limit: CorpusLimit = None
    passage_format: str | None = None
    top_k: TopK | None = None
    bm25: bool | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> BenchmarkSpec:
        family = self.family
        given = self.model_fields_set
        for key in type(self).model_fields:
            if key in given and key in FAMILY_KEYS and not family.accepts(key):
                owners = [f.kind for f in FAMILY_TABLE.values() if f.accepts(key)]
                where = (
                    f", not of kind {self.kind}"
                    if "kind" in given
                    else f" (add kind: {' or kind: '.join(owners)})"
                )
                raise ValueError(f"'{key}' is a key of kind {' / '.join(owners)} benchmarks{where}")
        if not family.named and self.name is not None and self.name != self.kind:
            raise ValueError(
                f"name: '{self.name}' with kind {self.kind} (leave name out, or give path)"
            )
        if self.split is not None and family.splits and self.split not in family.splits:
            raise ValueError(
                f"split: {family.title} has {' and '.join(family.splits)}, not '{self.split}'"
            )
        return self

    @property
    def family(self) -> BenchmarkFamily:
        """The table row of this entry's ``kind``."""
        return get_family(self.kind)

    @property
    def is_retrieval(self) -> bool:
        return self.family.passage_retrieval

    @property
    def wants_bm25(self) -> bool:
        """Whether the entry gets a BM25 row: ``bm25:`` if given, else the family's
        default (MIRACL: yes; XOR-Retrieve: no, an in-memory index of its corpus)."""
        default = self.family.bm25
        if default is None:
            return False
        return default if self.bm25 is None else self.bm25

    def retrieval(self) -> RetrievalOptions:
        """The entry's retrieval options, defaults filled in (``split`` dev, ``top_k``
        100, ...): those its family takes and the entry sets."""
        fields = type(self).model_fields
        given = {k: getattr(self, k) for k in self.family.options if k in fields}
        return RetrievalOptions(**{k: v for k, v in given.items() if v is not None})

    def title(self) -> str:
        if self.label:
            return self.label
        if self.family.named:
            return self.name or Path(str(self.path)).name
        return self.family.title + (f" ({Path(self.path).name})" if self.path else "")


class StrategyEntry(_Strict):
    """A ``strategies:`` entry as a mapping: ``{strategy: hybrid, alpha: 0.3}``; without
    ``alpha`` an alpha-mixing strategy is trained once per ``alphas`` value.
    ``precision`` trains this entry in that precision instead of ``train.precision``
    (``{strategy: hybrid, precision: bf16}`` beside ``{strategy: hybrid, precision:
    fp32}`` is a precision study); the label shows it: ``hybrid (bf16)``.

    A variant of the recipe has its own ``label`` (its row and folder name) and may add
    training sources (``add_data``: appended to ``train.data``, e.g. parallel questions),
    override ``train:`` keys (``train: {parallel_share: 0.25}``) and run on a subset of
    ``seeds`` (an ablation at one seed). Such rows are compared with the reference, never
    counted as the plain strategy in the paper's claims.
    """

    strategy: str
    alpha: Alpha | None = None
    precision: TrainingPrecision | None = None
    label: str | None = Field(None, min_length=1, max_length=80)
    add_data: list[str] = Field(default_factory=list)
    train: dict[str, Any] = Field(default_factory=dict)
    seeds: list[Seed] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _variant_keys(self) -> StrategyEntry:
        custom = [k for k in ("add_data", "train", "seeds") if k in self.model_fields_set]
        if custom and self.label is None:
            raise ValueError(f"'{custom[0]}' changes the recipe: give the entry a 'label:'")
        return self


class MergeSpec(_Strict):
    """Weight-space merges of trained rows with the base model (WiSE-FT), as extra rows.

    ``of``: the rows to merge (labels; default: the reference). ``weights``: lambda
    values in [0, 1] (0: the base model, 1: the trained model), or ``auto``: per run, a
    lambda of ``grid`` picked on the run's own validation items (training-side held-out
    articles, never a benchmark) by their mean validation mAP (mono, cross, multi): the
    best, ties going to the smaller lambda; with ``tolerance``, the smallest lambda (the
    closest to the base model) whose validation mAP is within ``tolerance`` of the best.
    In-distribution validation cannot see what fine-tuning costs on other distributions,
    so the tolerance rule leans towards the base model wherever validation cannot tell
    the candidates apart. ``merge:`` may be a list of such entries (one row each).
    """

    of: list[str] | None = Field(None, min_length=1)
    weights: Literal["auto"] | list[Alpha] = "auto"
    grid: list[Alpha] = Field(
        default_factory=lambda: [round(0.1 * i, 1) for i in range(11)], min_length=2
    )
    tolerance: float | None = Field(None, ge=0, lt=1)

    @model_validator(mode="after")
    def _tolerance(self) -> MergeSpec:
        if self.tolerance is not None and self.weights != "auto":
            raise ValueError("tolerance: only with weights: auto")
        return self

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, v: Any) -> Any:
        """One message per bad value (the auto-or-list union would report both branches)."""
        if v == "auto":
            return v
        if not isinstance(v, list) or not v:
            raise ValueError("weights: give auto or a list of lambdas in [0, 1]")
        for i, w in enumerate(v):
            if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w <= 1:
                raise ValueError(f"weights[{i}]: {w!r} is no lambda in [0, 1]")
        if len(set(v)) != len(v):
            raise ValueError("weights: give distinct values in [0, 1], or auto")
        return v


class CompareConfig(_Strict):
    """Everything ``babelir compare`` does; unknown keys are errors."""

    name: str = "custom"
    description: str = ""
    model: str | None = None
    data_dir: str | None = None
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    strategies: list[str | StrategyEntry] = Field(
        default_factory=lambda: ["x-x-mono", "x-y", "hybrid"], min_length=1
    )
    alphas: list[Alpha] = Field(default_factory=lambda: [DEFAULT_ALPHA], min_length=1)
    reference: str = "hybrid"
    train: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=lambda: [BenchmarkSpec(name="xquad-r", articles="%4==0")], min_length=1
    )
    debias: list[Literal["lsar", "center", "lir"]] = Field(default_factory=list)
    merge: MergeSpec | list[MergeSpec] | None = None
    debias_fit_per_language: int = Field(300, ge=10)
    # each paired test draws n_queries x permutations signs and bootstrap resamples
    permutations: int = Field(10000, ge=100, le=MAX_RESAMPLES)
    bootstrap: int = Field(2000, ge=100, le=MAX_RESAMPLES)
    margin: float = Field(0.01, ge=0, lt=1)

    @field_validator("strategies", mode="before")
    @classmethod
    def _entries(cls, v: Any) -> Any:
        """Mappings become StrategyEntry here, so a bad key or precision is named as such
        (the str | entry union would report both branches failing)."""
        if not isinstance(v, list):
            return v
        out = []
        for i, s in enumerate(v):
            if isinstance(s, dict):
                try:
                    s = StrategyEntry.model_validate(s)
                except ValidationError as e:
                    raise ValueError(f"entry {i}: " + format_validation(e, str)) from None
            out.append(s)
        return out

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: list[str | StrategyEntry]) -> list[str | StrategyEntry]:
        for s in v:
            get_strategy(s if isinstance(s, str) else s.strategy)
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v

    @field_validator("evaluation")
    @classmethod
    def _evaluation(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(EVAL_KEYS))
        if unknown:
            raise ValueError(f"unknown key '{unknown[0]}' (valid: {', '.join(EVAL_KEYS)})")
        return v

    @model_validator(mode="after")
    def _labels(self) -> CompareConfig:
        entries = [s for s in self.strategies if isinstance(s, StrategyEntry) and s.label]
        for s in entries:
            if s.alpha is None and len(self.alphas) > 1 and get_strategy(s.strategy).mixes_by_alpha:
                raise ValueError(
                    f"strategies ({s.label}): several alphas; give the entry its alpha"
                )
            for seed in s.seeds or []:
                if seed not in self.seeds:
                    raise ValueError(f"strategies ({s.label}): seed {seed} is not in seeds")
        variant_labels = [v.label for v in self.variants()]
        if len(set(variant_labels)) != len(variant_labels):
            raise ValueError(
                f"strategies: two rows are labelled alike ({', '.join(variant_labels)})"
            )
        for spec in self.merges():
            for label in self.merge_rows(spec):
                if label not in variant_labels:
                    raise ValueError(
                        f"merge.of: '{label}' is no trained row (rows: "
                        f"{', '.join(sorted(variant_labels))})"
                    )
        return self

    # ------------------------------------------------------------------ views

    def entry(self, spec: StrategySpec) -> StrategyEntry | None:
        """The labelled entry a variant comes from (None: a plain strategy)."""
        if spec.custom_label is None:
            return None
        return next(
            s for s in self.strategies
            if isinstance(s, StrategyEntry) and s.label == spec.custom_label
        )  # fmt: skip

    def seeds_of(self, spec: StrategySpec) -> list[int]:
        """The seeds a variant trains with (an entry's ``seeds``, else all)."""
        entry = self.entry(spec)
        return [s for s in self.seeds if entry is None or not entry.seeds or s in entry.seeds]

    def merges(self) -> list[MergeSpec]:
        """The ``merge:`` entries (none, one or a list)."""
        if self.merge is None:
            return []
        return list(self.merge) if isinstance(self.merge, list) else [self.merge]

    def merge_rows(self, spec: MergeSpec) -> list[str]:
        """Labels of the trained rows ``spec`` merges with the base model."""
        return list(spec.of or [self.reference])

    def variants(self) -> list[StrategySpec]:
        """The strategy of every trained model, alpha-mixing strategies once per alpha.

        Alpha is part of the labels only when several alpha-mixing variants (by strategy
        and alpha: an entry's precision does not count) are compared; one hybrid row is
        plain ``hybrid``, whatever its alpha.
        """
        out: list[tuple[str, float | None, str | None]] = []
        custom: list[StrategySpec] = []
        for s in self.strategies:
            name = s if isinstance(s, str) else s.strategy
            precision = None if isinstance(s, str) else s.precision
            strategy = get_strategy(name)
            if isinstance(s, StrategyEntry) and s.label is not None:
                alpha = s.alpha if s.alpha is not None else self.alphas[0]
                custom.append(StrategySpec(name, alpha, precision=precision, custom_label=s.label))
            elif not strategy.mixes_by_alpha:
                out.append((strategy.name, None, precision))
            elif isinstance(s, StrategyEntry) and s.alpha is not None:
                out.append((strategy.name, s.alpha, precision))
            else:
                out.extend((strategy.name, a, precision) for a in self.alphas)
        unique = list(dict.fromkeys(out))
        mixers = {(name, alpha) for name, alpha, _ in unique if alpha is not None}
        return [
            StrategySpec(name, alpha, alpha_in_label=len(mixers) > 1, precision=precision)
            for name, alpha, precision in unique
        ] + custom

    def train_config(self, spec: StrategySpec, seed: int, **run: Any) -> TrainConfig:
        """The TrainConfig of one run (the ``train:`` section plus the run's fields; a
        variant's own precision replaces ``train.precision``)."""
        if spec.precision is not None:
            run.setdefault("precision", spec.precision)
        section = self.train
        entry = self.entry(spec)
        if entry is not None:
            section = {**self.train, **entry.train}
            if entry.add_data:
                data = section.get("data")
                base = [] if data is None else data if isinstance(data, list) else [data]
                section["data"] = [*base, *entry.add_data]
        return from_yaml_section(
            section,
            model=self.model,
            strategy=spec.name,
            alpha=spec.train_alpha,
            seed=seed,
            data_dir=self.data_dir,
            **run,
        )

    def encode_options(self, **overrides: Any) -> EncodeOptions:
        try:
            return EncodeOptions(**{**self.evaluation, **overrides})
        except TypeError as e:
            raise ConfigError(f"evaluation: {e}") from None


def load_config(
    profile: str | None = None, config_file: str | Path | None = None
) -> tuple[CompareConfig, dict[str, Any]]:
    """A profile shipped with babelir or a user YAML file, validated.

    Args:
        profile: a shipped profile name (default: ``zero-shot-quick``); see
            docs/profiles.md.
        config_file: a YAML file of the same schema instead.

    Returns:
        ``(config, raw)``: the validated :class:`CompareConfig` and the mapping as read
        (kept in results.json). Unknown keys, bad types and values raise
        :class:`babelir.ConfigError` naming the file and key.

    Example:
        >>> import babelir
        >>> cfg, raw = babelir.load_config("zero-shot-beyond")
    """
    if profile and config_file:
        raise ConfigError("give either --profile or --config, not both")
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
        source = str(path)
    else:
        name = PROFILE_ALIASES.get(profile or DEFAULT_PROFILE, profile or DEFAULT_PROFILE)
        if name not in PROFILES:
            raise ConfigError(f"unknown profile '{name}' (valid: {', '.join(PROFILES)})")
        text = resources.files("babelir.profiles").joinpath(f"{name}.yaml").read_text("utf-8")
        source = f"profile {name}"
    try:
        raw = parse_yaml(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: invalid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        cfg = CompareConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: " + format_validation(e, str)) from None
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    check_sections(cfg, source)
    return cfg, raw


def check_sections(cfg: CompareConfig, source: str) -> None:
    """Validate ``train:`` and ``evaluation:`` against their schemas (one probe each)."""
    try:
        cfg.train_config(StrategySpec("x-x-mono"), cfg.seeds[0])
        cfg.encode_options()
        for spec in cfg.variants():
            cfg.train_config(spec, cfg.seeds[0])
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    names = [spec.name for spec in cfg.variants()] + [spec.label for spec in cfg.variants()]
    if cfg.reference not in names:
        raise ConfigError(
            f"{source}: reference: '{cfg.reference}' is not among the strategies or their "
            f"labels ({', '.join(dict.fromkeys(names))})"
        )


__all__ = [
    "BENCHMARK_KINDS",
    "DEBIAS_METHODS",
    "DEFAULT_PROFILE",
    "PROFILES",
    "PROFILE_ALIASES",
    "RETRIEVAL_KINDS",
    "BenchmarkSpec",
    "CompareConfig",
    "MergeSpec",
    "StrategyEntry",
    "StrategySpec",
    "TrainConfig",
    "load_config",
]

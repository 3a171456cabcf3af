"""The schema of ``babelir compare``: a YAML profile or file, validated in one pass.

The ``train:`` section accepts exactly the YAML keys of
:class:`babelir.training.config.TrainConfig` (its defaults, ranges and help apply), and
``evaluation:`` the encoding fields of :class:`babelir.options.EncodeOptions`; the rest
(strategies, seeds, benchmarks, statistics) is defined here. Unknown keys are errors.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from babelir.errors import ConfigError
from babelir.options import EncodeOptions
from babelir.sampling import get_strategy
from babelir.schema import format_validation
from babelir.training.config import TrainConfig, from_yaml_section

PROFILES = ("smoke", "quick", "study", "paper", "paper-lite")
EVAL_KEYS = ("batch_size", "max_seq_length", "precision", "max_tokens")
DEBIAS_METHODS = ("lsar", "center", "lir")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BenchmarkSpec(_Strict):
    """A LAReQA-format benchmark: a known ``name`` under the data dir, or a ``path``."""

    name: str | None = None
    path: str | None = None
    label: str | None = None
    languages: list[str] | None = None
    articles: str = "all"
    candidates: Literal["sentence", "sentence+context"] = "sentence"

    def title(self) -> str:
        return self.label or self.name or Path(str(self.path)).name


class StrategySpec(_Strict):
    strategy: str
    alpha: float | None = Field(None, ge=0, le=1)


class CompareConfig(_Strict):
    """Everything ``babelir compare`` does; unknown keys are errors."""

    name: str = "custom"
    description: str = ""
    model: str | None = None
    data_dir: str | None = None
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    strategies: list[str | StrategySpec] = Field(
        default_factory=lambda: ["x-x-mono", "x-y", "hybrid"], min_length=1
    )
    alphas: list[float] = Field(default_factory=lambda: [0.5], min_length=1)
    reference: str = "hybrid"
    train: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=lambda: [BenchmarkSpec(name="xquad-r", articles="%4==0")], min_length=1
    )
    debias: list[Literal["lsar", "center", "lir"]] = Field(default_factory=list)
    debias_fit_per_language: int = Field(300, ge=10)
    permutations: int = Field(10000, ge=100)
    bootstrap: int = Field(2000, ge=100)
    margin: float = Field(0.01, ge=0, lt=1)

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: list[str | StrategySpec]) -> list[str | StrategySpec]:
        for s in v:
            get_strategy(s if isinstance(s, str) else s.strategy)
        return v

    @field_validator("alphas")
    @classmethod
    def _alphas(cls, v: list[float]) -> list[float]:
        for a in v:
            if not 0.0 <= a <= 1.0:
                raise ValueError(f"alpha {a} is outside [0, 1]")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or min(v) < 0:
            raise ValueError("seeds must be distinct non-negative integers")
        return v

    @field_validator("evaluation")
    @classmethod
    def _evaluation(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(EVAL_KEYS))
        if unknown:
            raise ValueError(f"unknown key '{unknown[0]}' (valid: {', '.join(EVAL_KEYS)})")
        return v

    # ------------------------------------------------------------------ views

    def variants(self) -> list[tuple[str, float | None]]:
        """(strategy, alpha) of every trained model, alpha-mixing strategies once per alpha."""
        out: list[tuple[str, float | None]] = []
        for s in self.strategies:
            name = s if isinstance(s, str) else s.strategy
            spec = get_strategy(name)
            if not spec.mixes_by_alpha:
                out.append((spec.name, None))
            elif isinstance(s, StrategySpec) and s.alpha is not None:
                out.append((spec.name, s.alpha))
            else:
                out.extend((spec.name, a) for a in self.alphas)
        return list(dict.fromkeys(out))

    def label(self, strategy: str, alpha: float | None) -> str:
        """Display label; alpha appears only when several alphas are compared."""
        several = sum(get_strategy(s).mixes_by_alpha for s, _ in self.variants()) > 1
        return get_strategy(strategy).label(alpha if several else None)

    def train_config(
        self, strategy: str, alpha: float | None, seed: int, **run: Any
    ) -> TrainConfig:
        """The TrainConfig of one run (the ``train:`` section plus the run's fields)."""
        return from_yaml_section(
            self.train,
            model=self.model,
            strategy=strategy,
            alpha=0.5 if alpha is None else alpha,
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
    """A profile shipped with babelir or a user YAML file, validated."""
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
        name = profile or "quick"
        if name not in PROFILES:
            raise ConfigError(f"unknown profile '{name}' (valid: {', '.join(PROFILES)})")
        text = resources.files("babelir.profiles").joinpath(f"{name}.yaml").read_text("utf-8")
        source = f"profile {name}"
    try:
        raw = yaml.safe_load(text) or {}
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
        cfg.train_config("x-x-mono", None, cfg.seeds[0])
        cfg.encode_options()
        for strategy, alpha in cfg.variants():
            cfg.train_config(strategy, alpha, cfg.seeds[0])
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    if cfg.reference not in [s for s, _ in cfg.variants()]:
        raise ConfigError(f"{source}: reference: '{cfg.reference}' is not among the strategies")


__all__ = [
    "DEBIAS_METHODS",
    "PROFILES",
    "BenchmarkSpec",
    "CompareConfig",
    "StrategySpec",
    "TrainConfig",
    "load_config",
]

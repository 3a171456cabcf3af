"""Batch strategies: what each needs, the typed (strategy, alpha) value, the alpha range.

Torch-free on purpose: loading a YAML config or building a ``TrainConfig`` needs the
strategy table but not the sampler (:mod:`babelir.batches.sampler`), which pulls torch and
sentence-transformers. Other modules ask :data:`STRATEGY_TABLE` what a strategy needs
instead of switching on its name.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, Strict, TypeAdapter, ValidationError

from babelir.core.errors import ConfigError
from babelir.precision.vocabulary import TRAINING_PRECISIONS

#: The probability that a batch is mono, for strategies that mix by alpha. The one place
#: its range is declared: pydantic fields use it as their type (and ``--help`` shows the
#: range from it), everything else calls :func:`check_alpha`. Strict: a YAML ``true`` is
#: no alpha of 1 (an int such as ``1`` still is 1.0).
Alpha = Annotated[float, Strict(), Field(ge=0, le=1)]
DEFAULT_ALPHA = 0.5
_ALPHA = TypeAdapter(Alpha)


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float if it lies in [0, 1]; else a one-line ConfigError."""
    try:
        return _ALPHA.validate_python(alpha)
    except ValidationError as e:
        raise ConfigError(f"alpha: {e.errors()[0]['msg']}, got {alpha}") from None


@dataclass(frozen=True)
class Strategy:
    """What one batch strategy needs from the pair table and how it draws a batch kind.

    The single place where strategies are defined: training, ``compare`` validation, the
    CLI and the model card ask this table instead of switching on strategy names.

    Attributes:
        name: The strategy's name (``--strategy``).
        help: One line for ``--help`` and reports.
        mono: Draws single-language batches from per-language pools (x-x-mono, en-en).
        cross: Draws x-y batches (query language != passage language).
        mixed: Draws same-language pairs with the language chosen per example (x-x).
        english_only: Uses English pairs only (en-en).
        mixes_by_alpha: A batch is mono with probability alpha, else cross (hybrid).
    """

    name: str
    help: str
    mono: bool = False
    cross: bool = False
    mixed: bool = False
    english_only: bool = False
    mixes_by_alpha: bool = False

    def wants_mono(self, alpha: float = DEFAULT_ALPHA) -> bool:
        return self.mono and (not self.mixes_by_alpha or alpha > 0)

    def wants_cross(self, alpha: float = DEFAULT_ALPHA) -> bool:
        return self.cross and (not self.mixes_by_alpha or alpha < 1)

    def needs_cross_pairs(self, alpha: float = DEFAULT_ALPHA) -> bool:
        """Whether the pair table must hold X != Y rows for this strategy."""
        return self.wants_cross(alpha)

    def draw_mono(self, rng: random.Random, alpha: float) -> bool:
        """Whether the next batch (group) is a same-language batch."""
        if self.mixes_by_alpha:
            return rng.random() < alpha
        return not self.cross


STRATEGY_TABLE: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("x-x-mono", "one language per batch, query and passage in it", mono=True),
        Strategy("x-y", "query in X, passage in Y != X, pair drawn per example", cross=True),
        Strategy(
            "hybrid",
            "x-x-mono batch with probability alpha, else x-y (arXiv 2408.10536)",
            mono=True,
            cross=True,
            mixes_by_alpha=True,
        ),
        Strategy("x-x", "same-language pairs, languages mixed in a batch", mixed=True),
        Strategy("en-en", "English pairs only", mono=True, english_only=True),
    )
}
STRATEGIES: tuple[str, ...] = tuple(STRATEGY_TABLE)


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; a one-line ConfigError naming the valid ones."""
    try:
        return STRATEGY_TABLE[str(name).lower()]
    except KeyError:
        raise ConfigError(
            f"strategy: unknown {name!r} (valid: {', '.join(STRATEGIES)})"
        ) from None


def strategy_help() -> str:
    """The strategies and what each does, for ``--help`` texts."""
    return "; ".join(f"{s.name}: {s.help}" for s in STRATEGY_TABLE.values())


@dataclass(frozen=True)
class StrategySpec:
    """One trained variant's batch strategy: the value compare's plan, runner and report
    pass around instead of a display label (which is derived from it, never parsed).

    Construction validates: ``name`` is normalised to the table's spelling, ``alpha`` is
    kept (range-checked, default :data:`DEFAULT_ALPHA`) only for strategies that mix by
    alpha and is None otherwise. ``alpha_in_label`` is False when the comparison has a
    single alpha-mixing variant, whose label then is the bare name (as compare has
    always named it; folder names, hence cached runs, depend on it). ``precision`` is a
    training precision this variant asks for instead of the ``train:`` section's (a
    precision study trains the same recipe in fp32 and in bf16); None, the usual case,
    leaves label and slug as they always were. ``custom_label`` names a variant of the
    recipe (a compare entry with its own ``label:``, e.g. ``hybrid + parallel questions``):
    it replaces the derived label, its slug names the folder, and it is no plain row of
    its strategy (:func:`babelir.reporting.claims.plain_rows`).
    """

    name: str
    alpha: float | None = None
    alpha_in_label: bool = True
    precision: str | None = None
    custom_label: str | None = None

    def __post_init__(self) -> None:
        strategy = get_strategy(self.name)
        alpha = None
        if strategy.mixes_by_alpha:
            alpha = check_alpha(DEFAULT_ALPHA if self.alpha is None else self.alpha)
        if self.precision is not None and self.precision not in TRAINING_PRECISIONS:
            raise ConfigError(
                f"precision: '{self.precision}' is no training precision "
                f"(valid: {', '.join(TRAINING_PRECISIONS)})"
            )
        object.__setattr__(self, "name", strategy.name)
        object.__setattr__(self, "alpha", alpha)

    @property
    def strategy(self) -> Strategy:
        """The table row: what this strategy needs."""
        return get_strategy(self.name)

    @property
    def train_alpha(self) -> float:
        """The ``TrainConfig.alpha`` of this variant (the default where alpha is unused)."""
        return DEFAULT_ALPHA if self.alpha is None else self.alpha

    @property
    def label(self) -> str:
        """Display name, e.g. ``hybrid (alpha=0.3)`` or ``hybrid (alpha=0.3, bf16)``;
        alpha only where it is shown, the precision only where the variant sets one."""
        if self.custom_label is not None:
            return self.custom_label
        parts = []
        if self.alpha is not None and self.alpha_in_label:
            parts.append(f"alpha={self.alpha:g}")
        if self.precision is not None:
            parts.append(self.precision)
        return f"{self.name} ({', '.join(parts)})" if parts else self.name

    @property
    def slug(self) -> str:
        """The label as a folder-name part, e.g. ``hybrid-alpha0.3`` or ``hybrid-bf16``
        (compare's run folders)."""
        if self.custom_label is not None:
            return re.sub(r"[^A-Za-z0-9.]+", "-", self.custom_label).strip("-") or self.name
        slug = self.name
        if self.alpha is not None and self.alpha_in_label:
            slug += f"-alpha{self.alpha:g}"
        if self.precision is not None:
            slug += f"-{self.precision}"
        return slug


__all__ = [
    "DEFAULT_ALPHA",
    "STRATEGIES",
    "STRATEGY_TABLE",
    "Alpha",
    "Strategy",
    "StrategySpec",
    "check_alpha",
    "get_strategy",
    "strategy_help",
]

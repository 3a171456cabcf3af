"""`babelir compare`: the paper's comparison on your model and data, with statistics.

Trains one model per batch strategy from the same base model (identical data, steps,
learning rate and seed), evaluates the base model and every trained model on every
configured benchmark (optionally with post-hoc debiasing rows), and writes one report
(:mod:`babelir.reporting.report`).

* :mod:`.config` - the YAML schema (the shipped profiles: ``zero-shot-quick``, the
  default, ``zero-shot``, ``zero-shot-study``, the in-domain ones and the GPU-sized
  ``paper`` ones);
* :mod:`.data_needs` - the registered datasets a comparison reads (``babelir data fetch
  --profile``);
* :mod:`.plan` - validation, jobs and their cache keys, the ``--dry-run`` description;
* :mod:`.runner` - training, evaluation and the report's typed input.

Work is cached in the output folder, keyed by a hash of everything that affects it:
re-running reuses finished training runs and evaluations, continues an interrupted
training run from its last complete checkpoint, and ``force`` recomputes.

:mod:`.runner` (``prepare``, ``run_compare``) is imported on first use: it pulls torch
through evaluation, and loading a config (:mod:`.config`) must not.
"""

from typing import Any

from babelir.compare.config import PROFILES, BenchmarkSpec, CompareConfig, load_config
from babelir.compare.plan import Plan, describe, make_plan, validate

__all__ = [
    "PROFILES",
    "BenchmarkSpec",
    "CompareConfig",
    "Plan",
    "describe",
    "load_config",
    "make_plan",
    "prepare",
    "run_compare",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name in ("prepare", "run_compare"):
        from babelir.compare import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

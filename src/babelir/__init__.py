"""babelir: train and evaluate multilingual dense retrievers.

Pipeline, one package per concept: ``data`` (benchmarks, training sources, fetching) ->
``batches`` (strategies, sampler) -> ``training`` -> ``encoding`` (encoder, options,
cache) -> ``evaluation`` (metrics, benchmark families) -> ``reporting``; ``compare``
runs them all; beside them ``models`` (loading, merging), ``index`` (large corpora),
``debias``, ``precision``, ``core`` (errors, atomic io, settings) and the ``cli``.

The public API is importable from here and loaded on first use, so ``import babelir``
stays light (no torch until a name that needs it is touched)::

    import babelir
    cfg = babelir.TrainConfig(output="runs/hybrid", strategy="hybrid",
                              train_data=["en:qa-en.json", "de:qa-de.json"])
    babelir.train(cfg)
    model, opts = babelir.load_encoder("runs/hybrid", babelir.EncodeOptions())  # + prefixes
    result = babelir.evaluate_model(model, babelir.load_benchmark("xquad-r"), options=opts)
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("babelir")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from babelir.core.errors import BabelirError, ConfigError, DataError, ModelError

#: Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "TrainConfig": "babelir.training.config",
    "train": "babelir.training.trainer",
    "ParallelBatchSampler": "babelir.batches.sampler",
    "EncodeOptions": "babelir.encoding.options",
    "load_model": "babelir.models.loading",
    "load_encoder": "babelir.encoding.encoder",
    "merge_models": "babelir.models.merge",
    "load_benchmark": "babelir.data.lareqa",
    "evaluate_model": "babelir.evaluation.lareqa",
    "score_benchmark": "babelir.evaluation.lareqa",
    "load_config": "babelir.compare.config",
    "run_compare": "babelir.compare.runner",
}

__all__ = ["BabelirError", "ConfigError", "DataError", "ModelError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'babelir' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

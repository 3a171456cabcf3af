"""babelir: train and evaluate multilingual dense retrievers.

Pipeline, one module per concern: ``babelir.data`` (benchmarks, parallel training data,
fetching) -> ``babelir.sampling`` (batch samplers) -> ``babelir.training`` ->
``babelir.evaluation`` (LAReQA metrics, language bias) -> ``babelir.reporting``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("babelir")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from babelir.errors import BabelirError

__all__ = ["BabelirError", "__version__"]

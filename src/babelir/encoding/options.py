"""How texts are encoded: one frozen options object passed from the CLI to the encoder.

Every path that encodes (LAReQA and MIRACL evaluation, ``babelir index``, ``babelir
search``, compare's evaluations) takes an :class:`EncodeOptions` instead of forwarding
batch size, precision, cache ... one keyword at a time, so an option cannot be dropped on
the way (``--precision`` once was, on the MIRACL path). Each field is a
:func:`babelir.core.schema.option` (default, help, range written once): the encoding options of
``babelir evaluate``, ``debias``, ``index`` and ``search`` are derived from them, and
compare's ``evaluation:`` keys are validated by them.
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from typing import Any

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from babelir.core.errors import ConfigError
from babelir.core.schema import format_validation, option_map
from babelir.core.schema import option as opt
from babelir.encoding.cache import CacheError, CacheWarning, EmbeddingCache
from babelir.precision.vocabulary import (
    PRECISIONS,
    Precision,
)

#: Padded tokens per forward pass: the fastest range on the CPUs measured, where
#: activations stay in cache (docs/speed.md).
DEFAULT_MAX_TOKENS = 2048
_POSITIVE = ("batch_size", "max_seq_length", "max_tokens")


# strict: a bool or "64" is not a batch size (pydantic's lax mode would convert them).
@dataclass(
    frozen=True,
    config=ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True),
)
class EncodeOptions:
    """Everything that decides how a text becomes an embedding, apart from the model.

    ``None`` prefixes mean "the model's default" (see
    :func:`babelir.models.loading.resolve_prefixes`); :func:`babelir.encoding.encoder.load_encoder`
    fills them in together with the model's effective ``max_seq_length``. Fields are
    :func:`babelir.core.schema.option` declarations: the CLI options of ``evaluate``,
    ``debias``, ``index`` and ``search`` are derived from them (:mod:`babelir.cli.schema`).
    """

    batch_size: int = opt(64, "Encoding batch size (most texts per forward pass).", ge=1)
    # at least 2: one token is all special token, and some tokenizers refuse to truncate to it
    max_seq_length: int | None = opt(
        None, "Truncate inputs to this many tokens (default: the model's own limit).", ge=2
    )
    precision: Precision = opt(
        "auto",
        "auto: bf16 where the CPU/GPU computes it natively, fp16 on older GPUs, else fp32; "
        "fp16 is CUDA only; int8 runs on CPU with ONNX Runtime (opt-in: its measured mAP "
        "drift is in docs/speed.md).",
    )
    cache: bool | EmbeddingCache | None = opt(
        None,
        "Embedding cache: True for the default one, an EmbeddingCache, or None/False for "
        "none.",
        cli=False,
        yaml=False,
    )
    show_progress: bool = opt(True, "Show progress bars.", yaml=False)
    query_prefix: str | None = opt(
        None, "Text put before each query (default: the model's).", yaml=False
    )
    passage_prefix: str | None = opt(
        None, "Text put before each passage or candidate (default: the model's).", yaml=False
    )
    max_tokens: int = opt(
        DEFAULT_MAX_TOKENS,
        "Padded tokens per forward pass (batches are cut by this budget).",
        ge=1,
    )

    def embedding_cache(self) -> EmbeddingCache | None:
        """The cache to use: ``True`` opens the default one (per call), falsy means none.

        The default cache is an optimisation: when it cannot be opened (a read-only cache
        dir) this warns and returns None, and the texts are encoded without it.
        """
        if self.cache is None or self.cache is False:
            return None
        if self.cache is True:
            try:
                return EmbeddingCache()
            except CacheError as e:
                warnings.warn(f"{e}; encoding without the embedding cache", CacheWarning,
                              stacklevel=2)  # fmt: skip
                return None
        return self.cache

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for provenance (the cache as a flag, not an object)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cache"}
        out["cache"] = self.embedding_cache_enabled
        return out

    @property
    def embedding_cache_enabled(self) -> bool:
        return self.cache is not None and self.cache is not False


def _one_line(e: ValidationError) -> str:
    """The first validation error as one line, in the words babelir always used."""
    err = e.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    if name == "precision":
        return f"precision: unknown {err['input']!r} (valid: {', '.join(PRECISIONS)})"
    if name in _POSITIVE:
        info = option_map(EncodeOptions)[name].info
        least = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), 1)
        if least > 1:
            return f"{name} must be an integer >= {least}, got {err['input']!r}"
        return f"{name} must be a positive integer, got {err['input']!r}"
    return format_validation(e, str)


def _init_with_config_errors(init: Any) -> Any:
    def __init__(self: EncodeOptions, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as e:
            raise ConfigError(_one_line(e)) from None

    __init__.__doc__ = init.__doc__
    return __init__


# Construction errors are user errors (a YAML value, a CLI option): one-line ConfigErrors.
EncodeOptions.__init__ = _init_with_config_errors(EncodeOptions.__init__)  # type: ignore[method-assign]


def option_help(name: str) -> str:
    """The help text of an :class:`EncodeOptions` field (with its choices and range)."""
    return option_map(EncodeOptions)[name].help_text()

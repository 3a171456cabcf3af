"""How texts are encoded: one frozen options object passed from the CLI to the encoder.

Every path that encodes (LAReQA and MIRACL evaluation, ``babelir index``, ``babelir
search``, compare's evaluations) takes an :class:`EncodeOptions` instead of forwarding
batch size, precision, cache ... one keyword at a time, so an option cannot be dropped on
the way (``--precision`` once was, on the MIRACL path). Each field's default and help
text are written here only; the CLI options take their defaults from this class.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from babelir.errors import ConfigError

if TYPE_CHECKING:
    from babelir.embedding_cache import EmbeddingCache

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
#: Padded tokens per forward pass. Measured on a 2-core Zen 3: 1024-2048 is fastest for
#: multilingual-e5-small (activations stay in L2/L3); 8192 is ~1.7x slower.
DEFAULT_MAX_TOKENS = 2048


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class EncodeOptions:
    """Everything that decides how a text becomes an embedding, apart from the model.

    ``None`` prefixes mean "the model's default" (see
    :func:`babelir.models.loading.resolve_prefixes`); :func:`babelir.encoding.load_encoder`
    fills them in together with the model's effective ``max_seq_length``.
    """

    batch_size: int = field(
        default=64, metadata={"help": "Encoding batch size (most texts per forward pass)."}
    )
    max_seq_length: int | None = field(
        default=None,
        metadata={"help": "Truncate inputs to this many tokens (default: the model's)."},
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "auto (bf16 where the CPU/GPU computes it natively, fp16 on older GPUs, "
            "else fp32), fp32, bf16, fp16 (CUDA only), int8 (CPU, ONNX Runtime; opt-in: "
            "measured mAP drift up to 0.02 on a language pair, see the README)."
        },
    )
    cache: bool | EmbeddingCache | None = field(
        default=None,
        metadata={
            "help": "Embedding cache: True for the default one, an EmbeddingCache, or "
            "None/False for none."
        },
    )
    show_progress: bool = field(default=True, metadata={"help": "Show progress bars."})
    query_prefix: str | None = field(
        default=None, metadata={"help": "Text put before each query (model default)."}
    )
    passage_prefix: str | None = field(
        default=None, metadata={"help": "Text put before each passage (model default)."}
    )
    max_tokens: int = field(
        default=DEFAULT_MAX_TOKENS,
        metadata={"help": "Padded tokens per forward pass (batches are cut by this budget)."},
    )

    def __post_init__(self) -> None:
        _positive("batch_size", self.batch_size)
        _positive("max_tokens", self.max_tokens)
        if self.max_seq_length is not None:
            _positive("max_seq_length", self.max_seq_length)
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision: unknown '{self.precision}' (valid: {', '.join(PRECISIONS)})"
            )
        for name in ("query_prefix", "passage_prefix"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string, got {value!r}")

    def merged(self, **overrides: Any) -> EncodeOptions:
        """A copy with the given fields replaced; ``None`` values are ignored.

        Lets functions keep their old keyword arguments (``batch_size=...``,
        ``precision=...``) as overrides of an options object.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"EncodeOptions has no field {unknown[0]!r}")
        changes = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **changes) if changes else self

    @classmethod
    def of(cls, options: EncodeOptions | None = None, **overrides: Any) -> EncodeOptions:
        """``options`` (default: the defaults) with the non-None ``overrides`` applied."""
        return (options or cls()).merged(**overrides)

    def embedding_cache(self) -> EmbeddingCache | None:
        """The cache to use: ``True`` opens the default one (per call), falsy means none."""
        if self.cache is None or self.cache is False:
            return None
        if self.cache is True:
            from babelir.embedding_cache import EmbeddingCache

            return EmbeddingCache()
        return self.cache

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for provenance (the cache as a flag, not an object)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cache"}
        out["cache"] = self.embedding_cache_enabled
        return out

    @property
    def embedding_cache_enabled(self) -> bool:
        return self.cache is not None and self.cache is not False


def option_help(name: str) -> str:
    """The help text of an :class:`EncodeOptions` field, for CLI options."""
    for f in fields(EncodeOptions):
        if f.name == name:
            return str(f.metadata["help"])
    raise KeyError(name)

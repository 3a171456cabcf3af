"""Option schemas: one place where an option's default, range, choices and help live.

A configuration class (:class:`babelir.training.config.TrainConfig`, ...) is a pydantic
dataclass whose fields are declared with :func:`option`. From it babelir derives the
command-line options (:mod:`babelir.cli.schema`), the keys accepted in ``compare``'s YAML
and the validation of both, so an option is written once (as Tevatron's ``arguments.py``
does with ``HfArgumentParser``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, ValidationError
from pydantic.fields import FieldInfo

from babelir.core.errors import ConfigError

#: The largest seed: numpy's legacy ``RandomState`` and ``np.random.seed`` (which
#: transformers' ``set_seed`` calls) take 32-bit seeds, so a larger one fails mid-run.
SEED_MAX = 2**32 - 1
#: The type of every seed babelir takes (compare's ``seeds``, ``train --seed``, ``batches
#: --seed``): a true integer (a YAML ``true`` is no seed 1) in 0..2**32-1.
Seed = Annotated[int, Strict(), Field(ge=0, le=SEED_MAX)]


def option(
    default: Any,
    help: str,
    *,
    cli: str | bool | None = None,
    short: str | None = None,
    yaml: str | bool = True,
    repeat: bool = False,
    **constraints: Any,
) -> Any:
    """A schema field: ``default``, one-line ``help``, pydantic ``constraints`` (ge, gt...).

    ``cli`` overrides the option name (default ``--field-name``) or is False for a field
    that is no command-line value (an object, such as an embedding cache); ``short`` adds
    e.g. ``-s``; ``yaml`` is False for options that are not part of a YAML section, or a string
    naming the YAML key when it differs from the field name. ``repeat``: on the command
    line the option may be given several times (a list of values; one value alone keeps
    the field's scalar form).
    """
    extra = {"cli": cli, "short": short, "yaml": yaml, "repeat": repeat}
    return Field(default, description=help, json_schema_extra=extra, **constraints)


@dataclass(frozen=True)
class OptionInfo:
    """A schema field as the CLI and YAML loaders see it."""

    name: str
    info: FieldInfo

    @property
    def extra(self) -> dict[str, Any]:
        extra = self.info.json_schema_extra
        return extra if isinstance(extra, dict) else {}

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)

    @property
    def repeat(self) -> bool:
        return bool(self.extra.get("repeat"))

    @property
    def has_cli(self) -> bool:
        return self.extra.get("cli") is not False

    @property
    def cli_name(self) -> str:
        cli = self.extra.get("cli")
        return cli if isinstance(cli, str) else "--" + self.name.replace("_", "-")

    @property
    def yaml_key(self) -> str | None:
        y = self.extra.get("yaml", True)
        if y is False:
            return None
        return y if isinstance(y, str) else self.name

    @property
    def choices(self) -> tuple[Any, ...] | None:
        ann = _strip_optional(self.info.annotation)
        return typing.get_args(ann) if typing.get_origin(ann) is Literal else None

    @property
    def is_list(self) -> bool:
        return typing.get_origin(_strip_optional(self.info.annotation)) is list

    def help_text(self) -> str:
        """Help with the choices and range appended, so --help states what is accepted."""
        parts = [self.info.description or ""]
        if self.choices:
            parts.append("One of: " + ", ".join(map(str, self.choices)) + ".")
        bounds = constraint_text(self.info)
        if bounds:
            parts.append(f"Range: {bounds}.")
        return " ".join(p for p in parts if p)


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def constraint_text(info: FieldInfo) -> str:
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    out = []
    for m in info.metadata:
        for key, sym in symbols.items():
            value = getattr(m, key, None)
            if value is not None:
                out.append(f"{sym} {value:g}" if isinstance(value, float) else f"{sym} {value}")
    return ", ".join(out)


def options(cls: type) -> Iterator[OptionInfo]:
    """The fields of a schema class in declaration order."""
    for name, info in cls.__pydantic_fields__.items():  # type: ignore[attr-defined]
        yield OptionInfo(name, info)


def option_map(cls: type) -> dict[str, OptionInfo]:
    return {o.name: o for o in options(cls)}


class FieldError(ConfigError):
    """A schema class refused a value: one line naming the field (``batch_size: ...``).

    Keeps pydantic's error so that :func:`build` can name the field as the user typed it.
    """

    def __init__(self, validation: ValidationError) -> None:
        super().__init__(format_validation(validation, str))
        self.validation = validation


def raise_config_errors(cls: type) -> type:
    """Make constructing ``cls`` (a pydantic dataclass) raise :class:`FieldError`, a
    ConfigError, instead of pydantic's ValidationError: one error type for a library
    user, whichever option was wrong."""
    init = cls.__init__  # type: ignore[misc]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as e:
            raise FieldError(e) from None

    __init__.__doc__ = init.__doc__
    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def build(cls: type, values: dict[str, Any], name_of: Callable[[str], str]) -> Any:
    """``cls(**values)`` with errors as one-line ConfigErrors naming the option.

    ``name_of`` turns a field name into what the user typed (``--warmup-ratio``,
    ``train.warmup_ratio``).
    """
    try:
        return cls(**values)
    except ValidationError as e:
        raise ConfigError(format_validation(e, name_of)) from None
    except FieldError as e:
        raise ConfigError(format_validation(e.validation, name_of)) from None


def format_validation(e: ValidationError, name_of: Callable[[str], str]) -> str:
    errors = e.errors()
    err = errors[0]
    loc = [str(x) for x in err["loc"]]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        msg = "unknown key"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if not loc:
        return msg + more
    where = name_of(loc[0]) + "".join(f"[{x}]" if x.isdigit() else f".{x}" for x in loc[1:])
    return f"{where}: {msg}{more}"

"""Typer options derived from a schema class (:mod:`babelir.core.schema`).

``schema_command`` turns a function ``body(cfg_values: dict, **own_options)`` into a
Typer command whose options are the schema's fields (name, default, help, range and
choices from the field) plus the command's own parameters. Lists are typed on the
command line comma-separated.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from babelir.core.schema import OptionInfo, _strip_optional, option_map


def _cli_type(o: OptionInfo) -> Any:
    if o.repeat:  # --opt A --opt B
        return list[str] | None
    ann = _strip_optional(o.info.annotation)
    optional = o.default is None
    if o.is_list or o.choices:
        base: Any = str
    elif ann in (bool, int, float, str, Path):
        base = ann
    else:
        base = str
    return base | None if optional else base


def schema_parameters(cls: type, names: Iterable[str]) -> list[inspect.Parameter]:
    """Keyword parameters for Typer, one per schema field in ``names``."""
    fields = option_map(cls)
    params = []
    for name in names:
        o = fields[name]
        if not o.has_cli:
            raise TypeError(f"{cls.__name__}.{name} has no command-line option (cli=False)")
        decls = [o.cli_name] + ([o.extra["short"]] if o.extra.get("short") else [])
        if _cli_type(o) is bool:
            flag = o.cli_name.removeprefix("--")
            decls = [f"--{flag}/--no-{flag}", *decls[1:]]
        if o.repeat:  # typer shows no default for a list: say it, and name the value
            option = typer.Option(
                *decls, metavar="TEXT", help=f"{o.help_text()} (default: {o.default})"
            )
        else:
            option = typer.Option(*decls, help=o.help_text())
        ann = Annotated[_cli_type(o), option]
        default = None if o.repeat else o.default
        if o.is_list and default is not None:
            default = ",".join(default)
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        )
    return params


def cli_values(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Typer's values back into schema values (comma-separated lists split)."""
    fields = option_map(cls)
    out = {}
    for name, value in values.items():
        o = fields[name]
        if o.repeat:
            if not value:
                continue  # not given: the schema's default
            value = value[0] if len(value) == 1 else list(value)
        elif o.is_list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        out[name] = value
    return out


def cli_name_of(cls: type) -> Callable[[str], str]:
    """Field name -> the option the user typed, for error messages."""
    fields = option_map(cls)
    return lambda name: fields[name].cli_name if name in fields else name


def schema_command(
    app: typer.Typer, cls: type, names: Iterable[str], *, name: str | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``body`` as a command taking ``cls``'s ``names`` plus its own options.

    ``body`` is called as ``body(schema_values, **own)`` where ``schema_values`` holds the
    schema fields (lists already split) and ``own`` the parameters ``body`` declares.
    """
    names = list(names)

    def register(body: Callable[..., None]) -> Callable[..., None]:
        own = [p for p in inspect.signature(body, eval_str=True).parameters.values()][1:]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        schema_params = schema_parameters(cls, names)

        def command(**kwargs: Any) -> None:
            values = {k: kwargs.pop(k) for k in names}
            body(cli_values(cls, values), **kwargs)

        params = [p for p in own if p.default is inspect.Parameter.empty]
        params += [p for p in own if p.default is not inspect.Parameter.empty]
        params += schema_params
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__doc__ = body.__doc__
        command.__name__ = name or body.__name__
        command.__module__ = body.__module__
        app.command(name=name or body.__name__.replace("_", "-"))(command)
        return body

    return register


__all__ = ["cli_name_of", "cli_values", "schema_command", "schema_parameters"]

"""``babelir evaluate --benchmark NAME [options]``: one command per benchmark family.

The dispatcher reads ``--benchmark``, looks its family up in :data:`FAMILIES` and hands
every argument to that family's command, which declares only the options that family
uses. A family is a module with a Typer ``app`` holding one command; a new one (e.g. the
open-retrieval ``xor-retrieve``) is one more :class:`Family` entry.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import typer

from babelir.cli.app import app, out
from babelir.core.errors import ConfigError

DEFAULT_BENCHMARK = "xquad-r"


@dataclass(frozen=True)
class Family:
    """A benchmark family: which ``--benchmark`` values it takes and its command module."""

    title: str
    #: Benchmark names it takes; the ``fallback`` family takes every other name or folder.
    benchmarks: tuple[str, ...]
    #: Module with a Typer ``app`` holding the family's one command.
    module: str
    summary: str
    fallback: bool = False

    def command(self) -> Any:
        """The family's click command (Typer's vendored click: typed loosely)."""
        return _command(self.module)


@cache
def _command(module: str) -> Any:
    return typer.main.get_command(importlib.import_module(module).app)


#: The benchmark families, in the order ``--help`` lists them.
FAMILIES: list[Family] = [
    Family(
        "LAReQA",
        ("xquad-r", "mlqa-r"),
        "babelir.cli.evaluate.lareqa",
        "xquad-r, mlqa-r or a LAReQA-format folder: mono/cross/multi mAP, recall, "
        "language bias",
        fallback=True,
    ),
    Family(
        "MIRACL",
        ("miracl",),
        "babelir.cli.evaluate.miracl",
        "miracl: nDCG@10 and Recall@100 per language over a corpus",
    ),
    Family(
        "XOR-Retrieve",
        ("xor-retrieve",),
        "babelir.cli.evaluate.xor_retrieve",
        "xor-retrieve: XOR-TyDi R@2kt and R@5kt per language over English Wikipedia passages",
    ),
]


def family_of(benchmark: str) -> Family:
    """The family that evaluates ``benchmark`` (a name, else the fallback's folder)."""
    for family in FAMILIES:
        if benchmark in family.benchmarks:
            return family
    return next(f for f in FAMILIES if f.fallback)


def _benchmark_arg(args: list[str]) -> str | None:
    """The value of ``--benchmark``/``-b`` in ``args`` (the last one wins, as in click)."""
    found = None
    for i, a in enumerate(args):
        if a == "--":
            break
        if a in ("--benchmark", "-b") and i + 1 < len(args):
            found = args[i + 1]
        elif a.startswith("--benchmark="):
            found = a.split("=", 1)[1]
        elif a.startswith("-b") and len(a) > 2 and not a.startswith("--"):
            found = a[2:]
    return found


_NUMBER = re.compile(r"-\d")


def _options(command: Any) -> dict[str, Any]:
    """Option string (``--corpus``, ``-b``, ``--no-cache``) -> its click option."""
    return {
        name: p
        for p in command.params
        if p.param_type_name == "option"
        for name in (*p.opts, *p.secondary_opts)
    }


def check_options(args: list[str], benchmark: str, family: Family) -> None:
    """Refuse an option the family does not take, in one line naming it (and its family)."""
    own = _options(family.command())
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return
        if a.startswith("-") and a != "-" and not _NUMBER.match(a) and a != "--help":
            name, attached = a.split("=", 1)[0], "=" in a
            param = own.get(name)
            if param is None and not a.startswith("--") and a[:2] in own:
                param, attached = own[a[:2]], True  # -lVALUE (or -q with more short flags)
            if param is None:
                raise ConfigError(_unknown(name, benchmark, family))
            if not attached and not (param.is_flag or param.count):
                i += 1  # its value, whatever it looks like
        i += 1


def _unknown(name: str, benchmark: str, family: Family) -> str:
    owners = [f for f in FAMILIES if f is not family and name in _options(f.command())]
    where = f"babelir evaluate --benchmark {benchmark} --help"
    if owners:
        return (
            f"{name} is an option of {owners[0].title} benchmarks, not of {family.title} "
            f"ones such as {benchmark} (its options: {where})"
        )
    return f"no such option: {name} (the {family.title} options: {where})"


def families_help() -> str:
    lines = [
        "Usage: babelir evaluate --benchmark NAME [OPTIONS]",
        "",
        "Score an encoder on a benchmark. Each benchmark family has its own options:",
        "",
    ]
    for f in FAMILIES:
        default = " (the default)" if DEFAULT_BENCHMARK in f.benchmarks else ""
        lines.append(f"  {f.title}{default}: {f.summary}")
        lines.append(f"    options: babelir evaluate --benchmark {f.benchmarks[0]} --help")
    return "\n".join(lines)


@app.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
def evaluate(ctx: typer.Context) -> None:
    """Score an encoder on a benchmark: LAReQA (xquad-r, mlqa-r, a folder), MIRACL, XOR-Retrieve.

    `babelir evaluate --help` lists the families; `babelir evaluate --benchmark NAME
    --help` shows the options of NAME's family.
    """
    args = list(ctx.args)
    benchmark = _benchmark_arg(args)
    if benchmark is None and "--help" in args[: args.index("--") if "--" in args else None]:
        out.print(families_help(), highlight=False, markup=False, soft_wrap=True)
        return
    family = family_of(benchmark or DEFAULT_BENCHMARK)
    check_options(args, benchmark or DEFAULT_BENCHMARK, family)
    prog = "babelir evaluate" + (f" --benchmark {benchmark}" if benchmark else "")
    family.command().main(args=args, prog_name=prog, standalone_mode=True)

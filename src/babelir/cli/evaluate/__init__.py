"""``babelir evaluate --benchmark NAME [options]``: one command per benchmark family.

The dispatcher reads ``--benchmark``, looks its family up in the family table
(:data:`babelir.evaluation.families.FAMILY_TABLE`) and hands every argument to that
family's command, which declares only the options that family uses. A family's command
is a module with a Typer ``app`` (:mod:`babelir.cli.evaluate.common` declares the
options all of them share); a new family is one more table row and such a module.
"""

from __future__ import annotations

import re
from typing import Any

import typer

from babelir.cli.app import app, out
from babelir.core.errors import ConfigError
from babelir.evaluation.families import (
    DEFAULT_KIND,
    FAMILIES,
    BenchmarkFamily,
    family_of_benchmark,
    get_family,
)

DEFAULT_BENCHMARK = get_family(DEFAULT_KIND).benchmarks[0]


def family_of(benchmark: str) -> BenchmarkFamily:
    """The family that evaluates ``benchmark`` (a name, else the fallback's folder)."""
    return family_of_benchmark(benchmark)


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


def check_options(args: list[str], benchmark: str, family: BenchmarkFamily) -> None:
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


def _unknown(name: str, benchmark: str, family: BenchmarkFamily) -> str:
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

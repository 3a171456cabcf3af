"""The ``babelir`` command: thin entry points over the library.

Every command parses options, calls one library function and prints a summary. Errors a
user can cause surface as one line (``error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import os
import sys

from babelir.cli import (  # noqa: F401  (register commands)
    compare,
    data,
    debias,
    evaluate,
    merge,
    search,
    train,
)
from babelir.cli.app import app, console, one_line_messages, print_error
from babelir.core.errors import BabelirError


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning user errors into one-line messages."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        with one_line_messages():
            app(args=argv, prog_name="babelir", standalone_mode=True)
    except BabelirError as e:
        print_error(e)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as e:
        # Typer turns Ctrl-C inside a command into a silent exit 130 (Exit(130) raised
        # from the KeyboardInterrupt): say so, as for a Ctrl-C outside one
        cause = getattr(e.__context__, "__cause__", None)
        if e.code == 130 and isinstance(cause, KeyboardInterrupt):
            _interrupted()
        raise


def _interrupted() -> None:
    console.print("[bold red]error:[/] interrupted", highlight=False)
    sys.exit(130)


if __name__ == "__main__":
    main()

"""Run the ``babelir`` entry point inside the test process (shared by the CLI tests)."""

from __future__ import annotations


def call(capsys, *args: str) -> tuple[int, str, str]:
    """The same entry point in this process: exit code, stdout, stderr."""
    from babelir.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = 0 if e.code is None else int(e.code)
    captured = capsys.readouterr()
    return code, captured.out, captured.err

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


def compare_dry_run(capsys, tmp_path, config_yaml: str, data_dir, *extra: str):
    """``babelir compare --config <config_yaml written to a file> --dry-run``: exit code,
    stdout, stderr."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_yaml, "utf-8")
    return call(capsys, "compare", "--config", str(cfg), "--dry-run", "--data-dir",
                str(data_dir), "--output", str(tmp_path / "o"), *extra)  # fmt: skip

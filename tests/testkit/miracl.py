"""Run the MIRACL command body on a tiny model and a small sw data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babelir.cli.evaluate.common import FamilyRun
from babelir.cli.evaluate.miracl import evaluate_miracl_cli
from babelir.encoding.options import EncodeOptions


def run_miracl_sw(
    model: Path, root: Path, work_dir: Path, *, max_seq_length: int = 32, **kw: Any
) -> Any:
    """``babelir evaluate --benchmark miracl --languages sw`` as the CLI runs it."""
    return evaluate_miracl_cli(
        FamilyRun.of(
            "miracl",
            model=str(model),
            data_dir=root,
            languages="sw",
            options=EncodeOptions(max_seq_length=max_seq_length, show_progress=False),
            work_dir=work_dir,
            **kw,
        )
    )

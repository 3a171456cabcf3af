"""`babelir merge`: weight-space interpolation of a fine-tuned model with its base (WiSE-FT)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from babelir.cli.app import app, console


@app.command()
def merge(
    base: Annotated[
        str,
        typer.Argument(
            help="Base model: multilingual-e5-small (the offline default), a folder or a hub id."
        ),
    ],
    finetuned: Annotated[
        str, typer.Argument(help="A model fine-tuned from BASE (e.g. a `babelir train` output).")
    ],
    weight: Annotated[
        float,
        typer.Option(
            "--weight",
            "-w",
            help="lambda in [0, 1]: (1 - lambda) * BASE + lambda * FINETUNED; 0 is the base "
            "model, 1 the fine-tuned one.",
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write (atomically).")
    ],
) -> None:
    """Merge a fine-tuned retriever with its base model in weight space (WiSE-FT).

    Writes a normal sentence-transformers folder with a model card and babelir-merge.json.
    Two models of different architectures or tokenizers are refused.
    """
    from babelir.models.merge import merge_models

    path = merge_models(base, finetuned, weight, output)
    console.print(f"merged model (weight {weight:g}) written to {path}", markup=False)

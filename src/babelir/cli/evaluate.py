"""`babelir evaluate`: score an encoder on a LAReQA benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from babelir.cli.app import ArticlesOpt, DataDirOpt, LanguagesOpt, ModelOpt, app, console, fail, out


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
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 where the CPU/GPU supports it, else fp32), fp32, bf16, fp16 (CUDA)."
        ),
    ] = "auto",
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")
    ] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: auto).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    split: Annotated[str, typer.Option(help="MIRACL split: dev or train.")] = "dev",
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="MIRACL corpus folder <corpus>/<lang>/*.jsonl[.gz] "
            "(default: <data-dir>/miracl/corpus)."
        ),
    ] = None,
    passage_format: Annotated[
        str, typer.Option(help="MIRACL passage text, e.g. '{title} {text}' or '{text}'.")
    ] = "{title} {text}",
    index: Annotated[
        str,
        typer.Option(
            "--index", help="MIRACL search: flat (exact), ivf, hnsw or a FAISS factory string."
        ),
    ] = "flat",
    nlist: Annotated[int | None, typer.Option(help="IVF cells (default ~4 sqrt(N)).")] = None,
    nprobe: Annotated[int | None, typer.Option(help="IVF cells probed (default nlist/16).")] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(help="MIRACL shard folder (default <cache>/shards); reused, resumable."),
    ] = None,
    shard_size: Annotated[int, typer.Option(help="MIRACL passages per shard.")] = 50_000,
    debias: Annotated[
        str | None,
        typer.Option(help="Evaluation-time debiasing: center, lir or lsar (with --debias-fit)."),
    ] = None,
    debias_fit: Annotated[
        Path | None,
        typer.Option(help="Fit written by `babelir debias` (transform or LSAR model folder)."),
    ] = None,
) -> None:
    """Score an encoder on a benchmark.

    LAReQA-format (xquad-r, mlqa-r, a folder): mono, cross, multi mAP, recall and
    language bias. miracl: nDCG@10 and Recall@100 per language (a corpus is needed).
    """
    from babelir.data.lareqa import load_benchmark
    from babelir.evaluation.lareqa import EvaluationResult, evaluate_model, write_result
    from babelir.reporting.tables import metrics_table
    from babelir.settings import data_dir as resolve_data_dir

    if output is not None and output.exists() and not output.is_dir():
        fail(f"--output {output} exists and is not a folder")
    from babelir.options import EncodeOptions

    # One options object for every path that encodes (checked here, before any work).
    encode_options = EncodeOptions(
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        precision=precision,
        cache=not no_cache,
        show_progress=not quiet,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
    )
    if benchmark == "miracl" and (debias or debias_fit):
        fail("--debias applies to LAReQA-format benchmarks, not miracl")
    if benchmark == "miracl":
        from babelir.cli.miracl import evaluate_miracl_cli
        from babelir.index.faiss_backend import IndexSpec

        evaluate_miracl_cli(
            model=model,
            data_dir=data_dir,
            languages=languages,
            output=output,
            options=encode_options,
            device=device,
            split=split,
            corpus=corpus,
            passage_format=passage_format,
            index=IndexSpec(kind=index, nlist=nlist, nprobe=nprobe),
            work_dir=work_dir,
            shard_size=shard_size,
            save_run=save_embeddings,
        )
        return
    bench = load_benchmark(
        benchmark,
        resolve_data_dir(data_dir),
        languages=languages,
        articles=articles,
        candidate_mode=candidates,
    )
    transform = _load_debias(debias, debias_fit, bench)
    if from_embeddings is not None:
        result = _score_saved(bench, from_embeddings)
    else:
        from babelir.encoding import load_encoder
        from babelir.models.loading import model_fingerprint

        st, opts = load_encoder(model, encode_options, device=device)
        info = {
            "model": model or "multilingual-e5-small",
            "model_fingerprint": model_fingerprint(st),
            "max_seq_length": opts.max_seq_length,
            "device": str(st.device),
        }
        result = evaluate_model(st, bench, options=opts, info=info)
    assert isinstance(result, EvaluationResult)
    if transform is not None:
        result = _apply_debias(result, transform, debias_fit)
    out.print(metrics_table(result.metrics_json()))
    if output is not None:
        write_result(result, output, save_embeddings=save_embeddings)
        console.print(f"wrote {output / 'metrics.json'}", markup=False)


def _score_saved(bench, folder: Path):
    """Score embeddings saved by --save-embeddings: validated, then aligned by key."""
    from babelir.evaluation.lareqa import score_saved

    return score_saved(bench, folder)


def _load_debias(method: str | None, fit: Path | None, bench):
    """The fitted transform of --debias-fit, refused if it was fitted on evaluation texts."""
    if method is None and fit is None:
        return None
    from babelir.debias import METHODS, DebiasTransform, check_benchmark
    from babelir.errors import ConfigError

    if fit is None:
        raise ConfigError(f"--debias {method}: give the fit with --debias-fit (babelir debias)")
    if method is not None and method not in METHODS:
        raise ConfigError(f"--debias: unknown '{method}' (valid: {', '.join(METHODS)})")
    transform = DebiasTransform.load(fit)
    if method is not None and method != transform.method:
        raise ConfigError(f"--debias {method}: {fit} holds a {transform.method} fit")
    check_benchmark(transform, bench, f"{fit} vs articles {bench.articles} of {bench.name}")
    return transform


def _apply_debias(result, transform, fit: Path):
    """Re-score the benchmark on debiased embeddings; record the transform in metrics.json."""
    from rich.markup import escape

    from babelir.debias import debias_result

    result = debias_result(result, transform, fit_path=fit)
    if result.info["debias"].get("model_fingerprint_matches") is False:
        console.print(
            "[yellow]warning:[/] "
            + escape(f"--debias-fit {fit} was fitted on another model than the one evaluated"),
            highlight=False,
        )
    return result

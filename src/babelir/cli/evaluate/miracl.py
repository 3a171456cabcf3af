"""``babelir evaluate --benchmark miracl``: the MIRACL family (options only).

nDCG@10 and Recall@100 per language over a sharded, resumable corpus index; the body
(load, evaluate, print, write) is :func:`babelir.cli.miracl.evaluate_miracl_cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from babelir.cli.app import (
    ENCODE_OPTIONS,
    DataDirOpt,
    LanguagesOpt,
    ModelOpt,
    NoCacheOpt,
    QuietOpt,
    encode_options,
)
from babelir.cli.schema import schema_command
from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT
from babelir.encoding.options import EncodeOptions

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@schema_command(app, EncodeOptions, ENCODE_OPTIONS, name="evaluate")
def evaluate_miracl(
    values: dict[str, Any],
    model: ModelOpt = None,
    benchmark: Annotated[
        str, typer.Option("--benchmark", "-b", help="miracl (the family's one benchmark).")
    ] = "miracl",
    data_dir: DataDirOpt = None,
    languages: LanguagesOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for metrics.json.")
    ] = None,
    save_embeddings: Annotated[
        bool, typer.Option(help="Also write the runs (run.<lang>.trec) to --output.")
    ] = False,
    no_cache: NoCacheOpt = False,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, cuda, cuda:1 ... (default: auto; torchrun: the local rank's)."),
    ] = None,
    quiet: QuietOpt = False,
    split: Annotated[str, typer.Option(help="Topics and qrels split: dev or train.")] = "dev",
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="Corpus folder <corpus>/<lang>/*.jsonl[.gz] (default: <data-dir>/miracl/corpus, "
            "where 'babelir data fetch miracl-corpus' puts it)."
        ),
    ] = None,
    passage_format: Annotated[
        str, typer.Option(help="Passage text, e.g. '{title} {text}' or '{text}'.")
    ] = DEFAULT_PASSAGE_FORMAT,
    index: Annotated[
        str,
        typer.Option("--index", help="Search: flat (exact), ivf, hnsw or a FAISS factory string."),
    ] = "flat",
    nlist: Annotated[int | None, typer.Option(help="IVF cells (default ~4 sqrt(N)).")] = None,
    nprobe: Annotated[int | None, typer.Option(help="IVF cells probed (default nlist/16).")] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(help="Shard folder (default <cache>/shards); reused, resumable."),
    ] = None,
    shard_size: Annotated[int, typer.Option(help="Passages per shard.")] = 50_000,
    bm25: Annotated[
        bool,
        typer.Option(
            "--bm25",
            help="Add a BM25 baseline row per language (bm25s, Lucene BM25 k1=0.9 b=0.4) over "
            "the same passages; needs pip install 'babelir[bm25]'.",
        ),
    ] = False,
) -> None:
    """Score an encoder on MIRACL: nDCG@10 and Recall@100 per language (needs a corpus)."""
    from babelir.cli.miracl import evaluate_miracl_cli
    from babelir.core.errors import ConfigError
    from babelir.index.faiss_backend import IndexSpec

    if benchmark != "miracl":
        raise ConfigError(f"--benchmark {benchmark}: this is the MIRACL family (miracl)")
    evaluate_miracl_cli(
        model=model,
        data_dir=data_dir,
        languages=languages,
        output=output,
        options=encode_options(values, quiet=quiet, cache=not no_cache),
        device=device,
        split=split,
        corpus=corpus,
        passage_format=passage_format,
        index=IndexSpec(kind=index, nlist=nlist, nprobe=nprobe),
        work_dir=work_dir,
        shard_size=shard_size,
        save_run=save_embeddings,
        bm25=bm25,
    )

"""``babelir evaluate --benchmark xor-retrieve``: the XOR-TyDi XOR-Retrieve family.

R@2kt and R@5kt per language (the official definition: :mod:`babelir.evaluation.xor_retrieve`)
of questions in 7 languages against English Wikipedia passages, encoded into sharded,
resumable shards (``torchrun`` splits them across processes; see docs/xor-retrieve.md).
"""

from __future__ import annotations

from collections.abc import Mapping
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
from babelir.index.faiss_backend import IndexSpec

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@schema_command(app, EncodeOptions, ENCODE_OPTIONS, name="evaluate")
def evaluate_xor_retrieve_command(
    values: dict[str, Any],
    model: ModelOpt = None,
    benchmark: Annotated[
        str,
        typer.Option("--benchmark", "-b", help="xor-retrieve (the family's one benchmark)."),
    ] = "xor-retrieve",
    data_dir: DataDirOpt = None,
    languages: LanguagesOpt = None,
    questions: Annotated[
        str,
        typer.Option(
            help="dev (v1.1), dev-v1.0, train (under <data-dir>/xor-retrieve/) or a .jsonl path."
        ),
    ] = "dev",
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="Passages: a DPR TSV (id, text, title; .tsv[.gz]) or corpus JSONL (default: "
            "<data-dir>/xor-retrieve/corpus/enwiki_20190201_w100.tsv, else DPR's psgs_w100)."
        ),
    ] = None,
    corpus_limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Only the first N passages (CPU trials; scores then are not the task's).",
        ),
    ] = None,
    top_k: Annotated[
        int,
        typer.Option(min=1, help="Passages retrieved per question (5,000 tokens need ~50)."),
    ] = 100,
    tokenizer: Annotated[
        str,
        typer.Option(help="auto (nltk if installed), nltk (official word_tokenize) or whitespace."),
    ] = "auto",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder for metrics.json and per_query.npz."),
    ] = None,
    save_run: Annotated[
        bool,
        typer.Option(
            help="Also write run.trec and the official prediction file to --output "
            "(xor_retrieve_predictions.json, for evals/eval_xor_retrieve.py)."
        ),
    ] = False,
    no_cache: NoCacheOpt = False,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, cuda, cuda:1 ... (default: auto; torchrun: the local rank's)."),
    ] = None,
    quiet: QuietOpt = False,
    passage_format: Annotated[
        str, typer.Option(help="Passage text encoded, e.g. '{title} {text}' or '{text}'.")
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
    shard_size: Annotated[int, typer.Option(min=1, help="Passages per shard.")] = 50_000,
    bm25: Annotated[
        bool,
        typer.Option(
            "--bm25",
            help="Add a BM25 row (bm25s, Lucene BM25 k1=0.9 b=0.4) over the same passages, "
            "questions untranslated; holds the corpus in memory (use --corpus-limit on a "
            "CPU); needs pip install 'babelir[bm25]'.",
        ),
    ] = False,
) -> None:
    """Score an encoder on XOR-TyDi XOR-Retrieve: R@2kt and R@5kt per language."""
    from babelir.core.errors import ConfigError

    if benchmark != "xor-retrieve":
        raise ConfigError(f"--benchmark {benchmark}: this is the XOR-Retrieve family")
    evaluate_xor_retrieve_cli(
        model=model,
        data_dir=data_dir,
        languages=languages,
        questions=questions,
        corpus=corpus,
        corpus_limit=corpus_limit,
        top_k=top_k,
        tokenizer=tokenizer,
        output=output,
        save_run=save_run,
        options=encode_options(values, quiet=quiet, cache=not no_cache),
        device=device,
        passage_format=passage_format,
        index=IndexSpec(kind=index, nlist=nlist, nprobe=nprobe),
        work_dir=work_dir,
        shard_size=shard_size,
        bm25=bm25,
    )


def evaluate_xor_retrieve_cli(
    *,
    model: str | None,
    data_dir: Path | None,
    languages: str | None = None,
    questions: str = "dev",
    corpus: Path | None = None,
    corpus_limit: int | None = None,
    top_k: int = 100,
    tokenizer: str = "auto",
    output: Path | None = None,
    save_run: bool = False,
    options: EncodeOptions | None = None,
    device: str | None = None,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    index: IndexSpec | None = None,
    work_dir: Path | None = None,
    shard_size: int = 50_000,
    bm25: bool = False,
) -> dict[str, Any] | None:
    """Load, evaluate, print the table and warnings, write ``output``; the metrics.json
    document on rank 0, None on other ``torchrun`` ranks. ``bm25`` adds the BM25 row
    (untranslated questions, rank 0 only): ``baselines.bm25`` in metrics.json."""
    from rich.console import Console

    from babelir.cli.app import console, model_name, print_warning
    from babelir.core.distributed import init_distributed, rank_device
    from babelir.core.settings import cache_dir
    from babelir.core.settings import data_dir as resolve_data_dir
    from babelir.data.miracl import check_passage_format
    from babelir.data.xor_retrieve import load_xor_retrieve
    from babelir.encoding.encoder import load_encoder
    from babelir.evaluation.xor_retrieve import (
        evaluate_xor_retrieve,
        resolve_tokenizer,
        write_xor_result,
    )
    from babelir.models.loading import model_fingerprint

    check_passage_format(passage_format)
    resolve_tokenizer(tokenizer)  # an unavailable --tokenizer nltk fails before any encoding
    if bm25:
        from babelir.evaluation.bm25 import _bm25s

        _bm25s()  # a missing bm25s fails before any encoding
    bench = load_xor_retrieve(
        resolve_data_dir(data_dir), languages, questions=questions, corpus=corpus
    )
    init_distributed()
    st, opts = load_encoder(model, options, device=device or rank_device())
    fingerprint = model_fingerprint(st)
    info = {
        "model": model_name(model),
        "model_fingerprint": fingerprint,
        "max_seq_length": opts.max_seq_length,
        "device": str(st.device),
    }
    result = evaluate_xor_retrieve(
        st,
        bench,
        Path(work_dir) if work_dir else cache_dir() / "shards",
        options=opts,
        passage_format=passage_format,
        index=index or IndexSpec(),
        model_fingerprint=fingerprint,
        shard_size=shard_size,
        corpus_limit=corpus_limit,
        top_k=top_k,
        tokenizer=tokenizer,
        info=info,
    )
    if result is None:
        return None
    if bm25:
        from babelir.evaluation.xor_retrieve import bm25_section, evaluate_xor_retrieve_bm25

        row = evaluate_xor_retrieve_bm25(
            bench, passage_format=passage_format, corpus_limit=corpus_limit, top_k=top_k,
            tokenizer=tokenizer,
        )  # fmt: skip
        result.info["baselines"] = {"bm25": bm25_section(row)}
    doc = result.metrics_json()
    Console().print(xor_retrieve_table(doc))
    for line in warnings_of(doc):
        print_warning(line)
    if output is not None:
        write_xor_result(result, output, save_run=save_run)
        console.print(
            f"wrote {Path(output) / 'metrics.json'}", highlight=False, markup=False, soft_wrap=True
        )
    return doc


def warnings_of(doc: Mapping[str, Any]) -> list[str]:
    """What makes these numbers differ from the task's official ones, one line each."""
    out = []
    if not doc["official_tokenizer"]:
        out.append(
            "tokens counted by whitespace splitting, not the official NLTK word_tokenize "
            "(pip install nltk; python -m nltk.downloader punkt_tab): R@kt read slightly high"
        )
    if doc["corpus_limit"] is not None:
        out.append(
            f"only the first {doc['num_passages']} passages of {doc['corpus_file']} were "
            f"searched (--corpus-limit): not comparable with published XOR-Retrieve scores"
        )
    for lang, row in doc["per_language"].items():
        short = row["under_budget"]["r@5kt"]
        if short:
            out.append(
                f"{lang}: {short} of {row['num_queries']} questions had fewer than 5000 tokens "
                f"in their {doc['top_k']} retrieved passages (R@5kt may be underestimated)"
            )
    if doc["questions_with_empty_answer"]:
        out.append(
            f"{doc['questions_with_empty_answer']} questions have an empty answer string, "
            f"which the official substring test always finds (kept, as officially scored)"
        )
    return out


def xor_retrieve_table(m: Mapping[str, Any]) -> Any:
    """R@2kt, R@5kt (percent, as the task reports them) per language, then the macro row."""
    from rich.table import Table

    limit = f", first {m['num_passages']} passages" if m["corpus_limit"] else ""
    t = Table(
        title=f"{m.get('model', '?')} on XOR-Retrieve {m['questions']} ({m['index']['kind']} "
        f"search, top {m['top_k']}{limit}; tokens: {m['tokenizer']})",
        title_justify="left",
    )
    for col in ("lang", "R@2kt", "R@5kt", "questions"):
        t.add_column(col, justify="right")
    sections = [("", m), *((f" ({k})", v) for k, v in (m.get("baselines") or {}).items())]
    for suffix, doc in sections:
        for lang, row in doc["per_language"].items():
            t.add_row(
                f"{lang}{suffix}",
                f"{100 * row['r@2kt']:.2f}",
                f"{100 * row['r@5kt']:.2f}",
                str(row["num_queries"]),
            )
        t.add_row(
            f"macro{suffix}",
            f"{100 * doc['r@2kt']:.2f}",
            f"{100 * doc['r@5kt']:.2f}",
            str(doc["num_queries"]),
            style="bold",
            end_section=True,
        )
    return t

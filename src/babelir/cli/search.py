"""`babelir index` and `babelir search`: build a dense index of a corpus, then query it.

``babelir index`` encodes a corpus (MIRACL-format JSONL, mMARCO collections, a LAReQA
benchmark or a JSONL file; all languages pooled) in resumable shards and builds a FAISS
index next to them; run it under ``torchrun --nproc_per_node N -m babelir.cli.main index
...`` to split the encoding across processes or GPUs. ``babelir search`` embeds queries
(any language) with the index's model and prints the top-k with score, language, docid
and a snippet, or JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from babelir.cli.app import (
    ENCODE_OPTIONS,
    DataDirOpt,
    LanguagesOpt,
    ModelOpt,
    QuietOpt,
    app,
    console,
    encode_options,
    fail,
    model_name,
    out,
    print_warning,
)
from babelir.cli.evaluate.common import with_retrieval_options
from babelir.cli.schema import schema_command
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.options import RetrievalOptions

IndexKindOpt = Annotated[
    str,
    typer.Option(
        "--index",
        help="flat (exact, default), ivf, hnsw, or a FAISS index_factory string "
        "(e.g. 'IVF4096,PQ32').",
    ),
]
NprobeOpt = Annotated[
    int | None, typer.Option(help="IVF cells probed per query (default: nlist/16).")
]
EfSearchOpt = Annotated[int | None, typer.Option(help="HNSW efSearch (default 128).")]


@schema_command(app, EncodeOptions, ENCODE_OPTIONS, name="index")
@with_retrieval_options(["passage_format", "shard_size"])
def index_command(
    values: dict[str, Any],
    retrieval: RetrievalOptions,
    output: Annotated[Path, typer.Argument(help="Index folder to create (or resume).")],
    corpus: Annotated[
        str,
        typer.Option(
            "--corpus",
            "-c",
            help="miracl, mmarco, xquad-r, mlqa-r (under --data-dir), a folder of "
            "<lang>/*.jsonl[.gz], an mMARCO folder, a LAReQA folder or a .jsonl[.gz] file of "
            '{"docid", "title", "text"[, "lang"]} lines.',
        ),
    ],
    model: ModelOpt = None,
    data_dir: DataDirOpt = None,
    languages: LanguagesOpt = None,
    lang: Annotated[
        str, typer.Option(help="Language of JSONL lines without a 'lang' field.")
    ] = "und",
    index: IndexKindOpt = "flat",
    nlist: Annotated[int | None, typer.Option(help="IVF cells (default ~4 sqrt(N)).")] = None,
    nprobe: NprobeOpt = None,
    hnsw_m: Annotated[int, typer.Option(help="HNSW links per node.")] = 32,
    ef_search: EfSearchOpt = None,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, cuda, cuda:1 ... (default: auto; torchrun: the local rank's)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Rebuild an existing index (reusing compatible shards).")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Encode a corpus in resumable shards and build a FAISS index of it."""
    import os

    from babelir.core.distributed import init_distributed, rank_device
    from babelir.core.settings import data_dir as resolve_data_dir
    from babelir.data.corpus import open_corpus
    from babelir.data.lareqa import parse_languages
    from babelir.data.miracl import check_passage_format
    from babelir.encoding.encoder import load_encoder
    from babelir.index.build import build_search_index
    from babelir.index.faiss_backend import IndexSpec
    from babelir.models.loading import model_fingerprint

    passage_format = retrieval.passage_format
    if output.exists() and not output.is_dir():
        fail(f"{output} exists and is not a folder")
    check_passage_format(passage_format)
    spec = IndexSpec(
        kind=index, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search or 128
    )
    options = encode_options(values, quiet=quiet)
    source = open_corpus(
        corpus, resolve_data_dir(data_dir), languages=parse_languages(languages), lang=lang
    )
    rank, world = init_distributed()
    st, options = load_encoder(model, options, device=device or rank_device())
    name = model_name(model)
    if os.path.isdir(name):
        name = str(Path(name).resolve())  # so `babelir search` finds it from anywhere
    report = build_search_index(
        st,
        source,
        output,
        options=options,
        spec=spec,
        model_name=name,
        model_fingerprint=model_fingerprint(st),
        passage_format=passage_format,
        shard_size=retrieval.shard_size,
        overwrite=overwrite,
    )
    enc = report.encode
    if report.meta is None:
        if world > 1 and rank == 0:
            console.print("shards of this rank done; another rank finishes the index")
        return
    m = report.meta
    langs = ", ".join(f"{k} {v}" for k, v in m["languages"].items())
    console.print(
        f"indexed {m['num_rows']} passages ({langs}) into {output}: {m['index']['kind']}, "
        f"{m['dim']}-d; encoded {enc.rows_encoded} now ({enc.rows_per_s:.0f}/s), "
        f"{enc.shards_skipped} of {enc.shards_total} shards reused",
        highlight=False,
        markup=False,
    )
    if m["recall_vs_exact"]:
        r = m["recall_vs_exact"]
        console.print(
            f"recall@{r['k']} vs exact: {r['recall']:.4f} ({r['num_queries']} sampled "
            f"{r['query_source']}; {r['approx_ms_per_query']} vs {r['exact_ms_per_query']} "
            f"ms/query)",
            highlight=False,
            markup=False,
        )


@schema_command(app, EncodeOptions, ["precision"], name="search")
def search_command(
    values: dict[str, Any],
    index_dir: Annotated[Path, typer.Argument(help="Folder written by 'babelir index'.")],
    queries: Annotated[list[str] | None, typer.Argument(help="Query texts, any language.")] = None,
    queries_file: Annotated[
        Path | None, typer.Option(help="Read queries from this file, one per line ('-': stdin).")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Results per query.")] = 10,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Override the index's model.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts.")] = False,
    snippet: Annotated[int, typer.Option(help="Characters of passage text shown.")] = 160,
    nprobe: NprobeOpt = None,
    ef_search: EfSearchOpt = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda ... (default: auto).")] = None,
) -> None:
    """Query an index: top-k passages with score, language, docid and text."""
    from babelir.index.search import SearchIndex
    from babelir.models.loading import load_model, model_fingerprint

    texts = list(queries or [])
    if queries_file is not None:
        if str(queries_file) == "-":
            texts += [x.strip() for x in sys.stdin]
        elif not queries_file.is_file():
            fail(f"--queries-file {queries_file}: file not found")
        else:
            texts += [x.strip() for x in queries_file.read_text("utf-8").splitlines()]
        texts = [x for x in texts if x]
    if not texts:
        fail("no query given (pass query texts or --queries-file)")
    for i, q in enumerate(texts, 1):
        if not q.strip():
            fail(f"query {i} is empty")
    if k < 1:
        fail(f"--k must be >= 1, got {k}")
    options = encode_options(values, quiet=True)
    idx = SearchIndex(index_dir, nprobe=nprobe, ef_search=ef_search)
    meta = idx.meta
    if k > idx.num_rows:  # more results than passages: clipped, not allocated
        print_warning(f"--k {k}: the index holds {idx.num_rows} passages; returning them all")
        k = idx.num_rows
    st = load_model(model or meta["model"], device=device, max_seq_length=meta["max_seq_length"])
    if model is None and model_fingerprint(st) != meta["model_fingerprint"]:
        print_warning(
            f"{meta['model']} changed since the index was built "
            f"(fingerprint {meta['model_fingerprint']}); scores may be meaningless"
        )
    from babelir.encoding.encoder import for_precision

    # int8: the ONNX Runtime build
    st = for_precision(st, model or meta["model"], options.precision)
    results = idx.search_texts(st, texts, k, options=options)
    idx.close()
    if as_json:
        doc = [
            {"query": q, "hits": [h.__dict__ for h in hits]}
            for q, hits in zip(texts, results, strict=True)
        ]
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return
    from rich.table import Table

    for q, hits in zip(texts, results, strict=True):
        t = Table(title=f"{q}", title_justify="left")
        for col, just in (("#", "right"), ("score", "right"), ("lang", "left"), ("docid", "left")):
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        t.add_column("passage", overflow="fold")
        for h in hits:
            body = f"{h.title} — {h.text}" if h.title else h.text
            if len(body) > snippet:
                body = body[: max(snippet - 1, 0)] + "…"
            t.add_row(str(h.rank), f"{h.score:.4f}", h.lang, h.docid, body)
        out.print(t)

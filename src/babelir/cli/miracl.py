"""The body of ``babelir evaluate --benchmark miracl``: load, evaluate, print, write.

Kept apart from :mod:`babelir.cli.evaluate.miracl` (which parses the options) because it is
also called directly by tests, and from :mod:`babelir.evaluation.miracl` (the pipeline)
because it prints to a console.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT
from babelir.encoding.options import EncodeOptions
from babelir.index.faiss_backend import IndexSpec


def evaluate_miracl_cli(
    *,
    model: str | None,
    data_dir: Path | None,
    languages: str | None,
    output: Path | None,
    options: EncodeOptions | None = None,
    device: str | None = None,
    split: str = "dev",
    corpus: Path | None = None,
    passage_format: str = DEFAULT_PASSAGE_FORMAT,
    index: IndexSpec | None = None,
    work_dir: Path | None = None,
    shard_size: int = 50_000,
    save_run: bool = False,
    bm25: bool = False,
) -> dict[str, Any] | None:
    """``babelir evaluate --benchmark miracl``: print the table, write metrics.json.

    ``options`` (max length, prefixes, batch size, precision, cache, progress) is applied
    to the model as loaded and to every text encoded. Under ``torchrun`` every rank
    encodes its shards of each language and rank 0 scores and writes; the others return
    None. Returns the metrics.json document on rank 0. ``bm25`` adds the BM25 baseline
    (:mod:`babelir.evaluation.bm25`, rank 0 only) over the same passages and queries: rows
    in the table, ``baselines.bm25`` in metrics.json, ``run.bm25.<lang>.trec`` with
    ``save_run``.
    """
    from rich.console import Console

    from babelir.cli.app import model_name
    from babelir.core.distributed import init_distributed, rank_device
    from babelir.core.settings import cache_dir
    from babelir.core.settings import data_dir as resolve_data_dir
    from babelir.data.miracl import check_passage_format, load_miracl
    from babelir.encoding.encoder import load_encoder
    from babelir.evaluation.miracl import evaluate_miracl, write_miracl_result
    from babelir.models.loading import model_fingerprint
    from babelir.reporting.miracl_table import miracl_table

    check_passage_format(passage_format)
    langs = load_miracl(resolve_data_dir(data_dir), languages, split=split, corpus=corpus)
    init_distributed()
    st, opts = load_encoder(model, options, device=device or rank_device())
    fingerprint = model_fingerprint(st)
    info = {
        "model": model_name(model),
        "model_fingerprint": fingerprint,
        "max_seq_length": opts.max_seq_length,
        "device": str(st.device),
    }
    result = evaluate_miracl(
        st,
        langs,
        Path(work_dir) if work_dir else cache_dir() / "shards",
        options=opts,
        passage_format=passage_format,
        index=index or IndexSpec(),
        info=info,
        model_fingerprint=fingerprint,
        shard_size=shard_size,
    )
    if result is None:
        return None
    bm25_results: list[Any] = []
    if bm25:
        from babelir.evaluation.bm25 import evaluate_miracl_bm25

        section, bm25_results = evaluate_miracl_bm25(langs, passage_format=passage_format)
        result.info["baselines"] = {"bm25": section}
    doc = result.metrics_json()
    Console().print(miracl_table(doc))
    err = Console(stderr=True, soft_wrap=True)  # one line per warning, whatever the width
    for lang, row in doc["per_language"].items():
        unscored = [
            f"{n} {what}"
            for n, what in (
                (row["topics_without_relevant"], "topics without a relevant judgement"),
                (row["qrels_without_topic"], "qrels qids without a topic"),
            )
            if n
        ]
        if unscored:  # e.g. a qid spelled differently in the two files: say it, never drop
            ml = next(x for x in langs if x.lang == lang)
            err.print(
                f"warning: {lang}: {' and '.join(unscored)} ({ml.topics_path.name}, "
                f"{ml.qrels_path.name}); they are not scored",
                highlight=False,
                markup=False,
            )
        if row["qrels_docids_missing_from_corpus"]:
            err.print(
                f"warning: {lang}: {row['qrels_docids_missing_from_corpus']} judged docids "
                f"({row['relevant_docids_missing_from_corpus']} relevant) are not in the corpus; "
                f"they count as not retrieved",
                highlight=False,
                markup=False,
            )
    if output is not None:
        write_miracl_result(result, output, save_run=save_run)
        if save_run:
            from babelir.core.io import write_text

            for r in bm25_results:
                lines = (
                    f"{qid} Q0 {docid} {rank} {score:.6f} bm25\n"
                    for qid, hits in r.run.items()
                    for rank, (docid, score) in enumerate(hits, 1)
                )
                write_text(Path(output) / f"run.bm25.{r.lang}.trec", "".join(lines))
        err.print(f"wrote {Path(output) / 'metrics.json'}", highlight=False, markup=False)
    return doc

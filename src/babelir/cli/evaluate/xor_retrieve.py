"""``babelir evaluate --benchmark xor-retrieve``: the XOR-TyDi XOR-Retrieve family.

R@2kt and R@5kt per language (the official definition: :mod:`babelir.evaluation.xor_retrieve`)
of questions in 7 languages against English Wikipedia passages, encoded into sharded,
resumable shards (``torchrun`` splits them across processes; see docs/xor-retrieve.md).
The command takes the options every family does (:mod:`babelir.cli.evaluate.common`,
one :class:`~babelir.cli.evaluate.common.FamilyRun`) and its own;
:func:`evaluate_xor_retrieve_cli` is the body (load, evaluate, print, write).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from babelir.cli.evaluate.common import FamilyRun, family_app, family_command

app = family_app()


@family_command(app, "xor-retrieve")
def evaluate_xor_retrieve_command(
    run: FamilyRun,
    tokenizer: Annotated[
        str,
        typer.Option(help="auto (nltk if installed), nltk (official word_tokenize) or whitespace."),
    ] = "auto",
    save_run: Annotated[
        bool,
        typer.Option(
            help="Also write run.trec and the official prediction file to --output "
            "(xor_retrieve_predictions.json, for evals/eval_xor_retrieve.py)."
        ),
    ] = False,
) -> None:
    """Score an encoder on XOR-TyDi XOR-Retrieve: R@2kt and R@5kt per language."""
    evaluate_xor_retrieve_cli(run, tokenizer=tokenizer, save_run=save_run)


def evaluate_xor_retrieve_cli(
    run: FamilyRun, *, tokenizer: str = "auto", save_run: bool = False
) -> dict[str, Any] | None:
    """Load, evaluate, print the table and warnings, write ``run.output``; the
    metrics.json document on rank 0, None on other ``torchrun`` ranks. ``run.bm25`` adds
    the BM25 row (untranslated questions, rank 0 only): ``baselines.bm25`` in
    metrics.json."""
    from babelir.evaluation.xor_retrieve import (
        evaluate_xor_retrieve,
        resolve_tokenizer,
        write_xor_result,
    )
    from babelir.index.faiss_backend import IndexSpec

    run.preflight()
    resolve_tokenizer(tokenizer)  # an unavailable --tokenizer nltk fails before any encoding
    bench = run.load()
    st, opts, info = run.encoder()
    r = run.retrieval
    result = evaluate_xor_retrieve(
        st,
        bench,
        run.shard_dir,
        options=opts,
        passage_format=r.passage_format,
        index=run.index or IndexSpec(),
        model_fingerprint=info["model_fingerprint"],
        shard_size=r.shard_size,
        corpus_limit=r.corpus_limit,
        top_k=r.top_k,
        tokenizer=tokenizer,
        info=info,
    )
    if result is None:
        return None
    if run.bm25:
        from babelir.evaluation.xor_retrieve import bm25_section, evaluate_xor_retrieve_bm25

        row = evaluate_xor_retrieve_bm25(
            bench, passage_format=r.passage_format, corpus_limit=r.corpus_limit, top_k=r.top_k,
            tokenizer=tokenizer,
        )  # fmt: skip
        result.info["baselines"] = {"bm25": bm25_section(row)}
    doc = result.metrics_json()
    run.finish(doc, lambda f: write_xor_result(result, f, save_run=save_run), warnings_of(doc))
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

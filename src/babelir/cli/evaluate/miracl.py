"""``babelir evaluate --benchmark miracl``: the MIRACL family.

nDCG@10 and Recall@100 per language over a sharded, resumable corpus index
(:mod:`babelir.evaluation.miracl`; ``torchrun`` splits the encoding across processes).
The command takes the options every family does (:mod:`babelir.cli.evaluate.common`,
one :class:`~babelir.cli.evaluate.common.FamilyRun`) and its own; :func:`evaluate_miracl_cli`
is the body (load, evaluate, print, write), also called directly by tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from babelir.cli.evaluate.common import FamilyRun, family_app, family_command

app = family_app()


@family_command(app, "miracl")
def evaluate_miracl(
    run: FamilyRun,
    save_embeddings: Annotated[
        bool, typer.Option(help="Also write the runs (run.<lang>.trec) to --output.")
    ] = False,
) -> None:
    """Score an encoder on MIRACL: nDCG@10 and Recall@100 per language (needs a corpus)."""
    evaluate_miracl_cli(run, save_run=save_embeddings)


def evaluate_miracl_cli(run: FamilyRun, *, save_run: bool = False) -> dict[str, Any] | None:
    """Load, evaluate, print the table and warnings, write ``run.output``; the
    metrics.json document on rank 0, None on other ``torchrun`` ranks (they encode their
    shards of each language; rank 0 scores and writes).

    The encoding options are applied to the model as loaded and to every text encoded.
    ``run.bm25`` adds the BM25 baseline (:mod:`babelir.evaluation.bm25`, rank 0 only)
    over the same passages and queries: rows in the table, ``baselines.bm25`` in
    metrics.json, ``run.bm25.<lang>.trec`` with ``save_run``.
    """
    from babelir.evaluation.miracl import evaluate_miracl, write_miracl_result
    from babelir.index.faiss_backend import IndexSpec

    run.preflight()
    langs = run.load()
    st, opts, info = run.encoder()
    result = evaluate_miracl(
        st,
        langs,
        run.shard_dir,
        options=opts,
        passage_format=run.retrieval.passage_format,
        index=run.index or IndexSpec(),
        info=info,
        model_fingerprint=info["model_fingerprint"],
        shard_size=run.retrieval.shard_size,
    )
    if result is None:
        return None
    bm25_results: list[Any] = []
    if run.bm25:
        from babelir.evaluation.bm25 import evaluate_miracl_bm25

        section, bm25_results = evaluate_miracl_bm25(
            langs, passage_format=run.retrieval.passage_format
        )
        result.info["baselines"] = {"bm25": section}
    doc = result.metrics_json()

    def write(folder: Path) -> None:
        write_miracl_result(result, folder, save_run=save_run)
        if save_run:
            from babelir.core.io import write_text

            for r in bm25_results:
                lines = (
                    f"{qid} Q0 {docid} {rank} {score:.6f} bm25\n"
                    for qid, hits in r.run.items()
                    for rank, (docid, score) in enumerate(hits, 1)
                )
                write_text(folder / f"run.bm25.{r.lang}.trec", "".join(lines))

    run.finish(doc, write, warnings_of(doc, langs))
    return doc


def warnings_of(doc: Mapping[str, Any], langs: Sequence[Any]) -> list[str]:
    """What the scores leave out, one line each: topics or qrels not scored (e.g. a qid
    spelled differently in the two files: said, never dropped silently) and judged
    passages the corpus lacks."""
    out = []
    for lang, row in doc["per_language"].items():
        unscored = [
            f"{n} {what}"
            for n, what in (
                (row["topics_without_relevant"], "topics without a relevant judgement"),
                (row["qrels_without_topic"], "qrels qids without a topic"),
            )
            if n
        ]
        if unscored:
            ml = next(x for x in langs if x.lang == lang)
            out.append(
                f"{lang}: {' and '.join(unscored)} ({ml.topics_path.name}, "
                f"{ml.qrels_path.name}); they are not scored"
            )
        if row["qrels_docids_missing_from_corpus"]:
            out.append(
                f"{lang}: {row['qrels_docids_missing_from_corpus']} judged docids "
                f"({row['relevant_docids_missing_from_corpus']} relevant) are not in the "
                "corpus; they count as not retrieved"
            )
    return out

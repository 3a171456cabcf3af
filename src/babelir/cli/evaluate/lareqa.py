"""``babelir evaluate --benchmark xquad-r|mlqa-r|FOLDER``: the LAReQA family.

Mono, cross and multi mAP, recall and language bias of an encoder on a LAReQA-format
benchmark; optionally scored from saved embeddings or after post-hoc debiasing. The
command takes the options every family does (:mod:`babelir.cli.evaluate.common`) and its
own.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from babelir.cli.app import ArticlesOpt, fail, print_warning
from babelir.cli.evaluate.common import FamilyRun, family_app, family_command

app = family_app()


@family_command(app, "lareqa")
def evaluate_lareqa(
    run: FamilyRun,
    articles: ArticlesOpt = "all",
    candidates: Annotated[
        str,
        typer.Option(help="Candidate text: 'sentence' or 'sentence+context' (with paragraph)."),
    ] = "sentence",
    save_embeddings: Annotated[
        bool,
        typer.Option(help="Also write questions/candidates .npy + .jsonl to --output."),
    ] = False,
    from_embeddings: Annotated[
        Path | None,
        typer.Option(help="Skip encoding: score embeddings saved by --save-embeddings."),
    ] = None,
    debias: Annotated[
        str | None,
        typer.Option(help="Evaluation-time debiasing: center, lir or lsar (with --debias-fit)."),
    ] = None,
    debias_fit: Annotated[
        Path | None,
        typer.Option(help="Fit written by `babelir debias` (transform or LSAR model folder)."),
    ] = None,
    allow_fit_mismatch: Annotated[
        bool,
        typer.Option(help="Apply --debias-fit even if it was fitted with another model (warns)."),
    ] = False,
) -> None:
    """Score an encoder on a LAReQA-format benchmark (xquad-r, mlqa-r or a folder).

    Mono, cross and multi mAP, recall and language bias.
    """
    from babelir.core.settings import data_dir as resolve_data_dir
    from babelir.data.lareqa import load_benchmark
    from babelir.evaluation.lareqa import EvaluationResult, evaluate_model, write_result

    output = run.output
    if output is not None and output.exists() and not output.is_dir():
        fail(f"--output {output} exists and is not a folder")
    if (
        output is not None
        and from_embeddings is not None
        and not save_embeddings
        and output.resolve() == from_embeddings.resolve()
    ):
        # its metrics.json is what the embeddings are checked against; a new one without
        # them would orphan (and so remove) the embeddings being read
        fail(
            f"--output {output} is the --from-embeddings folder: without --save-embeddings "
            f"the embeddings there would be removed; choose another --output"
        )
    with warnings.catch_warnings(record=True) as caught:  # data warnings: one line each
        warnings.simplefilter("always")
        bench = load_benchmark(
            run.benchmark,
            resolve_data_dir(run.data_dir),
            languages=run.languages,
            articles=articles,
            candidate_mode=candidates,
        )
    for w in caught:
        print_warning(w.message)
    transform = _load_debias(debias, debias_fit, bench)
    if from_embeddings is not None:
        result = _score_saved(bench, from_embeddings)
    else:
        st, opts, info = run.encoder()
        if transform is not None or save_embeddings:  # what fits and saved embeddings match
            from babelir.debias import check_fit_model, source_fingerprint

            info["model_source_fingerprint"] = source_fingerprint(run.model)
            if transform is not None:  # before encoding: a fit of another model is refused
                check_fit_model(
                    transform, info, fit_path=debias_fit, allow_mismatch=allow_fit_mismatch
                )
        result = evaluate_model(st, bench, options=opts, info=info)
    assert isinstance(result, EvaluationResult)
    if transform is not None:
        result = _apply_debias(result, transform, debias_fit, allow_fit_mismatch)
    run.finish(
        result.metrics_json(), lambda f: write_result(result, f, save_embeddings=save_embeddings)
    )


def _score_saved(bench, folder: Path):
    """Score embeddings saved by --save-embeddings: validated, then aligned by key."""
    from babelir.debias import embeddings_provenance
    from babelir.evaluation.lareqa import score_saved

    result = score_saved(bench, folder)
    # The model that computed them (its metrics.json), so a debias fit can be checked
    # against it and a metrics.json written from them keeps naming it.
    result.info.update(embeddings_provenance(folder), embeddings_source=str(folder))
    return result


def _load_debias(method: str | None, fit: Path | None, bench):
    """The fitted transform of --debias-fit, refused if it was fitted on evaluation texts."""
    if method is None and fit is None:
        return None
    from babelir.core.errors import ConfigError
    from babelir.debias import METHODS, check_benchmark, load_transform

    if fit is None:
        raise ConfigError(f"--debias {method}: give the fit with --debias-fit (babelir debias)")
    if method is not None and method not in METHODS:
        raise ConfigError(f"--debias: unknown '{method}' (valid: {', '.join(METHODS)})")
    transform = load_transform(fit)
    if method is not None and method != transform.method:
        raise ConfigError(f"--debias {method}: {fit} holds a {transform.method} fit")
    check_benchmark(transform, bench, f"{fit} vs articles {bench.articles} of {bench.name}")
    return transform


def _apply_debias(result, transform, fit: Path, allow_mismatch: bool = False):
    """Re-score the benchmark on debiased embeddings; record the transform in metrics.json.
    A fit of another model is refused unless ``allow_mismatch`` (then warned)."""
    from babelir.debias import debias_result

    result = debias_result(result, transform, fit_path=fit, allow_mismatch=allow_mismatch)
    for warning in result.info["debias"].get("warnings", []):
        print_warning(warning)
    return result

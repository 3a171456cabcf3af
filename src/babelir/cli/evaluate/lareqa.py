"""``babelir evaluate --benchmark xquad-r|mlqa-r|FOLDER``: the LAReQA family.

Mono, cross and multi mAP, recall and language bias of an encoder on a LAReQA-format
benchmark; optionally scored from saved embeddings or after post-hoc debiasing.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from babelir.cli.app import (
    ENCODE_OPTIONS,
    ArticlesOpt,
    DataDirOpt,
    LanguagesOpt,
    ModelOpt,
    NoCacheOpt,
    QuietOpt,
    console,
    encode_options,
    fail,
    model_name,
    out,
    print_warning,
)
from babelir.cli.schema import schema_command
from babelir.encoding.options import EncodeOptions

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@schema_command(app, EncodeOptions, ENCODE_OPTIONS, name="evaluate")
def evaluate_lareqa(
    values: dict[str, Any],
    model: ModelOpt = None,
    benchmark: Annotated[
        str,
        typer.Option("--benchmark", "-b", help="xquad-r, mlqa-r or a LAReQA-format folder."),
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
    no_cache: NoCacheOpt = False,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: auto).")
    ] = None,
    quiet: QuietOpt = False,
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
    from babelir.reporting.tables import metrics_table

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
    # One options object for everything encoded (checked here, before any work).
    options = encode_options(values, quiet=quiet, cache=not no_cache)
    with warnings.catch_warnings(record=True) as caught:  # data warnings: one line each
        warnings.simplefilter("always")
        bench = load_benchmark(
            benchmark,
            resolve_data_dir(data_dir),
            languages=languages,
            articles=articles,
            candidate_mode=candidates,
        )
    for w in caught:
        print_warning(w.message)
    transform = _load_debias(debias, debias_fit, bench)
    if from_embeddings is not None:
        result = _score_saved(bench, from_embeddings)
    else:
        from babelir.encoding.encoder import load_encoder
        from babelir.models.loading import model_fingerprint

        st, opts = load_encoder(model, options, device=device)
        info = {
            "model": model_name(model),
            "model_fingerprint": model_fingerprint(st),
            "max_seq_length": opts.max_seq_length,
            "device": str(st.device),
        }
        if transform is not None or save_embeddings:  # what fits and saved embeddings match
            from babelir.debias import check_fit_model, source_fingerprint

            info["model_source_fingerprint"] = source_fingerprint(model)
            if transform is not None:  # before encoding: a fit of another model is refused
                check_fit_model(
                    transform, info, fit_path=debias_fit, allow_mismatch=allow_fit_mismatch
                )
        result = evaluate_model(st, bench, options=opts, info=info)
    assert isinstance(result, EvaluationResult)
    if transform is not None:
        result = _apply_debias(result, transform, debias_fit, allow_fit_mismatch)
    out.print(metrics_table(result.metrics_json()))
    if output is not None:
        write_result(result, output, save_embeddings=save_embeddings)
        console.print(f"wrote {output / 'metrics.json'}", markup=False)


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

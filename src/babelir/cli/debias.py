"""`babelir debias`: fit post-hoc language debiasing (center, LIR, LSAR) on training-side text.

LSAR writes a plain sentence-transformers model folder (the model plus a projection and
re-normalisation); center and LIR need each text's language, so they write a transform
folder that ``babelir evaluate --debias-fit`` applies at evaluation time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from babelir.cli.app import (
    ENCODE_OPTIONS,
    DataDirOpt,
    ModelOpt,
    NoCacheOpt,
    QuietOpt,
    app,
    console,
    encode_options,
    model_name,
)
from babelir.cli.schema import schema_command
from babelir.encoding.options import EncodeOptions

FIT_DATA_HELP = (
    "Unlabeled fit text: a LAReQA benchmark name or folder (questions and candidate "
    "sentences of --articles), a JSONL file of {lang, text[, role]} lines, or a trained "
    "babelir model folder (its training data, articles and languages)."
)


@schema_command(app, EncodeOptions, ENCODE_OPTIONS)
def debias(
    values: dict[str, Any],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="lsar: model folder to write; center/lir: transform folder."
        ),
    ],
    fit_data: Annotated[str, typer.Option("--fit-data", help=FIT_DATA_HELP)],
    model: ModelOpt = None,
    method: Annotated[
        str,
        typer.Option("--method", help="center, lir (Yang et al. 2021) or lsar (Xie et al. 2022)."),
    ] = "lsar",
    rank: Annotated[
        int | None,
        typer.Option(
            help="lir: components per language (default 1); lsar: subspace rank "
            "(default: number of languages)."
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    articles: Annotated[
        str,
        typer.Option(
            "--articles",
            help="LAReQA fit data: articles to fit on ('%4!=0', '0-11', 'all'); keep them "
            "disjoint from the evaluation articles.",
        ),
    ] = "all",
    eval_articles: Annotated[
        str | None,
        typer.Option(help="Held-out articles; fitting fails if their texts overlap the fit texts."),
    ] = None,
    languages: Annotated[
        str | None,
        typer.Option("--languages", "-l", help="Comma-separated languages (default: all)."),
    ] = None,
    max_per_language: Annotated[
        int | None, typer.Option(help="Fit on at most this many texts per language (sampled).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda ... (default: auto).")] = None,
    no_cache: NoCacheOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fit language debiasing on unlabeled training-side text and save it.

    Refuses to fit on texts of --eval-articles (question ids and exact texts), and the
    saved fit remembers its split so `babelir evaluate --debias-fit` refuses overlapping
    evaluation articles too.
    """
    from babelir.core.errors import ConfigError
    from babelir.debias import (
        METHODS,
        collect_fit_texts,
        export_lsar_model,
        fit_model,
        save_transform,
        source_fingerprint,
    )
    from babelir.encoding.encoder import load_encoder

    if method not in METHODS:
        raise ConfigError(f"--method: unknown '{method}' (valid: {', '.join(METHODS)})")
    if rank is not None and method == "center":
        raise ConfigError("--rank: centering has no rank (use it with lir or lsar)")
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} exists and is not a folder")
    options = encode_options(values, quiet=quiet, cache=not no_cache)
    fit = collect_fit_texts(
        fit_data,
        data_dir,
        articles=articles,
        languages=languages,
        max_per_language=max_per_language,
    )
    if eval_articles is None:  # a run's own held-out split, when it recorded one
        eval_articles = fit.info.get("run_eval_articles")
    if eval_articles is not None:
        _check_held_out(fit, eval_articles, data_dir)
    if options.precision == "int8":  # the fit may become a model folder: fit on torch
        raise ConfigError("--precision int8: fit in auto, fp32 or bf16 (int8 is for evaluation)")
    st, opts = load_encoder(model, options, device=device)
    name = model_name(model)
    transform = fit_model(
        st,
        fit,
        method,
        rank,
        options=opts,
        extra_info={
            "model": name,
            "model_source_fingerprint": source_fingerprint(model),
            "eval_articles": eval_articles,
            "max_seq_length": opts.max_seq_length,
        },
    )
    n = sum(transform.n_texts.values())
    what = (
        f"{method} on {n} texts in {len(transform.languages)} languages "
        f"({', '.join(transform.languages)})"
    )
    if method == "lsar":
        export_lsar_model(st, transform, output, model_name=name)
        console.print(
            f"fitted {what}, rank {transform.rank} (effective {transform.effective_rank}); "
            f"model written to {output} (load with SentenceTransformer('{output}'))",
            markup=False,
        )
    else:
        save_transform(transform, output)
        console.print(
            f"fitted {what}; transform written to {output} "
            f"(apply with babelir evaluate --debias {method} --debias-fit {output})",
            markup=False,
        )


def _check_held_out(fit, eval_articles: str, data_dir: Path | None) -> None:
    """Refuse fit texts that overlap the held-out articles of the same benchmark."""
    from babelir.core.errors import ConfigError
    from babelir.core.settings import data_dir as resolve_data_dir
    from babelir.data.lareqa import check_disjoint, load_benchmark

    folder = fit.info.get("benchmark_path")
    if not folder:
        raise ConfigError(
            "--eval-articles: the fit data is not a LAReQA benchmark, so there are no "
            "articles to hold out (the evaluation still checks exact-text overlap)"
        )
    held = load_benchmark(
        folder, resolve_data_dir(data_dir), languages=fit.languages, articles=eval_articles
    )
    what = f"articles {fit.info.get('articles')} vs {eval_articles}"
    try:
        check_disjoint(fit.question_ids, held.question_ids, what)
    except ConfigError as e:
        raise ConfigError(f"debias fit refused: {e}") from None
    fit_texts = set(t.strip() for t in fit.all_texts())
    shared = [t for t in (*held.question_texts, *held.candidate_texts()) if t.strip() in fit_texts]
    if shared:
        raise ConfigError(
            f"fit/eval overlap in {what}: {len(shared)} evaluation texts are also fit texts "
            f"(e.g. {shared[0][:60]!r}); choose disjoint --articles"
        )

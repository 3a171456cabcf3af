"""`babelir data fetch|verify`: download and check datasets."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from babelir.cli.app import DataDirOpt, console, data_app, out, print_warning


@data_app.command("fetch")
def data_fetch(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Dataset: xquad-r, mlqa-r, xquad, miracl, miracl-corpus, xor-retrieve, "
            "xor-retrieve-corpus (13 GB), dpr-wiki-corpus, squad-train-LANG, arcd, ... "
            "(or --profile instead)"
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="Instead of NAME: every dataset this compare profile reads (training "
            "sources and benchmarks), each verified and fetched only if it does not verify; "
            "'default' is the profile `babelir compare` runs without --profile.",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="Like --profile, for a compare YAML file."),
    ] = None,
    data_dir: DataDirOpt = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            help="Base URL (or folder) laid out like the data dir, instead of GitHub; for "
            "miracl-corpus laid out like the hub "
            "(<mirror>/miracl-corpus-v1.0-<lang>/docs-N.jsonl.gz)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Download even files that verify.")] = False,
    languages: Annotated[
        str | None,
        typer.Option(help="miracl-corpus only: comma-separated languages (e.g. sw,yo), or all."),
    ] = None,
) -> None:
    """Download a dataset from its public source at a pinned commit and check its SHA256.

    ``miracl-corpus`` (the MIRACL passages, from the Hugging Face hub) goes into
    <data-dir>/miracl/corpus/<lang>/, resumably; its shards have no pinned hashes, so their
    SHA256 is recorded in <lang>/SHA256SUMS.local.
    """
    from babelir.core.errors import ConfigError
    from babelir.core.settings import data_dir as resolve_data_dir
    from babelir.data.fetch import fetch, fetch_miracl_corpus

    target = resolve_data_dir(data_dir)
    if (name is None) == (profile is None and config is None) or (profile and config):
        raise ConfigError("give a dataset NAME, or --profile, or --config (one of them)")
    if name is None:
        _fetch_for_compare(profile, config, target, mirror, force, languages)
        return
    if name == "miracl-corpus":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paths = fetch_miracl_corpus(languages, target, mirror=mirror, force=force)
        for w in caught:
            print_warning(w.message)
        where = target / "miracl" / "corpus"
        console.print(escape(f"{name}: {len(paths)} shards in {where}"), highlight=False)
        return
    if languages is not None:
        raise ConfigError(f"--languages is for miracl-corpus only, not {name}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = fetch(name, target, mirror=mirror, force=force)
    for w in caught:
        print_warning(w.message)
    console.print(escape(f"{name}: {len(paths)} files verified in {target}"), highlight=False)


def _fetch_for_compare(
    profile: str | None,
    config: str | None,
    target: Path,
    mirror: str | None,
    force: bool,
    languages: str | None,
) -> None:
    """``data fetch --profile``: the datasets a comparison reads, verified or fetched."""
    from babelir.compare.config import DEFAULT_PROFILE, load_config
    from babelir.compare.data_needs import fetch_needed
    from babelir.core.errors import ConfigError

    if languages is not None:
        raise ConfigError("--languages is for miracl-corpus only, not --profile")
    name = DEFAULT_PROFILE if profile == "default" else profile
    cfg, _ = load_config(name, config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = fetch_needed(cfg, target, mirror=mirror, force=force)
    for w in caught:
        print_warning(w.message)
    for need, status in done:
        console.print(escape(f"{need.dataset}: {status} ({need.why})"), highlight=False)
    console.print(
        escape(f"profile {cfg.name}: {len(done)} datasets ready in {target}"), highlight=False
    )


@data_app.command("verify")
def data_verify(
    name: Annotated[str | None, typer.Argument(help="Dataset (default: all present).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check the SHA256 of local dataset files against the pinned values."""
    from babelir.core.settings import data_dir as resolve_data_dir
    from babelir.data.fetch import verify

    report = verify(name, resolve_data_dir(data_dir))
    for f in report.missing + report.mismatched:
        part = f.path.with_name(f.path.name + ".part")
        note = ""
        if f.dataset == "miracl-corpus" and f.status == "missing" and part.is_file():
            note = (
                f" (an interrupted download left {part.name}: `babelir data fetch "
                f"miracl-corpus --languages {f.path.parent.name}` continues it)"
            )
        console.print(escape(f"{f.status}: {f.path}{note}"), highlight=False)
    out.print(escape(report.summary()), highlight=False)
    if not report.ok:
        raise typer.Exit(1)

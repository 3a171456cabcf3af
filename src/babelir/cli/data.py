"""`babelir data fetch|verify`: download and check datasets."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.markup import escape

from babelir.cli.app import DataDirOpt, console, data_app, out, print_warning


@data_app.command("fetch")
def data_fetch(
    name: Annotated[
        str,
        typer.Argument(
            help="Dataset: xquad-r, mlqa-r, xquad, miracl, miracl-corpus, xor-retrieve, "
            "xor-retrieve-corpus (13 GB), dpr-wiki-corpus, squad-train-LANG, arcd, ..."
        ),
    ],
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
    from babelir.data.fetch import fetch, fetch_miracl_corpus
    from babelir.errors import ConfigError
    from babelir.settings import data_dir as resolve_data_dir

    target = resolve_data_dir(data_dir)
    if name == "miracl-corpus":
        paths = fetch_miracl_corpus(languages, target, mirror=mirror, force=force)
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


@data_app.command("verify")
def data_verify(
    name: Annotated[str | None, typer.Argument(help="Dataset (default: all present).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check the SHA256 of local dataset files against the pinned values."""
    from babelir.data.fetch import verify
    from babelir.settings import data_dir as resolve_data_dir

    report = verify(name, resolve_data_dir(data_dir))
    for f in report.missing + report.mismatched:
        console.print(escape(f"{f.status}: {f.path}"), highlight=False)
    out.print(escape(report.summary()), highlight=False)
    if not report.ok:
        raise typer.Exit(1)

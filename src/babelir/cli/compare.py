"""`babelir compare`: reproduce the paper's comparison with one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from babelir.cli.app import DataDirOpt, app, console
from babelir.cli.app import out as out_console


@app.command()
def compare(
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="Shipped settings. Zero-shot (training data disjoint from the benchmark, "
            "the paper's setting): zero-shot-quick (the default and `make demo`: 1 seed, a "
            "fixed quarter of XQuAD-R, minutes on 2 CPU cores), zero-shot (1 seed, full "
            "XQuAD-R), zero-shot-study (3 seeds, full XQuAD-R, claims decided over seeds; "
            "resumable), zero-shot-beyond (3 seeds, full XQuAD-R: hybrid vs hybrid merged "
            "with its base model, with parallel questions, both; alpha ablation). In-domain "
            "(other articles of XQuAD-R itself): in-domain-quick "
            "(formerly quick), in-domain-study (formerly study), precision-study (fp32- vs "
            "bf16-trained hybrid, 3 seeds), smoke (CI: checks the pipeline). GPU-sized: "
            "paper (all strategies, 3 seeds, batch 100), paper-lite (a first GPU check).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML file with the same schema as the profiles."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for runs, evaluations and the report (default: runs/compare-<profile>).",
        ),
    ] = None,
    benchmark: Annotated[
        list[Path] | None,
        typer.Option(
            "--benchmark",
            "-b",
            help="Also evaluate on this LAReQA-format folder (e.g. MLQA-R); repeatable.",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Base model (overrides the config).")
    ] = None,
    data_dir: DataDirOpt = None,
    force: Annotated[bool, typer.Option(help="Recompute cached runs and evaluations.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Validate the config and data, print the planned jobs (strategy, seed, "
            "steps, pair counts) and exit without training.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the overall bar.")] = False,
) -> None:
    """Train one model per batch strategy and compare them with the base model.

    Writes report.md (tables like the paper's, paired tests, verdict), results.json,
    results.csv and plots/. Re-running reuses finished work; --force recomputes.
    """
    from tqdm.auto import tqdm

    from babelir.compare import BenchmarkSpec, describe, load_config, prepare, run_compare

    cfg, raw = load_config(profile, config)
    if model is not None:
        cfg.model = model
    if data_dir is not None:
        cfg.data_dir = str(data_dir)
    for path in benchmark or []:
        cfg.benchmarks.append(BenchmarkSpec(path=str(path)))
    out = output or Path("runs") / f"compare-{cfg.name}"
    if dry_run:
        plan, facts = prepare(cfg, out)
        for line in describe(plan, facts):
            out_console.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    bar = tqdm(total=None, desc="babelir compare", position=0, leave=True, unit="job")

    def on_phase(what: str, done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix_str(what[:60])
        tqdm.write(f"[{done}/{total}] {what}")

    try:
        report = run_compare(
            cfg, out, force=force, show_progress=not quiet, on_phase=on_phase, raw_config=raw
        )
    finally:
        bar.close()
    console.print(
        f"\nreport: {report}\nall numbers: {out / 'results.json'} and "
        f"{out / 'results.csv'}; plots in {out / 'plots'}",
        markup=False,
    )
    verdict = (report.parent / "results.json").read_text("utf-8")
    import json

    for line in json.loads(verdict)["verdict"]:
        console.print(line.replace("**", ""), highlight=False, markup=False)

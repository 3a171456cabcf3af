"""Run a compare plan: train, evaluate, debias, then hand typed records to the report."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from babelir import __version__
from babelir.batches.strategies import StrategySpec
from babelir.compare.config import CompareConfig
from babelir.compare.plan import (
    EvalJob,
    MergeJob,
    Plan,
    TrainJob,
    data_dir,
    load_spec,
    make_plan,
    validate,
)
from babelir.evaluation.records import is_evaluated, load_evaluation, save_evaluation

if TYPE_CHECKING:
    from babelir.reporting.schema import RunCurve, RunInfo

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)
#: The per-query arrays the report's paired tests read from a cached evaluation.
PER_QUERY_KEYS = ("pair_ap", "multi_ap", "rank_distance", "question_blocks")


def _discard(folder: Path, what: str, reason: str, keep: tuple[str, ...] = ()) -> None:
    """Warn and remove a cached result that cannot be reused (``keep``: entries spared)."""
    log.warning("warning: %s in %s is incomplete or corrupt (%s); recomputing it", what,
                folder, reason)  # fmt: skip
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for item in folder.iterdir():
        if item.name in keep:
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def cached_evaluation(job: EvalJob, *, needs_embeddings: bool = False) -> bool:
    """Whether ``job``'s folder holds a complete evaluation to reuse.

    metrics.json must parse, per_query.npz hold the arrays of one row per question and,
    where a debias job re-scores them (``needs_embeddings``), the saved embeddings must
    load. A folder failing any check (truncated, deleted or edited files) is removed with
    a warning, so the evaluation is recomputed instead of crashing the report.
    """
    from babelir.evaluation.lareqa import load_saved_embeddings

    if not is_evaluated(job.folder):
        return False
    if job.benchmark.is_retrieval:
        from babelir.compare.retrieval import check_cached

        try:
            check_cached(job.folder, job.benchmark.kind)
        except Exception as e:  # any unreadable cache is recomputed, not fatal
            _discard(job.folder, "the cached evaluation", _first_line(e))
            return False
        return True
    try:
        stored = load_evaluation(job.folder)
        if not isinstance(stored.metrics, dict):
            raise ValueError("metrics.json is not a JSON object")
        missing = [k for k in PER_QUERY_KEYS if k not in stored.per_query]
        if missing:
            raise ValueError(f"per_query.npz lacks {', '.join(missing)}")
        rows = {len(stored.per_query[k]) for k in PER_QUERY_KEYS}
        if len(rows) != 1:
            raise ValueError(f"per_query.npz arrays disagree in length ({sorted(rows)})")
        if needs_embeddings:
            load_saved_embeddings(job.folder)
    except Exception as e:  # any unreadable cache is recomputed, not fatal
        _discard(job.folder, "the cached evaluation", _first_line(e))
        return False
    return True


def cached_run(job: TrainJob) -> bool:
    """Whether ``job``'s folder holds a complete trained model to reuse.

    Beyond the marker (babelir-train.json, written last): it must parse, and the model's
    modules.json, config.json and weights must be there and whole (a safetensors file's
    header must cover the file). An incomplete run loses its model files, keeps its
    checkpoints (the re-run resumes from them) and is trained again, with a warning.
    """
    from babelir.training.save import MARKER
    from babelir.training.trainer import is_trained

    if not is_trained(job.folder):
        return False
    try:
        doc = json.loads((job.folder / MARKER).read_text("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"{MARKER} is not a JSON object")
        _check_model_folder(job.folder)
    except Exception as e:  # an unreadable run is retrained, not fatal
        _discard(job.folder, "the trained model", _first_line(e), keep=("checkpoints",))
        return False
    return True


def cached_merge(job: MergeJob) -> bool:
    """Whether ``job``'s folder holds a whole merged model (a broken one is redone)."""
    from babelir.models.merge import MERGE_RECORD

    if not (job.folder / MERGE_RECORD).is_file():
        return False
    try:
        _check_model_folder(job.folder)
    except Exception as e:  # an unreadable merge is redone, not fatal
        _discard(job.folder, "the merged model", _first_line(e))
        return False
    return True


def _merge(
    job: MergeJob, cfg: CompareConfig, validation: dict[str, Any], plan_merges: list[MergeJob]
) -> None:
    """Write one merged model: a fixed lambda, or the grid's best on the run's validation
    items (its training-side held-out articles; ``validation`` caches the sets by data)."""
    from babelir.models.loading import default_device, resolve_prefixes
    from babelir.models.merge import merge_models, merge_selected

    device = default_device()
    if job.weight is not None:
        merge_models(cfg.model, job.source.folder, job.weight, job.folder, device=device)
        return
    from babelir.compare.plan import resolved_precisions, training_data_key
    from babelir.core.errors import ConfigError
    from babelir.training.data import build_training_data
    from babelir.training.validation import ValidationSet

    tcfg = job.source.train_config
    ident = training_data_key(tcfg)
    if ident not in validation:
        td = build_training_data(tcfg)
        if td.val is None:
            raise ConfigError(
                f"merge: weights auto picks lambda on validation items, but {job.source.label} "
                "has none (set train.val_articles)"
            )
        validation[ident] = ValidationSet.from_data(
            td.val, tcfg.batch_size, max_items=tcfg.val_items
        )
    vset = validation[ident]
    precision = resolved_precisions(cfg, tcfg)[1]
    prefixes: dict[str, str] = {}

    def score(model: Any) -> dict[str, Any]:
        if not prefixes:
            prefixes["q"], prefixes["p"] = resolve_prefixes(cfg.model, model)
        return vset.measure(
            model, query_prefix=prefixes["q"], passage_prefix=prefixes["p"], scale=tcfg.scale,
            batch_size=cfg.encode_options().batch_size, precision=precision,
        )  # fmt: skip

    merge_selected(
        cfg.model, job.source.folder, job.grid, score, job.folder, tolerance=job.tolerance,
        curve=_scored_curve(job, plan_merges), device=device,
    )


def _scored_curve(job: MergeJob, others: list[MergeJob]) -> list[dict[str, Any]] | None:
    """The validation curve another finished auto merge of the same run and grid scored
    (the scores do not depend on how lambda is then picked), if there is one."""
    from babelir.models.merge import MERGE_RECORD

    for other in others:
        same = other.source.key == job.source.key and other.weight is None
        if other is job or not same or sorted(other.grid) != sorted(job.grid):
            continue
        if not (other.folder / MERGE_RECORD).is_file():
            continue
        doc = json.loads((other.folder / MERGE_RECORD).read_text("utf-8"))
        curve = (doc.get("selection") or {}).get("curve")
        if curve and [p["weight"] for p in curve] == sorted(set(job.grid)):
            return curve
    return None


def merge_records(plan: Plan) -> list[dict[str, Any]]:
    """What the report shows of each merged row: its seed, lambda and how it was chosen."""
    from babelir.models.merge import MERGE_RECORD

    out = []
    for job in plan.merge_jobs:
        doc = json.loads((job.folder / MERGE_RECORD).read_text("utf-8"))
        sel = doc.get("selection") or {}
        out.append(
            {"label": job.label, "row": job.source.label, "seed": job.seed,
             "weight": doc.get("weight"), "criterion": sel.get("criterion"),
             "tolerance": sel.get("tolerance"), "curve": sel.get("curve") or []}
        )  # fmt: skip
    return out


def _check_model_folder(folder: Path) -> None:
    """Raise unless ``folder`` holds a whole sentence-transformers model: modules.json
    naming existing module folders, and weights whose safetensors headers cover their
    files (a truncated file fails here, not when the evaluation loads it)."""
    from safetensors import safe_open

    modules = json.loads((folder / "modules.json").read_text("utf-8"))
    for m in modules:
        sub = folder / m.get("path", "")
        if not sub.is_dir():
            raise ValueError(f"module folder {sub.name} is missing")
    weights = [
        p for p in folder.rglob("*")
        if p.suffix in (".safetensors", ".bin")
        and not any(x == "checkpoints" or x.startswith(".") for x in p.relative_to(folder).parts)
    ]  # fmt: skip
    if not weights:
        raise ValueError("no model weights (model.safetensors)")
    for p in weights:
        if p.suffix == ".safetensors":
            with safe_open(str(p), "np") as f:  # checks the header covers the file
                list(f.keys())


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _versions() -> dict[str, str]:
    import platform

    import sentence_transformers
    import torch
    import transformers

    return {
        "babelir": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "numpy": np.__version__,
    }


# The last model evaluated, for the debias fit run right after it (loading one costs
# ~3 s on 2 cores, most of it the tokenizer); one slot, so memory holds one extra model.
_LAST_MODEL: dict[tuple[str, Any, str], Any] = {}


def _model_key(name: Any, opts: Any) -> tuple[str, Any, str]:
    return (str(name), opts.max_seq_length, opts.precision)


def _evaluate(job: EvalJob, cfg: CompareConfig, show_progress: bool) -> None:
    """Evaluate one model on one benchmark; saves metrics, per-query arrays, embeddings."""
    from dataclasses import replace

    from babelir.encoding.cache import EmbeddingCache
    from babelir.encoding.encoder import load_encoder
    from babelir.evaluation.lareqa import evaluate_model
    from babelir.models.loading import resolve_prefixes

    name = job.model_path or cfg.model
    opts = cfg.encode_options(show_progress=show_progress, cache=EmbeddingCache())
    if job.benchmark.is_retrieval:
        from babelir.compare import retrieval

        info = {"model": job.label, "model_path": name, "seed": job.seed,
                "benchmark_label": job.benchmark.title()}  # fmt: skip
        if job.baseline == "bm25":
            retrieval.evaluate_bm25(job.benchmark, data_dir(cfg), job.folder, info)
        else:
            retrieval.evaluate(job.benchmark, data_dir(cfg), name, cfg.model, opts, job.folder,
                               info)  # fmt: skip
        return
    bench = load_spec(job.benchmark, data_dir(cfg))
    key = _model_key(name, opts)
    model, opts = load_encoder(name, opts)  # int8: the cached ONNX Runtime build
    _LAST_MODEL.clear()
    _LAST_MODEL[key] = model
    qp, pp = resolve_prefixes(cfg.model, model)  # a trained folder keeps its base's prefixes
    info = {"model": job.label, "model_path": name, "seed": job.seed}
    opts = replace(opts, query_prefix=qp, passage_prefix=pp)
    result = evaluate_model(model, bench, options=opts, info=info)
    result.info["benchmark_label"] = job.benchmark.title()
    save_evaluation(result, job.folder)


def _fit_debias(job: EvalJob, cfg: CompareConfig, show_progress: bool):
    """The job's transform, fitted once on the model's training-side texts and cached."""
    from dataclasses import replace

    from babelir.debias import collect_fit_texts, fit_model, load_transform, save_transform
    from babelir.encoding.cache import EmbeddingCache
    from babelir.encoding.encoder import for_precision
    from babelir.models.loading import load_model, resolve_prefixes

    assert job.fit_folder is not None and job.debias is not None
    if (job.fit_folder / "debias.json").is_file():
        try:
            return load_transform(job.fit_folder)
        except Exception as e:  # a corrupt cached fit is refitted
            _discard(job.fit_folder, "the cached debias fit", _first_line(e))
    tcfg = cfg.train_config(StrategySpec("x-x-mono"), cfg.seeds[0])
    if job.model_path:  # a trained model: its own training texts
        fit = collect_fit_texts(
            job.model_path, cfg.data_dir, max_per_language=cfg.debias_fit_per_language
        )
    else:  # the base model: the training side of the config, in its training languages
        from babelir.training.data import build_training_data

        fit = collect_fit_texts(
            tcfg.train_data,
            cfg.data_dir,
            articles=tcfg.articles,
            languages=build_training_data(tcfg).data.languages,
            max_per_language=cfg.debias_fit_per_language,
        )
    opts = cfg.encode_options()
    name = job.model_path or cfg.model
    model = _LAST_MODEL.get(_model_key(name, opts))  # the source evaluation's, if just run
    if model is None:
        model = load_model(name, max_seq_length=opts.max_seq_length)
        model = for_precision(model, name, opts.precision)  # as evaluated
    qp, pp = resolve_prefixes(cfg.model, model)
    opts = replace(
        opts, query_prefix=qp, passage_prefix=pp, show_progress=show_progress,
        cache=EmbeddingCache(),
    )
    transform = fit_model(model, fit, job.debias, options=opts)
    save_transform(transform, job.fit_folder)
    return transform


def _evaluate_debiased(job: EvalJob, cfg: CompareConfig, show_progress: bool) -> None:
    """Re-score the source evaluation's saved embeddings after the post-hoc transform.

    The transform refuses evaluation questions or texts it was fitted on (ids and exact
    texts), so a debiased row never has seen its test set.
    """
    from babelir.debias import debias_result
    from babelir.evaluation.lareqa import EvaluationResult, load_saved_embeddings

    assert job.source is not None
    transform = _fit_debias(job, cfg, show_progress)
    bench = load_spec(job.benchmark, data_dir(cfg))
    emb, _, _ = load_saved_embeddings(job.source.folder)
    info = dict(load_evaluation(job.source.folder).metrics)
    info = {k: info[k] for k in ("model_path", "seed", "encoder", "query_prefix",
                                 "passage_prefix", "model_fingerprint") if k in info}  # fmt: skip
    info.update(model=job.label, benchmark_label=job.benchmark.title())
    source = EvaluationResult(bench, None, emb, info)  # type: ignore[arg-type]
    result = debias_result(source, transform, fit_path=job.fit_folder)
    save_evaluation(result, job.folder, save_embeddings=False)


def _execution_order(jobs: list[EvalJob]) -> list[EvalJob]:
    """Each evaluation followed by the debias jobs that re-score it, so a fit can use the
    model its source just loaded (the plan's order, kept for the report, lists every
    plain evaluation first)."""
    out: list[EvalJob] = []
    for job in jobs:
        if job.source is None:
            out.append(job)
            out.extend(j for j in jobs if j.source is job)
    out.extend(j for j in jobs if j not in out)  # none expected: a source outside the plan
    return out


def _run_info(job: TrainJob, doc: dict[str, Any]) -> RunInfo:
    """A finished training job for the report, with what its babelir-train.json (``doc``)
    says of its precision, time and machine."""
    from babelir.reporting.schema import RunInfo as Run

    # a resumed run's record times only the process that finished it: no whole-run time
    seconds = None if doc.get("resumed_from") else (doc.get("timing_s") or {}).get("train")
    return Run(
        job.spec, job.seed, job.key, str(job.folder),
        train_precision=doc.get("train_precision"),
        train_seconds=float(seconds) if seconds is not None else None,
        machine=doc.get("machine"),
    )  # fmt: skip


def _curve(job: TrainJob, doc: dict[str, Any]) -> RunCurve:
    """The validation curve of a finished job, from its babelir-train.json (``doc``)."""
    from babelir.reporting.schema import RunCurve as Curve

    sel = doc.get("selection") or {}
    return Curve(
        job.label,
        job.seed,
        doc.get("curve") or [],
        sel.get("step") if sel.get("select") not in (None, "last") else None,
    )


def prepare(cfg: CompareConfig, output: Path) -> tuple[Plan, dict[str, Any]]:
    """Validate and plan (everything ``--dry-run`` shows), without training."""
    facts = validate(cfg)
    return make_plan(cfg, output), facts


def run_compare(
    cfg: CompareConfig,
    output: Path,
    *,
    force: bool = False,
    show_progress: bool = True,
    on_phase: Progress | None = None,
    raw_config: dict[str, Any] | None = None,
) -> Path:
    """Validate, train, merge, evaluate and report one comparison.

    Every job is cached under ``output`` by a key of what defines it, so a re-run (or a
    run after a crash) reuses finished work.

    Args:
        cfg: the comparison (:func:`babelir.compare.config.load_config`).
        output: the output folder.
        force: recompute every job of the plan.
        show_progress: show progress bars.
        on_phase: called as ``(what, done, total)`` after each job.
        raw_config: the config as read, recorded in results.json.

    Returns:
        The path of ``report.md`` (beside it: results.json, results.csv, plots/).

    References:
        Hybrid batch training: arXiv 2408.10536.

    Example:
        >>> import babelir
        >>> cfg, raw = babelir.load_config("zero-shot-quick")
        >>> babelir.run_compare(cfg, Path("runs/compare"), raw_config=raw)
    """
    from babelir.reporting.report import write_report
    from babelir.reporting.schema import EvalRecord, Provenance, ReportInput
    from babelir.training.trainer import train as run_train

    t_start = time.perf_counter()
    commit = _git_commit()  # the code that runs, not whatever HEAD is when it ends
    timings: dict[str, float] = {}
    t = time.perf_counter()
    plan, facts = prepare(cfg, output)
    timings["validate"] = round(time.perf_counter() - t, 2)
    for note in facts.get("notes") or []:  # e.g. a benchmark given twice, evaluated once
        log.warning("note: %s", note)
    output.mkdir(parents=True, exist_ok=True)
    if force:
        jobs = [*plan.train_jobs, *plan.merge_jobs, *plan.eval_jobs]
        for path in [j.folder for j in jobs]:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(output / "debias", ignore_errors=True)
        for ej in plan.eval_jobs:  # the base model's fits, shared in the user cache
            if ej.fit_folder is not None:
                shutil.rmtree(ej.fit_folder, ignore_errors=True)
    done = 0
    reused = {"train": 0, "eval": 0}
    step_log: list[dict[str, Any]] = []

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        if on_phase:
            on_phase(what, done, plan.total)

    if on_phase:  # the overall bar knows its length before the first (long) job
        merges = f" + {len(plan.merge_jobs)} merge" if plan.merge_jobs else ""
        on_phase(
            f"planned {len(plan.train_jobs)} training{merges} + {len(plan.eval_jobs)} eval jobs",
            0,
            plan.total,
        )
    t = time.perf_counter()
    for job in plan.train_jobs:
        t_job = time.perf_counter()
        if cached_run(job):
            reused["train"] += 1
            status = "reused"
        else:
            job.train_config.resume = (job.folder / "checkpoints").is_dir()
            run_train(job.train_config, show_progress=show_progress)
            status = "trained"
        seconds = round(time.perf_counter() - t_job, 2)
        step_log.append(
            {"phase": "train", "label": job.label, "seed": job.seed, "status": status,
             "seconds": seconds}
        )  # fmt: skip
        tick(f"train {job.label} (seed {job.seed}): {status}")
    timings["train"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    validation_sets: dict[str, Any] = {}
    for mj in plan.merge_jobs:
        t_job = time.perf_counter()
        if cached_merge(mj):
            reused["merge"] = reused.get("merge", 0) + 1
            status = "reused"
        else:
            _merge(mj, cfg, validation_sets, plan.merge_jobs)
            status = "merged"
        step_log.append(
            {"phase": "merge", "label": mj.label, "seed": mj.seed, "status": status,
             "seconds": round(time.perf_counter() - t_job, 2)}
        )  # fmt: skip
        tick(f"merge {mj.label} (seed {mj.seed}): {status}")
    if plan.merge_jobs:
        timings["merge"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    rescored = {id(ej.source) for ej in plan.eval_jobs if ej.source is not None}
    for ej in _execution_order(plan.eval_jobs):
        t_job = time.perf_counter()
        if cached_evaluation(ej, needs_embeddings=id(ej) in rescored):
            reused["eval"] += 1
            status = "reused"
        elif ej.debias:
            _evaluate_debiased(ej, cfg, show_progress)
            status = "debiased"
        else:
            _evaluate(ej, cfg, show_progress)
            status = "evaluated"
        step_log.append(
            {"phase": "evaluate", "label": ej.label, "seed": ej.seed,
             "benchmark": ej.benchmark.title(), "status": status,
             "seconds": round(time.perf_counter() - t_job, 2)}
        )  # fmt: skip
        tick(f"evaluate {ej.label} on {ej.benchmark.title()}: {status}")
    _LAST_MODEL.clear()
    timings["evaluate"] = round(time.perf_counter() - t, 2)

    records, retrieval_records = [], []
    for ej in plan.eval_jobs:
        stored = load_evaluation(ej.folder)
        (retrieval_records if ej.benchmark.is_retrieval else records).append(
            EvalRecord(
                ej.label, ej.seed, ej.benchmark.title(), stored.metrics, stored.per_query,
                str(ej.folder),
            )
        )  # fmt: skip
    train_docs = [
        json.loads((j.folder / "babelir-train.json").read_text("utf-8")) for j in plan.train_jobs
    ]
    runs = [_run_info(j, doc) for j, doc in zip(plan.train_jobs, train_docs, strict=True)]
    labels = list(dict.fromkeys(["base", *[j.label for j in plan.train_jobs]]))
    labels += list(dict.fromkeys(j.label for j in plan.merge_jobs))
    labels += [f"{lab}+{m}" for m in cfg.debias for lab in labels]
    if any(ej.baseline == "bm25" for ej in plan.eval_jobs):
        labels.insert(0, "bm25")
    provenance = Provenance(
        versions=_versions(),
        git_commit=commit,
        timing_s=timings,
        reused=reused,
        config=cfg.model_dump(),
        raw_config=raw_config,
        facts=facts,
        steps=step_log,
        t_start=t_start,
    )
    inp = ReportInput(
        name=cfg.name,
        description=cfg.description,
        reference=cfg.reference,
        evaluations=records,
        retrieval=retrieval_records,
        runs=runs,
        provenance=provenance,
        setup=_setup(cfg),
        labels=labels,
        seeds=cfg.seeds,
        curves=[_curve(j, doc) for j, doc in zip(plan.train_jobs, train_docs, strict=True)],
        merges=merge_records(plan),
        permutations=cfg.permutations,
        bootstrap=cfg.bootstrap,
        margin=cfg.margin,
    )
    return write_report(inp, output)


def _setup(cfg: CompareConfig):
    from babelir.reporting.schema import TrainingSetup

    t = cfg.train_config(StrategySpec("x-x-mono"), cfg.seeds[0])
    return TrainingSetup(
        model=cfg.model,
        data=t.train_data,
        articles=t.articles,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        max_seq_length=t.max_seq_length,
        max_steps=t.max_steps,
        epochs=t.epochs,
        freeze_embeddings=t.freeze_embeddings,
        extra={"warmup": t.warmup_ratio, "validation": t.val_articles, "select": t.select},
    )

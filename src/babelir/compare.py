"""`babelir compare`: the paper's comparison on your model and data, with statistics.

Trains one model per batch strategy from the same base model (identical data, steps,
learning rate and seed), evaluates the base model and every trained model on every
configured benchmark, and writes one report (:mod:`babelir.reporting.report`).

Configuration is a YAML file validated by :class:`CompareConfig` (profiles ``smoke``,
``quick``, ``paper`` ship with the package). Work is cached in the output folder, keyed
by a hash of everything that affects it: re-running reuses finished training runs and
evaluations, continues an interrupted training run from its last checkpoint, and
``force`` recomputes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from babelir import __version__
from babelir.errors import BabelirError, ConfigError, DataError
from babelir.sampling import STRATEGIES

PROFILES = ("smoke", "quick", "paper")
CACHE_FORMAT = 1  # bump when cached training/evaluation outputs change meaning


# --------------------------------------------------------------------------- config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BenchmarkSpec(_Strict):
    """A LAReQA-format benchmark: a known ``name`` under the data dir, or a ``path``."""

    name: str | None = None
    path: str | None = None
    label: str | None = None
    languages: list[str] | None = None
    articles: str = "all"
    candidates: Literal["sentence", "sentence+context"] = "sentence"

    def title(self) -> str:
        return self.label or self.name or Path(str(self.path)).name


class TrainSpec(_Strict):
    data: str = "xquad-r"
    languages: list[str] | None = None
    articles: str = "all"
    passage: Literal["sentence", "paragraph"] = "sentence"
    batch_size: int = Field(32, ge=2)
    max_steps: int | None = Field(100, ge=1)
    epochs: float | None = Field(None, gt=0)
    learning_rate: float = Field(3e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_seq_length: int = Field(128, ge=8)
    loss: Literal["mnrl", "cached-mnrl"] = "mnrl"
    scale: float = Field(20.0, gt=0)
    symmetric: bool = False
    hard_negatives: bool = False
    mini_batch_size: int = Field(16, ge=1)
    freeze_embeddings: bool = False
    length_sorted: bool = True
    language_temperature: float | None = Field(None, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"


class EvalSpec(_Strict):
    max_seq_length: int = Field(128, ge=8)
    batch_size: int = Field(64, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"


class StrategySpec(_Strict):
    strategy: str
    alpha: float | None = Field(None, ge=0, le=1)

    @field_validator("strategy")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in STRATEGIES:
            raise ValueError(f"unknown strategy '{v}' (valid: {', '.join(STRATEGIES)})")
        return v


class CompareConfig(_Strict):
    """Everything ``babelir compare`` does; unknown keys are errors."""

    name: str = "custom"
    description: str = ""
    model: str | None = None
    data_dir: str | None = None
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    strategies: list[str | StrategySpec] = Field(
        default_factory=lambda: ["x-x-mono", "x-y", "hybrid"], min_length=1
    )
    alphas: list[float] = Field(default_factory=lambda: [0.5], min_length=1)
    reference: str = "hybrid"
    train: TrainSpec = Field(default_factory=TrainSpec)
    evaluation: EvalSpec = Field(default_factory=EvalSpec)
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=lambda: [BenchmarkSpec(name="xquad-r", articles="%4==0")], min_length=1
    )
    permutations: int = Field(10000, ge=100)
    bootstrap: int = Field(2000, ge=100)

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: list[str | StrategySpec]) -> list[str | StrategySpec]:
        for s in v:
            name = s if isinstance(s, str) else s.strategy
            if name not in STRATEGIES:
                raise ValueError(f"unknown strategy '{name}' (valid: {', '.join(STRATEGIES)})")
        return v

    @field_validator("alphas")
    @classmethod
    def _alphas(cls, v: list[float]) -> list[float]:
        for a in v:
            if not 0.0 <= a <= 1.0:
                raise ValueError(f"alpha {a} is outside [0, 1]")
        return v

    def variants(self) -> list[tuple[str, float | None]]:
        """(strategy, alpha) of every trained model, hybrid once per alpha."""
        out: list[tuple[str, float | None]] = []
        for s in self.strategies:
            if isinstance(s, StrategySpec):
                alpha = s.alpha if s.strategy == "hybrid" else None
                out.append((s.strategy, 0.5 if alpha is None and s.strategy == "hybrid" else alpha))
            elif s == "hybrid":
                out.extend(("hybrid", a) for a in self.alphas)
            else:
                out.append((s, None))
        seen: list[tuple[str, float | None]] = []
        for v in out:
            if v not in seen:
                seen.append(v)
        return seen


def variant_label(strategy: str, alpha: float | None, alphas_shown: bool) -> str:
    return f"hybrid (alpha={alpha:g})" if strategy == "hybrid" and alphas_shown else strategy


def _format_validation(e: ValidationError, source: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {loc}: {msg}" + (
        f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    )


def load_config(
    profile: str | None = None, config_file: str | Path | None = None
) -> tuple[CompareConfig, dict[str, Any]]:
    """A profile shipped with babelir or a user YAML file, validated."""
    if profile and config_file:
        raise ConfigError("give either --profile or --config, not both")
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        name = profile or "quick"
        if name not in PROFILES:
            raise ConfigError(f"unknown profile '{name}' (valid: {', '.join(PROFILES)})")
        text = resources.files("babelir.profiles").joinpath(f"{name}.yaml").read_text("utf-8")
        source = f"profile {name}"
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: invalid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        cfg = CompareConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source)) from None
    return cfg, raw


# --------------------------------------------------------------------------- plan


@dataclass
class TrainJob:
    label: str
    strategy: str
    alpha: float | None
    seed: int
    key: str
    folder: Path
    train_config: Any  # babelir.training.train.TrainConfig


@dataclass
class EvalJob:
    label: str
    seed: int | None
    benchmark: BenchmarkSpec
    key: str
    folder: Path
    model_path: str | None  # None: the base model
    train_key: str | None


@dataclass
class Plan:
    config: CompareConfig
    output: Path
    train_jobs: list[TrainJob] = field(default_factory=list)
    eval_jobs: list[EvalJob] = field(default_factory=list)


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _base_identity(model: str | None) -> str:
    """What identifies the base model in cache keys (weights hash for local folders)."""
    from babelir.models.loading import model_fingerprint
    from babelir.models.offline_e5 import build_offline_e5

    if model in (None, "default", "multilingual-e5-small"):
        return "offline-e5:" + model_fingerprint(build_offline_e5())
    if Path(model).expanduser().is_dir():
        return "folder:" + model_fingerprint(Path(model).expanduser())
    return "hub:" + str(model)


def _benchmark_dir(spec: BenchmarkSpec, data_dir: Path) -> Path:
    from babelir.data.lareqa import resolve_benchmark_dir

    if (spec.name is None) == (spec.path is None):
        raise ConfigError("benchmarks: each entry needs exactly one of 'name' and 'path'")
    if spec.path is not None and not Path(spec.path).expanduser().is_dir():
        raise ConfigError(f"benchmarks.path: {spec.path} is not a folder")
    return resolve_benchmark_dir(spec.name or spec.path, data_dir)[1]


def validate(cfg: CompareConfig) -> dict[str, Any]:
    """Everything that can fail before training: data, languages, splits, strategies.

    Loads the training data and every benchmark (cheap) and checks train/eval question
    ids are disjoint on shared benchmarks. Returns facts used by :func:`make_plan`.
    """
    from babelir.data.lareqa import check_disjoint, load_benchmark
    from babelir.settings import data_dir as resolve_data_dir
    from babelir.training.train import TrainConfig, build_training_data

    data_dir = resolve_data_dir(cfg.data_dir)
    if cfg.reference not in [s for s, _ in cfg.variants()]:
        raise ConfigError(f"reference: '{cfg.reference}' is not among the strategies")
    facts: dict[str, Any] = {"benchmarks": {}}
    probe = TrainConfig(**_train_kwargs(cfg, "x-x-mono", None, cfg.seeds[0], Path(".")))
    for strategy, alpha in cfg.variants():
        probe.strategy, probe.alpha = strategy, alpha if alpha is not None else 0.5
        probe.validate()
    data, table = build_training_data(probe)
    facts["train_items"] = len(data.items)
    facts["train_languages"] = data.languages
    _check_samplers(cfg, table)
    train_dir = None
    if not Path(cfg.train.data).is_file():
        from babelir.data.lareqa import resolve_benchmark_dir

        train_dir = resolve_benchmark_dir(cfg.train.data, data_dir)[1].resolve()
    for i, spec in enumerate(cfg.benchmarks):
        folder = _benchmark_dir(spec, data_dir)
        try:
            bench = load_benchmark(
                folder,
                data_dir,
                languages=spec.languages,
                articles=spec.articles,
                candidate_mode=spec.candidates,
            )
        except DataError as e:
            raise ConfigError(f"benchmarks[{i}]: {e}") from None
        if train_dir is not None and folder.resolve() == train_dir:
            check_disjoint(
                data.ids, bench.question_ids, f"train.articles vs benchmarks[{i}].articles"
            )
        facts["benchmarks"][spec.title()] = bench.summary()
    return facts


def _check_samplers(cfg: CompareConfig, table: dict[str, list[str]]) -> None:
    """Build each strategy's sampler once so data too small for a batch fails now."""
    from babelir.sampling import ParallelBatchSampler

    for strategy, alpha in cfg.variants():
        try:
            ParallelBatchSampler(
                table,
                batch_size=cfg.train.batch_size,
                strategy=strategy,
                alpha=alpha if alpha is not None else 0.5,
                num_replicas=1,
                language_temperature=cfg.train.language_temperature,
            )
        except BabelirError as e:
            raise ConfigError(f"train ({strategy} batches): {e}") from None


def _train_kwargs(
    cfg: CompareConfig, strategy: str, alpha: float | None, seed: int, folder: Path
) -> dict[str, Any]:
    kwargs = cfg.train.model_dump()  # TrainSpec's fields are TrainConfig's, but 'data'
    kwargs["train_data"] = kwargs.pop("data")
    if kwargs["epochs"] is not None:
        kwargs["max_steps"] = None
    kwargs.update(
        output=folder,
        model=cfg.model,
        strategy=strategy,
        alpha=alpha if alpha is not None else 0.5,
        data_dir=cfg.data_dir,
        seed=seed,
        save_steps=max(10, (cfg.train.max_steps or 100) // 4),
        logging_steps=5,
    )
    return kwargs


def make_plan(cfg: CompareConfig, output: Path) -> Plan:
    """Training and evaluation jobs with their cache keys and folders."""
    from babelir.training.train import TrainConfig

    plan = Plan(cfg, output)
    base_id = _base_identity(cfg.model)
    variants = cfg.variants()
    show_alpha = sum(s == "hybrid" for s, _ in variants) > 1
    data_dir = str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None
    for seed in cfg.seeds:
        for strategy, alpha in variants:
            kwargs = _train_kwargs(cfg, strategy, alpha, seed, Path("."))
            ident = {
                k: v
                for k, v in kwargs.items()
                if k not in ("output", "save_steps", "logging_steps", "model", "data_dir")
            }
            key = _hash(
                {"format": CACHE_FORMAT, "base": base_id, "train": ident, "data_dir": data_dir}
            )[:16]
            label = variant_label(strategy, alpha, show_alpha)
            slug = label.replace(" ", "").replace("(", "-").replace(")", "").replace("=", "")
            folder = output / "runs" / f"{slug}-s{seed}-{key[:8]}"
            kwargs["output"] = folder
            plan.train_jobs.append(
                TrainJob(label, strategy, alpha, seed, key, folder, TrainConfig(**kwargs))
            )
    ev = cfg.evaluation.model_dump()
    for spec in cfg.benchmarks:
        bspec = spec.model_dump()
        bspec["resolved"] = str(_benchmark_dir(spec, _data_dir(cfg)).resolve())
        key = _hash({"format": CACHE_FORMAT, "model": base_id, "bench": bspec, "eval": ev})[:16]
        plan.eval_jobs.append(
            EvalJob("base", None, spec, key, output / "evals" / f"base-{key[:8]}", None, None)
        )
        for job in plan.train_jobs:
            key = _hash({"format": CACHE_FORMAT, "model": job.key, "bench": bspec, "eval": ev})
            plan.eval_jobs.append(
                EvalJob(
                    job.label,
                    job.seed,
                    spec,
                    key[:16],
                    output / "evals" / f"{job.folder.name}-{key[:8]}",
                    str(job.folder),
                    job.key,
                )
            )
    return plan


def _data_dir(cfg: CompareConfig) -> Path:
    from babelir.settings import data_dir

    return data_dir(cfg.data_dir)


# --------------------------------------------------------------------------- run


EVAL_DONE = "metrics.json"


def _run_eval(job: EvalJob, cfg: CompareConfig, show_progress: bool) -> dict[str, Any]:
    """Evaluate one model on one benchmark; saves metrics.json and per-query arrays."""
    from babelir.data.lareqa import load_benchmark
    from babelir.embedding_cache import EmbeddingCache
    from babelir.evaluation.lareqa import evaluate_model, write_result
    from babelir.io import atomic_dir
    from babelir.models.loading import load_model, resolve_prefixes

    spec = job.benchmark
    bench = load_benchmark(
        _benchmark_dir(spec, _data_dir(cfg)),
        _data_dir(cfg),
        languages=spec.languages,
        articles=spec.articles,
        candidate_mode=spec.candidates,
    )
    name = job.model_path or cfg.model
    model = load_model(name, max_seq_length=cfg.evaluation.max_seq_length)
    qp, pp = resolve_prefixes(cfg.model, model)
    info = {
        "model": job.label,
        "model_path": name,
        "seed": job.seed,
        "max_seq_length": cfg.evaluation.max_seq_length,
    }
    result = evaluate_model(
        model,
        bench,
        query_prefix=qp,
        passage_prefix=pp,
        batch_size=cfg.evaluation.batch_size,
        show_progress=show_progress,
        info=info,
        precision=cfg.evaluation.precision,
        cache=EmbeddingCache(),  # the base model's embeddings are computed once across runs
    )
    result.info["benchmark_label"] = spec.title()
    m = result.metrics
    with atomic_dir(job.folder) as tmp:
        # metrics.json + embeddings (so any cell can be recomputed independently)
        write_result(result, tmp, save_embeddings=True)
        np.savez(
            tmp / "per_query.npz",
            pair_ap=m.pair_ap,
            multi_ap=m.multi_ap,
            rank_distance=m.rank_distance,
            question_blocks=m.question_blocks,
            multi_recall10=m.multi_recall10,
            question_ids=np.asarray(bench.question_ids, dtype=str),
        )
    return load_eval(job.folder)[0]


def load_eval(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    doc = json.loads((folder / EVAL_DONE).read_text("utf-8"))
    with np.load(folder / "per_query.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return doc, arrays


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode != 0:
            return None
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


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


Progress = Callable[[str, int, int], None]


def run_compare(
    cfg: CompareConfig,
    output: Path,
    *,
    force: bool = False,
    show_progress: bool = True,
    on_phase: Progress | None = None,
    raw_config: dict[str, Any] | None = None,
) -> Path:
    """Validate, train, evaluate and report. Returns the path of report.md."""
    from babelir.reporting.report import write_report
    from babelir.training.train import is_trained
    from babelir.training.train import train as run_train

    t_start = time.perf_counter()
    commit = _git_commit()  # the code that runs, not whatever HEAD is when it ends
    timings: dict[str, float] = {}
    t = time.perf_counter()
    facts = validate(cfg)
    plan = make_plan(cfg, output)
    timings["validate"] = round(time.perf_counter() - t, 2)
    output.mkdir(parents=True, exist_ok=True)
    if force:
        for job in plan.train_jobs:
            shutil.rmtree(job.folder, ignore_errors=True)
        for ej in plan.eval_jobs:
            shutil.rmtree(ej.folder, ignore_errors=True)
    total = len(plan.train_jobs) + len(plan.eval_jobs)
    done = 0
    reused = {"train": 0, "eval": 0}
    step_log: list[dict[str, Any]] = []

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        if on_phase:
            on_phase(what, done, total)

    if on_phase:  # the overall bar knows its length before the first (long) job
        on_phase(
            f"planned {len(plan.train_jobs)} training + {len(plan.eval_jobs)} eval jobs", 0, total
        )
    t = time.perf_counter()
    for job in plan.train_jobs:
        t_job = time.perf_counter()
        if is_trained(job.folder):
            reused["train"] += 1
            status = "reused"
        else:
            job.train_config.resume = (job.folder / "checkpoints").is_dir()
            run_train(job.train_config, show_progress=show_progress)
            status = "trained"
        step_log.append(
            {
                "phase": "train",
                "label": job.label,
                "seed": job.seed,
                "status": status,
                "seconds": round(time.perf_counter() - t_job, 2),
            }
        )
        tick(f"train {job.label} (seed {job.seed}): {status}")
    timings["train"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    for ej in plan.eval_jobs:
        t_job = time.perf_counter()
        if (ej.folder / EVAL_DONE).is_file():
            reused["eval"] += 1
            status = "reused"
        else:
            _run_eval(ej, cfg, show_progress)
            status = "evaluated"
        step_log.append(
            {
                "phase": "evaluate",
                "label": ej.label,
                "seed": ej.seed,
                "benchmark": ej.benchmark.title(),
                "status": status,
                "seconds": round(time.perf_counter() - t_job, 2),
            }
        )
        tick(f"evaluate {ej.label} on {ej.benchmark.title()}: {status}")
    timings["evaluate"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    evaluations = []
    for ej in plan.eval_jobs:
        doc, arrays = load_eval(ej.folder)
        evaluations.append(
            {
                "label": ej.label,
                "seed": ej.seed,
                "benchmark": ej.benchmark.title(),
                "folder": str(ej.folder),
                "metrics": doc,
                "per_query": arrays,
            }
        )
    meta = {
        "name": cfg.name,
        "config": cfg.model_dump(),
        "raw_config": raw_config,
        "facts": facts,
        "versions": _versions(),
        "git_commit": commit,
        "runs": [
            {
                "label": j.label,
                "strategy": j.strategy,
                "alpha": j.alpha,
                "seed": j.seed,
                "key": j.key,
                "folder": str(j.folder),
            }
            for j in plan.train_jobs
        ],
        "reused": reused,
        "steps": step_log,
        "timing_s": timings,
    }
    meta["t_start"] = t_start
    return write_report(cfg, evaluations, meta, output)

"""What ``babelir compare`` will do: validated inputs, jobs, cache keys and folders.

Every job's folder name carries a hash of everything that changes its result (base model
weights, the training identity, the SHA-256 of the training and benchmark files, encoding
options), so re-running reuses finished work and a changed setting or an edited file
never reuses a stale result. Keys hold file contents, not paths: switching the data dir
to other files retrains, the same files under another path are reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babelir.batches.strategies import StrategySpec
from babelir.compare.config import BenchmarkSpec, CompareConfig
from babelir.core.errors import BabelirError, ConfigError, DataError
from babelir.core.fingerprint import content_fingerprint
from babelir.training.config import TrainConfig

# bump when cached training/evaluation outputs or their keys change meaning
# (3: keys hash the training and benchmark files' content instead of their paths;
# 4: keys hold the precision as resolved on this machine, not as requested)
CACHE_FORMAT = 4
MAX_EPOCHS_WITHOUT_WARNING = 10


@dataclass
class TrainJob:
    """One training run; its label and folder slug come from ``spec``."""

    spec: StrategySpec
    seed: int
    key: str
    folder: Path
    train_config: TrainConfig
    precision: str  # the training precision as this machine resolves it (in the key)

    @property
    def label(self) -> str:
        return self.spec.label


@dataclass
class MergeJob:
    """A weight-space merge of one trained run with the base model (WiSE-FT): a fixed
    ``weight``, or None for the lambda picked on the run's validation items from ``grid``."""

    source: TrainJob
    weight: float | None
    grid: list[float]
    key: str
    folder: Path
    tolerance: float | None = None  # auto: the smallest lambda within this of the best

    @property
    def label(self) -> str:
        return merge_label(self.source.label, self.weight, self.tolerance)

    @property
    def seed(self) -> int:
        return self.source.seed


def merge_label(row: str, weight: float | None, tolerance: float | None = None) -> str:
    """The row of a merged model: ``hybrid+merge(auto)``, ``hybrid+merge(auto-tol0.01)``
    (lambda picked within a tolerance) or ``hybrid+merge(0.7)``."""
    if weight is not None:
        return f"{row}+merge({weight:g})"
    return f"{row}+merge(auto{'' if tolerance is None else f'-tol{tolerance:g}'})"


@dataclass
class EvalJob:
    """One evaluation; a ``debias`` job re-scores its ``source`` job's saved embeddings."""

    label: str
    seed: int | None
    benchmark: BenchmarkSpec
    key: str
    folder: Path
    model_path: str | None  # None: the base model
    train_key: str | None
    debias: str | None = None
    source: EvalJob | None = None
    fit_folder: Path | None = None
    baseline: str | None = None  # "bm25": a lexical row of a MIRACL entry, no model


@dataclass
class Plan:
    config: CompareConfig
    output: Path
    train_jobs: list[TrainJob] = field(default_factory=list)
    merge_jobs: list[MergeJob] = field(default_factory=list)
    eval_jobs: list[EvalJob] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.train_jobs) + len(self.merge_jobs) + len(self.eval_jobs)


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def base_identity(model: str | None) -> str:
    """What identifies the base model in cache keys (weights hash for local folders)."""
    from babelir.models.loading import model_fingerprint
    from babelir.models.offline_e5 import build_offline_e5

    if model in (None, "default", "multilingual-e5-small"):
        return "offline-e5:" + model_fingerprint(build_offline_e5())
    if local_model(model) is not None:
        return "folder:" + model_fingerprint(Path(model).expanduser())
    return "hub:" + str(model)


def local_model(model: str | None) -> Path | None:
    """The base model's folder; None for a hub id (``name`` or ``org/name`` that is no
    folder here, fetched when first loaded). A path-like value (``./m``, ``~/m``, ``a/b/c``,
    absolute) that is no folder is a one-line ConfigError: the dry run catches a typo."""
    from babelir.models.loading import _resolve_local

    if model in (None, "default", "multilingual-e5-small"):
        return None
    try:
        return _resolve_local(str(model))
    except BabelirError as e:
        raise ConfigError(f"model: {e}") from None


def training_inputs(tcfg: TrainConfig, root: Path) -> list[tuple[str, Path | None]]:
    """The files or folders a run's training data is read from, by source label (None:
    not on disk), resolved as :func:`babelir.data.parallel.load_parallel` and
    :func:`babelir.training.sources.load_one` resolve them."""
    from babelir.data.lareqa import resolve_benchmark_dir
    from babelir.training.sources import is_multi_source, parse_sources, resolve_path

    if is_multi_source(tcfg.train_data):
        return [(s.label, resolve_path(s.file, root)) for s in parse_sources(tcfg.train_data)]
    text = str(tcfg.train_data)
    if text == "mmarco":
        path: Path | None = root / "mmarco"
    elif Path(text).expanduser().exists():
        path = Path(text).expanduser()
    else:
        try:
            path = resolve_benchmark_dir(text, root)[1]
        except BabelirError:
            path = None
    return [(text, path if path is not None and path.exists() else None)]


def data_dir(cfg: CompareConfig) -> Path:
    from babelir.core.settings import data_dir as resolve

    return resolve(cfg.data_dir)


def benchmark_dir(spec: BenchmarkSpec, root: Path) -> Path:
    from babelir.data.lareqa import resolve_benchmark_dir

    if (spec.name is None) == (spec.path is None):
        raise ConfigError("benchmarks: each entry needs exactly one of 'name' and 'path'")
    if spec.path is not None and not Path(spec.path).expanduser().is_dir():
        raise ConfigError(f"benchmarks.path: {spec.path} is not a folder")
    return resolve_benchmark_dir(spec.name or spec.path, root)[1]


def load_spec(spec: BenchmarkSpec, root: Path):
    from babelir.data.lareqa import load_benchmark

    return load_benchmark(
        benchmark_dir(spec, root),
        root,
        languages=spec.languages,
        articles=spec.articles,
        candidate_mode=spec.candidates,
    )


def train_config(cfg: CompareConfig, spec: StrategySpec, seed: int, **run: Any) -> TrainConfig:
    """A run's TrainConfig; multi-source training data is checked against (and, with
    ``drop_overlap``, cleaned of) every benchmark of the comparison."""
    from babelir.training.sources import is_multi_source

    if is_multi_source(cfg.train.get("data")):
        root = data_dir(cfg)
        run.setdefault(
            "disjoint_from",
            [str(benchmark_dir(b, root)) for b in cfg.benchmarks if not b.is_retrieval],
        )
    return cfg.train_config(spec, seed, **run)


def training_data_key(tcfg: TrainConfig) -> str:
    """What a run's training and validation items depend on: its identity without the
    batch strategy and seed (runs of several strategies share their data)."""
    ident = tcfg.identity()
    return _hash({k: v for k, v in ident.items() if k not in ("strategy", "alpha", "seed")})


def source_fingerprints(tcfg: TrainConfig, root: Path) -> list[str]:
    """SHA-256 of every training file (one source or several, a JSONL file or a folder),
    so an edited file or another data dir is never a cache hit."""
    return [
        f"{label}={content_fingerprint(path) if path is not None else 'missing'}"
        for label, path in training_inputs(tcfg, root)
    ]


def benchmark_identity(spec: BenchmarkSpec, root: Path) -> tuple[Any, ...]:
    """What makes two benchmark entries the same evaluation: files and selection."""
    if spec.is_retrieval:
        from babelir.compare import retrieval

        return retrieval.identity(spec, root)
    folder = benchmark_dir(spec, root)
    langs = tuple(spec.languages) if spec.languages is not None else None
    return (content_fingerprint(folder), langs, spec.articles, spec.candidates)


def unique_benchmarks(cfg: CompareConfig, root: Path) -> tuple[list[BenchmarkSpec], list[str]]:
    """The benchmarks once each, with a note per duplicate dropped.

    An entry that repeats another (same files and selection, e.g. ``--benchmark X`` twice)
    would be taken for a second seed of every row (a ``± 0.0000`` interval); two different
    entries under one title would be mixed the same way, so they are refused.
    """
    kept: list[BenchmarkSpec] = []
    seen: dict[tuple[Any, ...], int] = {}
    titles: dict[str, int] = {}
    notes: list[str] = []
    for i, spec in enumerate(cfg.benchmarks):
        try:
            ident = benchmark_identity(spec, root)
        except DataError as e:
            raise ConfigError(f"benchmarks[{i}] ({spec.title()}): {e}") from None
        if ident in seen:
            j = seen[ident]
            notes.append(
                f"benchmarks[{i}] ({spec.title()}) repeats benchmarks[{j}] "
                f"({cfg.benchmarks[j].title()}): evaluated once"
            )
            continue
        if spec.title() in titles:
            j = titles[spec.title()]
            raise ConfigError(
                f"benchmarks[{i}] and benchmarks[{j}] are both titled '{spec.title()}' but "
                "hold other files or selections; give one a 'label:' in the config"
            )
        seen[ident] = titles[spec.title()] = i
        kept.append(spec)
    return kept, notes


def check_device_support(cfg: CompareConfig) -> list[str]:
    """Refuse precisions this machine cannot run (fp16 on a CPU...) before any job, for
    the evaluation and every variant's training; returns a note for each variant that
    trains in bf16 on a CPU without native bf16 (allowed, but slower: docs/precision.md)."""
    from babelir.models.loading import default_device
    from babelir.precision.emulated_bf16 import kernels_for
    from babelir.precision.resolver import emulated_bf16_cost, resolve

    device = default_device()
    opts = cfg.encode_options()
    try:
        resolve(opts.precision, "cpu" if opts.precision == "int8" else device, "encode")
    except ConfigError as e:
        raise ConfigError(f"evaluation.{e} (this machine: {device})") from None
    notes = []
    for spec in cfg.variants():
        tcfg = train_config(cfg, spec, cfg.seeds[0])
        where = f"strategies ({spec.label})" if spec.precision else "train"
        try:
            resolved = resolve(tcfg.precision, device, "train")
        except ConfigError as e:
            raise ConfigError(f"{where}.{e} (this machine: {device})") from None
        if kernels_for(resolved, device) not in (None, "native"):
            notes.append(
                f"{spec.label} trains in bf16 without native bf16 (no AVX512_BF16/AMX): "
                f"{emulated_bf16_cost('train')}"
            )
    return notes


def stand_in_notes(cfg: CompareConfig, root: Path) -> list[str]:
    """One line per training source read through its stand-in (missing official file)."""
    from babelir.training.sources import apply_stand_ins, is_multi_source, parse_sources

    data = cfg.train.get("data")
    if not is_multi_source(data):
        return []
    return apply_stand_ins(parse_sources(data), root)[1]


def validate(cfg: CompareConfig) -> dict[str, Any]:
    """Everything that can fail before training: data, languages, splits, strategies.

    Each strategy is checked against its own pair table (x-y needs cross-language rows,
    en-en English ones...). Training and validation items are checked disjoint from the
    evaluation questions of every benchmark built from the training folder. Returns the
    facts the plan and the report show.
    """
    from babelir.batches.sampler import ParallelBatchSampler
    from babelir.data.lareqa import check_disjoint, resolve_benchmark_dir
    from babelir.training.data import build_training_data

    root = data_dir(cfg)
    local_model(cfg.model)  # a path-like model that is no folder: refused here
    slow = check_device_support(cfg)
    benchmarks, notes = unique_benchmarks(cfg, root)  # shown by describe / run_compare
    notes += slow
    notes += stand_in_notes(cfg, root)
    facts: dict[str, Any] = {"benchmarks": {}, "strategies": {}, "notes": notes}
    tables: dict[tuple[bool, str], Any] = {}
    first = None
    for variant in cfg.variants():
        tcfg = train_config(cfg, variant, cfg.seeds_of(variant)[0])
        cross = variant.strategy.needs_cross_pairs(tcfg.alpha)
        data_key = (cross, training_data_key(tcfg))
        if data_key not in tables:
            tables[data_key] = build_training_data(tcfg)
        td = tables[data_key]
        first = first or td
        try:
            sampler = ParallelBatchSampler(
                td.table,
                batch_size=tcfg.batch_size,
                strategy=variant.name,
                alpha=tcfg.alpha,
                num_replicas=1,
                language_temperature=tcfg.language_temperature,
            )
        except BabelirError as e:
            raise ConfigError(f"train ({variant.name} batches): {e}") from None
        facts["strategies"][variant.label] = {
            "pair_rows": len(td.table["id"]),
            "batches_per_epoch": len(sampler),
            "epochs": (tcfg.max_steps / len(sampler)) if tcfg.max_steps else tcfg.epochs,
        }
        if td.sources != first.sources:  # a labelled variant with sources of its own
            facts.setdefault("variant_sources", {})[variant.label] = {
                "sources": td.sources,
                "parallel_share": tcfg.parallel_share,
            }
    assert first is not None
    facts["train_items"] = len(first.data.items)
    facts["train_languages"] = first.data.languages
    facts["train_articles"] = first.train_articles
    facts["validation"] = {k: v for k, v in first.validation_record().items() if k != "item_ids"}
    facts["train_counts"] = first.data.counts()
    facts["sources"] = first.sources
    facts["dropped_for_overlap"] = len(first.overlaps or [])
    train_dir = None
    train_data = cfg.train_config(StrategySpec("x-y"), 0).train_data
    if isinstance(train_data, str) and not Path(str(first.data.source)).is_file():
        try:
            train_dir = resolve_benchmark_dir(train_data, root)[1]
        except BabelirError:
            train_dir = None
    for i, spec in enumerate(benchmarks):
        if spec.is_retrieval:
            _validate_retrieval(spec, i, root, first, facts, cfg.debias)
            continue
        try:
            bench = load_spec(spec, root)
        except DataError as e:
            raise ConfigError(f"benchmarks[{i}]: {e}") from None
        folder = benchmark_dir(spec, root)
        same = train_dir is not None and _same_files(folder, Path(train_dir))
        facts.setdefault("regime", {})[spec.title()] = "in-domain" if same else "zero-shot"
        if same:
            where = f"train.articles vs benchmarks[{i}].articles"
            check_disjoint(first.data.ids, bench.question_ids, where)
            if first.val is not None:
                check_disjoint(first.val.ids, bench.question_ids, f"validation vs benchmarks[{i}]")
        if first.sources is None:  # LANG:PATH runs were checked when loaded (disjoint_from)
            _check_leaks(first, bench, f"benchmarks[{i}] ({spec.title()})")
        facts["benchmarks"][spec.title()] = bench.summary()
        unseen = sorted(set(bench.languages) - set(first.data.languages))
        per_language = [m for m in cfg.debias if m != "lsar"]
        if per_language and unseen:
            raise ConfigError(
                f"debias: {per_language[0]} needs a fit in every evaluated language, but "
                f"{', '.join(unseen)} of benchmarks[{i}] are not training languages; use "
                "lsar (one projection for all languages) or evaluate training languages only"
            )
    return facts


def _validate_retrieval(
    spec: BenchmarkSpec,
    i: int,
    root: Path,
    first: Any,
    facts: dict[str, Any],
    debias: list[str],
) -> None:
    """A MIRACL / XOR-Retrieve entry: its files load (corpus included), BM25 is installed
    where asked for, and no training or validation question is one of its queries."""
    from babelir.compare import retrieval

    try:
        loaded = retrieval.load(spec, root)
    except DataError as e:
        raise ConfigError(f"benchmarks[{i}] ({spec.title()}): {e}") from None
    summary = retrieval.summary(spec, loaded)
    if summary.get("bm25"):
        from babelir.evaluation.bm25 import _bm25s

        try:
            _bm25s()
        except ConfigError as e:
            raise ConfigError(f"benchmarks[{i}].bm25: {e} (or set bm25: false)") from None
    facts["benchmarks"][spec.title()] = summary
    # training data is parallel QA, never a corpus of the benchmark's own family
    facts.setdefault("regime", {})[spec.title()] = "zero-shot"
    _check_leaks_texts(
        first, retrieval.texts(spec, loaded, f"benchmarks[{i}] ({spec.title()})")
    )
    if debias:
        facts["notes"].append(
            f"debias ({', '.join(debias)}) re-scores LAReQA pools only: "
            f"{spec.title()} has no debiased rows"
        )


def _same_files(folder: Path, train_dir: Path) -> bool:
    """Whether a benchmark folder is the training folder or a copy of (part of) it: each
    of its language files is byte-identical to the training folder's file of that name."""
    from babelir.core.fingerprint import fingerprint

    if folder.resolve() == train_dir.resolve():
        return True
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    return bool(files) and all(
        (train_dir / p.name).is_file() and fingerprint(train_dir / p.name) == fingerprint(p)
        for p in files
    )


def _check_leaks(td: Any, bench: Any, where: str) -> None:
    """Refuse training or validation items found in a benchmark by id or by text."""
    from babelir.training.sources import BenchmarkTexts

    _check_leaks_texts(td, BenchmarkTexts.from_benchmark(where, bench))


def _check_leaks_texts(td: Any, texts: Any) -> None:
    from babelir.training.sources import find_overlap

    for part, data in (("training", td.data), ("validation", td.val)):
        if data is None:
            continue
        overlap = find_overlap(data, texts)
        if overlap.items:
            raise ConfigError(
                f"{part} data overlaps {overlap.describe()}: evaluation data must stay out of "
                "training and checkpoint selection (train.drop_overlap: true drops such items "
                "from LANG:PATH sources)"
            )


def resolved_precisions(cfg: CompareConfig, tcfg: TrainConfig) -> tuple[str, str]:
    """(training, encoding) precision as this machine resolves them: ``auto`` trains in
    bf16 on a CPU with native bf16 and in fp32 elsewhere, so it must not share a key."""
    from babelir.models.loading import default_device
    from babelir.precision.resolver import resolve

    device = default_device()
    enc = cfg.encode_options().precision
    return (
        resolve(tcfg.precision, device, "train"),
        resolve(enc, "cpu" if enc == "int8" else device, "encode"),
    )


def make_plan(cfg: CompareConfig, output: Path) -> Plan:
    """Training and evaluation jobs with their cache keys and folders.

    The base model's debias fits live in the user cache (``<cache>/debias``), keyed by its
    weights and the fit data, so every comparison on the same base and data reuses them;
    a trained model's fits stay with its output folder.
    """
    from babelir.core.settings import cache_dir

    plan = Plan(cfg, output)
    base_id = base_identity(cfg.model)
    root = data_dir(cfg)
    benchmarks, _ = unique_benchmarks(cfg, root)
    for seed in cfg.seeds:
        for variant in cfg.variants():
            if seed not in cfg.seeds_of(variant):
                continue
            tcfg = train_config(cfg, variant, seed)
            train_ident = tcfg.identity()
            precision = train_ident["precision"] = resolved_precisions(cfg, tcfg)[0]
            if train_ident.get("disjoint_from"):  # drop_overlap: the benchmarks' content
                train_ident["disjoint_from"] = [
                    content_fingerprint(Path(p)) if Path(p).exists() else p
                    for p in train_ident["disjoint_from"]
                ]
            ident = {"base": base_id, "train": train_ident, "data": source_fingerprints(tcfg, root)}
            key = _hash({"format": CACHE_FORMAT, **ident})[:16]
            twin = next((j for j in plan.train_jobs if j.key == key), None)
            if twin is not None:  # e.g. {strategy: hybrid, precision: fp32} beside hybrid
                raise ConfigError(
                    f"strategies: {variant.label} and {twin.label} train the same model "
                    f"(seed {seed}, precision {precision}); drop one or set another precision"
                )
            folder = output / "runs" / f"{variant.slug}-s{seed}-{key[:8]}"
            steps = tcfg.max_steps or 100
            tcfg = train_config(
                cfg,
                variant,
                seed,
                output=folder,
                save_steps=max(5, tcfg.eval_steps or steps // 8),
                logging_steps=5,
            )
            plan.train_jobs.append(TrainJob(variant, seed, key, folder, tcfg, precision))
    ev = cfg.encode_options().describe()
    ev.pop("show_progress", None)
    ev["precision"] = resolved_precisions(cfg, plan.train_jobs[0].train_config)[1]
    for mspec in cfg.merges():
        weights = [None] if mspec.weights == "auto" else list(mspec.weights)
        for job in plan.train_jobs:
            if job.label not in cfg.merge_rows(mspec):
                continue
            for w in weights:
                # auto scores the grid with the evaluation's encoding precision
                ident = {"format": CACHE_FORMAT, "merge": job.key, "weight": w,
                         "grid": sorted(mspec.grid) if w is None else None,
                         "eval_precision": ev["precision"] if w is None else None}  # fmt: skip
                if mspec.tolerance is not None:  # added later: absent, the key is as before
                    ident["tolerance"] = mspec.tolerance
                key = _hash(ident)[:16]
                tag = "auto" if w is None else f"{w:g}"
                tag += "" if mspec.tolerance is None else f"-tol{mspec.tolerance:g}"
                folder = output / "merges" / f"{job.folder.name}-merge{tag}-{key[:8]}"
                plan.merge_jobs.append(
                    MergeJob(job, w, list(mspec.grid), key, folder, mspec.tolerance)
                )
    # the base model's debias fit reads the training side of the config: its files count
    fit_data = source_fingerprints(cfg.train_config(StrategySpec("x-x-mono"), cfg.seeds[0]), root)
    for spec in benchmarks:
        bspec = spec.model_dump()
        bspec["content"] = (
            benchmark_identity(spec, root)
            if spec.is_retrieval
            else content_fingerprint(benchmark_dir(spec, root))
        )
        if spec.wants_bm25:
            from babelir.compare.retrieval import bm25_identity

            key = _hash({"format": CACHE_FORMAT, "bm25": bm25_identity(), "bench": bspec})[:16]
            plan.eval_jobs.append(
                EvalJob(
                    "bm25", None, spec, key, output / "evals" / f"bm25-{key[:8]}", None, None,
                    baseline="bm25",
                )
            )  # fmt: skip
        key = _hash({"format": CACHE_FORMAT, "model": base_id, "bench": bspec, "eval": ev})[:16]
        base = EvalJob("base", None, spec, key, output / "evals" / f"base-{key[:8]}", None, None)
        plan.eval_jobs.append(base)
        sources = [(base, base_id)]
        for job in plan.train_jobs:
            key = _hash({"format": CACHE_FORMAT, "model": job.key, "bench": bspec, "eval": ev})
            ej = EvalJob(
                job.label,
                job.seed,
                spec,
                key[:16],
                output / "evals" / f"{job.folder.name}-{key[:8]}",
                str(job.folder),
                job.key,
            )
            plan.eval_jobs.append(ej)
            sources.append((ej, job.key))
        for mj in plan.merge_jobs:  # post-hoc rows: no debias fit of their own
            key = _hash({"format": CACHE_FORMAT, "model": mj.key, "bench": bspec, "eval": ev})
            plan.eval_jobs.append(
                EvalJob(
                    mj.label, mj.seed, spec, key[:16],
                    output / "evals" / f"{mj.folder.name}-{key[:8]}",
                    str(mj.folder), mj.source.key,
                )
            )  # fmt: skip
        for method in cfg.debias if not spec.is_retrieval else ():
            for src, model_key in sources:
                fit = {
                    "method": method,
                    "model": model_key,
                    "per_language": cfg.debias_fit_per_language,
                    # the base model is fitted on the training side of the config, a trained
                    # model on its own training texts (the same articles and languages)
                    "train": cfg.train,
                    "data": fit_data,
                    "eval": ev,
                }
                fit_key = _hash({"format": CACHE_FORMAT, **fit})[:16]
                key = _hash({"source": src.key, "fit": fit_key})[:16]
                plan.eval_jobs.append(
                    EvalJob(
                        f"{src.label}+{method}",
                        src.seed,
                        spec,
                        key,
                        output / "evals" / f"{src.folder.name}+{method}-{key[:8]}",
                        src.model_path,
                        src.train_key,
                        debias=method,
                        source=src,
                        fit_folder=(
                            output / "debias" if src.model_path else cache_dir() / "debias"
                        )
                        / f"{method}-{fit_key}",
                    )
                )
    return plan


def describe(plan: Plan, facts: dict[str, Any]) -> list[str]:
    """The plan as lines for ``--dry-run``: each job with what defines it."""
    cfg = plan.config
    lines = [
        f"profile {cfg.name}: {len(plan.train_jobs)} training + "
        + (f"{len(plan.merge_jobs)} merge + " if plan.merge_jobs else "")
        + f"{len(plan.eval_jobs)} evaluation jobs, seeds {cfg.seeds}",
        f"training data: {facts['train_items']} items in {', '.join(facts['train_languages'])}"
        + (f", articles {facts['train_articles']}" if facts.get("train_articles") else ""),
    ]
    val = facts.get("validation") or {}
    lines.append(
        f"validation: {val.get('items', 0)} items"
        + (f" (articles {val['articles']})" if val.get("articles") else "")
        + (
            f" ({len(val['held_out_articles'])} held-out articles of the training sources)"
            if val.get("held_out_articles")
            else ""
        )
        + (f"; {val['note']}" if val.get("note") else "")
    )
    regime = facts.get("regime") or {}
    if regime:
        zero = sorted(k for k, v in regime.items() if v == "zero-shot")
        inside = sorted(k for k, v in regime.items() if v == "in-domain")
        lines.append(
            "regime: "
            + "; ".join(
                part
                for part in (
                    f"Zero-shot ({', '.join(zero)}: no benchmark is the training data; "
                    "training and validation items checked disjoint by id and text)"
                    if zero
                    else "",
                    f"In-domain ({', '.join(inside)}: other articles of the training "
                    "dataset, not zero-shot transfer)"
                    if inside
                    else "",
                )
                if part
            )
        )
    lines += [f"NOTE: {note}" for note in facts.get("notes") or []]
    counts = facts.get("train_counts") or {}
    if counts:
        lines.append(
            "training items per language: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        )
    share = plan.train_jobs[0].train_config.parallel_share if plan.train_jobs else None
    lines += _source_lines(facts.get("sources") or [], share)
    for label, own in (facts.get("variant_sources") or {}).items():
        lines.append(f"training data of {label}:")
        lines += _source_lines(own["sources"] or [], own["parallel_share"])
    for job in plan.train_jobs:
        c = job.train_config
        s = facts["strategies"].get(job.label, {})
        epochs = s.get("epochs")
        if epochs is not None and epochs > MAX_EPOCHS_WITHOUT_WARNING:
            lines.append(
                f"WARNING: {job.label} makes {epochs:.0f} passes over its {s['pair_rows']} pair "
                f"rows: past {MAX_EPOCHS_WITHOUT_WARNING} epochs a model over-fits its training "
                "items (fetch more data, e.g. the full SQuAD-train translations, or train fewer "
                "steps)"
            )
        budget = f"{c.max_steps} steps" if c.max_steps else f"{c.epochs} epochs"
        lines.append(
            f"train {job.label:<22} seed {job.seed}  {budget} x batch {c.batch_size}, "
            f"lr {c.learning_rate:g}, {s.get('pair_rows', '?')} pair rows "
            f"({s.get('batches_per_epoch', '?')} batches/epoch"
            + (f", {epochs:.2f} epochs" if epochs is not None else "")
            + f"), select {c.select}, {job.precision}"
            f"  -> {job.folder}"
        )
    for mj in plan.merge_jobs:
        how = (
            f"lambda picked on its validation items from {', '.join(f'{w:g}' for w in mj.grid)}"
            + ("" if mj.tolerance is None else f" (smallest within {mj.tolerance:g} of the best)")
            if mj.weight is None
            else f"lambda {mj.weight:g}"
        )
        lines.append(f"merge {mj.label:<22} seed {mj.seed}  base + {mj.source.label}, {how}"
                     f"  -> {mj.folder}")  # fmt: skip
    for ej in plan.eval_jobs:
        b = facts["benchmarks"].get(ej.benchmark.title(), {})
        size = ej.benchmark.family.size(b)
        lines.append(f"evaluate {ej.label:<25} on {ej.benchmark.title()} ({size})")
    return lines


def _source_lines(sources: list[dict[str, Any]], share: float | None) -> list[str]:
    """Each training source with its counts, then the x-y pairs per language pair."""
    lines: list[str] = []
    for src in sources:
        squad = src.get("squad") or {}
        cases = ", ".join(
            f"{k} {squad[k]}" for k in ("exact", "found_by_text", "paragraph", "dropped")
            if squad.get(k)
        )
        questions = src.get("questions")
        if questions:
            skipped = ", ".join(
                f"{k} {questions[k]}"
                for k in ("blank", "same_text", "duplicates", "unpaired")
                if questions.get(k)
            )
            lines.append(
                f"  source {src['label']}: {src['items']} parallel questions "
                f"({questions.get('format')}; x-y batches only"
                + (f"; skipped: {skipped}" if skipped else "")
                + ")"
            )
            continue
        lines.append(
            f"  source {src['label']}: {src['items']} items"
            + (f" ({src['linked']} linked to an earlier source)" if src.get("linked") else "")
            + (f"; answers: {cases}" if cases else "")
        )
    return lines + _xy_pair_lines(sources, share)


def _xy_pair_lines(sources: list[dict[str, Any]], share: float | None) -> list[str]:
    """Where a run holds parallel questions: per language pair (both directions), the x-y
    pairs from QA data and from parallel questions, and how x-y batches mix them."""
    if not any(src.get("questions") for src in sources):
        return []
    pairs: dict[tuple[str, str], list[int]] = {}
    for src in sources:
        slot = 1 if src.get("questions") else 0
        for ql, by in (src.get("xy_pairs") or {}).items():
            for pl, n in by.items():
                key = (min(ql, pl), max(ql, pl))
                pairs.setdefault(key, [0, 0])[slot] += n
    mix = (
        f"parallel_share {share:g}: that share of every x-y batch's pairs are parallel questions"
        if share is not None
        else "parallel_share unset: x-y batches draw both in proportion to their items"
    )
    lines = [f"x-y pairs per language pair, from QA data / from parallel questions ({mix}):"]
    lines += [
        f"  {a}-{b}: {qa} QA / {q} parallel questions" for (a, b), (qa, q) in sorted(pairs.items())
    ]
    return lines

"""Shared helpers for the benchmark scripts: machine facts, real model and data, timing.

The CPU may be shared, so every script measures baseline and candidate *interleaved* in
the same run (round-robin) and reports medians; a ratio of two medians taken minutes
apart on a busy machine would mean little.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
ALL_LANGS = "ar,de,el,en,es,hi,ru,th,tr,vi,zh"


def add_threads_option(parser: Any) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice); 1 is steadier on a shared CPU, where "
        "OpenMP threads waiting on a descheduled sibling inflate times",
    )


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


def cpu_name() -> str:
    from babelir.precision.resolver import cpu_model

    return cpu_model()


def machine_line() -> str:
    from babelir.encoding.encoder import cpu_bf16_supported

    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"cpu: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, capability {capability}), "
        f"native bf16: {cpu_bf16_supported()}, cuda: {torch.cuda.is_available()}"
    )


def matmul_gflops(
    dtype: torch.dtype,
    m: int = 2048,
    k: int = 384,
    n: int = 1536,
    seconds: float = 1.0,
    *,
    fp32_kernels: bool = False,
) -> float:
    """Best-of throughput of one e5-small-shaped matmul (tokens x hidden x FFN);
    ``fp32_kernels``: a bf16 product as babelir computes it without native bf16
    (:mod:`babelir.precision.emulated_bf16`) instead of torch's own bf16 kernel."""
    import contextlib

    from babelir.precision.emulated_bf16 import Bf16OnFp32Kernels

    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    with Bf16OnFp32Kernels() if fp32_kernels else contextlib.nullcontext():
        a @ b
        best, spent = float("inf"), 0.0
        while spent < seconds:
            t = time.perf_counter()
            a @ b
            el = time.perf_counter() - t
            best, spent = min(best, el), spent + el
    return 2 * m * k * n / best / 1e9


def load_real_model(max_seq_length: int = 128):  # -> SentenceTransformer
    from babelir.models.loading import load_model

    folder = os.environ.get("BABELIR_MODEL")
    if folder is None:
        test_cache = Path.home() / ".cache" / "babelir-test" / "models" / "multilingual-e5-small-q4"
        folder = str(test_cache) if test_cache.is_dir() else None
    return load_model(folder, device="cpu", max_seq_length=max_seq_length)


def flops_per_token(model: Any, seq_len: float) -> float:
    """Forward FLOPs per token: 2 x non-embedding weights, plus attention scores/mixing."""
    config = model[0].auto_model.config
    dense = sum(
        p.numel() for n, p in model.named_parameters() if "embeddings" not in n and p.dim() == 2
    )
    attention = 4 * config.num_hidden_layers * config.hidden_size * seq_len
    return 2 * dense + attention


def load_slice(data_dir: Path, languages: str, articles: str):  # -> Benchmark
    from babelir.data.lareqa import load_benchmark

    return load_benchmark("xquad-r", data_dir, languages=languages.split(","), articles=articles)


def sample_candidates(data_dir: Path, n: int, languages: str = ALL_LANGS, seed: int = 0):
    bench = load_slice(data_dir, languages, "all")
    texts = sorted(set(bench.candidate_texts()))
    random.Random(seed).shuffle(texts)
    return texts[:n]


def count_tokens(model: Any, texts: list[str]) -> int:
    enc = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
    return sum(len(ids) for ids in enc["input_ids"])


def interleave(
    fns: dict[str, Callable[[], Any]], rounds: int, cpu: dict[str, list[float]] | None = None
) -> dict[str, list[float]]:
    """Run each function once per round, in rotating order; wall seconds per call.

    ``cpu`` (if given) receives this process's CPU seconds per call divided by the torch
    thread count: time spent *working*, which other jobs on the CPU inflate far less.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t, c = time.perf_counter(), time.process_time()
            fns[name]()
            times[name].append(time.perf_counter() - t)
            if cpu is not None:
                cpu.setdefault(name, []).append((time.process_time() - c) / torch.get_num_threads())
    return times


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident memory since start or the last :func:`reset_peak_rss` (Linux)."""
    return _status_mb("VmHWM")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS

"""Benchmark: sharded encoding, exact and IVF search on synthetic corpora up to 1M passages.

Run by hand (not part of the test suite)::

    python benchmarks/bench_index.py                       # 100k, 300k, 1M passages
    python benchmarks/bench_index.py --sizes 20000,60000   # a quick look

Each corpus size runs in a fresh process, so its peak RSS is its own: the corpus is a
generator (never a list), encoded with a tiny random BERT (tests/tiny_model.py, 32-d)
through :func:`babelir.index.shards.encode_shards`, then searched exactly shard by shard. Peak
RSS after encoding + exact search should stay flat as the corpus grows; the IVF index
(which holds every vector, as any IndexIVFFlat does) is built afterwards and reported on
its own line, with its recall@100 against exact search on real (non-corpus) queries.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "de", "pa", "zu", "fe"]


def _words() -> list[str]:
    rng = random.Random(0)
    return sorted({"".join(rng.choice(_SYLLABLES) for _ in range(3)) for _ in range(3000)})[:400]


def passages(n: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """``n`` synthetic (id, text) records, generated lazily (4-12 pseudo-words each)."""
    rng, words = random.Random(seed), _words()
    for i in range(n):
        yield f"p{i}", " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import make_tiny_model

    texts = [t for _, t in passages(3000, seed=99)]
    make_tiny_model(folder, texts).save(str(folder / "tiny"))
    return folder / "tiny"


def child(args: argparse.Namespace) -> dict:
    """One corpus size: encode, exact search, then IVF (measured separately)."""
    import faiss
    import numpy as np
    import torch

    from babelir.encoding.encoder import encode_texts
    from babelir.encoding.options import EncodeOptions
    from babelir.index.faiss_backend import (
        IndexSpec,
        build_faiss_index,
        exact_search,
        overlap_at_k,
    )
    from babelir.index.shards import ShardSet, encode_shards
    from babelir.models.loading import load_model

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    work = Path(args.work) / f"n{args.child}"
    t0 = time.perf_counter()
    rep = encode_shards(
        model,
        passages(args.child),
        work,
        shard_size=args.shard_size,
        options=EncodeOptions(batch_size=args.batch_size, show_progress=False),
    )
    t_enc = time.perf_counter() - t0
    shards = ShardSet.open(work)
    queries = encode_texts(
        model,
        [t for _, t in passages(args.queries, seed=7)],
        options=EncodeOptions(batch_size=512, show_progress=False),
    )
    t0 = time.perf_counter()
    _, exact = exact_search(shards, queries, 100)
    t_exact = time.perf_counter() - t0
    out = {
        "rows": shards.num_rows,
        "encoded": rep.rows_encoded,
        "encode_s": round(t_enc, 2),
        "encode_per_s": round(rep.rows_encoded / t_enc, 1) if rep.rows_encoded else None,
        "exact_qps": round(len(queries) / t_exact, 1),
        "rss_encode_exact_mb": round(peak_rss_mb(), 1),
    }
    if args.ivf:
        spec = IndexSpec("ivf", nlist=args.nlist, nprobe=args.nprobe).resolved(shards.num_rows)
        t0 = time.perf_counter()
        index = build_faiss_index(shards, spec)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, approx = index.search(np.ascontiguousarray(queries), 100)
        t_ivf = time.perf_counter() - t0
        out.update(
            {
                "ivf": spec.describe(),
                "ivf_build_s": round(t_build, 2),
                "ivf_qps": round(len(queries) / t_ivf, 1),
                "ivf_recall@100_vs_exact": round(overlap_at_k(approx, exact, 100), 4),
                "rss_with_ivf_mb": round(peak_rss_mb(), 1),
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000,300000,1000000")
    p.add_argument("--shard-size", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--nlist", type=int, default=None)
    p.add_argument("--nprobe", type=int, default=None)
    p.add_argument("--no-ivf", dest="ivf", action="store_false")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/FAISS threads per process (default 1: on a busy machine OpenMP threads "
        "spin against other processes and several threads can be 10x slower than one).",
    )
    p.add_argument("--work", default=None, help="Shard folder root (default: a temp dir).")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(child(args)))
        return

    tmp = tempfile.TemporaryDirectory(prefix="bench-index-")
    work = Path(args.work or tmp.name)
    model = build_model(work / "model")
    results = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(n),
            "--model",
            str(model),
            "--work",
            str(work),
        ]
        cmd += ["--shard-size", str(args.shard_size), "--batch-size", str(args.batch_size)]
        cmd += ["--queries", str(args.queries), "--threads", str(args.threads)]
        cmd += [] if args.ivf else ["--no-ivf"]
        cmd += ["--nlist", str(args.nlist)] if args.nlist else []
        cmd += ["--nprobe", str(args.nprobe)] if args.nprobe else []
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            sys.exit(f"size {n} failed:\n{proc.stderr[-3000:]}")
        results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{n:>9,}: {json.dumps(results[n])}", flush=True)

    sizes = sorted(results)
    lo, hi = results[sizes[0]], results[sizes[-1]]
    print(f"\nsummary (tiny 32-d model, CPU, {args.threads} thread(s), {os.cpu_count()} cores)")
    print(f"{'passages':>10} {'enc/s':>9} {'exact q/s':>10} {'RSS MB':>8} {'IVF q/s':>9} "
          f"{'IVF R@100':>10} {'RSS+IVF':>8}")  # fmt: skip
    for n in sizes:
        r = results[n]
        print(
            f"{n:>10,} {r['encode_per_s'] or 0:>9.0f} {r['exact_qps']:>10.1f} "
            f"{r['rss_encode_exact_mb']:>8.0f} {r.get('ivf_qps', 0):>9.1f} "
            f"{r.get('ivf_recall@100_vs_exact', float('nan')):>10.4f} "
            f"{r.get('rss_with_ivf_mb', float('nan')):>8.0f}"
        )
    scale = sizes[-1] / sizes[0]
    print(
        f"corpus x{scale:.0f}: peak RSS (encode + exact search) x"
        f"{hi['rss_encode_exact_mb'] / lo['rss_encode_exact_mb']:.2f}, encoding throughput x"
        f"{(hi['encode_per_s'] or 0) / (lo['encode_per_s'] or 1):.2f}, exact search time x"
        f"{lo['exact_qps'] / hi['exact_qps']:.2f}"
    )
    if "ivf_qps" in hi:
        print(
            f"IVF at {sizes[-1]:,} ({hi['ivf']}): recall@100 vs exact "
            f"{hi['ivf_recall@100_vs_exact']:.4f}, {hi['ivf_qps'] / hi['exact_qps']:.1f}x the "
            f"exact query rate, built in {hi['ivf_build_s']:.0f}s"
        )


if __name__ == "__main__":
    main()

"""Speed and memory of the LAReQA metrics engine at full XQuAD-R scale.

Computes every setting (121 language pairs, pooled multilingual, rank distance) for
13,090 questions x 13,014 candidates, and compares with a per-query scikit-learn loop
(LAReQA's reference evaluation) measured in the same run on a sample of questions and
extrapolated to all of them.

    python benchmarks/bench_metrics.py                      # synthetic embeddings
    python benchmarks/bench_metrics.py --embeddings DIR     # saved by
        babelir evaluate --benchmark xquad-r --save-embeddings --output DIR

Synthetic embeddings have XQuAD-R's shape and a realistic structure (questions near
their answers, a same-language pull), since the engine's cost depends on how many
candidates outrank a question's relevant ones.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from babelir.evaluation.lareqa import benchmark_from_saved, load_saved_embeddings
from babelir.evaluation.metrics import evaluate_embeddings

CANDIDATES = [1222, 1276, 1234, 1180, 1215, 1244, 1219, 852, 1167, 1209, 1196]  # XQuAD-R
ITEMS, DIM = 1190, 384


def synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_lang = len(CANDIDATES)
    topics = rng.standard_normal((ITEMS, DIM)).astype(np.float32)
    lang_dirs = rng.standard_normal((n_lang, DIM)).astype(np.float32)
    c_rows, c_blocks, owner = [], [], []
    relevant_of: dict[tuple[int, int], int] = {}
    for z, n in enumerate(CANDIDATES):
        # each item's answer sentence, then distractor sentences of random items
        items = np.concatenate([np.arange(ITEMS), rng.integers(0, ITEMS, max(n - ITEMS, 0))])[:n]
        start = len(c_rows)
        for k in range(ITEMS):  # as in XQuAD-R, some sentences answer several questions
            relevant_of[(k, z)] = start + (k if k < n else int(rng.integers(0, n)))
        for k in items:
            c_rows.append(topics[k] + 0.9 * lang_dirs[z] + 0.9 * rng.standard_normal(DIM))
            c_blocks.append(z)
            owner.append(k)
    c = np.asarray(c_rows, dtype=np.float32)
    q_rows, q_blocks, relevant = [], [], []
    for x in range(n_lang):
        for k in range(ITEMS):
            q_rows.append(topics[k] + 0.9 * lang_dirs[x] + 0.9 * rng.standard_normal(DIM))
            q_blocks.append(x)
            relevant.append(
                np.array([relevant_of[(k, z)] for z in range(n_lang) if (k, z) in relevant_of])
            )
    q = np.asarray(q_rows, dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    langs = [f"l{i}" for i in range(n_lang)]
    return q, c, np.array(q_blocks), np.array(c_blocks), relevant, langs


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sklearn_seconds_per_query(q, c, q_blocks, c_blocks, relevant, sample: int) -> float:
    """Per-query scikit-learn loop over every setting a question takes part in."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    picks = rng.choice(len(q), size=min(sample, len(q)), replace=False)
    n_lang = int(c_blocks.max()) + 1
    masks = [c_blocks == z for z in range(n_lang)]
    t = time.perf_counter()
    for i in picks:
        scores = c @ q[i]
        labels = np.zeros(len(c), bool)
        labels[relevant[i]] = True
        average_precision_score(labels, scores)  # multilingual
        for z in range(n_lang):  # the question against each language (mono + cross)
            if labels[masks[z]].any():
                average_precision_score(labels[masks[z]], scores[masks[z]])
    return (time.perf_counter() - t) / len(picks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embeddings", type=Path, help="folder written by --save-embeddings")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--sklearn-sample",
        type=int,
        default=300,
        help="questions timed in the scikit-learn loop (then extrapolated)",
    )
    args = ap.parse_args()

    if args.embeddings:
        emb, qs, cs = load_saved_embeddings(args.embeddings)
        langs, q_blocks, c_blocks, relevant = benchmark_from_saved(qs, cs)
        q, c = emb.questions, emb.candidates
        source = f"saved embeddings {args.embeddings}"
    else:
        q, c, q_blocks, c_blocks, relevant, langs = synthetic()
        source = "synthetic XQuAD-R-shaped embeddings"
    print(f"{source}: {len(q)} questions x {len(c)} candidates, {len(langs)} languages")

    base_rss = rss_mb()
    times = []
    # the first call of the process is reported apart (thread pools start, pages fault in);
    # the compiled kernel itself is loaded when babelir.evaluation.metrics is imported
    t = time.perf_counter()
    evaluate_embeddings(q, c, q_blocks, c_blocks, relevant, langs).to_dict()
    first = time.perf_counter() - t
    for _ in range(args.repeats):
        t = time.perf_counter()
        m = evaluate_embeddings(q, c, q_blocks, c_blocks, relevant, langs)
        d = m.to_dict()
        times.append(time.perf_counter() - t)
    extra = peak_mb() - base_rss
    best, median = min(times), float(np.median(times))
    print(
        f"babelir engine: {best:.2f} s best, {median:.2f} s median of {args.repeats} "
        f"after a first call of {first:.2f} s (all "
        f"{', '.join(f'{x:.2f}' for x in times)})"
        f", peak extra memory {max(extra, 0):.0f} MB"
    )
    print(
        f"  mono {d['map']['mono']:.4f}  cross {d['map']['cross']:.4f}  multi "
        f"{d['map']['multi']:.4f}  rank distance {d['rank_distance']:.1f}"
    )
    per_q = sklearn_seconds_per_query(q, c, q_blocks, c_blocks, relevant, args.sklearn_sample)
    total = per_q * len(q)
    print(
        f"scikit-learn per-query loop: {per_q * 1000:.1f} ms/question x {len(q)} = "
        f"{total:.1f} s (timed on {args.sklearn_sample} questions)"
    )
    print(
        f"speed-up: {total / median:.1f}x (median); target < 2 s (median): "
        f"{'met' if median < 2 else 'MISSED'}; "
        f"memory target < 2048 MB: {'met' if extra < 2048 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()

"""Speed-up of the on-disk embedding cache, on this machine.

Encodes the same XQuAD-R candidates (real multilingual-e5-small) three ways, interleaved:
without a cache, into an empty cache (miss: encode + store) and from a filled cache
(hit: look-up only), then times raw cache writes and reads of many synthetic rows.

Example: ``python benchmarks/bench_cache.py --candidates 300 --rounds 3``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    DEFAULT_DATA,
    add_threads_option,
    interleave,
    load_real_model,
    machine_line,
    med,
    sample_candidates,
    set_threads,
)

from babelir.encoding.cache import EmbeddingCache
from babelir.encoding.encoder import encode_texts
from babelir.encoding.options import EncodeOptions
from babelir.models.loading import model_fingerprint

PASSAGE = "passage: "
QUIET = EncodeOptions(show_progress=False)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--candidates", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rows", type=int, default=100_000, help="synthetic rows for raw speed")
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args.threads)
    print(machine_line())
    model = load_real_model()
    texts = sample_candidates(args.data_dir, args.candidates)
    t = time.perf_counter()
    fp = model_fingerprint(model)
    t_fp = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        warm = EmbeddingCache(Path(tmp) / "warm.sqlite")
        warm_opts = EncodeOptions(cache=warm, show_progress=False)
        ref = encode_texts(model, texts, prefix=PASSAGE, options=warm_opts, fingerprint=fp)
        cold_files = iter(range(10**6))

        def cold() -> None:
            with EmbeddingCache(Path(tmp) / f"cold{next(cold_files)}.sqlite") as c:
                opts = EncodeOptions(cache=c, show_progress=False)
                encode_texts(model, texts, prefix=PASSAGE, options=opts, fingerprint=fp)

        def hit() -> None:
            got = encode_texts(model, texts, prefix=PASSAGE, options=warm_opts, fingerprint=fp)
            assert np.array_equal(got, ref)

        times = interleave(
            {
                "no cache": lambda: encode_texts(model, texts, prefix=PASSAGE, options=QUIET),
                "miss (encode + store)": cold,
                "hit": hit,
            },
            args.rounds,
        )
        base = med(times["no cache"])
        print(
            f"\n== {len(texts)} XQuAD-R candidates, {args.rounds} rounds "
            f"(in-memory model fingerprint: {t_fp:.2f} s, paid once per model)"
        )
        for name, ts in times.items():
            print(f"{name:22s} {med(ts):8.3f} s  x{base / med(ts):8.1f} vs no cache")

        raw = EmbeddingCache(Path(tmp) / "raw.sqlite")
        rng = np.random.default_rng(0)
        rows = rng.standard_normal((args.rows, 384), dtype=np.float32)
        keys = [EmbeddingCache.key(fp, PASSAGE, 128, "fp32", f"text {i}") for i in range(args.rows)]
        t = time.perf_counter()
        for i in range(0, args.rows, 10_000):
            raw.put_many(keys[i : i + 10_000], rows[i : i + 10_000])
        t_put = time.perf_counter() - t
        t = time.perf_counter()
        found = raw.get_many(keys)
        t_get = time.perf_counter() - t
        assert len(found) == args.rows
        size = raw.path.stat().st_size + sum(
            f.stat().st_size for f in raw.path.parent.glob("raw.sqlite-*")
        )
        print(
            f"\n== raw cache, {args.rows} rows of 384 float32: write {args.rows / t_put:,.0f} "
            f"rows/s, read {args.rows / t_get:,.0f} rows/s, {size / args.rows:,.0f} bytes/row"
        )


if __name__ == "__main__":
    main()

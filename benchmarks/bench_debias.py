"""Cost of post-hoc debiasing (center, LIR, LSAR) next to encoding, on this machine.

Encodes unlabeled XQuAD-R training-side texts (real multilingual-e5-small), fits each
method on them, then encodes a sample of candidates and applies each fitted transform to
those embeddings. Fit, encoding and application are timed interleaved in the same run
(medians), and reported as ratios to the encoding time measured here: the projection
should cost next to nothing beside the encoder.

Example: ``python benchmarks/bench_debias.py --texts-per-language 200 --candidates 300``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import (
    ALL_LANGS,
    DEFAULT_DATA,
    add_threads_option,
    interleave,
    load_real_model,
    machine_line,
    med,
    sample_candidates,
    set_threads,
)

from babelir.debias import METHODS, collect_fit_texts, encode_fit_texts, fit_from_texts

QUERY, PASSAGE = "query: ", "passage: "


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--languages", default=ALL_LANGS)
    p.add_argument("--articles", default="%4!=0", help="fit articles (training side)")
    p.add_argument("--texts-per-language", type=int, default=500)
    p.add_argument("--candidates", type=int, default=300, help="texts encoded to compare with")
    p.add_argument("--rounds", type=int, default=3)
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args.threads)
    print(machine_line())
    from babelir.encoding.encoder import encode_texts
    from babelir.encoding.options import EncodeOptions

    model = load_real_model()
    fit = collect_fit_texts(
        "xquad-r",
        args.data_dir,
        articles=args.articles,
        languages=args.languages,
        max_per_language=args.texts_per_language,
    )
    n_fit = sum(fit.n_texts().values())
    t = time.perf_counter()
    quiet = EncodeOptions(show_progress=False)
    fit_opts = EncodeOptions(show_progress=False, query_prefix=QUERY, passage_prefix=PASSAGE)
    by_lang = encode_fit_texts(model, fit, options=fit_opts)
    t_fit_encode = time.perf_counter() - t
    texts = sample_candidates(args.data_dir, args.candidates, args.languages)
    langs = np.resize(np.array(list(by_lang)), len(texts))  # any labels: cost is the same
    emb = encode_texts(model, texts, prefix=PASSAGE, options=quiet)

    fitted = {m: fit_from_texts(m, by_lang) for m in METHODS}
    fns = {
        "encode": lambda: encode_texts(model, texts, prefix=PASSAGE, options=quiet),
        **{f"fit {m}": (lambda m=m: fit_from_texts(m, by_lang)) for m in METHODS},
        **{f"apply {m}": (lambda m=m: fitted[m].apply(emb, langs)) for m in METHODS},
    }
    times = interleave(fns, args.rounds)
    enc = med(times["encode"])
    print(
        f"fit data: {n_fit} texts in {len(by_lang)} languages (articles {args.articles}), "
        f"encoded once in {t_fit_encode:.2f} s; dimension {emb.shape[1]}"
    )
    print(f"encode {len(texts)} candidates: {enc:.3f} s (median of {args.rounds})")
    for m in METHODS:
        f, a = med(times[f"fit {m}"]), med(times[f"apply {m}"])
        print(
            f"{m:6s} fit {f * 1e3:8.2f} ms ({f / t_fit_encode:.2%} of encoding its fit texts)  "
            f"apply to {len(texts)} rows {a * 1e3:7.3f} ms ({a / enc:.3%} of encoding them)"
        )


if __name__ == "__main__":
    main()

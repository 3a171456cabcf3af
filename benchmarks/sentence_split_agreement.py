"""Agreement of babelir's sentence splitter (sentencex) with LAReQA's own sentence breaks.

SQuAD-format training files carry no sentences, so :func:`babelir.data.squad.load_squad`
splits contexts itself; XQuAD-R's files carry LAReQA's ``sentence_breaks``, so they show
how close the two segmentations are, per language: paragraphs split identically,
boundary precision / recall / F1, and the share of questions whose positive sentence
(the one holding ``answer_start``) has the same text under both. Prints a Markdown table.

Example: ``python benchmarks/sentence_split_agreement.py --data-dir ../shared/data``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import ALL_LANGS, DEFAULT_DATA, cpu_name

from babelir.data.squad import split_agreement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--languages", default=ALL_LANGS)
    args = parser.parse_args()
    from importlib.metadata import version

    print(f"sentencex {version('sentencex')}, cpu: {cpu_name()}\n")
    print(
        "| lang | paragraphs | sentences LAReQA / ours | exact split | boundary P | "
        "boundary R | boundary F1 | same positive |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    t0 = time.perf_counter()
    for lang in args.languages.split(","):
        r = split_agreement(args.data_dir / "xquad-r" / f"{lang}.json", lang)
        print(
            f"| {lang} | {r['paragraphs']} | {r['sentences_ref']} / {r['sentences_ours']} | "
            f"{r['exact']:.1%} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
            f"{r['same_positive']:.1%} ({r['questions']} q) |"
        )
    print(f"\n{time.perf_counter() - t0:.1f} s in all")


if __name__ == "__main__":
    main()

"""Encoding speed, precision cost and streaming memory of babelir's encoder, on this machine.

Prints, all measured in this one run:

1. matmul throughput (fp32, bf16) of an e5-small-shaped product;
2. tokens/s of ``babelir.encoding.encoder.encode_texts`` in fp32, bf16 (where the CPU computes it
   natively, or with ``--bf16``) and int8 (ONNX Runtime, :mod:`babelir.models.int8`)
   vs plain ``SentenceTransformer.encode`` in fp32 on XQuAD-R candidate sentences
   (interleaved rounds, medians), the ratios, and the achieved FLOP rate as a fraction of
   the measured matmul throughputs;
3. every mAP (mono, cross, multi and each language pair) of the held-out XQuAD-R articles
   (``%4==0``) under bf16 and int8 vs fp32, as a drift table (``--map``);
4. peak RSS of streaming a 1x/10x/100x corpus to disk vs encoding it in memory (``--rss``).

Example: ``python benchmarks/bench_encode.py --candidates 300 --rounds 3 --map --rss``; the
full drift table: ``--map --map-languages all`` (all 11 languages, 121 pairs).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    ALL_LANGS,
    DEFAULT_DATA,
    add_threads_option,
    count_tokens,
    flops_per_token,
    interleave,
    load_real_model,
    load_slice,
    machine_line,
    matmul_gflops,
    med,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
    sample_candidates,
    set_threads,
)

from babelir.encoding.encoder import (
    DEFAULT_MAX_TOKENS,
    cpu_bf16_supported,
    encode_texts,
    resolve_precision,
    token_budget_batches,
)
from babelir.encoding.options import EncodeOptions
from babelir.precision.emulated_bf16 import kernels_for

PASSAGE, QUERY = "passage: ", "query: "
QUIET = EncodeOptions(show_progress=False)


def padded_tokens(model: Any, texts: list[str], max_tokens: int) -> tuple[int, int, int]:
    """(real, st-encode padded, babelir padded) tokens: the work each path feeds the model.

    Deterministic, so it explains the speed-up without timing noise: ``encode`` sorts by
    characters, which mixes scripts with very different characters per token.
    """
    inputs = [PASSAGE + t for t in texts]
    lengths = [
        len(x)
        for x in model.tokenizer(inputs, truncation=True, max_length=model.max_seq_length)[
            "input_ids"
        ]
    ]
    by_chars = np.argsort([-len(t) for t in inputs], kind="stable")
    st = sum(
        len(b) * max(lengths[i] for i in b)
        for b in (by_chars[i : i + 32] for i in range(0, len(inputs), 32))
    )
    ours = sum(
        len(b) * max(lengths[i] for i in b) for b in token_budget_batches(lengths, max_tokens, 64)
    )
    return sum(lengths), st, ours


def throughput(args: argparse.Namespace, model: Any, int8: dict[str, Any]) -> None:
    texts = sample_candidates(args.data_dir, args.candidates)
    real, st_pad, our_pad = padded_tokens(model, texts, DEFAULT_MAX_TOKENS)
    print(
        f"\n== padding: {real} real tokens; st-encode (char-sorted batches of 32) feeds "
        f"{st_pad} ({st_pad / real - 1:+.0%}), babelir (token-sorted, {DEFAULT_MAX_TOKENS}-token "
        f"batches) {our_pad} ({our_pad / real - 1:+.0%})"
    )
    groups = [texts[i : i + args.unit] for i in range(0, len(texts), args.unit)]
    group_tokens = [count_tokens(model, [PASSAGE + t for t in g]) for g in groups]
    tokens = sum(group_tokens)
    auto = resolve_precision("auto", "cpu")
    native = cpu_bf16_supported()

    def ours(m: Any, precision: str) -> Any:
        opts = EncodeOptions(precision=precision, show_progress=False)
        return lambda g: encode_texts(m, g, prefix=PASSAGE, options=opts)

    variants = {
        "st-encode fp32": lambda g: model.encode(
            [PASSAGE + t for t in g], batch_size=32, normalize_embeddings=True
        ),
        "babelir fp32": ours(model, "fp32"),
    }
    # without native bf16 the encoder runs bf16 matmuls on fp32 kernels, unless
    # BABELIR_BF16_KERNELS=onednn (babelir.precision.emulated_bf16)
    how = kernels_for("bf16", "cpu")
    if native or args.bf16:
        variants[f"babelir bf16 ({how})"] = ours(model, "bf16")
    for name, m in int8.items():
        variants[f"babelir {name}"] = ours(m, "fp32")
    print(f"\n(--precision auto picks {auto} on this machine)")
    kernels = how == "fp32-kernels"

    def bf16_peak() -> float:  # the bf16 product the encoder runs here
        return matmul_gflops(torch.bfloat16, fp32_kernels=kernels)

    gf32, gbf16 = matmul_gflops(torch.float32), bf16_peak()
    for fn in variants.values():  # warm-up: oneDNN/ORT kernels for these shapes, allocator
        fn(groups[0])
    # Short alternating trials: on a shared CPU the best and median of many short trials
    # say more than one long one.
    rates: dict[str, list[float]] = {k: [] for k in variants}
    cpu_rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for g, n_tok in zip(groups, group_tokens, strict=True):
            cpu: dict[str, list[float]] = {}
            times = interleave({k: (lambda f=f, g=g: f(g)) for k, f in variants.items()}, 1, cpu)
            for k, ts in times.items():
                rates[k].append(n_tok / ts[0])
                cpu_rates[k].append(n_tok / cpu[k][0])
    # Peak = best of before and after the trials: a busy moment must not lower it.
    gf32 = max(gf32, matmul_gflops(torch.float32))
    gbf16 = max(gbf16, bf16_peak())
    torch_bf16 = f", torch's emulated bf16 {matmul_gflops(torch.bfloat16):.1f}" if kernels else ""
    print(
        f"\n== matmul 2048x384x1536 (best of 2 s): fp32 {gf32:.0f} GFLOP/s, "
        f"bf16 ({how}) {gbf16:.1f} GFLOP/s{torch_bf16}"
    )
    mean_len = tokens / len(texts)
    fpt = flops_per_token(model, mean_len)
    base = med(rates["st-encode fp32"])
    best_base = max(rates["st-encode fp32"])
    cpu_base = med(cpu_rates["st-encode fp32"])
    print(
        f"\n== throughput: {len(texts)} XQuAD-R candidates in trials of {args.unit}, "
        f"{tokens} tokens (mean {mean_len:.1f}), max length {model.max_seq_length}, "
        f"{args.rounds} rounds, {fpt / 1e6:.1f} MFLOP/token; tok/s median (best)"
    )
    for name, rs in rates.items():
        tps, best = med(rs), max(rs)
        gflops = tps * fpt / 1e9
        print(
            f"{name:27s} {tps:6.0f} ({best:5.0f}) tok/s  x{tps / base:4.2f} "
            f"(best x{best / best_base:4.2f}) vs st-encode  {gflops:5.1f} GFLOP/s = "
            f"{gflops / gf32:4.0%} of fp32 matmul, {gflops / gbf16:5.0%} of bf16 matmul"
        )
    print("by CPU time (tokens per CPU-second / threads; steadier when the CPU is shared):")
    for name, rs in cpu_rates.items():
        print(f"{name:27s} {med(rs):6.0f} tok/s  x{med(rs) / cpu_base:4.2f} vs st-encode")


def load_int8(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """The int8 copies of ``model`` to measure (built on first use, then from the cache)."""
    from babelir.core.errors import BabelirError
    from babelir.models.int8 import cpu_int8_dot_supported, int8_model

    kinds = {"int8 (onnxruntime)": True}
    if args.int8_all_matmuls:
        kinds["int8 all MatMuls"] = False
    out: dict[str, Any] = {}
    for name, ffn_fp32 in kinds.items():
        t = time.perf_counter()
        try:
            m = int8_model(model, cache_dir=args.int8_cache, ffn_output_fp32=ffn_fp32)
        except BabelirError as exc:
            print(f"\n== {name}: skipped ({exc})")
            continue
        info = m.int8_info
        print(
            f"\n== {name}: {'built' if info['built'] else 'loaded'} in "
            f"{time.perf_counter() - t:.1f} s ({info['path']}); int8 dot products: "
            f"{cpu_int8_dot_supported()}, 7-bit weights: {info['settings']['reduce_range']}, "
            f"FFN output fp32: {ffn_fp32}, min probe cosine to fp32 "
            f"{info['probe_min_cosine']:.4f}, {info['threads']} ORT threads"
        )
        out[name] = m
    return out


def _flatten(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(d, float | int) and not isinstance(d, bool):
        out[prefix.rstrip(".")] = float(d)
    return out


def _pair_name(key: str) -> str:
    x, y = key.split(".")[-2:]
    return f"{x}-{y}" if x != y else f"{x} mono"


def map_check(args: argparse.Namespace, model: Any, int8: dict[str, Any]) -> None:
    """mAP drift of each lower precision against babelir fp32 on the held-out articles."""
    from babelir.evaluation.lareqa import score_benchmark

    bench = load_slice(args.data_dir, args.map_languages, "%4==0")
    questions, candidates = bench.question_texts, bench.candidate_texts()
    print(
        f"\n== mAP on XQuAD-R {args.map_languages} articles %4==0: "
        f"{bench.num_questions} questions, {bench.num_candidates} candidates"
    )

    def run(m: Any, precision: str) -> tuple[dict[str, float], float]:
        t = time.perf_counter()
        opts = EncodeOptions(precision=precision, show_progress=False)
        q = encode_texts(m, questions, prefix=QUERY, options=opts)
        c = encode_texts(m, candidates, prefix=PASSAGE, options=opts)
        return _flatten(score_benchmark(bench, q, c).to_dict()), time.perf_counter() - t

    ref, t_ref = run(model, "fp32")
    st_q = model.encode([QUERY + x for x in questions], normalize_embeddings=True)
    st_c = model.encode([PASSAGE + x for x in candidates], normalize_embeddings=True)
    st = _flatten(score_benchmark(bench, st_q, st_c).to_dict())
    how = kernels_for("bf16", "cpu")
    variants: dict[str, tuple[Any, str]] = {
        f"bf16 autocast{'' if how == 'native' else f' ({how})'}": (model, "bf16")
    }
    if args.bf16_weights:
        variants["bf16 weights"] = (copy.deepcopy(model).to(torch.bfloat16), "fp32")
    for name, m in int8.items():
        variants[name] = (m, "fp32")
    maps = [k for k in ref if k.startswith(("map.", "per_pair_map."))]
    pairs = [k for k in maps if k.startswith("per_pair_map.")]
    print(
        f"fp32 (babelir, {t_ref:.0f} s): mono {ref['map.mono']:.4f} cross "
        f"{ref['map.cross']:.4f} multi {ref['map.multi']:.4f}; plain st-encode max |diff| "
        f"{max(abs(st[k] - ref[k]) for k in maps):.5f}"
    )
    rows = []
    for name, (m, precision) in variants.items():
        got, el = run(m, precision)
        diffs = {k: got[k] - ref[k] for k in maps}
        worst = max(pairs, key=lambda k: abs(diffs[k]))
        worst_any = max(abs(d) for d in diffs.values())
        rows.append(
            f"| {name} | {diffs['map.mono']:+.4f} | {diffs['map.cross']:+.4f} | "
            f"{diffs['map.multi']:+.4f} | {diffs[worst]:+.4f} ({_pair_name(worst)}) | "
            f"{worst_any:.4f} | {'yes' if worst_any <= 0.002 else 'no'} | {el:.0f} s |"
        )
        print(
            f"{name:18s} ({el:.0f} s): mono {got['map.mono']:.4f} ({diffs['map.mono']:+.4f}) "
            f"cross {got['map.cross']:.4f} ({diffs['map.cross']:+.4f}) multi "
            f"{got['map.multi']:.4f} ({diffs['map.multi']:+.4f}); max |diff| over "
            f"{len(maps)} mAPs {worst_any:.4f} -> "
            f"{'within' if worst_any <= 0.002 else 'OUTSIDE'} 0.002"
        )
    print(
        f"\nmAP drift vs babelir fp32 ({len(pairs)} language pairs; fp32 took {t_ref:.0f} s):\n"
        "| precision | mono | cross | multi | worst pair | max abs drift | within 0.002 | "
        "time |\n|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


def _rss_child(mode: str, model_dir: str, corpus: str, out: str, chunk: str) -> None:
    from babelir.encoding.streaming import encode_to_disk
    from babelir.models.loading import load_model

    model = load_model(model_dir, device="cpu", max_seq_length=64)
    with torch.no_grad():  # page in every weight (safetensors may map them lazily)
        for param in model.parameters():
            param.sum()
    gc.collect()
    reset_peak_rss()  # loading peaks above encoding; measure the encoding phase only
    before = rss_mb()

    def lines():
        with open(corpus, encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\n")

    t = time.perf_counter()
    if mode == "stream":
        encode_to_disk(
            model, lines(), out, prefix=PASSAGE, chunk_size=int(chunk), options=QUIET
        )
    else:
        emb = encode_texts(model, list(lines()), prefix=PASSAGE, options=QUIET)
        np.save(out, emb)
    print(
        json.dumps(
            {"loaded_mb": before, "peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - t}
        )
    )


def rss(args: argparse.Namespace, model: Any) -> None:
    texts = sample_candidates(args.data_dir, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        small = copy.deepcopy(model)  # real weights, 1 layer: memory, not quality, is measured
        bert = small[0].auto_model
        bert.encoder.layer = bert.encoder.layer[:1]
        bert.config.num_hidden_layers = 1
        small.save(f"{tmp}/model")
        del small
        print(
            f"\n== peak RSS (MB) encoding a corpus read line by line from a file; e5-small "
            f"cut to 1 layer, dim 384, max length 64; base {args.rss_base} texts "
            "(= the stream's chunk size)"
        )
        print(f"{'texts':>8s} {'stream to .npy':>15s} {'in memory':>10s}  (RSS after load)")
        for factor in (1, 10, 100):
            n = args.rss_base * factor
            corpus = Path(tmp) / "corpus.txt"
            with open(corpus, "w", encoding="utf-8") as f:
                for i in range(n):
                    f.write(f"{texts[i % len(texts)]} #{i}\n")
            row = {}
            for mode in ("stream", "memory"):
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--rss-child",
                        mode,
                        f"{tmp}/model",
                        str(corpus),
                        f"{tmp}/out.npy",
                        str(args.rss_base),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{n:8d} {row['stream']['peak_mb']:15.0f} {row['memory']['peak_mb']:10.0f}  "
                f"({row['stream']['loaded_mb']:.0f}; stream {row['stream']['seconds']:.0f} s)"
            )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--candidates", type=int, default=300, help="sentences timed per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--unit", type=int, default=300, help="sentences per timed trial")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument(
        "--bf16",
        action="store_true",
        help="also time bf16 autocast where the CPU lacks native bf16 (its matmuls on fp32 "
        "kernels; BABELIR_BF16_KERNELS=onednn: torch's emulation, slow)",
    )
    p.add_argument(
        "--map", action="store_true", help="mAP drift of bf16 and int8 vs fp32 on held-out articles"
    )
    p.add_argument(
        "--map-languages", default="en,de,zh", help="comma-separated codes, or 'all' (11)"
    )
    p.add_argument("--no-int8", action="store_true", help="skip the int8 (ONNX Runtime) rows")
    p.add_argument(
        "--int8-all-matmuls",
        action="store_true",
        help="also an int8 build that quantizes the FFN output projections too (faster, "
        "more drift)",
    )
    p.add_argument(
        "--int8-cache",
        type=Path,
        default=None,
        help="folder for the int8 build (default: <babelir cache>/int8; built once, reused)",
    )
    p.add_argument(
        "--bf16-weights",
        action="store_true",
        help="with --map: also a model converted to bf16 weights",
    )
    p.add_argument("--rss", action="store_true", help="peak RSS of streaming 1x/10x/100x")
    p.add_argument(
        "--rss-base", type=int, default=500, help="base corpus size, also the streaming chunk size"
    )
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--rss-child", nargs=5, help=argparse.SUPPRESS)
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args.threads)
    if args.rss_child:
        _rss_child(*args.rss_child)
        return
    if args.map_languages == "all":
        args.map_languages = ALL_LANGS
    print(machine_line())
    model = load_real_model(args.max_length)
    wanted = not args.no_int8 and (args.map or not args.skip_throughput)
    int8 = load_int8(args, model) if wanted else {}
    if not args.skip_throughput:
        throughput(args, model, int8)
    if args.map:
        map_check(args, model, int8)
    if args.rss:
        rss(args, model)


if __name__ == "__main__":
    main()

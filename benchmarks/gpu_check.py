"""One GPU check, ready before a GPU is: training throughput/MFU, bf16 encoding, paper-lite.

On a CUDA machine, within ``--budget`` seconds (default 450, under 8 minutes) and
installing nothing, this prints:

1. the GPU, its spec bf16 peak (where known) and a measured bf16 matmul peak;
2. the bf16 training step of multilingual-e5-small at batch 100 (the paper's), on batches
   drawn by babelir's sampler (hybrid, alpha 0.5) over the paper's nine training languages,
   with the trainer's loss (length-sorted MNRL) and AdamW: steps/s, tokens/s, model
   TFLOP/s and MFU against both peaks; then the end-to-end ``babelir.training.train`` run
   (sentence-transformers trainer + babelir sampler) for its steps/s;
3. encoding of the held-out XQuAD-R articles (``%4==0``, 11 languages): tokens/s in fp32
   and bf16 (and plain ``SentenceTransformer.encode`` fp32) and the bf16 mAP drift (mono,
   cross, multi, worst language pair);
4. ``babelir compare --profile paper-lite`` in the time left, if that profile exists.

``--dry-run`` runs the same code paths on the CPU with the tiny random test model, a few
steps and a slice of the data, in seconds (the test suite runs it). Example::

    python benchmarks/gpu_check.py                 # on the GPU machine
    python benchmarks/gpu_check.py --dry-run       # anywhere
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # the checkout's babelir, installed or not
    sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

ALL_LANGS = "ar,de,el,en,es,hi,ru,th,tr,vi,zh"
PAPER_TRAIN = "ar,de,en,es,hi,ru,th,tr,zh"
#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets;
#: the first name that occurs in ``torch.cuda.get_device_name()`` wins.
SPEC_BF16_TFLOPS = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("A6000", 155.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
)


class Budget:
    """Wall-clock budget for the whole script; later sections get what is left."""

    def __init__(self, seconds: float) -> None:
        self.start = time.perf_counter()
        self.seconds = seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spec_peak(name: str) -> float | None:
    for key, tflops in SPEC_BF16_TFLOPS:
        if key.lower() in name.lower():
            return tflops
    return None


def measured_peak(device: torch.device, n: int, seconds: float = 2.0) -> float:
    """Best bf16 matmul TFLOP/s over ``seconds`` of n x n x n products."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    sync(device)
    best, spent = float("inf"), 0.0
    while spent < seconds:
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        sync(device)
        el = (time.perf_counter() - t) / 5
        best, spent = min(best, el), spent + el * 5
    return 2 * n**3 / best / 1e12


def train_flops_per_token(model: Any, seq_len: float) -> float:
    """fwd+bwd FLOPs per token: 6 x dense non-embedding weights + attention (12 L d s)."""
    config = model[0].auto_model.config
    dense = sum(
        p.numel() for n, p in model.named_parameters() if "embeddings" not in n and p.dim() == 2
    )
    return 6 * dense + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def load_encoder_model(args: argparse.Namespace, device: str) -> Any:
    from babelir.models.loading import load_model

    return load_model(args.model, device=device, max_seq_length=args.max_length)


def train_config(args: argparse.Namespace, output: Path, steps: int) -> Any:
    from babelir.training import TrainConfig

    return TrainConfig(
        model=args.model,
        strategy="hybrid",
        alpha=0.5,
        data_dir=str(args.data_dir),
        train_data="xquad-r",
        languages=args.train_languages.split(","),
        articles=args.train_articles,
        val_articles="none",
        batch_size=args.batch_size,
        max_steps=steps,
        eval_steps=0,
        select="last",
        save_steps=10**6,
        max_seq_length=args.max_length,
        precision="bf16",
        output=output,
    )


def training_step(args: argparse.Namespace, device: torch.device, budget: Budget) -> None:
    """Timed bf16 steps on babelir-sampled batches, pre-tokenized (the trainer's warm path)."""
    from datasets import Dataset

    from babelir.models.loading import resolve_prefixes
    from babelir.training.data import loss_columns
    from babelir.training.trainer import SamplerFactory, _make_loss, build_training_data

    cfg = train_config(args, Path(tempfile.mkdtemp()), args.steps)
    t = time.perf_counter()
    td = build_training_data(cfg)
    dataset = loss_columns(Dataset.from_dict(td.table))
    sampler = SamplerFactory(cfg, td.table)(
        dataset, batch_size=args.batch_size, drop_last=True, seed=0
    )
    model = load_encoder_model(args, str(device))
    qp, pp = resolve_prefixes(args.model, model, None, None)
    loss_fn = _make_loss(cfg, model)
    opt_kwargs = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01, **opt_kwargs)
    batches = []
    tok_t = time.perf_counter()
    for idx in sampler:
        rows = dataset[list(idx)]
        batches.append(
            [
                model.preprocess(rows["query"], prompt=qp or None),
                model.preprocess(rows["positive"], prompt=pp or None),
            ]
        )
        if len(batches) == args.warmup + args.steps:
            break
    tok_s = (time.perf_counter() - tok_t) / len(batches)
    print(
        f"\n== training step: {len(td.data.items)} items in {len(td.data.languages)} languages, "
        f"{len(dataset)} pairs, strategy hybrid (alpha 0.5), batch {args.batch_size}, max length "
        f"{args.max_length}; set-up {time.perf_counter() - t:.1f} s; tokenizing a batch "
        f"{tok_s * 1000:.0f} ms (CPU, done once per text by the trainer)"
    )
    if len(batches) < args.warmup + 1:
        print(f"only {len(batches)} batches: too little data for a timing")
        return
    model.train()
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    losses = {
        f"trainer loss ({type(loss_fn).__name__})": loss_fn,
        "plain MNRL, one padded block per column": MultipleNegativesRankingLoss(
            model, scale=cfg.scale
        ),
    }
    for label, fn in losses.items():
        _timed_steps(args, device, budget, model, optimizer, fn, batches, label)
    del model, optimizer, batches


def _timed_steps(
    args: argparse.Namespace,
    device: torch.device,
    budget: Budget,
    model: Any,
    optimizer: Any,
    loss_fn: Any,
    batches: list[Any],
    label: str,
) -> None:
    labels = torch.zeros(args.batch_size, device=device)
    step_times: list[float] = []
    tokens, seq = 0, []
    for i, features in enumerate(batches):
        feats = [
            {k: v.to(device) if torch.is_tensor(v) else v for k, v in f.items()} for f in features
        ]
        sync(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(feats, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if i >= args.warmup:
            step_times.append(time.perf_counter() - t)
            for f in feats:
                lengths = f["attention_mask"].sum(1)
                tokens += int(lengths.sum())
                seq.append(float(lengths.float().mean()))
        if budget.left() < args.reserve + 60:
            break
    if not step_times:
        print(f"{label}: no time left for timed steps")
        return
    steps, el = len(step_times), sum(step_times)
    mean_seq = sum(seq) / len(seq)
    flops = train_flops_per_token(model, mean_seq) * tokens / el / 1e12
    mfu = ", ".join(
        f"MFU {flops / peak:.1%} of {what} {peak:.3g}"
        for what, peak in (("spec", args.spec_peak), ("measured", args.measured_peak))
        if peak
    )
    print(
        f"{label}: bf16 autocast, {steps} timed steps after {args.warmup} warm-up: "
        f"{steps / el:.2f} steps/s ({el / steps * 1000:.1f} ms/step, median "
        f"{sorted(step_times)[steps // 2] * 1000:.1f}), {args.batch_size * steps / el:,.0f} "
        f"pairs/s, {tokens / el:,.0f} real tokens/s (mean {mean_seq:.1f} tokens/text), "
        f"{flops:.3g} model TFLOP/s; {mfu}; last loss {loss.item():.3f}"
    )


def end_to_end_train(args: argparse.Namespace, budget: Budget) -> None:
    """babelir.training.train (ST trainer + babelir sampler), as the compare runs use it."""
    import json

    from babelir.training import train
    from babelir.training.save import MARKER

    with tempfile.TemporaryDirectory() as tmp:
        cfg = train_config(args, Path(tmp) / "run", args.train_steps)
        t = time.perf_counter()
        out = train(cfg, show_progress=False)
        wall = time.perf_counter() - t
        info = json.loads((Path(out) / MARKER).read_text(encoding="utf-8"))
    timing = info.get("timing_s", {})
    steps = info.get("global_steps", args.train_steps)
    run_s = timing.get("train") or wall
    print(
        f"\n== babelir.training.train, {steps} steps of batch {args.batch_size} (hybrid, "
        f"precision bf16: {'bf16 autocast' if torch.cuda.is_available() else 'fp32 on CPU'}): "
        f"{steps / run_s:.2f} steps/s in the trainer loop "
        f"({run_s:.1f} s; prepare {timing.get('prepare', 0):.1f} s; {wall:.1f} s in all)"
    )


def encoding(args: argparse.Namespace, device: torch.device, budget: Budget) -> None:
    """Tokens/s of fp32 vs bf16 encoding and the bf16 mAP drift on held-out articles."""
    from babelir.data.lareqa import load_benchmark
    from babelir.encoding.encoder import encode_texts
    from babelir.encoding.options import EncodeOptions
    from babelir.evaluation.lareqa import score_benchmark

    model = load_encoder_model(args, str(device))
    from babelir.models.loading import resolve_prefixes

    qp, pp = resolve_prefixes(args.model, model, None, None)
    bench = load_benchmark(
        "xquad-r",
        args.data_dir,
        languages=args.eval_languages.split(","),
        articles=args.eval_articles,
    )
    questions, candidates = bench.question_texts, bench.candidate_texts()
    texts = [qp + q for q in questions] + [pp + c for c in candidates]
    enc = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
    tokens = sum(len(ids) for ids in enc["input_ids"])
    print(
        f"\n== encoding XQuAD-R {args.eval_languages} articles {args.eval_articles}: "
        f"{len(questions)} questions + {len(candidates)} candidates, {tokens:,} tokens; "
        f"babelir batches of <= {args.max_tokens} padded tokens"
    )

    def ours(precision: str) -> tuple[Any, Any]:
        opts = EncodeOptions(
            precision=precision, max_tokens=args.max_tokens, batch_size=4096, show_progress=False
        )
        q = encode_texts(model, questions, prefix=qp, options=opts)
        c = encode_texts(model, candidates, prefix=pp, options=opts)
        return q, c

    def plain() -> tuple[Any, Any]:
        q = model.encode([qp + x for x in questions], batch_size=128, normalize_embeddings=True)
        c = model.encode([pp + x for x in candidates], batch_size=128, normalize_embeddings=True)
        return q, c

    runs = {"st-encode fp32": plain, "babelir fp32": lambda: ours("fp32")}
    runs["babelir bf16"] = lambda: ours("bf16")
    results: dict[str, Any] = {}
    rates: dict[str, float] = {}
    for name, fn in runs.items():
        fn()  # warm-up: kernels, allocator
        sync(device)
        best = float("inf")
        for _ in range(args.encode_rounds):
            t = time.perf_counter()
            results[name] = fn()
            sync(device)
            best = min(best, time.perf_counter() - t)
        rates[name] = tokens / best
    base = rates["st-encode fp32"]
    for name, rate in rates.items():
        print(f"{name:16s} {rate:12,.0f} tok/s  x{rate / base:5.2f} vs st-encode fp32")

    def flat(q: Any, c: Any) -> dict[str, float]:
        d = score_benchmark(bench, q, c).to_dict()
        out = {f"map.{k}": v for k, v in d["map"].items()}
        for x, row in d["per_pair_map"].items():
            out.update({f"pair.{x}-{y}": v for y, v in row.items() if v is not None})
        return out

    ref, got = flat(*results["babelir fp32"]), flat(*results["babelir bf16"])
    diffs = {k: got[k] - ref[k] for k in ref}
    pairs = [k for k in diffs if k.startswith("pair.")]
    worst = max(pairs, key=lambda k: abs(diffs[k]))
    worst_any = max(abs(v) for v in diffs.values())
    print(
        f"mAP fp32: mono {ref['map.mono']:.4f} cross {ref['map.cross']:.4f} multi "
        f"{ref['map.multi']:.4f}\n"
        "| precision | mono | cross | multi | worst pair | max abs drift | within 0.002 |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| bf16 vs fp32 | {diffs['map.mono']:+.4f} | {diffs['map.cross']:+.4f} | "
        f"{diffs['map.multi']:+.4f} | {diffs[worst]:+.4f} ({worst[5:]}) | {worst_any:.4f} | "
        f"{'yes' if worst_any <= 0.002 else 'no'} |"
    )


def compare_paper_lite(args: argparse.Namespace, budget: Budget) -> None:
    profile = importlib.resources.files("babelir.profiles") / f"{args.profile}.yaml"
    if not profile.is_file():
        print(f"\n== compare: no '{args.profile}' profile in this checkout; skipped")
        return
    out = args.compare_output or Path(tempfile.mkdtemp()) / f"compare-{args.profile}"
    cmd = [
        sys.executable,
        "-c",
        "from babelir.cli.main import main; main()",
        "compare",
        "--profile",
        args.profile,
        "--output",
        str(out),
        "--data-dir",
        str(args.data_dir),
        "--quiet",
    ]
    if args.model:
        cmd += ["--model", args.model]
    if args.dry_run:
        cmd.append("--dry-run")
    limit = budget.left() - 5
    if limit < 30:
        print(f"\n== compare --profile {args.profile}: skipped, {budget.left():.0f} s left")
        return
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    print(
        f"\n== babelir compare --profile {args.profile} (limit {limit:.0f} s) -> {out}", flush=True
    )
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        print(
            f"did not finish within {limit:.0f} s; run it alone: babelir compare --profile "
            f"{args.profile}"
        )
        return
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-25:]
    print("\n".join(tail))
    print(f"exit status {proc.returncode}, {time.perf_counter() - t:.0f} s")


def dry_run_setup(args: argparse.Namespace, tmp: Path) -> None:
    """The tiny random test model and a slice of the data: same code paths, in seconds."""
    sys.path.insert(0, str(REPO / "tests"))
    from testkit.tiny_model import make_tiny_model

    from babelir.data.lareqa import load_benchmark

    bench = load_benchmark("xquad-r", args.data_dir, languages=["en", "de"], articles="0-3")
    texts = bench.question_texts + bench.candidate_texts()
    folder = tmp / "tiny-model"
    make_tiny_model(tmp / "build", texts).save(str(folder))
    args.model = str(folder)
    args.train_languages, args.train_articles = "en,de", "1-3"
    args.eval_languages, args.eval_articles = "en,de", "0"
    args.batch_size, args.steps, args.warmup, args.train_steps = 8, 3, 1, 2
    args.max_length, args.encode_rounds = 64, 1


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny model, a few steps")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for everything")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("BABELIR_DATA_DIR") or REPO.parent / "shared" / "data"),
    )
    p.add_argument("--model", default=None, help="model (default: multilingual-e5-small)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=30, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--train-steps", type=int, default=100, help="end-to-end train() steps")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-tokens", type=int, default=65536, help="encoding token budget")
    p.add_argument("--encode-rounds", type=int, default=2)
    p.add_argument("--profile", default="paper-lite")
    p.add_argument("--compare-output", type=Path, default=None)
    p.add_argument("--skip-compare", action="store_true")
    p.add_argument("--reserve", type=float, default=240.0, help="seconds kept for the compare run")
    args = p.parse_args()
    args.train_languages, args.train_articles = PAPER_TRAIN, "%4!=0"
    args.eval_languages, args.eval_articles = ALL_LANGS, "%4==0"
    budget = Budget(args.budget)
    with tempfile.TemporaryDirectory() as tmp:
        if args.dry_run:
            dry_run_setup(args, Path(tmp))
            args.reserve, args.max_tokens = 0.0, 2048
            device = torch.device("cpu")
        elif not torch.cuda.is_available():
            sys.exit("error: no CUDA device (use --dry-run to check the script on a CPU)")
        else:
            device = torch.device("cuda")
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            cap = torch.cuda.get_device_capability(device)
            memory = torch.cuda.get_device_properties(device).total_memory / 2**30
            print(
                f"gpu: {name} (sm_{cap[0]}{cap[1]}, {memory:.0f} GiB), "
                f"torch {torch.__version__}, CUDA {torch.version.cuda}, bf16: "
                f"{torch.cuda.is_bf16_supported()}"
            )
            args.spec_peak = spec_peak(name)
        else:
            print(f"dry run on the CPU: torch {torch.__version__}, tiny model {args.model}")
            args.spec_peak = None
        args.measured_peak = measured_peak(device, 8192 if device.type == "cuda" else 256, 1.0)
        print(
            f"bf16 peak: spec {args.spec_peak or 'unknown'} TFLOP/s, measured matmul "
            f"{args.measured_peak:.3g} TFLOP/s"
        )
        training_step(args, device, budget)
        end_to_end_train(args, budget)
        encoding(args, device, budget)
        if not args.skip_compare:
            compare_paper_lite(args, budget)
    print(f"\ngpu_check done in {budget.elapsed():.0f} s (budget {args.budget:.0f} s)")


if __name__ == "__main__":
    main()

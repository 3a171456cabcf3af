"""Training step time of babelir's lean step vs plain sentence-transformers, on this machine.

One step = tokenize the batch, forward, MNRL loss, backward, AdamW step, on real
multilingual-e5-small with mixed-language XQuAD-R (question, answer sentence) pairs.
Variants, each on its own copy of the model, run the same batches interleaved:

- ``st``: what ``SentenceTransformerTrainer`` does: ``model.preprocess`` per column (one
  padded block per column), ``MultipleNegativesRankingLoss``, AdamW over all weights;
- ``babelir``: ``PretokenizedPreprocess`` (warm, as from the second epoch on) and
  ``LengthSortedLoss`` (length-sorted chunks): same training, same gradients;
- ``babelir+frozen``: also freezes the word embeddings (a different training: 96M of the
  118M weights get no gradient and no optimizer state);
- ``babelir+bf16`` / ``babelir+frozen+bf16``: the same steps under bf16 autocast exactly as
  ``babelir train --precision bf16`` runs them on a CPU (transformers' ``bf16=True``:
  accelerate wraps the model's forward in ``torch.autocast("cpu", bfloat16)`` and casts its
  outputs to fp32; master weights, AdamW state and the loss stay fp32), each against its
  fp32 row in the same run.

With ``--job-steps N`` (> 0) it then times whole quick-recipe training jobs
(:func:`babelir.training.train`: real data, validation every ``--job-eval-steps`` steps,
best-validation-loss selection, frozen word embeddings, lr 1e-4) in fp32 and in bf16,
alternating, and prints each job's wall time, its validation share and the ratio.

On a CPU without native bf16 (AVX512_BF16 / AMX) the bf16 rows run their matmuls on fp32
kernels with bf16 rounding, as ``babelir train --precision bf16`` does there
(:mod:`babelir.precision.emulated_bf16`): bf16 numerics, ~1.3x fp32's step time on a 2-core Zen 3.
``--onednn-bf16`` adds a frozen bf16 row on torch's own (oneDNN-emulated) bf16 kernels,
~22x fp32's step time there (73 s against 3.3 s, ``--rounds 2``, 2026-12-03): keep
``--rounds`` small with it.

Example: ``python benchmarks/bench_train_step.py --batch-size 32 --rounds 4 --job-steps 20``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import (
    ALL_LANGS,
    DEFAULT_DATA,
    add_threads_option,
    load_real_model,
    load_slice,
    machine_line,
    med,
    set_threads,
)

from babelir.precision.emulated_bf16 import bf16_kernels
from babelir.precision.resolver import cpu_bf16_supported
from babelir.training.fast import (
    DEFAULT_TRAIN_MAX_TOKENS,
    LengthSortedLoss,
    PretokenizedPreprocess,
    chunk_plan,
)

QUERY, PASSAGE = "query: ", "passage: "


def make_batches(data_dir: Path, languages: str, batch_size: int, n: int, seed: int = 0):
    bench = load_slice(data_dir, languages, "%4!=0")
    cands = bench.candidate_texts()
    rng = random.Random(seed)
    pairs = [
        (q, cands[rng.choice(list(rel))])
        for q, rel in zip(bench.question_texts, bench.relevant, strict=True)
        if len(rel)
    ]
    rng.shuffle(pairs)
    return [pairs[i * batch_size : (i + 1) * batch_size] for i in range(n)]


def autocast_forward(model: Any) -> None:
    """What the trainer does to the model with ``bf16=True`` on a CPU (accelerate's
    ``prepare_model``): forward under bf16 autocast, floating outputs cast back to fp32."""
    from accelerate.utils import convert_outputs_to_fp32

    cast = torch.autocast("cpu", dtype=torch.bfloat16)
    model.forward = convert_outputs_to_fp32(cast(model.forward))


class Variant:
    def __init__(
        self,
        model: Any,
        *,
        lean: bool,
        frozen: bool,
        max_tokens: int,
        bf16: bool = False,
        onednn: bool = False,
    ) -> None:
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )

        self.model = model
        # as the trainer runs bf16: matmuls on fp32 kernels where bf16 is not native
        # (babelir.precision.emulated_bf16), unless this row measures oneDNN's emulation
        self.kernels = "bf16" if bf16 and not onednn else "fp32"
        if bf16:
            autocast_forward(model)
        if frozen:
            model[0].auto_model.embeddings.word_embeddings.weight.requires_grad_(False)
        base = MultipleNegativesRankingLoss(model)
        self.loss = LengthSortedLoss(base, max_tokens) if lean else base
        self.preprocess = PretokenizedPreprocess.for_model(model) if lean else model.preprocess
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=3e-5, weight_decay=0.01)
        model.train()

    def features(self, batch: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return [
            self.preprocess([q for q, _ in batch], prompt=QUERY),
            self.preprocess([p for _, p in batch], prompt=PASSAGE),
        ]

    def step(self, batch: list[tuple[str, str]]) -> float:
        with bf16_kernels(self.kernels, "cpu"):
            loss = self.loss(self.features(batch), torch.zeros(len(batch)))
            loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


def gradient_check(model: Any, batch: list[tuple[str, str]], max_tokens: int) -> float:
    """Largest |grad difference| / largest |grad| of plain vs length-sorted (no dropout)."""
    m = copy.deepcopy(model).eval()
    grads = []
    for lean in (False, True):
        v = Variant(m, lean=lean, frozen=False, max_tokens=max_tokens)
        m.eval()  # Variant() switches to train mode; dropout would differ between paths
        m.zero_grad()
        v.loss(v.features(batch), torch.zeros(len(batch))).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    scale = max(g.abs().max().item() for g in grads[0].values())
    return max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0]) / scale


def model_folder(arg: str | None) -> str:
    """The real model as a folder (jobs load it by path): --model, $BABELIR_MODEL, the
    test suite's build, else babelir's own (built once)."""
    folder = arg or os.environ.get("BABELIR_MODEL")
    if folder:
        return folder
    test_cache = Path.home() / ".cache" / "babelir-test" / "models" / "multilingual-e5-small-q4"
    if test_cache.is_dir():
        return str(test_cache)
    from babelir.models.offline_e5 import build_offline_e5

    return str(build_offline_e5())


def run_job(folder: str, precision: str, args: argparse.Namespace) -> dict[str, float]:
    """One quick-recipe training job; wall seconds and the run's own timing record."""
    from babelir.training import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="bench-job-") as tmp:
        # a fresh embedding cache: the step-0 validation must not hit the other job's
        old = os.environ.get("BABELIR_CACHE_DIR")
        os.environ["BABELIR_CACHE_DIR"] = str(Path(tmp) / "cache")
        try:
            cfg = TrainConfig(
                output=Path(tmp) / "run", model=folder, train_data="xquad-r",
                data_dir=str(args.data_dir), languages=args.job_languages.split(","),
                articles="%4!=0", batch_size=args.batch_size, max_steps=args.job_steps,
                eval_steps=args.job_eval_steps, val_items=args.job_val_items,
                select="best-val-loss", learning_rate=1e-4, freeze_embeddings=True,
                max_seq_length=args.max_length, save_steps=args.job_eval_steps,
                precision=precision, seed=0,
            )  # fmt: skip
            t = time.perf_counter()
            out = train(cfg, show_progress=False)
            wall = time.perf_counter() - t
            info = json.loads((out / "babelir-train.json").read_text())
        finally:
            if old is None:
                os.environ.pop("BABELIR_CACHE_DIR", None)
            else:
                os.environ["BABELIR_CACHE_DIR"] = old
    return {"wall": wall, **info["timing_s"], "precision": info["train_precision"]}


def job_rows(args: argparse.Namespace) -> None:
    # Imported (its numba kernel compiled or loaded from numba's cache, ~10 s when cold)
    # before the first job, and with the usual cache dir: otherwise the first job's first
    # validation would pay it.
    import babelir.evaluation.metrics  # noqa: F401

    folder = model_folder(args.model)
    order = ["fp32", "bf16"]
    runs: dict[str, list[dict[str, Any]]] = {"fp32": [], "bf16": []}
    for r in range(args.job_rounds):  # alternate who goes first
        for precision in order[r % 2 :] + order[: r % 2]:
            runs[precision].append(run_job(folder, precision, args))
    print(
        f"\n== quick training job: {args.job_steps} steps of {args.batch_size} pairs "
        f"({args.job_languages}), validation every {args.job_eval_steps} steps on "
        f"{args.job_val_items} items, max length {args.max_length}, {args.job_rounds} round(s)"
    )
    walls = {k: med([j["wall"] for j in v]) for k, v in runs.items()}
    for precision, jobs in runs.items():
        val = med([j["validation"] for j in jobs])
        enc = med([j.get("validation_encode", 0.0) for j in jobs])
        each = ", ".join(f"{j['wall']:.1f}" for j in jobs)
        print(
            f"{precision:5s} (recorded train_precision {jobs[0]['precision']}) "
            f"{walls[precision]:7.1f} s/job  x{walls['fp32'] / walls[precision]:4.2f} vs fp32  "
            f"validation {val:.1f} s ({val / walls[precision]:.0%}; encoding {enc:.1f} s), "
            f"jobs: {each}"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--languages", default=ALL_LANGS)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=4, help="timed steps per variant")
    p.add_argument("--max-tokens", type=int, default=DEFAULT_TRAIN_MAX_TOKENS)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--model", default=None, help="model folder (default: the real e5-small)")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast rows")
    p.add_argument(
        "--onednn-bf16",
        action="store_true",
        help="without native bf16: add a frozen bf16 row on oneDNN's emulated kernels "
        "(~70 s per step of 32 pairs on a Zen 3) next to babelir's fp32-kernel bf16",
    )
    p.add_argument("--job-steps", type=int, default=0, help="steps per quick job (0: no jobs)")
    p.add_argument("--job-eval-steps", type=int, default=10, help="validate every N job steps")
    p.add_argument("--job-val-items", type=int, default=64, help="validation items per round")
    p.add_argument("--job-rounds", type=int, default=1, help="jobs per precision")
    p.add_argument("--job-languages", default="ar,de,en,es,hi,ru,th,tr,zh")
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args.threads)
    print(machine_line())
    if not args.no_bf16 and not cpu_bf16_supported():
        print(
            "NOTE: this CPU has no native bf16 (AVX512_BF16/AMX): the bf16 rows run their "
            "matmuls on fp32 kernels with bf16 rounding (babelir.precision.emulated_bf16), the "
            "numerics of a bf16 CPU but not its speed"
        )
    if args.model:
        os.environ["BABELIR_MODEL"] = args.model
    model = load_real_model(args.max_length)
    batches = make_batches(args.data_dir, args.languages, args.batch_size, args.rounds + 1)
    rel = gradient_check(model, batches[0], args.max_tokens)
    print(
        f"gradient check (eval mode, batch {args.batch_size}): max |plain - sorted| / "
        f"max |grad| = {rel:.2e}"
    )
    plain = Variant(model, lean=False, frozen=False, max_tokens=0)
    real = padded = chunked = 0
    for b in batches[1:]:
        for f in plain.features(b):
            lengths = f["attention_mask"].sum(1).tolist()
            real += sum(lengths)
            padded += f["attention_mask"].numel()
            chunked += sum(
                len(c) * max(lengths[i] for i in c) for c in chunk_plan(lengths, args.max_tokens)
            )
    print(
        f"tokens per step: {real / args.rounds:.0f} real; st pads each column to its longest: "
        f"{padded / args.rounds:.0f} ({padded / real - 1:+.0%}); sorted chunks of "
        f"{args.max_tokens}: {chunked / args.rounds:.0f} ({chunked / real - 1:+.0%})"
    )
    del plain
    lean = {"lean": True, "max_tokens": args.max_tokens}
    variants = {
        "st": Variant(copy.deepcopy(model), lean=False, frozen=False, max_tokens=0),
        "babelir": Variant(copy.deepcopy(model), frozen=False, **lean),
    }
    if not args.no_bf16:
        variants["babelir+bf16"] = Variant(copy.deepcopy(model), frozen=False, bf16=True, **lean)
        variants["babelir+frozen+bf16"] = Variant(
            copy.deepcopy(model), frozen=True, bf16=True, **lean
        )
        if args.onednn_bf16 and not cpu_bf16_supported():
            variants["babelir+frozen+bf16-onednn"] = Variant(
                copy.deepcopy(model), frozen=True, bf16=True, onednn=True, **lean
            )
    variants["babelir+frozen"] = Variant(model, frozen=True, **lean)
    for v in variants.values():  # warm-up: allocator, optimizer state, tokenization cache
        v.step(batches[0])
        for b in batches[1:]:
            v.features(b)
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(args.rounds):  # same batch for every variant, rotating who goes first
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t, c = time.perf_counter(), time.process_time()
            variants[name].step(batches[1 + r])
            times[name].append(time.perf_counter() - t)
            cpu[name].append((time.process_time() - c) / torch.get_num_threads())
    chars = sum(len(q) + len(c) for b in batches[1:] for q, c in b)
    base = med(times["st"])
    print(
        f"\n== step time, batch {args.batch_size} pairs ({args.languages}), max length "
        f"{args.max_length}, chunk budget {args.max_tokens} tokens, {args.rounds} rounds "
        f"({chars} characters of text)"
    )
    for name, ts in times.items():
        print(
            f"{name:20s} {med(ts):6.2f} s/step  x{base / med(ts):4.2f} vs st  "
            f"(rounds: {', '.join(f'{t:.2f}' for t in ts)}); by CPU time "
            f"{med(cpu[name]):.2f} s, x{med(cpu['st']) / med(cpu[name]):4.2f}"
        )
    for name in [n for n in times if "+bf16" in n]:
        fp32 = name.split("+bf16")[0]
        speed = med(times[fp32]) / med(times[name])
        print(
            f"bf16 autocast vs fp32, same run: {name} runs at x{speed:.2f} the speed of "
            f"{fp32} (by CPU time x{med(cpu[fp32]) / med(cpu[name]):.2f})"
        )
    if args.job_steps > 0:
        job_rows(args)


if __name__ == "__main__":
    main()

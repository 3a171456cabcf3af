"""Training step time of babelir's lean step vs plain sentence-transformers, on this machine.

One step = tokenize the batch, forward, MNRL loss, backward, AdamW step, on real
multilingual-e5-small with mixed-language XQuAD-R (question, answer sentence) pairs.
Variants, each on its own copy of the model, run the same batches interleaved:

- ``st``: what ``SentenceTransformerTrainer`` does: ``model.preprocess`` per column (one
  padded block per column), ``MultipleNegativesRankingLoss``, AdamW over all weights;
- ``babelir``: ``PretokenizedPreprocess`` (warm, as from the second epoch on) and
  ``LengthSortedLoss`` (length-sorted chunks): same training, same gradients;
- ``babelir+frozen``: also freezes the word embeddings (a different training: 96M of the
  118M weights get no gradient and no optimizer state).

Example: ``python benchmarks/bench_train_step.py --batch-size 32 --rounds 4``
"""

from __future__ import annotations

import argparse
import copy
import random
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


class Variant:
    def __init__(self, model: Any, *, lean: bool, frozen: bool, max_tokens: int) -> None:
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )

        self.model = model
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
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args.threads)
    print(machine_line())
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
    variants = {
        "st": Variant(copy.deepcopy(model), lean=False, frozen=False, max_tokens=0),
        "babelir": Variant(
            copy.deepcopy(model), lean=True, frozen=False, max_tokens=args.max_tokens
        ),
        "babelir+frozen": Variant(model, lean=True, frozen=True, max_tokens=args.max_tokens),
    }
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
            f"{name:16s} {med(ts):6.2f} s/step  x{base / med(ts):4.2f} vs st  "
            f"(rounds: {', '.join(f'{t:.2f}' for t in ts)}); by CPU time "
            f"{med(cpu[name]):.2f} s, x{med(cpu['st']) / med(cpu[name]):4.2f}"
        )


if __name__ == "__main__":
    main()

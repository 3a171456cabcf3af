"""Validation during training: a held-out split of the training side, its loss and mAP.

The paper keeps the checkpoint with the lowest validation loss on held-out data that is
neither training nor test data. babelir carves the validation split out of the training
articles (LAReQA data) or items (JSONL, mMARCO), never out of the evaluation articles,
and every ``eval_steps`` computes on it:

* **val_loss**: InfoNCE with in-batch negatives at the training scale, on fixed batches
  that are the same for every strategy (half single-language, half X->Y), so the curves
  of different strategies are comparable;
* **val_mono_map / val_cross_map / val_multi_map**: LAReQA mAP with the validation
  questions against the validation positives (one per language per item), cheap because
  every text is encoded once per validation and both numbers reuse the embeddings.

Almost all of a validation round is encoding its texts; the loss batches, the mAP and a
copy of the best trainable weights are cheap next to it, writing them as a file is not
(docs/lab-notes/figures-from-code.md has the measurements). So :class:`ValidationRecord`
keeps the best weights in memory and writes them only with a training checkpoint (which a
resumed run needs), and every round encodes each validation text once, in the *training*
precision.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.errors import ConfigError, DataError
from babelir.core.io import atomic_path, write_json
from babelir.data.types import ArticleSelection, ParallelQA

VAL_EVERY = 10  # 'auto': every 10th training article (or item) validates
#: The curve and best point of a run, next to its checkpoints (read back on resume).
VALIDATION = "validation.json"
#: The best validated trainable weights, by step: ``best-weights-<step>.safetensors``.
BEST_PREFIX = "best-weights-"
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the split


def split_articles(train: str, val: str, n_articles: int) -> tuple[str, str | None]:
    """(training selection, validation selection) as explicit article lists.

    ``val`` is 'auto' (every 10th selected article, at least one), 'none', or an explicit
    selection that must lie inside ``train``; the validation articles are removed from
    training, so the two are disjoint by construction.
    """
    chosen = _indices(ArticleSelection.parse(train), n_articles)
    if val == "none":
        return train, None
    if val == "auto":
        if len(chosen) < 2:
            raise ConfigError(
                f"val_articles: 'auto' needs at least 2 training articles, articles "
                f"'{train}' selects {len(chosen)}; set val_articles to 'none'"
            )
        step = min(VAL_EVERY, len(chosen))
        held = [a for k, a in enumerate(chosen) if k % step == step // 2]
    else:
        held = _indices(ArticleSelection.parse(val), n_articles)
        outside = sorted(set(held) - set(chosen))
        if outside:
            raise ConfigError(
                f"val_articles: {', '.join(map(str, outside[:5]))} not among the training "
                f"articles '{train}'"
            )
        if len(held) == len(chosen):
            raise ConfigError("val_articles: leaves no training article")
    if not held:
        raise ConfigError(f"val_articles: '{val}' selects no article")
    keep = [a for a in chosen if a not in set(held)]
    return ",".join(map(str, keep)), ",".join(map(str, held))


def _indices(selection: ArticleSelection, n_articles: int) -> list[int]:
    return [a for a in range(n_articles) if selection.selects(a)]


def split_items(data: ParallelQA, val: str) -> tuple[ParallelQA, ParallelQA | None]:
    """The same for item-level data (JSONL, mMARCO, SQuAD-format sources).

    Items that carry their article (``group``: SQuAD-format sources) are held out by
    whole articles, every 10th by sorted name, so no validation question asks about a
    paragraph seen in training; items without one (JSONL, mMARCO) every 10th by sorted id.
    """
    if val == "none":
        return data, None
    if val != "auto":
        raise ConfigError(
            "val_articles: an explicit selection needs LAReQA-format data (articles); "
            "use 'auto' or 'none' for JSONL, mMARCO or SQuAD-format sources"
        )
    if any(item.group is not None for item in data.items):
        groups = sorted({item.group or item.id for item in data.items})
        if len(groups) < 2:
            raise ConfigError(
                "val_articles: 'auto' needs at least 2 training articles, got 1; "
                "set val_articles to 'none'"
            )
        step = min(VAL_EVERY, len(groups))
        held = set(groups[step // 2 :: step])
        key = [item.group or item.id for item in data.items]
    else:
        ids = sorted(item.id for item in data.items)
        if len(ids) < 2 * VAL_EVERY:
            raise ConfigError(
                f"val_articles: 'auto' needs at least {2 * VAL_EVERY} items, got {len(ids)}; "
                "set val_articles to 'none'"
            )
        held = set(ids[VAL_EVERY // 2 :: VAL_EVERY])
        key = [item.id for item in data.items]
    train = [it for it, k in zip(data.items, key, strict=True) if k not in held]
    val = [it for it, k in zip(data.items, key, strict=True) if k in held]
    return ParallelQA(train, source=data.source), ParallelQA(val, source=data.source)


def count_articles(folder: Path, lang: str) -> int:
    """Articles in one language file of a LAReQA folder (all files are parallel)."""
    path = Path(folder) / f"{lang}.json"
    try:
        doc = json.loads(path.read_text("utf-8"))
        return len(doc["data"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: cannot count articles ({e})") from None


# --------------------------------------------------------------------------- the measures


@dataclass
class ValidationSet:
    """Validation texts, encoded once per validation, and the fixed loss batches."""

    languages: list[str]
    question_texts: list[str]
    question_blocks: np.ndarray
    passage_texts: list[str]
    passage_blocks: np.ndarray
    relevant: list[np.ndarray]
    loss_batches: list[tuple[np.ndarray, np.ndarray]]  # (question rows, passage rows)
    item_ids: list[str]
    #: Seconds spent so far, by part ("encode", "score"), summed over measures.
    timing_s: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_data(
        cls, data: ParallelQA, batch_size: int, max_items: int | None = None
    ) -> ValidationSet:
        """Texts and loss batches of (at most ``max_items``, evenly spaced by id) items.

        Everything here depends on the data only, not on the run's seed or strategy, so
        the curves of all runs of a comparison are measured on the same texts and batches.
        """
        items = sorted(data.items, key=lambda it: it.id)
        if max_items is not None and len(items) > max_items:
            keep = np.linspace(0, len(items) - 1, max_items).round().astype(int)
            items = [items[i] for i in sorted(set(keep.tolist()))]
        data = ParallelQA(items, source=data.source)
        langs = sorted({lang for item in data.items for lang in item.sides})
        if len(data.items) < 2:
            raise DataError("validation split: fewer than 2 items")
        q_texts: list[str] = []
        q_blocks: list[int] = []
        q_rows: dict[tuple[int, str], int] = {}
        p_texts: list[str] = []
        p_blocks: list[int] = []
        p_rows: dict[tuple[int, str], int] = {}
        unique: dict[tuple[str, str], int] = {}  # questions sharing an answer share its row
        for i, item in enumerate(data.items):
            for lang, side in item.sides.items():
                q_rows[(i, lang)] = len(q_texts)
                q_texts.append(side.query)
                q_blocks.append(langs.index(lang))
                row = unique.setdefault((lang, side.positive), len(p_texts))
                if row == len(p_texts):
                    p_texts.append(side.positive)
                    p_blocks.append(langs.index(lang))
                p_rows[(i, lang)] = row
        relevant = []
        for i, item in enumerate(data.items):
            rows = np.array([p_rows[(i, lang)] for lang in item.sides], dtype=np.int64)
            relevant.extend(rows for _ in item.sides)
        rng = np.random.default_rng(0)
        size = max(2, min(batch_size, len(data.items)))
        batches: list[tuple[np.ndarray, np.ndarray]] = []
        for k, x in enumerate(langs):  # one mono and one cross pass per language
            y = langs[(k + 1) % len(langs)]
            for pl in (x, y) if y != x else (x,):
                members = [i for i, it in enumerate(data.items) if x in it.sides and pl in it.sides]
                pending = rng.permutation(members).tolist()
                while len(pending) >= size:  # no passage twice in a batch: true negatives
                    chunk: list[int] = []
                    seen: set[int] = set()
                    rest = []
                    for i in pending:
                        if len(chunk) < size and p_rows[(i, pl)] not in seen:
                            chunk.append(i)
                            seen.add(p_rows[(i, pl)])
                        else:
                            rest.append(i)
                    if len(chunk) < size:
                        break
                    pending = rest
                    batches.append(
                        (
                            np.array([q_rows[(i, x)] for i in chunk]),
                            np.array([p_rows[(i, pl)] for i in chunk]),
                        )
                    )
        return cls(
            langs,
            q_texts,
            np.array(q_blocks),
            p_texts,
            np.array(p_blocks),
            relevant,
            batches,
            [it.id for it in data.items],
        )

    def measure(
        self,
        model: Any,
        *,
        query_prefix: str,
        passage_prefix: str,
        scale: float,
        batch_size: int = 64,
        precision: str = "auto",
        cache: Any = None,
    ) -> dict[str, float | None]:
        """Validation loss and mAP of ``model`` now (eval mode; its mode is restored).

        Each question and passage text is encoded once, in ``precision`` (the trainer
        passes its resolved training precision, so ``auto`` means what training does).
        """
        from babelir.encoding.encoder import encode_texts
        from babelir.encoding.options import EncodeOptions
        from babelir.evaluation.metrics import evaluate_embeddings

        t0 = time.perf_counter()
        enc = EncodeOptions(
            batch_size=batch_size, show_progress=False, precision=precision, cache=cache
        )
        q = encode_texts(model, self.question_texts, prefix=query_prefix, options=enc)
        p = encode_texts(model, self.passage_texts, prefix=passage_prefix, options=enc)
        t1 = time.perf_counter()
        losses = []
        for qr, pr in self.loss_batches:
            logits = scale * (q[qr].astype(np.float64) @ p[pr].astype(np.float64).T)
            logits -= logits.max(1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            losses.append(float(-np.mean(np.diag(logp))))
        m = evaluate_embeddings(
            q, p, self.question_blocks, self.passage_blocks, self.relevant, self.languages
        ).to_dict()
        out: dict[str, float | None] = {
            "val_loss": float(np.mean(losses)) if losses else None,
            "val_mono_map": m["map"]["mono"],
            "val_cross_map": m["map"]["cross"] if len(self.languages) > 1 else None,
            "val_multi_map": m["map"]["multi"],
        }
        maps = [v for k, v in out.items() if k.endswith("_map") and v is not None]
        out["val_map"] = float(np.mean(maps)) if maps else None
        t2 = time.perf_counter()
        self.timing_s["encode"] = self.timing_s.get("encode", 0.0) + t1 - t0
        self.timing_s["score"] = self.timing_s.get("score", 0.0) + t2 - t1
        return out


def better(select: str, value: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Whether a validation point beats the best so far under ``select``."""
    key, sign = ("val_loss", -1.0) if select == "best-val-loss" else ("val_map", 1.0)
    v = value.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    if best is None or best.get(key) is None:
        return True
    return sign * v > sign * best[key]


class ValidationRecord:
    """The validation curve and the best weights of one run, crash-safe with its checkpoints.

    The best trainable weights are a CPU copy in memory (~0.03 s per new best, instead of
    a file per new best; memory: the trainable weights once more, 86 MB for e5-small with
    frozen word embeddings, 470 MB without). :meth:`persist` runs when the trainer writes
    a checkpoint, before the checkpoint is marked complete: it writes the best weights if
    they changed (``best-weights-<step>.safetensors``), then the curve and best point
    (:data:`VALIDATION`), then removes older weight files; every write is atomic. So the
    latest complete checkpoint always has, on disk, the best of the steps up to it, and a
    crash at any moment leaves ``validation.json`` naming a weight file that exists.
    """

    def __init__(self, folder: Path, select: str) -> None:
        self.folder, self.select = Path(folder), select
        self.curve: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.weights: dict[str, Any] | None = None  # name -> CPU tensor of ``best``'s step
        self.saved_step: int | None = None  # the best step whose weights are on disk
        self.timing_s: dict[str, float] = {"best_copy": 0.0, "persist": 0.0}

    def has(self, step: int) -> bool:
        return any(p["step"] == step for p in self.curve)

    def add(self, point: dict[str, Any], model: Any) -> bool:
        """Append a measured point; keep ``model``'s weights if it is the best so far."""
        self.curve.append(point)
        if self.select == "last" or not better(self.select, point, self.best):
            return False
        t0 = time.perf_counter()
        self.best = point
        self.weights = _copy_trainable(model, self.weights)
        self.timing_s["best_copy"] += time.perf_counter() - t0
        return True

    def _path(self, step: int) -> Path:
        return self.folder / f"{BEST_PREFIX}{step}.safetensors"

    def persist(self) -> None:
        """Write what a resume from the checkpoint being saved needs (see the class)."""
        t0 = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        best_step = self.best["step"] if self.best is not None else None
        if best_step is not None and best_step != self.saved_step and self.weights is not None:
            from safetensors.torch import save_file

            with atomic_path(self._path(best_step)) as tmp:
                save_file(self.weights, str(tmp), metadata={"step": str(best_step)})
            self.saved_step = best_step
        write_json(self.folder / VALIDATION, {"curve": self.curve, "best": self.best})
        for old in self.folder.glob(f"{BEST_PREFIX}*.safetensors"):
            if old != (self._path(best_step) if best_step is not None else None):
                old.unlink(missing_ok=True)
        self.timing_s["persist"] += time.perf_counter() - t0

    def restore(self, upto_step: int) -> None:
        """Take back the curve up to ``upto_step`` (the resumed checkpoint) and the best.

        A best later than the checkpoint is kept with its file: training is deterministic
        on resume, so that step is reached again with the same weights.
        """
        path = self.folder / VALIDATION
        if not path.is_file():
            return
        doc = json.loads(path.read_text("utf-8"))
        self.curve = [p for p in doc.get("curve", []) if p["step"] <= upto_step]
        best = doc.get("best")
        if best is not None and self._path(best["step"]).is_file():
            self.best, self.saved_step, self.weights = best, best["step"], None
        else:
            self.best = self.saved_step = self.weights = None

    def load_best(self, model: Any) -> None:
        """Put the best validated weights into ``model`` (trainable parameters only)."""
        import torch

        if self.best is None:
            return
        state = self.weights
        if state is None:  # restored from disk by a resumed run
            from safetensors.torch import load_file

            state = load_file(str(self._path(self.best["step"])))
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].device))


def _copy_trainable(model: Any, into: dict[str, Any] | None) -> dict[str, Any]:
    """CPU copies of ``model``'s trainable parameters, reusing ``into``'s buffers."""
    import torch

    out: dict[str, Any] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            buf = into.get(name) if into is not None else None
            if buf is None or buf.shape != p.shape or buf.dtype != p.dtype:
                buf = torch.empty(p.shape, dtype=p.dtype, device="cpu")
            buf.copy_(p.detach())
            out[name] = buf
    return out

"""Training steps that do no wasted work: length-sorted chunks and pre-tokenized text.

The sentence-transformers collator pads every column of a batch to its longest text, and
the loss runs each column as one padded block. With sentences of 10-128 tokens most of
that block is padding, and attention and FFN cost grow with it. :class:`LengthSortedLoss`
instead pools the rows of all columns, sorts them by real length and runs the model on
chunks of at most ``max_tokens`` padded tokens, then puts the embeddings back in order.
Padding is masked everywhere (attention, mean pooling), so each row's embedding and
hence the loss and its gradients are those of the padded block, up to float rounding;
only dropout draws differ, as they do between any two runs.

:class:`PretokenizedPreprocess` wraps ``model.preprocess`` so each (prompt, text) is
tokenized once per run rather than once per epoch; batches are re-padded from the cache
and equal what ``model.preprocess`` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from babelir.core.errors import ConfigError
from babelir.encoding.encoder import token_budget_batches

#: Padded tokens per forward chunk in training: the inference default. Most of the gain is
#: the padding removed; any budget of a few longest rows keeps that.
DEFAULT_TRAIN_MAX_TOKENS = 2048
_TEXT_KEYS = frozenset({"input_ids", "attention_mask", "token_type_ids"})


def _is_left_padded(mask: Tensor) -> bool:
    # Right-padded rows always start with a real token (CLS); left-padded short rows don't.
    return bool((mask[:, 0] == 0).any())


def _row_lengths(features: dict[str, Any]) -> Tensor:
    return features["attention_mask"].sum(dim=1)


def _split(features: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Per-row tensors vs per-batch metadata (``modality``, ``prompt_length``, ``task``)."""
    tensors = {k: v for k, v in features.items() if isinstance(v, Tensor)}
    return tensors, {k: v for k, v in features.items() if k not in tensors}


def _chunkable(features: dict[str, Any]) -> bool:
    """Right-padded text features: the only kind whose rows can be re-batched freely."""
    tensors, _ = _split(features)
    mask = tensors.get("attention_mask")
    return (
        "input_ids" in tensors
        and mask is not None
        and set(tensors) <= _TEXT_KEYS
        and all(t.dim() == 2 and t.shape == mask.shape for t in tensors.values())
        and not _is_left_padded(mask)
    )


def chunk_plan(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Row indices, longest first, cut to minimise padding (see ``token_budget_batches``)."""
    return [b.tolist() for b in token_budget_batches(lengths, max_tokens)]


def _embed_pooled(model: Any, columns: list[dict[str, Any]], max_tokens: int) -> list[Tensor]:
    """Embed columns that share metadata as one pool of rows, in sorted chunks."""
    tensors = [_split(f)[0] for f in columns]
    meta = _split(columns[0])[1]
    sizes = [len(t["input_ids"]) for t in tensors]
    lengths = torch.cat([_row_lengths(t) for t in tensors]).tolist()
    where = [(c, r) for c, n in enumerate(sizes) for r in range(n)]  # pooled row -> column, row
    pieces: list[Tensor] = []
    order: list[int] = []
    for chunk in chunk_plan(lengths, max_tokens):
        width = max(int(lengths[i]) for i in chunk)
        sub: dict[str, Any] = dict(meta)
        for key in tensors[0]:
            rows = []
            for i in chunk:
                c, r = where[i]
                row = tensors[c][key][r, :width]
                if row.shape[0] < width:  # a longer row from a narrower column: pad with 0s
                    row = nn.functional.pad(row, (0, width - row.shape[0]))
                rows.append(row)
            sub[key] = torch.stack(rows)
        pieces.append(model(sub)["sentence_embedding"])
        order.extend(chunk)
    stacked = torch.cat(pieces)
    inverse = torch.empty(len(order), dtype=torch.long, device=stacked.device)
    inverse[torch.tensor(order, device=stacked.device)] = torch.arange(
        len(order), device=stacked.device
    )
    return list(stacked[inverse].split(sizes))


def embed_sorted(
    model: Any, features_list: Sequence[dict[str, Any]], max_tokens: int = DEFAULT_TRAIN_MAX_TOKENS
) -> list[Tensor]:
    """One ``sentence_embedding`` tensor per column, computed in length-sorted chunks.

    Columns with the same metadata (prompt length, Router task...) and keys are pooled
    before sorting (more rows, tighter chunks); others are chunked on their own. Inputs
    that cannot be split (non-text, left padding) get one plain forward per column.
    """
    features_list = list(features_list)
    if not all(_chunkable(f) for f in features_list):
        return [model(dict(f))["sentence_embedding"] for f in features_list]
    groups: dict[str, list[int]] = {}
    for c, f in enumerate(features_list):
        tensors, meta = _split(f)
        groups.setdefault(repr((sorted(tensors), sorted(meta.items()))), []).append(c)
    out: list[Tensor | None] = [None] * len(features_list)
    for cols in groups.values():
        embs = _embed_pooled(model, [features_list[c] for c in cols], max_tokens)
        for c, e in zip(cols, embs, strict=True):
            out[c] = e
    return [e for e in out if e is not None]


class LengthSortedLoss(nn.Module):
    """Wrap an in-batch-negatives loss so its embeddings come from :func:`embed_sorted`.

    Works with any loss exposing ``compute_loss_from_embeddings`` (MNRL and its symmetric
    variant); the cached (GradCache) losses chunk by themselves and are rejected.
    """

    def __init__(self, loss: nn.Module, max_tokens: int = DEFAULT_TRAIN_MAX_TOKENS) -> None:
        super().__init__()
        if not hasattr(loss, "compute_loss_from_embeddings") or not hasattr(loss, "model"):
            raise ConfigError(
                f"length-sorted chunks need a loss with compute_loss_from_embeddings, "
                f"not {type(loss).__name__}"
            )
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        self.loss = loss
        self.max_tokens = max_tokens

    @property
    def model(self) -> Any:
        # The trainer swaps in a wrapped model via ``loss.model``; it recurses into ``loss``.
        return self.loss.model

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = embed_sorted(self.loss.model, list(sentence_features), self.max_tokens)
        return self.loss.compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict[str, Any]:
        base = self.loss.get_config_dict() if hasattr(self.loss, "get_config_dict") else {}
        return {**base, "length_sorted_max_tokens": self.max_tokens}

    @property
    def citation(self) -> str | None:
        return getattr(self.loss, "citation", None)


class PretokenizedPreprocess:
    """A drop-in ``preprocess_fn`` for the collator that tokenizes each text only once.

    Caches unpadded rows per (prompt, task, text), plus the per-call metadata
    (``modality``, ``prompt_length``) per (prompt, task), and pads batches from them. Inputs
    it cannot cache exactly (non-strings, extra options, other tensors, left padding) go
    straight to the wrapped function.
    """

    def __init__(
        self,
        preprocess: Callable[..., dict[str, Any]],
        pad_token_id: int,
        max_entries: int = 100_000,
    ) -> None:
        self.preprocess = preprocess
        self.pad_token_id = int(pad_token_id)
        self.max_entries = max_entries
        self.rows: dict[tuple[str | None, str | None, str], dict[str, Tensor]] = {}
        self.meta: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_model(cls, model: Any, max_entries: int = 100_000) -> PretokenizedPreprocess:
        tokenizer = getattr(model, "tokenizer", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        return cls(model.preprocess, pad if pad is not None else 0, max_entries=max_entries)

    def __call__(
        self,
        inputs: Sequence[Any],
        prompt: str | None = None,
        task: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if kwargs or not inputs or not all(isinstance(x, str) for x in inputs):
            return self.preprocess(inputs, prompt=prompt, task=task, **kwargs)
        keys = [(prompt, task, x) for x in inputs]
        missing = list(dict.fromkeys(k for k in keys if k not in self.rows))
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        fresh: dict[tuple[str | None, str | None, str], dict[str, Tensor]] = {}
        if missing:
            out = self.preprocess([k[2] for k in missing], prompt=prompt, task=task)
            if not _chunkable(out):
                return self.preprocess(inputs, prompt=prompt, task=task)
            tensors, meta = _split(out)
            self.meta[(prompt, task)] = meta
            lengths = _row_lengths(tensors).tolist()
            for i, key in enumerate(missing):
                fresh[key] = {k: v[i, : lengths[i]].clone() for k, v in tensors.items()}
            if len(self.rows) + len(fresh) <= self.max_entries:
                self.rows.update(fresh)
        rows = [fresh[k] if k in fresh else self.rows[k] for k in keys]
        width = max(len(r["attention_mask"]) for r in rows)
        batch: dict[str, Any] = {}
        for name in rows[0]:
            fill = self.pad_token_id if name == "input_ids" else 0
            batch[name] = torch.stack(
                [nn.functional.pad(r[name], (0, width - len(r[name])), value=fill) for r in rows]
            )
        batch.update(self.meta[(prompt, task)])
        return batch

"""Batch samplers for multilingual contrastive training (hybrid batch training, arXiv 2408.10536).

With in-batch negatives the *composition* of a batch is the training signal: a batch of
(query_X, passage_X) pairs in one language teaches monolingual retrieval, a batch of
(query_X, passage_Y) pairs teaches cross-lingual retrieval, and hybrid batches mix the two
per batch. :class:`ParallelBatchSampler` builds such batches from a *pair table*: one row
per (parallel item, query language, passage language) with columns ``id``, ``query_lang``,
``passage_lang``, ``query``, ``positive`` and optionally ``negative``.

It subclasses sentence-transformers' ``DefaultBatchSampler`` so that
``functools.partial(ParallelBatchSampler, strategy="hybrid", metadata=table)`` can be
passed as ``batch_sampler=`` in ``SentenceTransformerTrainingArguments``.

Sentence-transformers tokenizes *every* dataset column except labels and hands each one to
the loss (MultipleNegativesRankingLoss would treat ``id``/``query_lang``/``passage_lang``
as extra negative passages). So train on :func:`babelir.training.data.loss_columns` of the
table and give the full table to the sampler through ``metadata=``; the two must be
row-aligned. What each strategy needs comes from :mod:`babelir.batches.strategies`.

An optional ``origin`` column marks rows of parallel questions (``question``: a question
in X, its translation in Y as the positive; no passages). Such rows must be cross-language,
so they only ever enter x-y batches; ``parallel_share`` fixes their share of each x-y batch.
"""

from __future__ import annotations

import itertools
import math
import numbers
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

from babelir.batches.columns import column, num_rows
from babelir.batches.strategies import DEFAULT_ALPHA, check_alpha, get_strategy
from babelir.core.errors import ConfigError, DataError

BatchType = Literal["mono", "cross"]
ENGLISH = "en"
#: ``origin`` of a parallel-question row (:func:`babelir.data.parallel.pair_table`).
QUESTION = "question"


@dataclass(frozen=True, slots=True)
class SampledBatch:
    """One batch with its global step and kind.

    ``type`` is "mono" when every pair is same-language (x-x-mono, x-x and en-en batches;
    only x-x-mono batches are single-language) and "cross" for x-y batches.
    """

    step: int
    type: BatchType
    rows: list[int]


class _Pool:
    """Rows usable for one batch kind, grouped by parallel id (CSR layout).

    Pool *positions* index the distinct ids; ``rows[offsets[p]:offsets[p + 1]]`` are the
    alternatives for position ``p`` (e.g. all X != Y pairs of one item), one drawn per use.
    """

    __slots__ = ("ids", "ids_list", "name", "offsets", "rows")

    def __init__(self, name: str, id_codes: np.ndarray, rows: np.ndarray) -> None:
        rows = rows[np.argsort(id_codes[rows], kind="stable")]
        ids, starts = np.unique(id_codes[rows], return_index=True)
        self.name = name
        self.ids = ids
        self.ids_list: list[int] = ids.tolist()
        self.offsets: list[int] = [*starts.tolist(), len(rows)]
        self.rows: list[int] = rows.tolist()

    def __len__(self) -> int:
        return len(self.ids_list)


@dataclass(slots=True)
class _Cursor:
    """Per-epoch walk over one pool: pass order, position, deferred positions, pass start.

    A pass accepts only ids not used (by any pool) since it started: the first pass, started
    at the epoch's beginning, takes each id at most once per epoch; a pool that runs dry
    starts a new pass over all its ids.
    """

    pool: _Pool
    order: list[int]
    pos: int = 0
    start: int = 0
    deferred: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Group:
    """What one global step (all replicas' batches) already holds, kept disjoint."""

    ids: set[int] = field(default_factory=set)
    positives: set[int] = field(default_factory=set)
    texts: set[int] = field(default_factory=set)


class _Epoch:
    """Mutable sampling state of one epoch, rebuilt from (seed, epoch) on every iteration."""

    def __init__(self, seed: int, epoch: int, num_ids: int) -> None:
        seq = np.random.SeedSequence([seed & (2**64 - 1), epoch])
        self.np_rng = np.random.default_rng(seq)
        self.py_rng = random.Random(int.from_bytes(seq.generate_state(4).tobytes(), "little"))
        perm = self.np_rng.permutation(num_ids)
        self.id_rank = np.empty(num_ids, dtype=np.int64)
        self.id_rank[perm] = np.arange(num_ids)
        self.last_use = [-1] * num_ids
        self.clock = 0
        self.cursors: dict[str, _Cursor] = {}

    def cursor(self, pool: _Pool) -> _Cursor:
        """The pool's walk, starting in the order of this epoch's id permutation."""
        cur = self.cursors.get(pool.name)
        if cur is None:
            order = np.argsort(self.id_rank[pool.ids], kind="stable").tolist()
            cur = self.cursors[pool.name] = _Cursor(pool, order)
        return cur


def _factorize(values: Sequence[Any], index: dict[Any, int] | None = None) -> np.ndarray:
    """Integer codes for hashable values (None -> -1), extending ``index`` in first-seen order."""
    index = {} if index is None else index
    return np.fromiter(
        (-1 if v is None else index.setdefault(v, len(index)) for v in values),
        dtype=np.int64,
        count=len(values),
    )


def _is_int(value: Any) -> bool:
    """A true integer (numpy's too), not a bool, float or string that would be converted."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _check_table(table: Any, name: str) -> None:
    """A one-line ConfigError for what cannot be a pair table (None, a number ...); a table
    lacking a column is a DataError later, naming the column."""
    if not (hasattr(table, "__getitem__") and hasattr(table, "__len__")):
        raise ConfigError(
            f"{name}: expected the pair table (a datasets.Dataset or a {{column: list}} "
            f"mapping), got {type(table).__name__}"
        )


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class ParallelBatchSampler(DefaultBatchSampler):
    """Batches of language-controlled pairs with only true in-batch negatives.

    Strategies (:data:`babelir.batches.strategies.STRATEGIES`): ``x-x-mono`` one language X
    per batch, all pairs (q_X, p_X); ``x-y`` pairs (q_X, p_Y), X != Y, drawn per example among
    the item's available pairs; ``hybrid`` an x-x-mono batch with probability ``alpha``
    else an x-y batch; ``x-x`` same-language pairs with X drawn per example (languages
    mixed in a batch); ``en-en`` English pairs only.

    Within a global step no parallel id repeats, and no positive passage text appears
    twice or as another pair's negative, so every in-batch negative is a true negative
    (also under ``gather_across_devices``). Items are drawn without replacement as far as
    possible: each epoch walks a permutation of the ids, an id that conflicts with the
    current batch is deferred to the next one, and only once a pool runs dry are its ids
    reused. Batches are always full, so ``drop_last`` is ignored.

    Distributed training: accelerate's ``BatchSamplerShard`` gives batch
    ``k * num_replicas + r`` to rank ``r``, so batches come in groups of ``num_replicas``
    (one group = one optimizer step) that share the batch type and, for mono batches, the
    language: the global batch then is one x-x-mono batch of ``batch_size * num_replicas``,
    as on a single device. With an explicit ``rank`` (plain DDP without accelerate) only
    that rank's batch of each group is yielded.

    Randomness comes from ``(seed, epoch)`` only; the trainer's ``generator`` is left
    untouched, so runs and resumed runs are reproducible and ``set_epoch`` reshuffles.

    Args:
        dataset: The training dataset the batch indices refer to.
        batch_size: Pairs per batch (per replica), at least 2.
        drop_last: Ignored (batches are always full); kept for the trainer's signature.
        valid_label_columns: Ignored; kept for the trainer's signature.
        generator: Ignored (see above); kept for the trainer's signature.
        seed: Base seed, combined with the epoch.
        strategy: One of :data:`babelir.batches.strategies.STRATEGIES`.
        alpha: Probability of a mono batch under ``hybrid``.
        languages: Use only pairs whose two languages are both in this list.
        language_temperature: None picks a mono batch's language uniformly; T picks
            language L with probability proportional to n_L ** (1 / T), n_L = items with
            (L, L) pairs. Applies to x-x-mono batches (also within hybrid).
        num_replicas: Data-parallel world size; default torch.distributed's, else 1.
        rank: Yield only this replica's batches (plain DDP loops).
        num_batches: Batches per epoch over all replicas, a multiple of ``num_replicas``;
            default (distinct ids // (batch_size * num_replicas)) * num_replicas.
        metadata: Row-aligned table to read id/language/passage columns from; columns it
            lacks are read from ``dataset``. Lets ``dataset`` hold only the loss's columns.
        parallel_share: Share in [0, 1] of every x-y batch's pairs taken from
            parallel-question rows (``origin`` ``question``), the rest from the other
            cross-language rows: ``floor(share * batch_size)`` pairs, one more with
            probability equal to the remainder, drawn once per step (so equal on every
            rank). None: the table's ``parallel_share`` attribute
            (:class:`babelir.data.parallel.PairTable`), else one x-y pool over all rows
            (parallel questions in proportion to their items).

    Returns:
        Iterating yields one list of row indices per batch (a sentence-transformers
        batch sampler: pass it to ``SentenceTransformerTrainer`` through
        ``batch_sampler``, as :func:`babelir.training.trainer.train` does).

    References:
        Hybrid batch training: arXiv 2408.10536 (x-x-mono, x-y and their mix by alpha).

    Example:
        >>> import babelir
        >>> sampler = babelir.ParallelBatchSampler(table, batch_size=32, strategy="hybrid",
        ...                                        alpha=0.5, seed=0)
        >>> batch = next(iter(sampler))  # row indices of one x-x-mono or x-y batch
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool = False,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        strategy: str = "hybrid",
        alpha: float = DEFAULT_ALPHA,
        languages: Sequence[str] | None = None,
        language_temperature: float | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        num_batches: int | None = None,
        metadata: Any = None,
        id_column: str = "id",
        query_lang_column: str = "query_lang",
        passage_lang_column: str = "passage_lang",
        positive_column: str = "positive",
        negative_column: str | None = "negative",
        origin_column: str | None = "origin",
        parallel_share: float | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 2:
            raise ConfigError(f"batch_size: in-batch negatives need at least 2, got {batch_size}")
        _check_table(dataset, "dataset")
        if metadata is not None:
            _check_table(metadata, "metadata")
        if seed is not None and not _is_int(seed):
            raise ConfigError(f"seed: must be an integer, got {seed!r}")
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=bool(drop_last),
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        self.spec = get_strategy(strategy)
        self.strategy = self.spec.name
        alpha = check_alpha(alpha)
        if isinstance(languages, str):  # "en,de" from a command line
            languages = [lang.strip() for lang in languages.split(",") if lang.strip()]
        if language_temperature is not None and not language_temperature > 0:
            raise ConfigError(
                f"language_temperature: must be > 0 (or None), got {language_temperature}"
            )
        self.alpha = alpha
        self.language_temperature = language_temperature
        self.num_replicas = _world_size() if num_replicas is None else int(num_replicas)
        if self.num_replicas < 1:
            raise ConfigError(f"num_replicas: must be >= 1, got {num_replicas}")
        if rank is not None and not 0 <= rank < self.num_replicas:
            raise ConfigError(f"rank: must be in [0, {self.num_replicas}), got {rank}")
        self.rank = rank
        self.seed = 0 if seed is None else int(seed)
        self.id_column = id_column
        self.query_lang_column = query_lang_column
        self.passage_lang_column = passage_lang_column
        self.positive_column = positive_column
        self.negative_column = negative_column
        self.origin_column = origin_column
        if parallel_share is None:
            parallel_share = next(
                (
                    getattr(t, "parallel_share", None)
                    for t in (metadata, dataset)
                    if getattr(t, "parallel_share", None) is not None
                ),
                None,
            )
        if parallel_share is not None and (
            isinstance(parallel_share, bool)
            or not isinstance(parallel_share, numbers.Real)
            or not 0 <= parallel_share <= 1
        ):
            raise ConfigError(f"parallel_share: must be a number in [0, 1], got {parallel_share!r}")
        self.parallel_share = None if parallel_share is None else float(parallel_share)

        self._load(dataset, metadata)
        self._build_pools(languages)

        need = self.batch_size * self.num_replicas
        used = np.unique(np.concatenate([p.ids for p in self._used_pools()]))
        #: Batches of one pass over the distinct ids (the default ``num_batches``).
        self.batches_per_pass = (len(used) // need) * self.num_replicas
        if num_batches is None:
            num_batches = self.batches_per_pass
        elif num_batches < 1 or num_batches % self.num_replicas:
            raise ConfigError(
                f"num_batches: must be a positive multiple of num_replicas "
                f"({self.num_replicas}), got {num_batches}"
            )
        self.num_batches = int(num_batches)

    # ------------------------------------------------------------------ construction

    def _load(self, dataset: Any, metadata: Any) -> None:
        """Read the metadata columns once and encode them as integer arrays."""
        n = num_rows(dataset)
        if n == 0:
            raise DataError("dataset: the pair table is empty")

        def read(name: str, required: bool = True) -> list[Any] | None:
            for source in (metadata, dataset):
                values = None if source is None else column(source, name)
                if values is not None:
                    if len(values) != n:
                        raise DataError(
                            f"metadata: column {name!r} has {len(values)} rows, dataset has {n}"
                        )
                    return values
            if required:
                raise DataError(f"dataset: column {name!r} is missing from the pair table")
            return None

        self._id_index: dict[Any, int] = {}
        self._lang_index: dict[Any, int] = {}
        self._ids = _factorize(read(self.id_column), self._id_index)
        self._qlang = _factorize(read(self.query_lang_column), self._lang_index)
        self._plang = _factorize(read(self.passage_lang_column), self._lang_index)
        text_index: dict[Any, int] = {}
        self._pos = _factorize(read(self.positive_column), text_index)
        origins = read(self.origin_column, required=False) if self.origin_column else None
        self._question = (
            np.zeros(n, dtype=bool)
            if origins is None
            else np.fromiter((o == QUESTION for o in origins), dtype=bool, count=n)
        )
        self._origins = origins
        negatives = read(self.negative_column, required=False) if self.negative_column else None
        self._neg = (
            np.full(n, -1, dtype=np.int64)
            if negatives is None
            else _factorize(negatives, text_index)
        )
        if (self._ids < 0).any() or (self._qlang < 0).any() or (self._plang < 0).any():
            raise DataError("dataset: id/query_lang/passage_lang columns contain missing values")
        if (self._question & (self._qlang == self._plang)).any():
            row = int(np.flatnonzero(self._question & (self._qlang == self._plang))[0])
            raise DataError(
                f"dataset: row {row} pairs a parallel question with its own language; "
                "parallel questions give cross-language pairs only"
            )
        self._langs: list[str] = list(self._lang_index)
        self._id_values: list[Any] = list(self._id_index)
        # Python lists make the per-example lookups in the sampling loop cheap.
        self._pos_list: list[int] = self._pos.tolist()
        self._neg_list: list[int] = self._neg.tolist()

    def _build_pools(self, languages: Sequence[str] | None) -> None:
        """Split eligible rows into per-kind pools and check each can fill a global step."""
        mask = np.ones(len(self._ids), dtype=bool)
        if languages is not None:
            wanted = list(dict.fromkeys(languages))
            missing = [lang for lang in wanted if lang not in self._lang_index]
            if missing:
                raise DataError(
                    f"languages: {', '.join(map(repr, missing))} has no rows in the pair table "
                    f"(available: {', '.join(sorted(self._langs))})"
                )
            codes = [self._lang_index[lang] for lang in wanted]
            mask &= np.isin(self._qlang, codes) & np.isin(self._plang, codes)
        present = sorted(
            {self._langs[c] for c in np.unique(self._qlang[mask])}
            | {self._langs[c] for c in np.unique(self._plang[mask])}
        )
        same = mask & (self._qlang == self._plang)
        cross = mask & (self._qlang != self._plang)
        spec = self.spec
        wants_mono = spec.wants_mono(self.alpha) and not spec.english_only
        wants_cross = spec.wants_cross(self.alpha)

        self._mono: dict[str, _Pool] = {}
        self._cross: _Pool | None = None
        self._questions: _Pool | None = None  # parallel questions, when parallel_share splits
        self._mixed: _Pool | None = None
        share = self.parallel_share
        if wants_mono:
            for code in np.unique(self._qlang[same]).tolist():
                lang = self._langs[code]
                rows = np.flatnonzero(same & (self._qlang == code))
                self._mono[lang] = _Pool(f"mono:{lang}", self._ids, rows)
            if not self._mono:
                raise DataError(
                    f"strategy: {self.strategy} needs same-language pairs, but no row has "
                    f"{self.query_lang_column} == {self.passage_lang_column}"
                )
        if wants_cross:
            if len(present) < 2:
                user_limited = languages is not None and len(set(languages)) < 2
                error = ConfigError if user_limited else DataError
                raise error(
                    f"languages: strategy {self.strategy} needs at least two languages, "
                    f"got {present}"
                )
            if not cross.any():
                raise DataError(
                    f"strategy: {self.strategy} needs cross-language pairs, but no row has "
                    f"{self.query_lang_column} != {self.passage_lang_column}"
                )
            if share is not None and not self._question.any():
                raise ConfigError(
                    "parallel_share: the pair table has no parallel-question rows "
                    f"({self.origin_column} == '{QUESTION}')"
                )
            if share is None:
                self._cross = _Pool("cross", self._ids, np.flatnonzero(cross))
            else:
                low, high = self._question_slots()
                qa, questions = cross & ~self._question, cross & self._question
                if low < self.batch_size:  # some QA pairs in every x-y batch
                    if not qa.any():
                        raise DataError(
                            f"parallel_share: {share:g} leaves QA pairs in x-y batches, but no "
                            "cross-language row is a QA pair (set parallel_share to 1)"
                        )
                    self._cross = _Pool("cross", self._ids, np.flatnonzero(qa))
                if high > 0:
                    if not questions.any():
                        raise DataError(
                            f"parallel_share: {share:g} needs parallel-question pairs in x-y "
                            "batches, but none is left in the selected languages"
                        )
                    self._questions = _Pool("cross:questions", self._ids,
                                            np.flatnonzero(questions))
        if spec.mixed:
            if not same.any():
                raise DataError(
                    f"strategy: x-x needs same-language pairs, but no row has "
                    f"{self.query_lang_column} == {self.passage_lang_column}"
                )
            self._mixed = _Pool("x-x", self._ids, np.flatnonzero(same))
        if spec.english_only:
            if languages is not None and ENGLISH not in languages:
                raise ConfigError(f"languages: strategy en-en needs 'en', got {list(languages)}")
            rows = np.flatnonzero(same & (self._qlang == self._lang_index.get(ENGLISH, -2)))
            if not len(rows):
                raise DataError("strategy: en-en needs English pairs, but no row is en-en")
            self._mono = {ENGLISH: _Pool("mono:en", self._ids, rows)}

        for pool in self._used_pools():
            self._check_pool(pool, self._pool_slots(pool))
        self._mono_langs = list(self._mono)
        sizes = np.array([len(self._mono[lang]) for lang in self._mono_langs], dtype=float)
        if self.language_temperature is None or not len(sizes):
            weights = np.ones(len(sizes))
        else:
            weights = (sizes / sizes.max()) ** (1.0 / self.language_temperature)  # no overflow
        self.language_probs: dict[str, float] = dict(
            zip(self._mono_langs, (weights / max(weights.sum(), 1e-300)).tolist(), strict=True)
        )
        self._cum_weights = list(itertools.accumulate(weights.tolist()))

    def _used_pools(self) -> list[_Pool]:
        pools: list[_Pool] = list(self._mono.values())
        pools += [p for p in (self._cross, self._questions, self._mixed) if p is not None]
        return pools

    def _question_slots(self) -> tuple[int, int]:
        """(fewest, most) parallel-question pairs of one x-y batch under parallel_share."""
        exact = (self.parallel_share or 0.0) * self.batch_size
        low = math.floor(exact)
        return low, low + (exact > low)

    def _pool_slots(self, pool: _Pool) -> int:
        """The most pairs one batch takes from ``pool``."""
        if self.parallel_share is None or pool not in (self._cross, self._questions):
            return self.batch_size
        low, high = self._question_slots()
        return high if pool is self._questions else self.batch_size - low

    def _check_pool(self, pool: _Pool, slots: int) -> None:
        """Fail at construction, not mid-training, when a pool cannot fill one global step."""
        need = slots * self.num_replicas
        what = f"{slots} pairs per batch x num_replicas {self.num_replicas} = {need}"
        if slots == self.batch_size:
            what = f"batch_size {self.batch_size} x num_replicas {self.num_replicas} = {need}"
        if len(pool) < need:
            hint = "; leave it out via languages" if pool.name.startswith("mono:") else ""
            raise DataError(
                f"batch_size: {pool.name} has {len(pool)} distinct items, {what} needed{hint}"
            )
        distinct = len({self._pos_list[r] for r in pool.rows})
        if distinct < need:
            raise DataError(
                f"{self.positive_column}: {pool.name} has {distinct} distinct passage texts, "
                f"{what} needed"
            )

    # ------------------------------------------------------------------ sampling

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` (an integer >= 0) on the next iteration."""
        if not _is_int(epoch) or epoch < 0:
            raise ConfigError(f"set_epoch: the epoch must be an integer >= 0, got {epoch!r}")
        super().set_epoch(int(epoch))

    def __len__(self) -> int:
        return self.num_batches if self.rank is None else self.num_batches // self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.iter_batches():
            yield batch.rows

    def iter_batches(self) -> Iterator[SampledBatch]:
        """Yield this epoch's batches with their step (group index) and type."""
        state = _Epoch(self.seed, self.epoch, len(self._id_values))
        for step in range(self.num_batches // self.num_replicas):
            kind, pool = self._draw_kind(state.py_rng)
            parts = [(state.cursor(pool), self.batch_size)]
            if kind == "cross" and self.parallel_share is not None:
                parts = self._cross_parts(state)
            group = _Group()
            for replica in range(self.num_replicas):
                rows = [r for cursor, size in parts for r in self._fill(cursor, state, group, size)]
                if self.rank is None or replica == self.rank:
                    yield SampledBatch(step, kind, rows)

    def _cross_parts(self, state: _Epoch) -> list[tuple[_Cursor, int]]:
        """An x-y step under ``parallel_share``: (pool walk, pairs) for the parallel
        questions and the QA pairs; the count is drawn once for the whole step."""
        low, high = self._question_slots()
        share = self.parallel_share or 0.0
        k = low + (high > low and state.py_rng.random() < share * self.batch_size - low)
        parts = []
        if k:
            parts.append((state.cursor(self._questions), k))  # type: ignore[arg-type]
        if k < self.batch_size:
            parts.append((state.cursor(self._cross), self.batch_size - k))  # type: ignore[arg-type]
        return parts

    def _draw_kind(self, rng: random.Random) -> tuple[BatchType, _Pool]:
        """Pick the batch type (and mono language) shared by one group."""
        if self._mixed is not None:
            return "mono", self._mixed
        if not self.spec.draw_mono(rng, self.alpha):
            pool = self._cross if self._cross is not None else self._questions
            return "cross", pool  # type: ignore[return-value]
        lang = rng.choices(self._mono_langs, cum_weights=self._cum_weights)[0]
        return "mono", self._mono[lang]

    def _fill(
        self, cur: _Cursor, state: _Epoch, group: _Group, want: int | None = None
    ) -> list[int]:
        """Take one full batch (or ``want`` pairs of it) from the pool walk, deferring ids
        that conflict."""
        pool, last_use, rng = cur.pool, state.last_use, state.py_rng
        ids, offsets, pool_rows = pool.ids_list, pool.offsets, pool.rows
        pos_of, neg_of = self._pos_list, self._neg_list
        pending, cur.deferred = cur.deferred, []
        deferred = cur.deferred
        batch: list[int] = []
        i = refills = 0
        want = self.batch_size if want is None else want
        while len(batch) < want:
            if i < len(pending):
                p = pending[i]
                i += 1
            elif cur.pos < len(cur.order):
                p = cur.order[cur.pos]
                cur.pos += 1
            else:
                if refills == 2:  # two fresh passes could not complete it: give up loudly
                    raise DataError(
                        f"{self.positive_column}: {pool.name} cannot fill a step of "
                        f"{self.batch_size} x {self.num_replicas} pairs without repeating a "
                        "passage or using it as another pair's negative; lower batch_size"
                    )
                refills += 1
                cur.order = state.np_rng.permutation(len(pool)).tolist()
                cur.pos, cur.start = 0, state.clock
                continue
            item = ids[p]
            if last_use[item] >= cur.start:  # already used during this pass
                continue
            if item in group.ids:
                deferred.append(p)
                continue
            start, stop = offsets[p], offsets[p + 1]
            size = stop - start
            first = 0 if size == 1 else rng.randrange(size)
            for k in range(size):  # the drawn pair, else the item's next pair that fits
                row = pool_rows[start + (first + k) % size]
                pos, neg = pos_of[row], neg_of[row]
                if pos not in group.texts and (neg < 0 or neg not in group.positives):
                    break
            else:
                deferred.append(p)
                continue
            batch.append(row)
            last_use[item] = state.clock
            state.clock += 1
            group.ids.add(item)
            group.positives.add(pos)
            group.texts.add(pos)
            if neg >= 0:
                group.texts.add(neg)
        deferred.extend(pending[i:])
        return batch

    # ------------------------------------------------------------------ inspection

    def row_info(self, row: int) -> dict[str, Any]:
        """The parallel id and languages of a table row (for logs and ``babelir batches``),
        and its ``origin`` (``qa`` or ``question``) when the table has that column."""
        info = {
            "id": self._id_values[self._ids[row]],
            "query_lang": self._langs[self._qlang[row]],
            "passage_lang": self._langs[self._plang[row]],
        }
        if self._origins is not None:
            info["origin"] = self._origins[row]
        return info

    def describe(self, num_batches: int | None = None, dataset: Any = None) -> list[dict[str, Any]]:
        """The first ``num_batches`` batches (at most one epoch) as JSON-ready dicts.

        Each is ``{"step", "type", "pairs": [{"id", "query_lang", "passage_lang"}]}``
        (``babelir batches``; pairs also carry ``origin`` when the table has that column).
        Columns are read from ``dataset`` when it has them, else from the sampler's own
        metadata.
        """
        return list(self.iter_describe(num_batches, dataset))

    def iter_describe(
        self, num_batches: int | None = None, dataset: Any = None
    ) -> Iterator[dict[str, Any]]:
        """:meth:`describe` one batch at a time, as drawn (``babelir batches`` streams it)."""
        names = (self.id_column, self.query_lang_column, self.passage_lang_column)
        cols = [column(dataset, c) for c in names] if dataset is not None else None
        for batch in itertools.islice(self.iter_batches(), num_batches):
            if cols is None or any(c is None for c in cols):
                pairs = [self.row_info(r) for r in batch.rows]
            else:
                ids, qlangs, plangs = cols
                pairs = [
                    {"id": ids[r], "query_lang": qlangs[r], "passage_lang": plangs[r]}  # type: ignore[index]
                    for r in batch.rows
                ]
                if self._origins is not None:
                    for pair, r in zip(pairs, batch.rows, strict=True):
                        pair["origin"] = self._origins[r]
            yield {"step": batch.step, "type": batch.type, "pairs": pairs}


__all__ = ["ParallelBatchSampler", "SampledBatch"]

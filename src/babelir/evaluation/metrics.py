"""LAReQA metrics from one similarity matrix: mAP, recall and language bias.

Every setting of a LAReQA benchmark (monolingual X->X, cross-lingual X->Y, pooled
multilingual) is a view of the same question x candidate score matrix, so we score it
once and keep, for each (question, relevant candidate), how many candidates of each
language score at least as high. All metrics follow from those counts.

Conventions (tested in ``tests/test_metrics.py``):

* **AP** is LAReQA's: average precision over the *whole* ranking, divided by the number
  of relevant candidates |R| (trec_eval's AP; not sentence-transformers' MAP@k, which
  divides by min(k, |R|)).
* **Ties** are pessimistic: a candidate's rank is the number of candidates scoring at
  least as high as it, so a relevant candidate tied with non-relevant ones is ranked
  after them. For AP this is exactly scikit-learn's ``average_precision_score``, which
  LAReQA's reference evaluation uses. trec_eval instead breaks ties by document id, so
  it can differ where exact ties occur (identical candidate texts).
* **Recall@k** = |relevant with rank <= k| / |R|.
* **Rank distance** (language bias) of a question = max - min rank of its relevant
  candidates in the pooled ranking; questions with fewer than two are skipped.
* **Language preference** ``lang_pref@k`` of a question = share of the top k' = min(k,
  pool size) of the pooled ranking that is in the question's language; ties at the k'-th
  score are shared out in proportion to the tied candidates' languages (the expectation
  under random tie-breaking). ``lang_pref_excess@k`` subtracts the share a language-blind
  ranker would give, |pool in the question's language| / |pool|.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

# --------------------------------------------------------------------------- tiny reference
# functions over one ranking, used by tests and as documentation of the definitions


def ranks_pessimistic(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every item: the number of items scoring >= it."""
    scores = np.asarray(scores, dtype=np.float64)
    sorted_desc = -np.sort(-scores)
    # count of values >= s  ==  position after the last value >= s in descending order
    return np.searchsorted(-sorted_desc, -scores, side="right")


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """LAReQA AP of one ranking (pessimistic ties); ``relevant`` is a boolean mask."""
    relevant = np.asarray(relevant, dtype=bool)
    if not relevant.any():
        return float("nan")
    ranks = ranks_pessimistic(scores)
    rel_scores = np.asarray(scores, dtype=np.float64)[relevant]
    tp = (rel_scores[None, :] >= rel_scores[:, None]).sum(1)
    return float(np.mean(tp / ranks[relevant]))


def pessimistic_recall_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Recall@k of one score vector with pessimistic ties; ``relevant`` is a boolean mask
    (NaN without relevant items). MIRACL's ranked-list version is
    :func:`babelir.evaluation.miracl.trec_recall_at_k`."""
    relevant = np.asarray(relevant, dtype=bool)
    if not relevant.any():
        return float("nan")
    ranks = ranks_pessimistic(scores)
    return float(np.mean(ranks[relevant] <= k))


def language_preference_at_k(scores: np.ndarray, own: np.ndarray, k: int) -> float:
    """Share of the top min(k, n) of one ranking that is ``own`` (a boolean mask of the
    candidates in the query's language); ties at the cut are shared out in proportion
    (the expectation under random tie-breaking). NaN for an empty ranking."""
    scores = np.asarray(scores, dtype=np.float64)
    own = np.asarray(own, dtype=bool)
    k = min(k, len(scores))
    if k < 1:
        return float("nan")
    cut = -np.sort(-scores)[k - 1]
    above, tied = scores > cut, scores == cut
    n_own = own[above].sum() + (k - above.sum()) * own[tied].sum() / tied.sum()
    return float(n_own / k)


# --------------------------------------------------------------------------- ranking counts


@dataclass
class RelevantCounts:
    """Per (question, relevant slot): score, language block and per-block counts.

    ``counts[q, r, z]`` = number of candidates of language block ``z`` scoring >= the
    score of question ``q``'s ``r``-th relevant candidate. Slots beyond a question's
    number of relevant candidates are padding (``valid`` is False).
    """

    rows: np.ndarray  # (nq, R) candidate row of each relevant slot, -1 for padding
    scores: np.ndarray  # (nq, R) float32
    blocks: np.ndarray  # (nq, R) language block of the relevant candidate
    valid: np.ndarray  # (nq, R) bool
    counts: np.ndarray  # (nq, R, L) int32
    num_blocks: int
    #: cut-offs k of the pooled top-k language counts (each applied as min(k, pool size))
    top_ks: tuple[int, ...] = ()
    #: (nq, K, L) candidates of block z scoring strictly above the k-th highest score
    top_above: np.ndarray | None = None
    #: (nq, K, L) candidates of block z scoring exactly the k-th highest score
    top_tied: np.ndarray | None = None
    #: (L,) number of candidates per language block (the pool's composition)
    block_sizes: np.ndarray | None = None


def _pad_relevant(relevant: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(r) for r in relevant), default=0)
    width = max(width, 1)
    rows = np.full((len(relevant), width), -1, dtype=np.int64)
    for i, r in enumerate(relevant):
        rows[i, : len(r)] = r
    return rows, rows >= 0


def _bucket_hist_torch(
    sims: torch.Tensor, t_asc: torch.Tensor, blocks: torch.Tensor, n_blocks: int
) -> torch.Tensor:
    """hist[q, r, z] = candidates of block z scoring >= the r-th highest threshold.

    Vectorised torch version (used on GPUs and when numba is missing). Only candidates
    scoring >= the question's lowest relevant score change any count.
    """
    b, width = t_asc.shape
    qi, ci = (sims >= t_asc[:, :1]).nonzero(as_tuple=True)
    vals = sims[qi, ci]
    # bucket = number of thresholds strictly above the score (0 .. width-1 here)
    bucket = width - torch.searchsorted(t_asc[qi], vals[:, None], right=True)[:, 0]
    flat = (qi * width + bucket) * n_blocks + blocks[ci]
    hist = torch.bincount(flat, minlength=b * width * n_blocks)
    return hist.reshape(b, width, n_blocks).cumsum(1)


def _make_kernel(cache: bool = True):
    """Per-chunk counts in one compiled pass over the scores (numba, CPU).

    For each question: read its relevant scores, sort them as thresholds, histogram the
    candidates by (threshold bucket, language) and read each relevant slot's cumulative
    counts. Most scores fall below the lowest relevant score and cost one comparison;
    the rest find their bucket by a short linear scan of the (<= ~11) thresholds. Same
    result as ``_bucket_hist_torch`` plus the gathers around it (tested), without the
    (chunk x candidates) temporaries torch needs.
    """
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; keep a fallback
        return None

    # Single-threaded and GIL-free: ``relevant_counts`` runs one per worker thread, each
    # right after its own single-threaded sgemm (see there for why).
    # Compiled (or loaded from numba's on-disk cache) when this module is imported, not
    # on the first call: the first evaluation in a process then costs what later ones do.
    @numba.njit(
        "void(float32[:, ::1], int64[:, ::1], int64[::1], int64, float32[:, ::1], "
        "int32[:, :, ::1])",
        cache=cache,
        nogil=True,
    )
    def kernel(sims, rows, blocks, n_blocks, out_scores, out_counts):  # pragma: no cover
        b, nc = sims.shape
        width = rows.shape[1]
        for i in range(b):
            n_rel = 0
            t_desc = np.empty(width, dtype=np.float32)
            for r in range(width):
                if rows[i, r] >= 0:
                    out_scores[i, r] = sims[i, rows[i, r]]
                    t_desc[n_rel] = out_scores[i, r]
                    n_rel += 1
            if n_rel == 0:
                continue
            t_desc[:n_rel] = -np.sort(-t_desc[:n_rel])
            lowest = t_desc[n_rel - 1]
            hist = np.zeros((n_rel, n_blocks), dtype=np.int64)
            for c in range(nc):
                s = sims[i, c]
                if s >= lowest:
                    k = 0
                    while t_desc[k] > s:
                        k += 1
                    hist[k, blocks[c]] += 1
            for k in range(1, n_rel):
                for z in range(n_blocks):
                    hist[k, z] += hist[k - 1, z]
            for r in range(width):
                if rows[i, r] >= 0:
                    pos = 0  # thresholds strictly above this slot's score
                    while t_desc[pos] > out_scores[i, r]:
                        pos += 1
                    for z in range(n_blocks):
                        out_counts[i, r, z] = hist[pos, z]

    return kernel


def _numba_cache_dir() -> bool:
    """Point numba's kernel cache at a writable folder; False when there is none.

    Numba tries ``NUMBA_CACHE_DIR`` and, when it cannot write there, the ``__pycache__``
    next to this module: inside the installed package. So the folder is checked here, in
    order: ``$NUMBA_CACHE_DIR``, the babelir cache dir, a folder of this user's in the temp
    dir (private: numba's cache files are pickles); with none writable the kernel is
    compiled uncached.
    """
    import os
    import sys
    import tempfile

    from babelir.core.settings import cache_dir

    candidates = [(os.environ.get("NUMBA_CACHE_DIR"), False), (str(cache_dir() / "numba"), False)]
    if hasattr(os, "getuid"):
        own = os.path.join(tempfile.gettempdir(), f"babelir-numba-{os.getuid()}")
        candidates.append((own, True))
    for folder, private in candidates:
        if not folder:
            continue
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            if private:
                if os.stat(folder).st_uid != os.getuid():
                    continue  # made by someone else: not ours to load pickles from
                os.chmod(folder, 0o700)
            tempfile.TemporaryFile(dir=folder).close()  # numba's own writability test
        except OSError:
            continue
        os.environ["NUMBA_CACHE_DIR"] = folder
        if "numba.core.config" in sys.modules:  # read at numba's import: set it there too
            sys.modules["numba.core.config"].CACHE_DIR = folder
        return True
    return False


def _make_topk_kernel(cache: bool = True):
    """Per-chunk language counts at the top-k cuts of the pooled ranking (numba, CPU).

    For each question: keep its highest scores in a small sorted buffer (most scores
    fail one comparison with the buffer's last), read the k-th highest score of each cut,
    then count by language the candidates strictly above and exactly at each cut. Same
    result as :func:`_topk_torch` (tested).
    """
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; keep a fallback
        return None

    @numba.njit(
        "void(float32[:, ::1], int64[::1], int64[::1], int32[:, :, ::1], int32[:, :, ::1])",
        cache=cache,
        nogil=True,
    )
    def kernel(sims, blocks, ks, out_above, out_tied):  # pragma: no cover
        b, nc = sims.shape
        n_k = ks.shape[0]
        kmax = ks[n_k - 1]  # ks ascending, each <= nc
        top = np.empty(kmax, dtype=np.float32)
        cut = np.empty(n_k, dtype=np.float32)
        for i in range(b):
            top[:] = -np.inf
            for c in range(nc):
                s = sims[i, c]
                if s > top[kmax - 1]:
                    pos = kmax - 1
                    while pos > 0 and top[pos - 1] < s:
                        top[pos] = top[pos - 1]
                        pos -= 1
                    top[pos] = s
            for j in range(n_k):
                cut[j] = top[ks[j] - 1]
            lowest = cut[n_k - 1]
            for c in range(nc):
                s = sims[i, c]
                if s >= lowest:
                    z = blocks[c]
                    for j in range(n_k):
                        if s > cut[j]:
                            out_above[i, j, z] += 1
                        elif s == cut[j]:
                            out_tied[i, j, z] += 1

    return kernel


_CACHE = _numba_cache_dir()
_KERNEL = _make_kernel(cache=_CACHE)
_TOPK_KERNEL = _make_topk_kernel(cache=_CACHE)


def _topk_torch(
    sims: torch.Tensor, onehot: torch.Tensor, ks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(above, tied) language counts at the top-k cuts of each row of ``sims``: (b, K, L).

    ``onehot`` is (num_candidates, L) float32, ``ks`` ascending cut-offs <= num_candidates.
    The products of 0/1 matrices are exact counts (fp32 accumulation) even where matmuls
    round their inputs (TF32, bf16): 0 and 1 are exact in every such format.
    """
    top = sims.topk(int(ks[-1]), dim=1).values  # (b, kmax), descending
    cut = top[:, ks - 1]  # (b, K)
    above = torch.stack([(sims > cut[:, j, None]).float() @ onehot for j in range(len(ks))], 1)
    tied = torch.stack([(sims == cut[:, j, None]).float() @ onehot for j in range(len(ks))], 1)
    return above, tied


def _counts_cpu(
    q: np.ndarray,
    ct: np.ndarray,
    rows: np.ndarray,
    blocks: np.ndarray,
    n_blocks: int,
    chunk_size: int,
    out_scores: np.ndarray,
    out_counts: np.ndarray,
    ks: np.ndarray,
    out_above: np.ndarray,
    out_tied: np.ndarray,
) -> None:
    """CPU path of ``relevant_counts``: worker threads, each sgemm + count on its chunk
    (and the top-k language counts at the cut-offs ``ks`` when there are any).

    Why not multi-threaded BLAS followed by a parallel kernel: OpenBLAS's idle threads
    spin after every call and starved the kernel's threads, doubling its time on 2 cores
    (measured: 0.45 s vs 0.22 s on full XQuAD-R). One single-threaded sgemm and one
    GIL-free count per worker keeps every core on useful work. numpy's OpenBLAS is used
    over torch's MKL because it ran this product 1.4x faster on the AMD CPU we measured.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    local = threading.local()
    rows, blocks = np.ascontiguousarray(rows), np.ascontiguousarray(blocks, dtype=np.int64)

    def work(start: int) -> None:
        end = min(start + chunk_size, len(q))
        buf = getattr(local, "buf", None)
        if buf is None:
            rows_max = min(chunk_size, len(q))
            buf = local.buf = np.empty((rows_max, ct.shape[1]), dtype=np.float32)
        sims = np.matmul(q[start:end], ct, out=buf[: end - start])
        _KERNEL(
            sims, rows[start:end], blocks, n_blocks, out_scores[start:end], out_counts[start:end]
        )
        if len(ks):
            _TOPK_KERNEL(sims, blocks, ks, out_above[start:end], out_tied[start:end])

    workers = max(1, torch.get_num_threads())
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(0, len(q), chunk_size)))


def _counts_torch(
    q: torch.Tensor,
    ct: torch.Tensor,
    rows: torch.Tensor,
    valid: torch.Tensor,
    blocks: torch.Tensor,
    n_blocks: int,
    chunk_size: int,
    out_scores: torch.Tensor,
    out_counts: torch.Tensor,
    ks: torch.Tensor,
    out_above: torch.Tensor,
    out_tied: torch.Tensor,
) -> None:
    """Any-device path of ``relevant_counts`` (GPUs, or CPUs without numba)."""
    nq, width = rows.shape
    onehot = torch.nn.functional.one_hot(blocks, n_blocks).float()
    for start in range(0, nq, chunk_size):
        end = min(start + chunk_size, nq)
        b = end - start
        sims = q[start:end] @ ct  # (b, nc)
        r_rows = rows[start:end]
        r_valid = valid[start:end]
        rel = sims.gather(1, r_rows.clamp(min=0))
        # Pad with the row's lowest real threshold: duplicates change no bucket below it.
        row_min = torch.where(r_valid, rel, torch.full_like(rel, float("inf"))).amin(1)
        thresholds = torch.where(r_valid, rel, row_min[:, None])
        t_asc, _ = thresholds.sort(dim=1)
        hist = _bucket_hist_torch(sims, t_asc, blocks, n_blocks)
        # hist[q, r, z]: candidates in z scoring >= the r-th highest threshold. A relevant
        # score's position in the descending thresholds = number of thresholds above it.
        pos = (width - torch.searchsorted(t_asc, rel, right=True)).clamp(max=width - 1)
        cnt = hist.gather(1, pos[:, :, None].expand(b, width, n_blocks))
        out_scores[start:end] = rel.cpu()
        out_counts[start:end] = cnt.to(torch.int32).cpu()
        if len(ks):
            above, tied = _topk_torch(sims, onehot, ks)
            out_above[start:end] = above.round().to(torch.int32).cpu()
            out_tied[start:end] = tied.round().to(torch.int32).cpu()


def relevant_counts(
    questions: np.ndarray | torch.Tensor,
    candidates: np.ndarray | torch.Tensor,
    candidate_blocks: np.ndarray,
    relevant: Sequence[np.ndarray],
    *,
    num_blocks: int | None = None,
    chunk_size: int = 512,
    device: str | torch.device | None = None,
    top_ks: Sequence[int] = (10, 20),
) -> RelevantCounts:
    """Score all questions against all candidates (inner product) and count ranks.

    Work per question chunk: one matmul, then one pass over the scores that buckets each
    candidate among that question's relevant scores by language (numba on CPU; batched
    searchsorted + bincount in torch elsewhere), and one that counts by language the
    pooled top-k at each cut-off of ``top_ks`` (each applied as min(k, pool size)).
    Memory stays O(chunk_size x num_candidates) whatever the number of questions.
    """
    top_ks = tuple(sorted({int(k) for k in top_ks}))
    if any(k < 1 for k in top_ks):
        raise ValueError(f"top-k cut-offs must be >= 1, got {top_ks}")
    device = torch.device(device or "cpu")
    q = torch.as_tensor(questions, dtype=torch.float32, device=device)
    c = torch.as_tensor(candidates, dtype=torch.float32, device=device)
    blocks = torch.as_tensor(np.asarray(candidate_blocks), dtype=torch.int64, device=device)
    n_blocks = int(num_blocks if num_blocks is not None else int(blocks.max()) + 1)
    rows_np, valid_np = _pad_relevant(relevant)
    nq, width = rows_np.shape

    blocks_np = blocks.cpu().numpy()
    nc = len(blocks_np)
    out_scores = torch.zeros((nq, width), dtype=torch.float32)
    out_counts = torch.zeros((nq, width, n_blocks), dtype=torch.int32)
    # the cut-offs each applied as min(k, pool size); none to apply to an empty pool
    ks_eff = np.asarray([min(k, nc) for k in top_ks if nc], dtype=np.int64)
    out_above = torch.zeros((nq, len(top_ks), n_blocks), dtype=torch.int32)
    out_tied = torch.zeros((nq, len(top_ks), n_blocks), dtype=torch.int32)
    ct = c.T.contiguous()
    if device.type == "cpu" and _KERNEL is not None and _TOPK_KERNEL is not None:
        _counts_cpu(
            q.numpy(),
            ct.numpy(),
            rows_np,
            blocks_np,
            n_blocks,
            chunk_size,
            out_scores.numpy(),
            out_counts.numpy(),
            ks_eff,
            out_above.numpy(),
            out_tied.numpy(),
        )
    else:
        rows = torch.as_tensor(rows_np, device=device)
        valid = torch.as_tensor(valid_np, device=device)
        ks_t = torch.as_tensor(ks_eff, device=device)
        _counts_torch(
            q, ct, rows, valid, blocks, n_blocks, chunk_size, out_scores, out_counts,
            ks_t, out_above, out_tied,
        )  # fmt: skip
    block_of = blocks.cpu().numpy()[np.clip(rows_np, 0, None)]
    return RelevantCounts(
        rows=rows_np,
        scores=out_scores.numpy(),
        blocks=np.where(valid_np, block_of, -1),
        valid=valid_np,
        counts=out_counts.numpy(),
        num_blocks=n_blocks,
        top_ks=top_ks,
        top_above=out_above.numpy(),
        top_tied=out_tied.numpy(),
        block_sizes=np.bincount(blocks_np, minlength=n_blocks),
    )


# --------------------------------------------------------------------------- settings


@dataclass
class LareqaMetrics:
    """All settings of a LAReQA benchmark. ``None`` marks an undefined cell."""

    languages: list[str]
    pair_map: list[list[float | None]]  # [query lang][candidate lang]
    pair_recall1: list[list[float | None]]
    multi_ap: np.ndarray  # (nq,) per-question AP in the pooled setting
    multi_recall10: np.ndarray  # (nq,)
    rank_distance: np.ndarray  # (nq,) NaN where a question has < 2 relevant
    pair_ap: np.ndarray  # (nq, L) per-question AP against each candidate language, NaN if none
    question_blocks: np.ndarray  # (nq,)
    #: k -> (nq,) share of the pooled top k in the question's language (NaN: empty pool)
    lang_pref: dict[int, np.ndarray] = field(default_factory=dict)
    #: (nq,) that share for a language-blind ranker: |pool in its language| / |pool|
    lang_pref_expected: np.ndarray | None = None

    def lang_pref_values(self, k: int, *, excess: bool = False) -> np.ndarray:
        """Per-question ``lang_pref@k``, or ``lang_pref_excess@k`` with ``excess``."""
        v = self.lang_pref[k]
        return v - self.lang_pref_expected if excess else v

    def mean_lang_pref(
        self, k: int, query_langs: Sequence[str] | None = None, *, excess: bool = False
    ) -> float | None:
        """``lang_pref@k`` (or its excess) averaged over questions, optionally of some
        query languages; ``None`` when not computed or undefined."""
        if k not in self.lang_pref:
            return None
        v = self._subset(self.lang_pref_values(k, excess=excess), query_langs)
        v = v[~np.isnan(v)]
        return float(v.mean()) if len(v) else None

    def _macro(self, table: list[list[float | None]], mono: bool) -> float | None:
        vals = [
            table[i][j]
            for i in range(len(self.languages))
            for j in range(len(self.languages))
            if (i == j) == mono and table[i][j] is not None
        ]
        return float(np.mean(vals)) if vals else None

    def _subset(self, values: np.ndarray, query_langs: Sequence[str] | None) -> np.ndarray:
        if query_langs is None:
            return values
        keep = np.isin(self.question_blocks, [self.languages.index(x) for x in query_langs])
        return values[keep]

    def multi_map(self, query_langs: Sequence[str] | None = None) -> float | None:
        """Pooled mAP, averaged over all questions (LAReQA), optionally of some languages."""
        v = self._subset(self.multi_ap, query_langs)
        return float(v.mean()) if len(v) else None

    def mean_rank_distance(self, query_langs: Sequence[str] | None = None) -> float | None:
        """Mean rank distance per query language, then macro-averaged over languages."""
        langs = query_langs or self.languages
        per = [self.rank_distance_by_lang().get(x) for x in langs]
        per = [x for x in per if x is not None]
        return float(np.mean(per)) if per else None

    def rank_distance_by_lang(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for i, lang in enumerate(self.languages):
            v = self.rank_distance[(self.question_blocks == i) & ~np.isnan(self.rank_distance)]
            out[lang] = float(v.mean()) if len(v) else None
        return out

    def to_dict(self) -> dict:
        langs = self.languages

        def table(t: list[list[float | None]]) -> dict[str, dict[str, float | None]]:
            return {a: {b: t[i][j] for j, b in enumerate(langs)} for i, a in enumerate(langs)}

        multi_by_lang = {x: self.multi_map([x]) for x in langs}
        r10 = {
            x: (float(v.mean()) if len(v := self._subset(self.multi_recall10, [x])) else None)
            for x in langs
        }
        return {
            "map": {
                "mono": self._macro(self.pair_map, mono=True),
                "cross": self._macro(self.pair_map, mono=False),
                "multi": self.multi_map(),
            },
            "recall": {
                "mono@1": self._macro(self.pair_recall1, mono=True),
                "cross@1": self._macro(self.pair_recall1, mono=False),
                "multi@10": float(self.multi_recall10.mean()),
            },
            "rank_distance": self.mean_rank_distance(),
            **self._lang_pref_dict(None),
            "per_pair_map": table(self.pair_map),
            "per_pair_recall@1": table(self.pair_recall1),
            "per_language": {
                x: {
                    "mono_map": self.pair_map[i][i],
                    "multi_map": multi_by_lang[x],
                    "multi_recall@10": r10[x],
                    "rank_distance": self.rank_distance_by_lang()[x],
                    **self._lang_pref_dict([x]),
                }
                for i, x in enumerate(langs)
            },
        }

    def _lang_pref_dict(self, query_langs: Sequence[str] | None) -> dict[str, float | None]:
        """``lang_pref@k``, ``lang_pref_excess@k`` per k and the language-blind share."""
        if not self.lang_pref:
            return {}
        out: dict[str, float | None] = {}
        for k in sorted(self.lang_pref):
            out[f"lang_pref@{k}"] = self.mean_lang_pref(k, query_langs)
            out[f"lang_pref_excess@{k}"] = self.mean_lang_pref(k, query_langs, excess=True)
        assert self.lang_pref_expected is not None
        v = self._subset(self.lang_pref_expected, query_langs)
        v = v[~np.isnan(v)]
        out["lang_pref_expected"] = float(v.mean()) if len(v) else None
        return out

    def subset(self, query_langs: Sequence[str]) -> dict:
        """Headline metrics restricted to questions in ``query_langs`` (pools unchanged)."""
        idx = [self.languages.index(x) for x in query_langs]
        mono = [self.pair_map[i][i] for i in idx if self.pair_map[i][i] is not None]
        cross = [
            self.pair_map[i][j]
            for i in idx
            for j in range(len(self.languages))
            if i != j and self.pair_map[i][j] is not None
        ]
        return {
            "languages": list(query_langs),
            "map": {
                "mono": float(np.mean(mono)) if mono else None,
                "cross": float(np.mean(cross)) if cross else None,
                "multi": self.multi_map(query_langs),
            },
            "rank_distance": self.mean_rank_distance(query_langs),
        }


def lareqa_metrics(
    counts: RelevantCounts, question_blocks: np.ndarray, languages: Sequence[str]
) -> LareqaMetrics:
    """Derive every LAReQA setting from :func:`relevant_counts`."""
    n_lang = len(languages)
    valid = counts.valid
    s = counts.scores
    blk = counts.blocks
    cnt = counts.counts.astype(np.int64)
    pooled_rank = cnt.sum(-1)
    block_rank = np.take_along_axis(cnt, np.clip(blk, 0, None)[..., None], -1)[..., 0]

    ge = (s[:, None, :] >= s[:, :, None]) & valid[:, None, :]  # ge[q,i,j]: s_j >= s_i
    tp_pool = ge.sum(-1)
    tp_block = (ge & (blk[:, :, None] == blk[:, None, :])).sum(-1)

    n_rel = valid.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec_pool = np.where(valid, tp_pool / np.maximum(pooled_rank, 1), 0.0)
        multi_ap = prec_pool.sum(1) / np.maximum(n_rel, 1)
        multi_r10 = np.where(valid, pooled_rank <= 10, False).sum(1) / np.maximum(n_rel, 1)
        prec_block = np.where(valid, tp_block / np.maximum(block_rank, 1), 0.0)

    nq = len(question_blocks)
    q_idx = np.repeat(np.arange(nq), valid.shape[1]).reshape(valid.shape)
    sums = np.zeros((nq, n_lang))
    hits1 = np.zeros((nq, n_lang))
    nums = np.zeros((nq, n_lang))
    sel = valid
    np.add.at(sums, (q_idx[sel], blk[sel]), prec_block[sel])
    np.add.at(hits1, (q_idx[sel], blk[sel]), (block_rank[sel] <= 1).astype(float))
    np.add.at(nums, (q_idx[sel], blk[sel]), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pair_ap = np.where(nums > 0, sums / nums, np.nan)
        pair_r1 = np.where(nums > 0, hits1 / nums, np.nan)

    pair_map: list[list[float | None]] = []
    pair_rec: list[list[float | None]] = []
    for x in range(n_lang):
        in_x = question_blocks == x
        row_map: list[float | None] = []
        row_rec: list[float | None] = []
        for y in range(n_lang):
            col = pair_ap[in_x, y]
            col = col[~np.isnan(col)]
            row_map.append(float(col.mean()) if len(col) else None)
            rc = pair_r1[in_x, y]
            rc = rc[~np.isnan(rc)]
            row_rec.append(float(rc.mean()) if len(rc) else None)
        pair_map.append(row_map)
        pair_rec.append(row_rec)

    big = np.iinfo(np.int64).max
    r_max = np.where(valid, pooled_rank, -1).max(1)
    r_min = np.where(valid, pooled_rank, big).min(1)
    rank_distance = np.where(n_rel >= 2, (r_max - r_min).astype(float), np.nan)
    lang_pref, expected = _language_preference(counts, np.asarray(question_blocks))

    return LareqaMetrics(
        languages=list(languages),
        pair_map=pair_map,
        pair_recall1=pair_rec,
        multi_ap=multi_ap,
        multi_recall10=multi_r10,
        rank_distance=rank_distance,
        pair_ap=pair_ap,
        question_blocks=np.asarray(question_blocks),
        lang_pref=lang_pref,
        lang_pref_expected=expected,
    )


def _language_preference(
    counts: RelevantCounts, question_blocks: np.ndarray
) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """Per-question ``lang_pref@k`` for each cut-off of ``counts`` and the language-blind
    share, from the top-k language counts (ties at the cut shared out in proportion)."""
    if not counts.top_ks or counts.block_sizes is None:
        return {}, None
    nq = len(question_blocks)
    qi = np.arange(nq)
    pool = int(counts.block_sizes.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = counts.block_sizes[question_blocks] / pool if pool else np.full(nq, np.nan)
        out: dict[int, np.ndarray] = {}
        for j, k in enumerate(counts.top_ks):
            cut = min(k, pool)
            above = counts.top_above[:, j, :].astype(np.float64)  # type: ignore[index]
            tied = counts.top_tied[:, j, :].astype(np.float64)  # type: ignore[index]
            share_tied = tied[qi, question_blocks] / tied.sum(1)
            n_own = above[qi, question_blocks] + (cut - above.sum(1)) * share_tied
            out[k] = n_own / cut if cut else np.full(nq, np.nan)
    return out, np.asarray(expected, dtype=np.float64)


def evaluate_embeddings(
    questions: np.ndarray,
    candidates: np.ndarray,
    question_blocks: np.ndarray,
    candidate_blocks: np.ndarray,
    relevant: Sequence[np.ndarray],
    languages: Sequence[str],
    *,
    device: str | None = None,
    top_ks: Sequence[int] = (10, 20),
) -> LareqaMetrics:
    """Embeddings (rows L2-normalised for cosine) -> every LAReQA setting, with the
    language preference of the pooled ranking at each cut-off of ``top_ks``."""
    counts = relevant_counts(
        questions,
        candidates,
        candidate_blocks,
        relevant,
        num_blocks=len(languages),
        device=device,
        top_ks=top_ks,
    )
    return lareqa_metrics(counts, np.asarray(question_blocks), languages)

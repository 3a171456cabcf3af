"""The maths of post-hoc debiasing: fitting center, LIR and LSAR on embeddings grouped by
language, and the fitted :class:`DebiasTransform` (apply, LSAR projection, summary, the
fit/eval overlap check). No I/O here: the saved form is :mod:`babelir.debias.store`
(``save_transform`` / ``load_transform``), which imports this module, never the reverse."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.errors import ConfigError, DataError

METHODS: tuple[str, ...] = ("center", "lir", "lsar")
#: Default LIR rank: the reference notebook removes one component per language.
LIR_DEFAULT_RANK = 1


# --------------------------------------------------------------------------- hashing


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """64-bit hashes of stripped texts (sorted, unique): compact evidence of what was fitted."""
    out = {
        int.from_bytes(hashlib.blake2b(t.strip().encode("utf-8"), digest_size=8).digest(), "little")
        for t in texts
    }
    return np.array(sorted(out), dtype=np.uint64)


def embeddings_fingerprint(embeddings_by_lang: Mapping[str, np.ndarray]) -> str:
    """SHA-256 (16 hex) of the fit embeddings, language by language in sorted order."""
    h = hashlib.sha256(b"babelir-debias-fit-v1\0")
    for lang in sorted(embeddings_by_lang):
        a = np.ascontiguousarray(embeddings_by_lang[lang], dtype=np.float32)
        h.update(f"{lang}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- transform


@dataclass
class DebiasTransform:
    """A fitted language-debiasing transform.

    ``means``: ``(L, d)`` per-language means (center; for lsar the fitted language means,
    kept for inspection). ``bases``: lir ``(L, d, r)`` per-language orthonormal bases;
    lsar ``(d, k)`` one orthonormal basis. ``fit_info`` holds provenance (model, data,
    articles, fit question ids, ...); ``fit_text_hashes`` the :func:`text_hashes` of the
    fit texts when they are known.
    """

    method: str
    rank: int | None
    languages: list[str]
    n_texts: dict[str, int]
    dim: int
    means: np.ndarray | None = None
    bases: np.ndarray | None = None
    normalize: bool = True
    data_fingerprint: str = ""
    fit_info: dict[str, Any] = field(default_factory=dict)
    fit_text_hashes: np.ndarray | None = None

    # ----------------------------------------------------------------- properties

    @property
    def needs_languages(self) -> bool:
        """center and lir subtract per-language quantities; lsar does not."""
        return self.method != "lsar"

    @property
    def effective_rank(self) -> int | None:
        if self.method == "center" or self.bases is None:
            return None
        return int(self.bases.shape[-1])

    def projection(self) -> np.ndarray:
        """LSAR's ``P = I - U U^T`` (``(d, d)``, float64): symmetric and idempotent."""
        if self.method != "lsar" or self.bases is None:
            raise ConfigError(f"projection: only an lsar transform has one (this is {self.method})")
        u = self.bases.astype(np.float64)
        return np.eye(self.dim) - u @ u.T

    def summary(self) -> dict[str, Any]:
        """What metrics.json and model cards record about the transform."""
        return {
            "method": self.method,
            "rank": self.rank,
            "effective_rank": self.effective_rank,
            "languages": list(self.languages),
            "n_texts": dict(self.n_texts),
            "dim": self.dim,
            "normalize": self.normalize,
            "data_fingerprint": self.data_fingerprint,
            **{k: v for k, v in self.fit_info.items() if k != "fit_question_ids"},
        }

    # ----------------------------------------------------------------- apply

    def apply(
        self,
        embeddings: np.ndarray,
        langs: Sequence[str] | np.ndarray | None = None,
        *,
        normalize: bool | None = None,
    ) -> np.ndarray:
        """Debias ``(n, d)`` rows; ``langs`` (one code per row) is required for center/lir.

        Returns float32 rows, re-normalised to unit length unless ``normalize=False``.
        """
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DataError(
                f"debias: embeddings have shape {x.shape}, the transform was fitted on "
                f"dimension {self.dim}"
            )
        if self.method == "lsar":
            assert self.bases is not None
            u = self.bases.astype(np.float32)
            out = x - (x @ u) @ u.T
        else:
            if langs is None:
                raise ConfigError(
                    f"debias: {self.method} needs the language of every text (langs=...)"
                )
            codes = np.asarray(langs)
            if codes.shape != (x.shape[0],):
                raise DataError(f"debias: {len(codes)} language labels for {x.shape[0]} embeddings")
            missing = sorted(set(codes.tolist()) - set(self.languages))
            if missing:
                raise ConfigError(
                    f"debias: no {self.method} fit for language(s) {', '.join(missing)} "
                    f"(fitted: {', '.join(self.languages)}); fit on text in those languages"
                )
            out = np.empty_like(x)
            for i, lang in enumerate(self.languages):
                rows = codes == lang
                if not rows.any():
                    continue
                block = x[rows]
                if self.method == "center":
                    assert self.means is not None
                    out[rows] = block - self.means[i].astype(np.float32)
                else:
                    assert self.bases is not None
                    u = self.bases[i].astype(np.float32)
                    out[rows] = block - (block @ u) @ u.T
        if self.normalize if normalize is None else normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.maximum(norms, 1e-12)
        return out.astype(np.float32, copy=False)

    # ----------------------------------------------------------------- overlap

    def check_evaluation(
        self,
        *,
        benchmark_name: str | None = None,
        benchmark_path: str | os.PathLike[str] | None = None,
        question_ids: Sequence[str] = (),
        texts: Sequence[str] = (),
        what: str = "",
    ) -> None:
        """Refuse (ConfigError) to evaluate on texts this transform was fitted on.

        Two checks, like training's split check: question ids when the evaluation uses
        the benchmark the fit texts came from (same name or folder), and exact texts
        (questions and candidates) against the fit texts' hashes, for any source.
        """
        fit_ids = self.fit_info.get("fit_question_ids") or []
        if (
            fit_ids
            and question_ids
            and _same_benchmark(self.fit_info, benchmark_name, benchmark_path)
        ):
            shared = sorted(set(fit_ids) & set(question_ids))
            if shared:
                raise ConfigError(
                    f"debias fit/eval overlap{(' in ' + what) if what else ''}: "
                    f"{len(shared)} question ids are in both (e.g. {', '.join(shared[:3])}); "
                    f"the {self.method} transform was fitted on articles "
                    f"{self.fit_info.get('articles')} of {self.fit_info.get('benchmark')}: "
                    f"evaluate on disjoint --articles or refit"
                )
        if self.fit_text_hashes is not None and len(texts):
            overlap = np.intersect1d(text_hashes(texts), self.fit_text_hashes)
            if len(overlap):
                raise ConfigError(
                    f"debias fit/eval overlap{(' in ' + what) if what else ''}: {len(overlap)} "
                    f"evaluation texts were among the {self.method} fit texts "
                    f"({self.fit_info.get('source', 'fit data')}, articles "
                    f"{self.fit_info.get('articles', 'all')}); fit on training-side text only"
                )


def _same_benchmark(
    fit_info: Mapping[str, Any], name: str | None, path: str | os.PathLike[str] | None
) -> bool:
    fit_name, fit_path = fit_info.get("benchmark"), fit_info.get("benchmark_path")
    if fit_path and path:
        try:
            if Path(fit_path).resolve() == Path(path).resolve():
                return True
        except OSError:
            pass
    return bool(fit_name and name and fit_name == name)


# --------------------------------------------------------------------------- fitting


def _check_inputs(embeddings_by_lang: Mapping[str, np.ndarray]) -> tuple[list[str], int]:
    if not embeddings_by_lang:
        raise DataError("debias: no fit embeddings (need at least one language)")
    langs = list(embeddings_by_lang)
    dims = {np.asarray(embeddings_by_lang[x]).shape[-1] for x in langs}
    if len(dims) != 1:
        raise DataError(f"debias: fit embeddings disagree on dimension ({sorted(dims)})")
    for lang in langs:
        a = np.asarray(embeddings_by_lang[lang])
        if a.ndim != 2 or len(a) == 0:
            raise DataError(f"debias: language '{lang}' has no fit embeddings (shape {a.shape})")
        if not np.isfinite(a).all():
            raise DataError(f"debias: language '{lang}' has non-finite fit embeddings")
    return langs, dims.pop()


def fit_center(embeddings_by_lang: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-language means, ``(L, d)`` float64, in the mapping's language order."""
    return np.stack([np.asarray(e, np.float64).mean(0) for e in embeddings_by_lang.values()])


def fit_lir(embeddings_by_lang: Mapping[str, np.ndarray], rank: int) -> np.ndarray:
    """Per language, the top-``rank`` left singular vectors of ``X_l^T`` (uncentred, as
    the LIR notebook): ``(L, d, rank)``."""
    out = []
    for lang, emb in embeddings_by_lang.items():
        x = np.asarray(emb, np.float64)
        if rank > min(x.shape):
            raise ConfigError(
                f"rank: LIR rank {rank} exceeds what language '{lang}' supports "
                f"({len(x)} texts, dimension {x.shape[1]})"
            )
        # right singular vectors of X (n, d) = left singular vectors of X^T
        _, _, vh = np.linalg.svd(x, full_matrices=False)
        out.append(vh[:rank].T)
    return np.stack(out)


def fit_lsar(means: np.ndarray, rank: int, rtol: float = 1e-6) -> np.ndarray:
    """Orthonormal ``(d, k)`` basis of the top principal directions of the language means
    (rows of ``means``) around their average; ``k = min(rank, numerical rank)``."""
    m = np.asarray(means, np.float64)
    centred = m - m.mean(0, keepdims=True)
    _, s, vh = np.linalg.svd(centred, full_matrices=False)
    tol = rtol * (s[0] if len(s) and s[0] > 0 else 1.0)
    k = int(min(rank, int((s > tol).sum())))
    return vh[:k].T.copy()


def fit_from_texts(
    method: str,
    embeddings_by_lang: Mapping[str, np.ndarray],
    rank: int | None = None,
    *,
    normalize: bool = True,
    fit_info: Mapping[str, Any] | None = None,
    fit_texts: Sequence[str] | None = None,
) -> DebiasTransform:
    """Fit a transform on the embeddings of unlabeled texts, grouped by language.

    ``rank``: lir components per language (default 1); lsar subspace rank (default the
    number of languages, as the LSAR scripts). Ignored by center. ``fit_texts`` (the raw
    texts, any order) lets the transform later refuse evaluation texts it was fitted on.
    """
    if method not in METHODS:
        raise ConfigError(f"method: unknown '{method}' (valid: {', '.join(METHODS)})")
    langs, dim = _check_inputs(embeddings_by_lang)
    if rank is not None and (isinstance(rank, bool) or int(rank) < 1):
        raise ConfigError(f"rank: must be a positive integer, got {rank!r}")
    means = fit_center(embeddings_by_lang)
    bases: np.ndarray | None = None
    if method == "center":
        rank = None
    elif method == "lir":
        rank = int(rank or LIR_DEFAULT_RANK)
        bases = fit_lir(embeddings_by_lang, rank)
    else:
        if len(langs) < 2:
            raise ConfigError("lsar: needs fit text in at least two languages")
        rank = int(rank or len(langs))
        bases = fit_lsar(means, rank)
    return DebiasTransform(
        method=method,
        rank=rank,
        languages=langs,
        n_texts={x: len(embeddings_by_lang[x]) for x in langs},
        dim=int(dim),
        means=means.astype(np.float32),
        bases=None if bases is None else bases.astype(np.float32),
        normalize=normalize,
        data_fingerprint=embeddings_fingerprint(embeddings_by_lang),
        fit_info=dict(fit_info or {}),
        fit_text_hashes=None if fit_texts is None else text_hashes(fit_texts),
    )

"""Post-hoc removal of language identity from embeddings: centering, LIR and LSAR.

Contrastive training is one way to fight same-language bias; a cheaper one removes the
directions that encode *which language* a text is in, after training, from unlabeled
text. Three methods, all linear and fitted per model:

* ``center`` - per-language centering: subtract each language's mean embedding. Needs
  the language of every text at inference.
* ``lir`` - Language Information Removal (Yang, Yang, Cer, Darve: "A Simple and Effective
  Method To Eliminate the Self Language Bias in Multilingual Representations", EMNLP
  2021; reference code ``ziyi-yang/LIR``, ``lir.ipynb``). Per language, the top-``r``
  left singular vectors of that language's (uncentred, as in the reference notebook)
  embedding matrix are projected out: ``x - U_l U_l^T x``. Default ``r = 1``, the
  notebook's setting. Needs the language at inference.
* ``lsar`` - Low-rank Subspace for language-Agnostic Representations (Xie, Zhao, Zhou,
  Gu, Chen: "Discovering Low-rank Subspaces for Language-agnostic Multilingual
  Representations", EMNLP 2022; reference code ``zhxieml/LSAR``,
  ``src/alignment/_low_rank.py``). The per-language mean embeddings are stacked and the
  low-rank subspace of their spread around a common point is projected out with ONE
  matrix ``P = I - U U^T`` for every language, so no language id is needed at inference
  and ``P`` can ship as a linear layer of the model (:func:`export_lsar_model`).

  The reference finds the common point ``wc_new`` of the best rank-k fit of the means and
  takes the top-k left singular vectors of ``means - wc_new``; that point lies in the
  means' affine hull, so those vectors span the top-k principal directions of the means
  centred on their average, which is what is computed here. The reference scripts use
  ``k = number of languages`` (``lsar+11`` on XQuAD-R, ``lsar+7`` on MLQA-R); the centred
  means have rank at most ``L - 1``, and the reference's ``L``-th vector belongs to a zero
  singular value (an arbitrary direction), so the basis is capped at the numerical rank
  and both the requested and the effective rank are recorded.

Every method re-normalises rows to unit length afterwards (``normalize=True``), so inner
product stays cosine, as babelir's evaluation expects.

Usage (library; the ``babelir debias`` command wraps the same calls)::

    from babelir.debias import fit_from_texts, DebiasTransform
    t = fit_from_texts("lsar", {"en": emb_en, "de": emb_de, "zh": emb_zh})
    q2 = t.apply(q)                         # lsar: no languages needed
    t.save("runs/lsar-fit"); t = DebiasTransform.load("runs/lsar-fit")
    c2 = fit_from_texts("center", by_lang).apply(c, langs=candidate_langs)

A fitted transform is saved as ``debias.json`` (method, rank, languages, n_texts, fit
provenance) plus ``debias.safetensors`` (the matrices and 64-bit hashes of the fit texts,
used to refuse evaluating on texts it was fitted on). No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelir.errors import ConfigError, DataError

METHODS: tuple[str, ...] = ("center", "lir", "lsar")
#: Default LIR rank: the reference notebook removes one component per language.
LIR_DEFAULT_RANK = 1
FORMAT_VERSION = 1
JSON_NAME = "debias.json"
TENSORS_NAME = "debias.safetensors"
#: Subfolder of an exported LSAR model folder that holds the babelir transform.
MODEL_SUBDIR = "babelir-debias"


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

    # ----------------------------------------------------------------- save / load

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``debias.json`` + ``debias.safetensors`` into ``folder`` (atomically)."""
        from babelir.io import atomic_dir

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            self._write(tmp)
        return folder

    def _write(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        from babelir.io import atomic_path, write_json

        tensors: dict[str, np.ndarray] = {}
        if self.means is not None:
            tensors["means"] = np.ascontiguousarray(self.means, dtype=np.float32)
        if self.bases is not None:
            tensors["bases"] = np.ascontiguousarray(self.bases, dtype=np.float32)
        if self.fit_text_hashes is not None:
            tensors["fit_text_hashes"] = np.ascontiguousarray(self.fit_text_hashes, dtype=np.uint64)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / TENSORS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "babelir-debias"})
        write_json(
            folder / JSON_NAME,
            {
                "format": "babelir-debias",
                "format_version": FORMAT_VERSION,
                "method": self.method,
                "rank": self.rank,
                "effective_rank": self.effective_rank,
                "languages": self.languages,
                "n_texts": self.n_texts,
                "dim": self.dim,
                "normalize": self.normalize,
                "data_fingerprint": self.data_fingerprint,
                "fit_info": self.fit_info,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DebiasTransform:
        """Load a transform folder, or the transform inside an exported LSAR model folder."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        folder = path / MODEL_SUBDIR if (path / MODEL_SUBDIR / JSON_NAME).is_file() else path
        meta_path = folder / JSON_NAME
        if not meta_path.is_file():
            raise DataError(
                f"{path}: not a debias transform (no {JSON_NAME}; write one with babelir debias)"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{meta_path}: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != "babelir-debias":
            raise DataError(f"{meta_path}: not a babelir debias file (field 'format')")
        if meta.get("method") not in METHODS:
            raise DataError(f"{meta_path}: field 'method' must be one of {', '.join(METHODS)}")
        try:
            tensors = load_file(str(folder / TENSORS_NAME))
        except FileNotFoundError:
            raise DataError(f"{folder / TENSORS_NAME}: file not found") from None
        except SafetensorError as e:
            raise DataError(f"{folder / TENSORS_NAME}: not a safetensors file ({e})") from None
        try:
            t = cls(
                method=meta["method"],
                rank=meta.get("rank"),
                languages=list(meta["languages"]),
                n_texts={str(k): int(v) for k, v in meta["n_texts"].items()},
                dim=int(meta["dim"]),
                means=tensors.get("means"),
                bases=tensors.get("bases"),
                normalize=bool(meta.get("normalize", True)),
                data_fingerprint=str(meta.get("data_fingerprint", "")),
                fit_info=dict(meta.get("fit_info") or {}),
                fit_text_hashes=tensors.get("fit_text_hashes"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{meta_path}: missing or malformed field ({e})") from None
        t._validate(str(folder))
        return t

    def _validate(self, where: str) -> None:
        n_lang, d = len(self.languages), self.dim
        if self.method == "center":
            ok = self.means is not None and self.means.shape == (n_lang, d)
        elif self.method == "lir":
            ok = (
                self.bases is not None
                and self.bases.ndim == 3
                and self.bases.shape[:2] == (n_lang, d)
            )
        else:
            ok = self.bases is not None and self.bases.ndim == 2 and self.bases.shape[0] == d
        if not ok:
            raise DataError(f"{where}: {self.method} matrices do not match languages/dim")


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


# --------------------------------------------------------------------------- fit texts


@dataclass
class FitTexts:
    """Unlabeled texts to fit on, per language, split by role (so each gets its prefix).

    ``question_ids``: ids of the LAReQA questions whose texts are included (for the
    disjointness check); ``info``: where the texts came from (source, benchmark, articles).
    """

    queries: dict[str, list[str]]
    passages: dict[str, list[str]]
    question_ids: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return list(dict.fromkeys([*self.queries, *self.passages]))

    def all_texts(self) -> list[str]:
        return [t for d in (self.queries, self.passages) for v in d.values() for t in v]

    def n_texts(self) -> dict[str, int]:
        return {
            x: len(self.queries.get(x, ())) + len(self.passages.get(x, ())) for x in self.languages
        }

    def provenance(self) -> dict[str, Any]:
        """fit_info for the transform: source, articles, fit question ids, ..."""
        return {**self.info, "fit_question_ids": sorted(set(self.question_ids))}


def _subsample(texts: list[str], cap: int | None, seed: int) -> list[str]:
    if cap is None or len(texts) <= cap:
        return texts
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(texts), size=cap, replace=False))
    return [texts[i] for i in keep]


def collect_fit_texts(
    source: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    articles: str | None = "all",
    languages: Sequence[str] | str | None = None,
    max_per_language: int | None = None,
    seed: int = 0,
) -> FitTexts:
    """Unlabeled fit texts from a LAReQA benchmark (name or folder: questions and
    candidate sentences of ``articles``), a JSONL file of ``{lang, text[, role]}`` lines
    (role ``query`` or ``passage``, default passage), or a trained babelir model folder
    (its ``babelir-train.json``: the run's training data, articles and languages).

    ``max_per_language`` caps each language's texts by a seeded sample (split
    proportionally between queries and passages).
    """
    from babelir.settings import data_dir as resolve_data_dir

    root = resolve_data_dir(data_dir)
    path = Path(source)
    if path.is_dir() and (path / "babelir-train.json").is_file():
        return _from_run(path, data_dir, articles, languages, max_per_language, seed)
    text = str(source)
    if path.is_file() or text.endswith((".jsonl", ".jsonl.gz")):
        if articles not in (None, "all"):
            raise ConfigError("--articles applies to LAReQA-format folders, not JSONL files")
        fit = _from_jsonl(path, languages)
    else:
        fit = _from_lareqa(text, root, articles, languages)
    if max_per_language is not None:
        if max_per_language < 1:
            raise ConfigError(f"max_per_language: must be >= 1, got {max_per_language}")
        for lang in fit.languages:
            q, p = fit.queries.get(lang, []), fit.passages.get(lang, [])
            total = len(q) + len(p)
            if total > max_per_language:
                nq = round(max_per_language * len(q) / total)
                fit.queries[lang] = _subsample(q, nq, seed)
                fit.passages[lang] = _subsample(p, max_per_language - nq, seed + 1)
        fit.info["max_per_language"] = max_per_language
    return fit


def _from_lareqa(
    name: str, root: Path, articles: str | None, languages: Sequence[str] | str | None
) -> FitTexts:
    from babelir.data.lareqa import (
        ArticleSelection,
        available_languages,
        parse_language_file,
        parse_languages,
        resolve_benchmark_dir,
    )

    bench_name, folder = resolve_benchmark_dir(name, root)
    present = available_languages(folder)
    wanted = parse_languages(languages) or present
    for lang in wanted:
        if lang not in present:
            raise DataError(
                f"{folder / (lang + '.json')}: language '{lang}' is absent "
                f"(available: {', '.join(present) or 'none'})"
            )
    selection = ArticleSelection.parse(articles)
    queries: dict[str, list[str]] = {}
    passages: dict[str, list[str]] = {}
    ids: list[str] = []
    for lang in wanted:
        f = parse_language_file(folder / f"{lang}.json", lang, selection)
        queries[lang] = [qa.question for qa in f.qas]
        passages[lang] = [s.text for s in f.sentences]
        ids.extend(qa.id for qa in f.qas)
        if not queries[lang] and not passages[lang]:
            raise DataError(f"{folder / (lang + '.json')}: articles {selection} hold no text")
    return FitTexts(
        queries,
        passages,
        ids,
        {
            "source": name,
            "benchmark": bench_name,
            "benchmark_path": str(folder),
            "articles": str(selection),
        },
    )


def _from_jsonl(path: Path, languages: Sequence[str] | str | None) -> FitTexts:
    import gzip

    from babelir.data.lareqa import parse_languages

    if not path.is_file():
        raise DataError(f"{path}: fit data file not found")
    wanted = parse_languages(languages)
    queries: dict[str, list[str]] = {}
    passages: dict[str, list[str]] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object")
            for key in ("lang", "text"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise DataError(f"{where}: field '{key}' must be a non-empty string")
            role = row.get("role", "passage")
            if role not in ("query", "passage"):
                raise DataError(f"{where}: field 'role' must be 'query' or 'passage'")
            lang = row["lang"]
            if wanted is not None and lang not in wanted:
                continue
            (queries if role == "query" else passages).setdefault(lang, []).append(row["text"])
    fit = FitTexts(queries, passages, [], {"source": str(path)})
    if not fit.languages:
        raise DataError(f"{path}: no fit texts" + (" in the chosen languages" if wanted else ""))
    return fit


def _from_run(
    folder: Path,
    data_dir: str | os.PathLike[str] | None,
    articles: str | None,
    languages: Sequence[str] | str | None,
    max_per_language: int | None,
    seed: int,
) -> FitTexts:
    """The unlabeled training texts (queries and positives' sentences) of a babelir run."""
    marker = folder / "babelir-train.json"
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
        cfg = info["config"]
        train_data = str(cfg["train_data"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{marker}: cannot read the run's training config ({e})") from None
    if articles not in (None, "all") and articles != cfg.get("articles", "all"):
        raise ConfigError(
            f"--articles {articles}: the run {folder} trained on articles "
            f"{cfg.get('articles', 'all')}; leave --articles out to fit on the run's data"
        )
    langs = languages or info.get("train_languages") or cfg.get("languages")
    fit = collect_fit_texts(
        train_data,
        data_dir or cfg.get("data_dir"),
        articles=cfg.get("articles", "all"),
        languages=langs,
        max_per_language=max_per_language,
        seed=seed,
    )
    fit.info["run"] = str(folder)
    if cfg.get("eval_articles"):
        fit.info["run_eval_articles"] = cfg["eval_articles"]
    return fit


# --------------------------------------------------------------------------- with a model


def encode_fit_texts(
    model: Any,
    fit: FitTexts,
    *,
    query_prefix: str = "",
    passage_prefix: str = "",
    batch_size: int = 64,
    precision: str = "auto",
    show_progress: bool = False,
    cache: Any = None,
) -> dict[str, np.ndarray]:
    """Encode the fit texts with babelir's encoder (queries and passages with their
    prefixes, exactly as evaluation encodes them): ``{lang: (n_lang, d)}``."""
    from babelir.encoding import encode_texts

    opts = {
        "batch_size": batch_size,
        "precision": precision,
        "show_progress": show_progress,
        "cache": cache,
    }
    out: dict[str, np.ndarray] = {}
    for lang in fit.languages:
        parts = []
        q, p = fit.queries.get(lang, []), fit.passages.get(lang, [])
        if q:
            parts.append(encode_texts(model, q, prefix=query_prefix, desc=f"fit {lang} q", **opts))
        if p:
            parts.append(
                encode_texts(model, p, prefix=passage_prefix, desc=f"fit {lang} p", **opts)
            )
        out[lang] = np.concatenate(parts)
    return out


def fit_model(
    model: Any,
    fit: FitTexts,
    method: str,
    rank: int | None = None,
    *,
    query_prefix: str = "",
    passage_prefix: str = "",
    batch_size: int = 64,
    precision: str = "auto",
    show_progress: bool = False,
    cache: Any = None,
    extra_info: Mapping[str, Any] | None = None,
) -> DebiasTransform:
    """Encode ``fit`` with ``model`` and fit ``method``; provenance goes into fit_info."""
    import time

    from babelir.encoding import memo_fingerprint

    t0 = time.perf_counter()
    emb = encode_fit_texts(
        model,
        fit,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        batch_size=batch_size,
        precision=precision,
        show_progress=show_progress,
        cache=cache,
    )
    t1 = time.perf_counter()
    info = {
        **fit.provenance(),
        "model_fingerprint": memo_fingerprint(model),
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
        **dict(extra_info or {}),
    }
    t = fit_from_texts(method, emb, rank, fit_info=info, fit_texts=fit.all_texts())
    t.fit_info["timing_s"] = {
        "encode": round(t1 - t0, 3),
        "fit": round(time.perf_counter() - t1, 3),
    }
    return t


# --------------------------------------------------------------------------- export


def export_lsar_model(
    model: Any,
    transform: DebiasTransform,
    output: str | os.PathLike[str],
    *,
    model_name: str | None = None,
) -> Path:
    """Write a plain sentence-transformers folder: ``model``'s modules, then ``Dense``
    (weight ``P = I - U U^T``, no bias, identity activation), then ``Normalize``.

    ``SentenceTransformer(output)`` loads it without babelir; its embeddings equal
    ``transform.apply(<model's normalised embeddings>)``. Weights are safetensors; the
    transform itself is kept in ``output/babelir-debias/`` (so ``babelir evaluate
    --debias-fit output`` can check the fit split); README.md says what was fitted on what.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    from babelir.io import atomic_dir, write_text

    if transform.method != "lsar":
        raise ConfigError(
            f"export: only lsar is one matrix for all languages ({transform.method} needs "
            f"the language at inference; use it through babelir evaluate --debias-fit)"
        )
    p = torch.tensor(transform.projection(), dtype=torch.float32)
    dense = Dense(
        transform.dim,
        transform.dim,
        bias=False,
        activation_function=torch.nn.Identity(),
        init_weight=p,
    )
    device = getattr(model, "device", None)
    modules = [*list(model), dense, Normalize()]
    debiased = SentenceTransformer(modules=modules, device="cpu")  # shares model's modules
    # Keep the prefixes the fit used (e5's "query: "/"passage: " are implied by the base
    # model's *name*, which the exported folder no longer carries): saved as prompts.
    prompts = dict(getattr(model, "prompts", None) or {})
    for key in ("query", "passage"):
        if transform.fit_info.get(f"{key}_prefix") and not prompts.get(key):
            prompts[key] = transform.fit_info[f"{key}_prefix"]
    if prompts:
        debiased.prompts = prompts
        debiased.default_prompt_name = getattr(model, "default_prompt_name", None)
    output = Path(output)
    with atomic_dir(output) as tmp:
        debiased.save(str(tmp), safe_serialization=True)
        write_text(tmp / "README.md", model_card(transform, model_name=model_name))
        transform._write(tmp / MODEL_SUBDIR)
    if device is not None:
        model.to(device)  # the shared modules were moved to the CPU with ``debiased``
    return output


def model_card(transform: DebiasTransform, *, model_name: str | None = None) -> str:
    """A README.md for an exported LSAR folder: what was fitted, on what, how to load it."""
    info = transform.fit_info
    n_total = sum(transform.n_texts.values())
    per_lang = ", ".join(f"{k} {v}" for k, v in transform.n_texts.items())
    lines = [
        "---",
        "library_name: sentence-transformers",
        "tags: [sentence-transformers, babelir, lsar, multilingual, language-debiasing]",
        "---",
        "",
        f"# {model_name or info.get('model', 'model')} + LSAR",
        "",
        "The original encoder followed by a fixed linear projection `P = I - U U^T` "
        "(a `Dense` layer, no bias, identity activation) and L2 re-normalisation. `U` "
        "spans the low-rank subspace of the per-language mean embeddings (LSAR: Xie et "
        'al., "Discovering Low-rank Subspaces for Language-agnostic Multilingual '
        'Representations", EMNLP 2022), so language identity is projected out without '
        "knowing a text's language. Written by babelir (`babelir debias --method lsar`).",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "model = SentenceTransformer('<this folder>')  # no babelir needed",
        "```",
        "",
        "## What was fitted on what",
        "",
        "| field | value |",
        "|---|---|",
        f"| base model | {info.get('model', model_name or 'n/a')} |",
        f"| base model fingerprint | {info.get('model_fingerprint', 'n/a')} |",
        f"| fit data | {info.get('source', 'n/a')} |",
        f"| benchmark | {info.get('benchmark', 'n/a')} |",
        f"| articles | {info.get('articles', 'n/a')} |",
        f"| held-out articles checked disjoint | {info.get('eval_articles', 'not checked')} |",
        f"| languages | {', '.join(transform.languages)} |",
        f"| fit texts (unlabeled questions and candidate sentences) | {n_total} ({per_lang}) |",
        f"| rank requested / effective | {transform.rank} / {transform.effective_rank} |",
        f"| query prefix / passage prefix | {info.get('query_prefix', '')!r} / "
        f"{info.get('passage_prefix', '')!r} |",
        f"| fit-embeddings fingerprint | {transform.data_fingerprint} |",
        "",
        "Encode queries and passages with the same prefixes as the base model. The "
        "transform (matrices and provenance) is also stored in `babelir-debias/`.",
        "",
    ]
    if info.get("run"):
        lines.insert(-3, f"Fitted on the training texts of the babelir run `{info['run']}`.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- evaluation


def check_benchmark(transform: DebiasTransform, bench: Any, what: str = "") -> None:
    """Refuse (ConfigError) a LAReQA ``Benchmark`` that overlaps ``transform``'s fit texts."""
    transform.check_evaluation(
        benchmark_name=bench.name,
        benchmark_path=bench.path,
        question_ids=bench.question_ids,
        texts=[*bench.question_texts, *bench.candidate_texts()],
        what=what or f"articles {bench.articles} of {bench.name}",
    )


def debias_result(result: Any, transform: DebiasTransform, *, fit_path: Any = None) -> Any:
    """An ``EvaluationResult`` re-scored on debiased embeddings, the transform recorded in
    its info (``metrics.json["debias"]``). Checks the fit/eval split first; the extra
    field ``model_fingerprint_matches`` says whether the fit used the evaluated model."""
    import time

    from babelir.evaluation.lareqa import Embeddings, EvaluationResult, score_benchmark

    b = result.benchmark
    check_benchmark(transform, b)
    t0 = time.perf_counter()
    q = transform.apply(result.embeddings.questions, b.question_langs)
    c = transform.apply(result.embeddings.candidates, b.candidate_langs)
    t1 = time.perf_counter()
    info = dict(result.info)
    record = {**transform.summary(), "apply_s": round(t1 - t0, 4)}
    if fit_path is not None:
        record["fit_path"] = str(fit_path)
    ours, fitted = info.get("model_fingerprint"), transform.fit_info.get("model_fingerprint")
    if ours and fitted:
        record["model_fingerprint_matches"] = ours == fitted
    info["debias"] = record
    return EvaluationResult(b, score_benchmark(b, q, c), Embeddings(q, c), info)

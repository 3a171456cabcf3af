"""Evaluate an encoder on a LAReQA benchmark: encode once, score every setting.

Each question and each candidate is encoded exactly once; the monolingual,
cross-lingual and multilingual settings are all read off the same score matrix
(:mod:`babelir.evaluation.metrics`), unlike tools that re-encode per language pair.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from babelir import __version__
from babelir.core.errors import BabelirError, DataError, ModelError
from babelir.core.io import atomic_dir, read_input_text, write_json, write_jsonl, write_npy
from babelir.data.lareqa import Benchmark
from babelir.encoding.encoder import encode_texts, encoder_settings
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.metrics import LareqaMetrics, evaluate_embeddings

#: Languages no paper model saw in training (zero-shot at evaluation).
ZERO_SHOT_LANGUAGES = ("el", "vi")


@dataclass
class Embeddings:
    questions: np.ndarray
    candidates: np.ndarray


@dataclass
class EvaluationResult:
    benchmark: Benchmark
    metrics: LareqaMetrics
    embeddings: Embeddings
    info: dict[str, Any] = field(default_factory=dict)

    def metrics_json(self) -> dict[str, Any]:
        """The metrics.json document: headline numbers, tables and provenance."""
        out: dict[str, Any] = {
            "babelir_version": __version__,
            **self.info,
            "benchmark": self.benchmark.name,
            "benchmark_path": str(self.benchmark.path),
            "languages": self.benchmark.languages,
            "articles": self.benchmark.articles,
            "candidate_mode": self.benchmark.candidate_mode,
            "num_questions": self.benchmark.num_questions,
            "num_candidates": self.benchmark.num_candidates,
        }
        out.update(self.metrics.to_dict())
        unseen = [x for x in ZERO_SHOT_LANGUAGES if x in self.benchmark.languages]
        if unseen:
            out["zero_shot_languages"] = self.metrics.subset(unseen)
        out["conventions"] = {
            "map": "AP over the full ranking divided by the number of relevant candidates",
            "ties": "pessimistic: rank = number of candidates scoring >= (sklearn AP)",
            "mono": "macro mean over languages X of mAP(X->X)",
            "cross": "macro mean over ordered pairs X!=Y of mAP(X->Y)",
            "multi": "mean AP over all questions against the pooled candidates",
            "rank_distance": "per question max-min pooled rank of its relevant candidates; "
            "mean per query language, then macro mean",
        }
        if self.metrics.lang_pref:
            out["conventions"]["lang_pref"] = (
                "per question share of the pooled top min(k, pool size) in the query's "
                "language, ties at the cut shared out in proportion; mean over questions; "
                "excess = minus |pool in the query's language| / |pool|"
            )
        return out


def score_benchmark(
    benchmark: Benchmark, questions: np.ndarray, candidates: np.ndarray
) -> LareqaMetrics:
    """Metrics of a benchmark from its (normalised) question and candidate embeddings.

    Args:
        benchmark: the benchmark the embeddings belong to.
        questions: one row per ``benchmark`` question, L2-normalised.
        candidates: one row per candidate, L2-normalised.

    Returns:
        The :class:`LareqaMetrics` (every setting and measure of the registry).

    Example:
        >>> metrics = babelir.score_benchmark(bench, q_emb, c_emb)"""
    return evaluate_embeddings(
        questions,
        candidates,
        benchmark.question_lang_codes(),
        benchmark.candidate_lang_codes(),
        benchmark.relevant,
        benchmark.languages,
    )


def evaluate_model(
    model: Any,
    benchmark: Benchmark,
    *,
    options: EncodeOptions = EncodeOptions(),
    info: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Encode a benchmark with ``model`` and compute every LAReQA setting.

    Args:
        model: a loaded encoder (:func:`babelir.encoding.encoder.load_encoder`).
        benchmark: a :class:`babelir.data.lareqa.Benchmark`.
        options: how to encode; its ``None`` prefixes mean ``""`` here (resolve the
            model's defaults with ``load_encoder``); its cache is opened once for
            questions and candidates.
        info: extra fields for the result's record (model name, seed...).

    Returns:
        An :class:`EvaluationResult`: mono / cross / multi mAP, recall, rank distance and
        language preference (:func:`score_benchmark`), per-query arrays and the
        embeddings; the precision asked for and the resolved one are in its info
        (metrics.json when saved).

    References:
        Roy et al., LAReQA, EMNLP 2020 (settings, mAP); arXiv 2408.10536 (rank distance).

    Example:
        >>> import babelir
        >>> model, opts = babelir.load_encoder("runs/hybrid", babelir.EncodeOptions())
        >>> result = babelir.evaluate_model(model, babelir.load_benchmark("xquad-r"),
        ...                                 options=opts)
        >>> result.metrics.map["cross"]
    """
    store = options.embedding_cache()  # opened once for questions and candidates
    enc = replace(options, cache=store if store is not None else False)
    qp, pp = options.query_prefix or "", options.passage_prefix or ""
    t0 = time.perf_counter()
    q = encode_texts(model, benchmark.question_texts, prefix=qp, options=enc, desc="questions")
    c = encode_texts(
        model, benchmark.candidate_texts(), prefix=pp, options=enc, desc="candidates"
    )
    t1 = time.perf_counter()
    check_finite(q, benchmark.question_texts, "model output for questions", ModelError)
    check_finite(c, benchmark.candidate_texts(), "model output for candidates", ModelError)
    metrics = score_benchmark(benchmark, q, c)
    t2 = time.perf_counter()
    meta = dict(info or {})
    meta.update(
        {
            "query_prefix": qp,
            "passage_prefix": pp,
            "encoder": encoder_settings(model, options),
            "timing_s": {"encode": round(t1 - t0, 3), "metrics": round(t2 - t1, 3)},
        }
    )
    return EvaluationResult(benchmark, metrics, Embeddings(q, c), meta)


#: What ``--save-embeddings`` writes beside metrics.json, which records their digests.
EMBEDDING_FILES = ("questions.npy", "candidates.npy", "questions.jsonl", "candidates.jsonl")
#: The metrics.json key binding the saved embeddings to that evaluation.
SAVED_KEY = "saved_embeddings"


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_result(result: EvaluationResult, output: Path, *, save_embeddings: bool = False) -> None:
    """Write metrics.json (and embeddings) into ``output``.

    Files are built in a temporary folder and moved in only when all are complete, so an
    interrupted run leaves ``output`` as it was. With ``save_embeddings`` metrics.json
    records each embedding file's digest and the model fingerprint
    (:func:`check_saved_files`); without it, embedding files an earlier run left in
    ``output`` are removed, so they are never read as this run's.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    doc = result.metrics_json()
    doc.pop(SAVED_KEY, None)  # only the files written below are bound, never copied info's
    with atomic_dir(output / ".babelir-pending") as tmp:
        if save_embeddings:
            b = result.benchmark
            write_npy(tmp / "questions.npy", result.embeddings.questions)
            write_npy(tmp / "candidates.npy", result.embeddings.candidates)
            write_jsonl(
                tmp / "questions.jsonl",
                (
                    {"id": i, "lang": lang, "text": t}
                    for i, lang, t in zip(
                        b.question_ids, b.question_langs, b.question_texts, strict=False
                    )
                ),
            )
            texts = b.candidate_texts()
            write_jsonl(
                tmp / "candidates.jsonl",
                (
                    {"lang": lang, "text": t, "relevant_ids": list(r)}
                    for lang, t, r in zip(
                        b.candidate_langs, texts, b.candidate_relevant_ids, strict=False
                    )
                ),
            )
            doc[SAVED_KEY] = {
                "model_fingerprint": doc.get("model_fingerprint"),
                "sha256": {name: _sha256(tmp / name) for name in EMBEDDING_FILES},
            }
        write_json(tmp / "metrics.json", doc)
    pending = output / ".babelir-pending"
    if not save_embeddings:  # before the new metrics.json lands beside them
        for name in EMBEDDING_FILES:
            (output / name).unlink(missing_ok=True)
    for f in sorted(pending.iterdir(), key=lambda p: p.name == "metrics.json"):
        f.replace(output / f.name)
    pending.rmdir()


def check_saved_files(folder: Path) -> None:
    """Refuse saved embeddings that are not the ones their metrics.json was written with.

    A later evaluation into the same folder (another model, without --save-embeddings),
    a file copied in from another run or a reordered ``questions.jsonl`` would otherwise
    be scored under the metrics.json's model and selection.
    """
    import json

    folder = Path(folder)
    path = folder / "metrics.json"
    again = "save the embeddings again with --save-embeddings"
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path}: not found; saved embeddings are read only with the metrics.json written "
            f"beside them ({again})"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: unreadable ({reason})") from None
    binding = doc.get(SAVED_KEY) if isinstance(doc, dict) else None
    if not isinstance(binding, dict) or not isinstance(binding.get("sha256"), dict):
        raise DataError(
            f"{path}: records no digests of the saved embeddings (written without "
            f"--save-embeddings, or by an older babelir), so they cannot be told from another "
            f"run's; {again}"
        )
    digests = binding["sha256"]
    if binding.get("model_fingerprint") != doc.get("model_fingerprint"):
        raise DataError(
            f"{path}: the embeddings were saved for model fingerprint "
            f"{binding.get('model_fingerprint')} but metrics.json names "
            f"{doc.get('model_fingerprint')}; {again}"
        )
    for name in EMBEDDING_FILES:
        if _sha256(folder / name) != digests.get(name):
            raise DataError(
                f"{folder / name}: not the file {path} was written with (its sha256 differs: "
                f"another run's, edited or reordered); {again}"
            )


def check_finite(
    array: np.ndarray, texts: list[str], where: str, error: type[BabelirError] = DataError
) -> None:
    """Refuse rows holding NaN or inf, naming the first texts: such a row scores as
    nothing or everything and silently moves every metric."""
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1)) if array.size else np.empty(0, int)
    if bad.size:
        shown = "; ".join(f"row {i}: {texts[i][:60]!r}" for i in bad[:3] if i < len(texts))
        raise error(f"{where}: {bad.size} embeddings hold NaN or inf ({shown})")


def _load_array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: not found (write it with --save-embeddings)") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a .npy file") from None
    except (ValueError, OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a readable .npy array ({reason})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise DataError(f"{path}: not a .npy array")
    if array.ndim != 2:
        raise DataError(f"{path}: expected a 2-D array (rows x dimensions), not {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: expected floating-point embeddings, got dtype {array.dtype}")
    return array


_SAVED_FIELDS = {
    "questions.jsonl": {"id": (str, int), "lang": str, "text": str},
    "candidates.jsonl": {"lang": str, "text": str, "relevant_ids": list},
}


def _load_rows(path: Path) -> list[dict]:
    from babelir.data.jsonl import parse_object

    lines = read_input_text(
        path, "a JSONL file", not_found="not found (write it with --save-embeddings)"
    ).splitlines()
    rows = []
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        row = parse_object(line, where)
        for key, kind in _SAVED_FIELDS[path.name].items():
            if not isinstance(row.get(key), kind):
                raise DataError(f"{where}: missing field '{key}' or wrong type")
        rows.append(row)
    return rows


def load_saved_embeddings(
    folder: Path, *, check_files: bool = True
) -> tuple[Embeddings, list[dict], list[dict]]:
    """Read what ``--save-embeddings`` wrote (no pickles: ``allow_pickle=False``).

    Every array must be a 2-D float array with one finite row per line of its metadata,
    and both must share a dimension; anything else is a one-line DataError. With
    ``check_files`` the files must then be those their metrics.json records
    (:func:`check_saved_files`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: saved-embeddings folder not found")
    q = _load_array(folder / "questions.npy")
    c = _load_array(folder / "candidates.npy")
    qs = _load_rows(folder / "questions.jsonl")
    cs = _load_rows(folder / "candidates.jsonl")
    for array, rows, name in ((q, qs, "questions"), (c, cs, "candidates")):
        if len(array) != len(rows):
            raise DataError(
                f"{folder}: {name}.npy has {len(array)} rows but {name}.jsonl has {len(rows)} "
                f"lines"
            )
        check_finite(array, [r["text"] for r in rows], str(folder / f"{name}.npy"))
    if q.shape[1] != c.shape[1]:
        raise DataError(
            f"{folder}: questions.npy has dimension {q.shape[1]} but candidates.npy "
            f"{c.shape[1]}"
        )
    if check_files:
        check_saved_files(folder)
    return Embeddings(q, c), qs, cs


def align_saved(
    benchmark: Benchmark, embeddings: Embeddings, qs: list[dict], cs: list[dict], folder: Path
) -> Embeddings:
    """The saved rows in ``benchmark``'s row order, matched by key, never by position.

    Questions match on (language, id) and must have the same text; candidates on
    (language, text, occurrence of that text) and must have the same relevant ids. A
    saved superset (more languages or articles) is fine; a missing or different row is
    refused, so embeddings saved for ``en,de`` can never be scored as ``de,en``.
    """
    q_index: dict[tuple[str, str], int] = {}
    for k, row in enumerate(qs):
        key = (row["lang"], str(row["id"]))
        if key in q_index:
            raise DataError(f"{folder}/questions.jsonl:{k + 1}: question {key[1]} ({key[0]}) twice")
        q_index[key] = k
    q_rows = []
    for lang, qid, text in zip(
        benchmark.question_langs, benchmark.question_ids, benchmark.question_texts, strict=True
    ):
        k = q_index.get((lang, qid))
        if k is None or qs[k]["text"] != text:
            what = "is absent" if k is None else "has another text"
            raise DataError(
                f"{folder}/questions.jsonl: question {qid} ({lang}) {what}; the embeddings were "
                f"saved for another benchmark, selection or --languages"
            )
        q_rows.append(k)
    c_index: dict[tuple[str, str, int], int] = {}
    seen: dict[tuple[str, str], int] = {}
    for k, row in enumerate(cs):
        n = seen.get((row["lang"], row["text"]), 0)
        seen[(row["lang"], row["text"])] = n + 1
        c_index[(row["lang"], row["text"], n)] = k
    c_rows = []
    seen.clear()
    for lang, text, rel in zip(
        benchmark.candidate_langs,
        benchmark.candidate_texts(),
        benchmark.candidate_relevant_ids,
        strict=True,
    ):
        n = seen.get((lang, text), 0)
        seen[(lang, text)] = n + 1
        k = c_index.get((lang, text, n))
        if k is None or sorted(map(str, cs[k]["relevant_ids"])) != sorted(rel):
            what = "is absent" if k is None else "has other relevant ids"
            raise DataError(
                f"{folder}/candidates.jsonl: candidate {text[:50]!r} ({lang}) {what}; the "
                f"embeddings were saved for another benchmark, selection or --candidates mode"
            )
        c_rows.append(k)
    return Embeddings(
        np.asarray(embeddings.questions[q_rows], dtype=np.float32),
        np.asarray(embeddings.candidates[c_rows], dtype=np.float32),
    )


def score_saved(benchmark: Benchmark, folder: Path) -> EvaluationResult:
    """Metrics of ``benchmark`` from embeddings saved by ``--save-embeddings``, validated
    (:func:`load_saved_embeddings`), aligned by key (:func:`align_saved`) and checked
    against their metrics.json (:func:`check_saved_files`)."""
    emb, qs, cs = load_saved_embeddings(folder, check_files=False)
    emb = align_saved(benchmark, emb, qs, cs, Path(folder))
    check_saved_files(folder)  # after alignment, which names a differing selection better
    metrics = score_benchmark(benchmark, emb.questions, emb.candidates)
    return EvaluationResult(benchmark, metrics, emb, {"model": f"embeddings:{folder}"})


def benchmark_from_saved(
    qs: list[dict], cs: list[dict]
) -> tuple[list[str], np.ndarray, np.ndarray, list[np.ndarray]]:
    """Languages, question/candidate language codes and relevance from saved jsonl rows."""
    languages: list[str] = []
    for row in cs:
        if row["lang"] not in languages:
            languages.append(row["lang"])
    index = {x: i for i, x in enumerate(languages)}
    by_id: dict[str, list[int]] = {}
    for k, row in enumerate(cs):
        for qid in row["relevant_ids"]:
            by_id.setdefault(qid, []).append(k)
    q_blocks = np.array([index[r["lang"]] for r in qs], dtype=np.int64)
    c_blocks = np.array([index[r["lang"]] for r in cs], dtype=np.int64)
    relevant = [np.asarray(by_id.get(r["id"], []), dtype=np.int64) for r in qs]
    return languages, q_blocks, c_blocks, relevant

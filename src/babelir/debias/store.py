"""A fitted transform's saved form: ``debias.json`` (method, rank, languages, n_texts,
provenance) plus ``debias.safetensors`` (matrices and fit-text hashes). No pickle; loading
validates shapes, finiteness and orthonormality, so a hand-edited or truncated folder fails
with a DataError naming it instead of turning every evaluated embedding into NaN."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from babelir.core.errors import DataError
from babelir.debias.methods import METHODS, DebiasTransform

FORMAT_VERSION = 1
JSON_NAME = "debias.json"
TENSORS_NAME = "debias.safetensors"
#: Subfolder of an exported LSAR model folder that holds the babelir transform.
MODEL_SUBDIR = "babelir-debias"


def save_transform(t: DebiasTransform, folder: str | os.PathLike[str]) -> Path:
    """Write ``debias.json`` + ``debias.safetensors`` into ``folder`` (atomically)."""
    from babelir.core.io import atomic_dir

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        write_transform(t, tmp)
    return folder


def write_transform(t: DebiasTransform, folder: Path) -> None:
    """Write the two files into an existing (temporary) folder: no atomicity of its own,
    for callers that already write inside :func:`babelir.core.io.atomic_dir`."""
    from safetensors.numpy import save_file

    from babelir.core.io import atomic_path, write_json

    tensors: dict[str, np.ndarray] = {}
    if t.means is not None:
        tensors["means"] = np.ascontiguousarray(t.means, dtype=np.float32)
    if t.bases is not None:
        tensors["bases"] = np.ascontiguousarray(t.bases, dtype=np.float32)
    if t.fit_text_hashes is not None:
        tensors["fit_text_hashes"] = np.ascontiguousarray(t.fit_text_hashes, dtype=np.uint64)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / TENSORS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "babelir-debias"})
    write_json(
        folder / JSON_NAME,
        {
            "format": "babelir-debias",
            "format_version": FORMAT_VERSION,
            "method": t.method,
            "rank": t.rank,
            "effective_rank": t.effective_rank,
            "languages": t.languages,
            "n_texts": t.n_texts,
            "dim": t.dim,
            "normalize": t.normalize,
            "data_fingerprint": t.data_fingerprint,
            "fit_info": t.fit_info,
        },
    )


def load_transform(path: str | os.PathLike[str]) -> DebiasTransform:
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
        t = DebiasTransform(
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
    _validate(t, folder)
    return t


#: Columns of a saved basis are orthonormal to float32 precision; a larger deviation means
#: the matrix was edited (the projection would no longer remove only that subspace).
_ORTHONORMAL_TOL = 1e-3


def _validate(t: DebiasTransform, folder: Path) -> None:
    """Matrices must match the recorded languages and dimension, hold only finite values
    and (bases) have orthonormal columns: a hand-edited or corrupt folder is refused where
    it is loaded, never applied (a NaN mean makes every metric NaN without an error)."""
    n_lang, d = len(t.languages), t.dim
    if t.method == "center":
        ok = t.means is not None and t.means.shape == (n_lang, d)
    elif t.method == "lir":
        ok = t.bases is not None and t.bases.ndim == 3 and t.bases.shape[:2] == (n_lang, d)
    else:
        ok = t.bases is not None and t.bases.ndim == 2 and t.bases.shape[0] == d
    if not ok:
        raise DataError(f"{folder}: {t.method} matrices do not match languages/dim")
    tensors = folder / TENSORS_NAME
    for name, array in (("means", t.means), ("bases", t.bases)):
        if array is None:
            continue
        if not np.issubdtype(array.dtype, np.floating):
            raise DataError(f"{tensors}: '{name}' has dtype {array.dtype}, expected floats")
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise DataError(
                f"{tensors}: '{name}' holds {bad} NaN or inf values (a corrupt or edited "
                f"fit; refit it with babelir debias)"
            )
    if t.bases is not None and t.bases.size:
        u = t.bases.astype(np.float64)
        blocks = u if u.ndim == 3 else u[None]
        gram = np.einsum("ldr,lds->lrs", blocks, blocks)
        err = float(np.abs(gram - np.eye(u.shape[-1])).max())
        if err > _ORTHONORMAL_TOL:
            raise DataError(
                f"{tensors}: 'bases' columns are not orthonormal (max |U^T U - I| = {err:.3g}); "
                f"a corrupt or edited fit, refit it with babelir debias"
            )

"""The cache of int8 builds: where one lives, its manifest, its check, its atomic build.

A build sits under ``<cache>/int8/<fingerprint>-<settings hash>`` with a manifest of
sizes and SHA-256s; one that fails that check (truncated, edited) is rebuilt, in a
temporary sibling renamed into place, under :func:`babelir.core.io.build_lock`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from babelir.core.errors import ModelError
from babelir.core.io import atomic_dir, build_lock, write_json
from babelir.models.int8.export import (
    cpu_copy,
    export_backbone,
    input_names,
    quantization_settings,
    quantize,
)
from babelir.models.int8.session import MIN_PROBE_COSINE, open_session, probe_min_cosine

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

MANIFEST = "babelir-int8.json"
ONNX_FILE = "model.onnx"
_digest_memo: dict[tuple[str, int, int, int], str] = {}


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _digest_memo:
        with open(path, "rb") as f:
            _digest_memo[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _digest_memo[key]


def int8_path(
    fingerprint: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    reduce_range: bool | None = None,
    ffn_output_fp32: bool = True,
) -> Path:
    """Where the int8 build of the model with ``fingerprint`` lives (built or not)."""
    from babelir.core.settings import cache_dir as default_cache

    settings = quantization_settings(reduce_range, ffn_output_fp32)
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache() / "int8"
    return root / f"{fingerprint}-{tag}"


def check_build(folder: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a complete, intact build in ``folder``; None if it is not one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("settings") != settings:
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or ONNX_FILE not in files:
        return None
    for name, meta in files.items():
        path = folder / name
        try:
            if path.stat().st_size != meta["size"] or _sha256(path) != meta["sha256"]:
                return None
        except (OSError, KeyError, TypeError):
            return None
    return manifest


def _remove_stale(dest: Path) -> None:
    """Delete temp folders of builds of ``dest`` that were killed (we hold its lock)."""
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _build(
    model: SentenceTransformer, dest: Path, settings: dict[str, Any], source: dict[str, Any]
) -> None:
    """Export, quantize, check against fp32 and write the manifest, all in a temp folder."""
    hf = model[0].auto_model
    device = next(iter(hf.parameters())).device
    was_training = hf.training
    work = model
    if device.type != "cpu":
        work = cpu_copy(model)
    names = input_names(work)
    started = time.perf_counter()
    with atomic_dir(dest) as tmp:
        fp32 = tmp / "fp32" / "model.onnx"
        fp32.parent.mkdir()
        work[0].auto_model.eval()
        try:
            exporter = export_backbone(work, names, fp32)
        except Exception as exc:
            raise ModelError(f"int8: cannot export {source['name']} to ONNX: {exc}") from exc
        finally:
            work[0].auto_model.train(was_training)
        kept_fp32 = quantize(fp32, tmp / ONNX_FILE, settings)
        for leftover in sorted(fp32.parent.iterdir()):
            leftover.unlink()
        fp32.parent.rmdir()
        session = open_session(tmp / ONNX_FILE, threads=None)
        cosine = probe_min_cosine(session, names, work)
        if not cosine >= MIN_PROBE_COSINE:
            raise ModelError(
                f"int8: the quantized {source['name']} disagrees with fp32 (cosine {cosine:.3f} "
                f"< {MIN_PROBE_COSINE} on probe texts); use --precision fp32"
            )
        files = {
            p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        write_json(
            tmp / MANIFEST,
            {
                "settings": settings,
                "source": source,
                "inputs": names,
                "exporter": exporter,
                "fp32_matmuls": kept_fp32,
                "probe_min_cosine": round(cosine, 6),
                "build_seconds": round(time.perf_counter() - started, 1),
                "versions": {
                    k: _version(k)
                    for k in ("torch", "transformers", "onnx", "onnxruntime", "onnxscript")
                },
                "files": files,
            },
        )


def ensure_build(
    model: SentenceTransformer,
    dest: Path,
    settings: dict[str, Any],
    source: dict[str, Any],
    *,
    rebuild: bool = False,
) -> tuple[dict[str, Any], bool]:
    """The verified manifest of the build in ``dest`` (building it first if needed), and
    whether this call built it. Concurrent callers build once: the rest wait on the lock.
    """
    built = False
    manifest = None if rebuild else check_build(dest, settings)
    if manifest is None:
        with build_lock(dest):
            manifest = None if rebuild else check_build(dest, settings)  # built meanwhile?
            if manifest is None:
                if dest.exists() and not rebuild:
                    log.warning("int8 build %s is incomplete or corrupt; rebuilding", dest)
                _remove_stale(dest)
                _build(model, dest, settings, source)
                built = True
                manifest = check_build(dest, settings)
    if manifest is None:
        raise ModelError(f"int8: the build in {dest} does not verify after writing it")
    return manifest, built

"""Where babelir keeps data, models and caches.

The data dir is, in order: an explicit ``--data-dir``, the ``BABELIR_DATA_DIR``
environment variable, or the user cache dir (``~/.cache/babelir/data`` on Linux).
Models and caches live under ``BABELIR_CACHE_DIR`` (default ``~/.cache/babelir``).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    env = os.environ.get("BABELIR_CACHE_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("babelir"))


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("BABELIR_DATA_DIR")
    return Path(env).expanduser() if env else cache_dir() / "data"


def models_dir() -> Path:
    return cache_dir() / "models"

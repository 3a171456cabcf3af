"""Shared session fixtures: real data and the real offline model, found or built once.

- ``shared_data_dir``: the read-only real data (XQuAD-R, XQuAD, MIRACL topics, fixtures/);
  ``$BABELIR_DATA_DIR`` if set, else ``../shared/data`` next to the repository root.
- ``real_model_path``: folder of the real multilingual-e5-small (4-bit round trip, see
  ``babelir.models.offline_e5``), built once into ``$BABELIR_CACHE_DIR/models/`` if set, else
  ``~/.cache/babelir-test/models/``, and reused by later sessions (the build is atomic and
  locked, so parallel workers are safe). Load it with
  ``babelir.models.loading.load_model(real_model_path)``; tests that call ``load_model()``
  for the default model should set ``BABELIR_CACHE_DIR`` to ``real_model_path.parents[1]``.

Both skip (with the reason) when their inputs are missing, except under CI (``CI`` or
``BABELIR_REQUIRE_DATA`` set), where a missing input is a failure: a green CI must not
hide a missing install step. A skipped run ends with one prominent line per missing
input naming how many tests, in which files, did not run and why; ``make test`` fetches
the pinned data first, so locally this line means the fetch failed (offline).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from babelir.core.errors import ModelError
from babelir.models.offline_e5 import MODEL_DIRNAME, build_offline_e5

REPO_ROOT = Path(__file__).resolve().parents[1]
_MARK = "babelir input missing: "


def _test_cache() -> Path:
    env = os.environ.get("BABELIR_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "babelir-test"


def pytest_configure(config: pytest.Config) -> None:
    """One numba cache for the session and its subprocesses: tests point BABELIR_CACHE_DIR
    at temporary folders, and a fresh numba cache compiles the metric kernel again in
    every process that imports it (~10 s each on 2 cores)."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(_test_cache() / "numba"))


def _missing(reason: str) -> None:
    if os.environ.get("CI") or os.environ.get("BABELIR_REQUIRE_DATA"):
        pytest.fail(reason)
    pytest.skip(_MARK + reason)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    env = os.environ.get("BABELIR_DATA_DIR")
    path = Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        _missing(f"real data folder {path} not found (`make test-data`, or set BABELIR_DATA_DIR)")
    if not (path / "fixtures").is_dir():
        _missing(
            f"{path / 'fixtures'} not found (small slices shipped with the shared data folder; "
            f"point BABELIR_DATA_DIR at it)"
        )
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One loud line per missing input: a newcomer must see that the suite did not all run."""
    by_reason: dict[str, dict[str, int]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        if _MARK in text:
            reason = text.split(_MARK, 1)[1]
            files = by_reason.setdefault(reason, {})
            name = report.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
            files[name] = files.get(name, 0) + 1
    for reason, files in by_reason.items():
        count = sum(files.values())
        where = ", ".join(f"{f} ({n})" for f, n in sorted(files.items()))
        terminalreporter.write_sep(
            "!", f"{count} tests did NOT run: {reason}; in {where}", red=True, bold=True
        )


@pytest.fixture(scope="session")
def real_model_path() -> Path:
    try:
        return build_offline_e5(_test_cache() / "models" / MODEL_DIRNAME)
    except ModelError as exc:
        _missing(str(exc))


@pytest.fixture(scope="module")
def one_thread():
    """One torch/FAISS thread: on a busy 2-core machine OpenMP threads spin against other
    processes and make small workloads many times slower (results are unchanged)."""
    import faiss
    import torch

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(before[0])
    faiss.omp_set_num_threads(before[1])

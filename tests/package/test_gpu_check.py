"""The GPU check's CPU dry path: same code paths as on a GPU, tiny model, seconds.

The script is meant to run first time right on a GPU machine that may be lent for minutes
only, so every section it prints there must already run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_dry_run_prints_every_section(
    shared_data_dir: Path, real_model_path: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "BABELIR_DATA_DIR": str(shared_data_dir),
        # the session's cache: the offline model is built once, not again in a fresh folder
        "BABELIR_CACHE_DIR": str(real_model_path.parents[1]),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        # smoke: the shipped profile that plans offline in seconds (paper-lite, the default
        # on a GPU, needs the fetched SQuAD-train files)
        [sys.executable, str(SCRIPT), "--dry-run", "--profile", "smoke",
         "--compare-output", str(tmp_path / "cmp")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "dry run on the CPU" in out and "measured matmul" in out
    # the training step, both losses, with throughput and MFU
    steps = re.findall(r"timed steps after 1 warm-up: ([\d.]+) steps/s", out)
    assert len(steps) == 2 and all(float(s) > 0 for s in steps), out
    assert out.count("MFU ") == 2
    assert re.search(r"babelir\.training\.train, 2 steps of batch 8 .* ([\d.]+) steps/s", out)
    # encoding throughput of the three paths and the bf16 drift row
    for name in ("st-encode fp32", "babelir fp32", "babelir bf16"):
        assert re.search(rf"^{name}\s+[\d,]+ tok/s", out, re.M), name
    assert re.search(r"^\| bf16 vs fp32 \| [+-]\d\.\d{4} \|", out, re.M)
    # the profile ships, so its compare ran (as --dry-run: the plan)
    assert "babelir compare --profile smoke" in out
    assert "profile smoke:" in out and "exit status 0" in out
    assert "gpu_check done" in out


def test_refuses_without_cuda_unless_dry_run(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the real check would start")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--skip-compare"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BABELIR_CACHE_DIR": str(tmp_path)},
    )
    assert proc.returncode != 0
    assert "no CUDA device" in proc.stderr and "--dry-run" in proc.stderr

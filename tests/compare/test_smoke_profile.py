"""The `smoke` profile end to end, as a user runs it: real model, real data, the CLI.

Checks the report's structure, not its numbers (tiny slices, three training steps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_compare_smoke_profile_cli(tmp_path, shared_data_dir, real_model_path):
    out = tmp_path / "smoke"
    env = {
        **os.environ,
        "BABELIR_CACHE_DIR": str(real_model_path.parents[1]),
        "BABELIR_DATA_DIR": str(shared_data_dir),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "babelir.cli.main",
        "compare",
        "--profile",
        "smoke",
        "--output",
        str(out),
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    said = (proc.stdout + proc.stderr).replace("\n", "")  # the summary goes to stderr
    assert f"report: {out / 'report.md'}" in said
    report = (out / "report.md").read_text()
    for row in ("| base |", "| x-x-mono |", "| x-y |", "| hybrid |", "| hybrid+lsar |"):
        assert row in report
    # smoke trains on XQuAD-R articles and evaluates another: labelled in-domain
    assert "In-domain: xquad-r" in report and "Zero-shot:" not in report
    results = json.loads((out / "results.json").read_text())
    assert results["name"] == "smoke"
    assert len(results["evaluations"]) == 8  # base + 3 trained, each also +lsar
    assert {"base", "x-x-mono", "x-y"} <= {t["baseline"] for t in results["paired_tests"]}
    assert "learning_curves.png" in results["plots"]
    assert results["claims"]  # the verdict on the paper's four claims
    for name in results["plots"]:
        assert (out / "plots" / name).stat().st_size > 1000
    assert (out / "results.csv").read_text().startswith("model,strategy,alpha,seed,benchmark")
    # every evaluation is a real metrics.json with the headline fields
    for ev in results["evaluations"]:
        m = ev["metrics"]
        assert set(m["map"]) == {"mono", "cross", "multi"}
        assert 0.0 <= m["map"]["multi"] <= 1.0
        if "+" not in ev["label"]:  # debiased rows re-score their source's embeddings
            assert Path(ev["folder"], "questions.npy").is_file()

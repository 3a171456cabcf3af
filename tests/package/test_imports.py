"""Loading a config must not import torch: ``babelir compare --dry-run``, YAML validation
and ``--help`` stay fast, and the schemas work where torch is not installed."""

from __future__ import annotations

import json
import subprocess
import sys

CONFIG_MODULES = (
    "babelir.compare.config",
    "babelir.training.config",
    "babelir.batches.strategies",
    "babelir.core.schema",
    "babelir.encoding.options",
)
HEAVY = ("torch", "sentence_transformers")


def test_config_modules_import_without_torch():
    code = (
        "import json, sys\n"
        f"import {', '.join(CONFIG_MODULES)}\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    # a fresh interpreter: this test process has imported torch long ago
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_probe_sees_a_torch_import():
    """The check above can fail: importing the sampler does pull torch in."""
    code = "import sys, babelir.batches.sampler; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "True"


def test_the_public_api_is_lazy_and_complete():
    """``import babelir`` loads no torch; every public name resolves to its definition."""
    code = (
        "import json, sys, babelir\n"
        "light = [m for m in ('torch', 'sentence_transformers') if m in sys.modules]\n"
        "babelir.train; babelir.evaluate_model\n"
        "print(json.dumps([light, 'torch' in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[], True]
    import babelir
    from babelir.training.trainer import train

    assert babelir.train is train
    for name in babelir.__all__:
        assert getattr(babelir, name) is not None, name
    try:
        babelir.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")

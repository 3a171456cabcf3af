"""A tiny comparison config: 3 languages, 2 steps, a small XQuAD-R slice to evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The tiny comparisons' languages (the tiny model's vocabulary covers them).
LANGS = ["en", "de", "zh"]


def tiny_compare_config(data_dir: Path, model: str | None = None, **extra: Any) -> dict[str, Any]:
    """A compare config as YAML would give it: trains on articles 1-2, evaluates article 0."""
    return {
        "name": "t",
        "model": model,
        "data_dir": str(data_dir),
        "train": {
            "data": "xquad-r",
            "languages": LANGS,
            "articles": "1-2",
            "batch_size": 4,
            "max_steps": 2,
            "max_seq_length": 32,
            "learning_rate": 1e-3,
        },
        "evaluation": {"max_seq_length": 32, "batch_size": 32},
        "benchmarks": [{"name": "xquad-r", "languages": LANGS, "articles": "0"}],
        "permutations": 200,
        "bootstrap": 200,
        **extra,
    }

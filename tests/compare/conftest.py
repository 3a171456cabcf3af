"""Fixtures of the compare tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit.compare import LANGS
from testkit.tiny_model import make_tiny_model

from babelir.data.parallel import from_lareqa


@pytest.fixture(scope="module")
def tiny_dir(shared_data_dir: Path, tmp_path_factory) -> Path:
    """A tiny random model whose vocabulary covers XQuAD-R articles 0-2 in LANGS (one per
    test module: a module's runs may write next to it)."""
    data = from_lareqa("xquad-r", shared_data_dir, languages=LANGS, articles="0-2")
    texts = [t for item in data.items for s in item.sides.values() for t in (s.query, s.positive)]
    root = tmp_path_factory.mktemp("tiny-compare")
    make_tiny_model(root / "build", texts).save(str(root / "model"))
    return root / "model"

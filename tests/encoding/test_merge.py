"""`babelir merge` (WiSE-FT): lambda 0 is the base model, 1 the fine-tuned one; mismatched
models are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ModelError
from babelir.models.merge import MERGE_RECORD, merge_models

TEXTS = [
    "where is the main building of the university",
    "the main building is next to the basilica",
    "wo ist das hauptgebäude der universität",
    "das hauptgebäude steht neben der basilika",
] * 3


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny base model and a 'fine-tuned' copy with every float weight moved."""
    root = tmp_path_factory.mktemp("merge")
    make_tiny_model(root / "build", TEXTS).save(str(root / "base"))
    ft = SentenceTransformer(str(root / "base"), device="cpu")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    ft.save(str(root / "ft"))
    return root / "base", root / "ft"


def _embed(path: Path) -> np.ndarray:
    return SentenceTransformer(str(path), device="cpu").encode(TEXTS, convert_to_numpy=True)


def test_weight_0_is_the_base_and_1_the_finetuned_model(pair, tmp_path):
    base, ft = pair
    e_base, e_ft = _embed(base), _embed(ft)
    assert np.abs(e_base - e_ft).max() > 1e-3  # the two inputs differ
    m0 = merge_models(str(base), str(ft), 0.0, tmp_path / "m0")
    m1 = merge_models(str(base), str(ft), 1.0, tmp_path / "m1")
    np.testing.assert_allclose(_embed(m0), e_base, atol=1e-6)
    np.testing.assert_allclose(_embed(m1), e_ft, atol=1e-6)
    half = merge_models(str(base), str(ft), 0.5, tmp_path / "mh")
    # the weights, not the embeddings, are averaged: check one tensor exactly
    sb = SentenceTransformer(str(base), device="cpu").state_dict()
    sf = SentenceTransformer(str(ft), device="cpu").state_dict()
    sh = SentenceTransformer(str(half), device="cpu").state_dict()
    key = next(k for k in sh if k.endswith("query.weight"))
    torch.testing.assert_close(sh[key], 0.5 * sb[key] + 0.5 * sf[key], rtol=0, atol=1e-7)
    record = json.loads((half / MERGE_RECORD).read_text())
    assert record["weight"] == 0.5 and record["base_fingerprint"] != record["finetuned_fingerprint"]
    assert "WiSE-FT" in (half / "README.md").read_text()


def test_mismatched_models_and_bad_weights_are_refused(pair, tmp_path, capsys):
    base, _ = pair
    other = tmp_path / "other-tokenizer"
    make_tiny_model(tmp_path / "b2", [t.upper() + " extra words here" for t in TEXTS],
                    vocab_size=120).save(str(other))
    with pytest.raises(ModelError, match="cannot merge"):
        merge_models(str(base), str(other), 0.5, tmp_path / "x")
    normalized = SentenceTransformer(str(base), device="cpu")
    normalized.append(Normalize())
    normalized.save(str(tmp_path / "with-normalize"))
    code, _, err = call(capsys, "merge", str(base), str(tmp_path / "with-normalize"),
                        "--weight", "0.5", "--output", str(tmp_path / "y"))
    assert code == 2 and "different architectures" in err and "Traceback" not in err
    code, _, err = call(capsys, "merge", str(base), str(base), "--weight", "1.5",
                        "--output", str(tmp_path / "z"))
    assert code == 2 and "--weight must be a number in [0, 1]" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_merge_selected_keeps_the_best_scored_lambda_smallest_on_ties(pair, tmp_path):
    from babelir.models.merge import merge_selected

    base, ft = pair
    scores = iter([0.1, 0.3, 0.3, 0.2])  # lambdas 0, 0.25, 0.5, 1 in order: tie at .25/.5
    seen: list[int] = []

    def score(model):
        seen.append(id(model))
        return {"val_map": next(scores)}

    out = merge_selected(base, ft, [1.0, 0.5, 0.25, 0.0], score, tmp_path / "auto")
    record = json.loads((out / MERGE_RECORD).read_text())
    assert record["weight"] == 0.25
    assert [p["weight"] for p in record["selection"]["curve"]] == [0.0, 0.25, 0.5, 1.0]
    # the written model is the fixed-lambda merge at the chosen weight
    fixed = merge_models(base, ft, 0.25, tmp_path / "fixed")
    np.testing.assert_allclose(_embed(out), _embed(fixed), atol=1e-6)


def test_merge_selected_with_tolerance_takes_the_smallest_lambda_near_the_best(pair, tmp_path):
    from babelir.models.merge import merge_selected

    base, ft = pair
    scores = iter([0.70, 0.825, 0.831, 0.84])  # lambdas 0, 0.5, 0.7, 1: best 0.84 at 1

    out = merge_selected(base, ft, [0.0, 0.5, 0.7, 1.0], lambda m: {"val_map": next(scores)},
                         tmp_path / "tol", tolerance=0.01)  # fmt: skip
    record = json.loads((out / MERGE_RECORD).read_text())
    # 0.831 >= 0.84 - 0.01 and 0.825 is not: 0.7 is the smallest lambda within tolerance
    assert record["weight"] == 0.7 and record["selection"]["tolerance"] == 0.01


def test_merge_selected_reuses_a_scored_curve(pair, tmp_path):
    from babelir.core.errors import ConfigError
    from babelir.models.merge import merge_selected

    def never(model):
        raise AssertionError("a given curve is not scored again")

    curve = [{"weight": 0.0, "val_map": 0.7}, {"weight": 0.5, "val_map": 0.83},
             {"weight": 1.0, "val_map": 0.84}]  # fmt: skip
    out = merge_selected(*pair, [1.0, 0.0, 0.5], never, tmp_path / "c", tolerance=0.01,
                         curve=curve)  # fmt: skip
    assert json.loads((out / MERGE_RECORD).read_text())["weight"] == 0.5
    with pytest.raises(ConfigError, match="other lambdas"):
        merge_selected(*pair, [0.0, 1.0], never, tmp_path / "d", curve=curve)

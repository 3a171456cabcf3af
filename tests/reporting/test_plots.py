"""PNG report plots: written atomically, decodable, plausible size, nothing left on failure."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from babelir.core.errors import DataError
from babelir.reporting import plots

XQUAD_LANGS = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
SMALL_LANGS = ["de", "en", "zh"]
MODELS = ["base", "x-x-mono", "x-y", "hybrid"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(languages: list[str], seed: int) -> dict[str, Any]:
    """Synthetic metrics.json slice with one undefined (None) cross cell."""
    rng = random.Random(seed)
    pairs: dict[str, dict[str, float | None]] = {
        q: {c: rng.uniform(0.5, 0.9) if q == c else rng.uniform(0.1, 0.7) for c in languages}
        for q in languages
    }
    pairs[languages[0]][languages[-1]] = None
    per_language = {
        lang: {
            "mono_map": rng.random(),
            "multi_map": rng.random(),
            "multi_recall@10": rng.random(),
            "rank_distance": rng.uniform(10, 200),
        }
        for lang in languages
    }
    return {"languages": languages, "per_pair_map": pairs, "per_language": per_language}


def _check_png(path: Path, folder: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("languages", [SMALL_LANGS, XQUAD_LANGS], ids=["3", "11"])
def test_language_plots_write_png(tmp_path: Path, languages: list[str]) -> None:
    runs = {m: _metrics(languages, seed) for seed, m in enumerate(MODELS)}
    hyb, mono = runs["hybrid"]["per_pair_map"], runs["x-x-mono"]["per_pair_map"]
    per_language = {m: r["per_language"] for m, r in runs.items()}
    written = [
        plots.pair_heatmap(hyb, languages, "hybrid: per-pair mAP", tmp_path / "pairs.png"),
        plots.delta_heatmap(hyb, mono, languages, "hybrid − x-x-mono", tmp_path / "delta.png"),
        plots.per_language_bars(per_language, "multi_map", "multi mAP", tmp_path / "pl.png"),
    ]
    if len(languages) == len(SMALL_LANGS):  # a non-mAP metric with an explicit order
        written.append(
            plots.per_language_bars(
                per_language, "rank_distance", "rank distance", tmp_path / "rd.png", languages
            )
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    for path in written:
        assert isinstance(path, Path)
        _check_png(path, tmp_path)


def test_model_bars_write_png(tmp_path: Path) -> None:
    rank = plots.rank_distance_bars(
        {
            "base": 120.0,
            "x-x-mono": (150.0, 140.0, 161.0),
            "x-y": (80.5, None, None),  # one seed: no confidence interval
            "hybrid": 90.0,
        },
        "rank distance",
        tmp_path / "rank.png",
    )
    zero_shot = plots.zero_shot_bars(
        {m: {"mono": 0.6 - i / 10, "cross": 0.3, "multi": 0.4} for i, m in enumerate(MODELS)},
        "zero-shot (el, vi)",
        tmp_path / "zs.png",
    )
    assert (rank, zero_shot) == (tmp_path / "rank.png", tmp_path / "zs.png")
    _check_png(rank, tmp_path)
    _check_png(zero_shot, tmp_path)


def test_delta_of_identical_inputs(tmp_path: Path) -> None:
    pairs = _metrics(SMALL_LANGS, 0)["per_pair_map"]
    out = plots.delta_heatmap(pairs, pairs, SMALL_LANGS, "no change", tmp_path / "d.png")
    _check_png(out, tmp_path)


def test_all_undefined_cells(tmp_path: Path) -> None:
    pairs = {q: dict.fromkeys(SMALL_LANGS) for q in SMALL_LANGS}
    _check_png(plots.pair_heatmap(pairs, SMALL_LANGS, "empty", tmp_path / "p.png"), tmp_path)
    _check_png(
        plots.delta_heatmap(pairs, pairs, SMALL_LANGS, "empty", tmp_path / "d.png"), tmp_path
    )


def test_failure_leaves_no_file(tmp_path: Path) -> None:
    pairs = _metrics(SMALL_LANGS, 0)["per_pair_map"]
    bad_langs = [*SMALL_LANGS, "xx"]
    with pytest.raises(DataError, match="xx"):
        plots.pair_heatmap(pairs, bad_langs, "t", tmp_path / "p.png")
    with pytest.raises(DataError, match="xx"):
        plots.delta_heatmap(pairs, pairs, bad_langs, "t", tmp_path / "d.png")
    with pytest.raises(DataError):
        plots.rank_distance_bars({"base": (1.0, 2.0)}, "t", tmp_path / "r.png")  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_render_failure_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "zs.png"
    path.write_bytes(b"old")

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("render failed")

    monkeypatch.setattr(plots.Figure, "savefig", boom)
    with pytest.raises(RuntimeError):
        plots.zero_shot_bars({"base": {"mono": 0.5}}, "t", path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["zs.png"]


def _curve(label: str, seed: int, steps: range, offset: float) -> dict[str, Any]:
    points = [
        {
            "step": s,
            "val_loss": 2.0 / (1 + s / 10) + offset,
            "val_mono_map": 0.6 + s / 1000 + offset,
            "val_cross_map": None if s == 0 else 0.5 + s / 1000,  # missing values are gaps
            "val_multi_map": 0.4 + s / 2000 - offset,
        }
        for s in steps
    ]
    return {"label": label, "seed": seed, "points": points, "selected_step": steps[-2]}


def test_learning_curves_write_png(tmp_path: Path) -> None:
    runs = [
        _curve(label, seed, range(0, 100, 10), 0.01 * seed + 0.05 * i)
        for i, label in enumerate(["x-x-mono", "x-y", "hybrid"])
        for seed in (0, 1, 2)
    ]
    runs.append({"label": "x-y", "seed": 3, "points": [{"step": 5}]})  # a run without values
    out = plots.learning_curves(runs, tmp_path / "learning_curves.png")
    assert out == tmp_path / "learning_curves.png"
    _check_png(out, tmp_path)
    one_seed = plots.learning_curves(runs[:1], tmp_path / "one.png", "one seed")
    _check_png(one_seed, tmp_path)


def test_learning_curves_without_values_fail(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no learning-curve values"):
        plots.learning_curves(
            [{"label": "hybrid", "seed": 0, "points": [{"step": 1, "val_loss": None}]}],
            tmp_path / "c.png",
        )
    with pytest.raises(DataError, match="no step"):
        plots.learning_curves(
            [{"label": "hybrid", "seed": 0, "points": [{"val_loss": 1.0}]}], tmp_path / "c.png"
        )
    assert list(tmp_path.iterdir()) == []

"""PNG plots for comparison reports: heatmaps and bar charts of LAReQA metrics, and
validation learning curves.

Every function takes plain data (slices of ``metrics.json`` documents keyed by model label)
and a destination path, renders with :class:`matplotlib.figure.Figure` (Agg, no pyplot and
no global state), writes the PNG atomically via :func:`babelir.core.io.write_bytes` and returns
the path. A failure while drawing raises before anything is written.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from babelir.core.errors import DataError
from babelir.core.io import write_bytes
from babelir.evaluation.measures import BY_KEY, RANK_DISTANCE

DPI = 120
HEATMAP_SIZE = (7.0, 6.0)
SETTINGS = ("mono", "cross", "multi")
MISSING_COLOR = "#d9d9d9"

PathLike = str | os.PathLike[str]
PairMap = Mapping[str, Mapping[str, float | None]]
BarValue = float | tuple[float | None, float | None, float | None]

#: Validation curve panels: (point key, axis label), see :func:`learning_curves`.
CURVE_PANELS = (
    ("val_loss", "validation loss (lower is better)"),
    ("val_mono_map", "validation mono mAP"),
    ("val_cross_map", "validation cross mAP"),
    ("val_multi_map", "validation multi mAP"),
)


def _metric_label(metric: str) -> str:
    """Axis label of a metric key from the registry (the key itself if unknown)."""
    m = BY_KEY.get(metric)
    return m.axis_label if m is not None else metric


def _save(fig: Figure, path: PathLike) -> Path:
    """Render ``fig`` to PNG in memory, then write it atomically to ``path``."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        fig.clear()
    write_bytes(path, buf.getvalue())
    return Path(path)


def _value(x: Any) -> float:
    """A float, with ``None`` (undefined cell) as NaN."""
    return math.nan if x is None else float(x)


def _pair_matrix(per_pair_map: PairMap, languages: Sequence[str]) -> np.ndarray:
    """Query x candidate matrix in ``languages`` order; undefined cells are NaN."""
    if not languages:
        raise DataError("no languages to plot")
    missing_rows = [q for q in languages if q not in per_pair_map]
    if missing_rows:
        raise DataError(f"per_pair_map has no row for query language(s) {missing_rows}")
    out = np.full((len(languages), len(languages)), np.nan)
    for i, q in enumerate(languages):
        row = per_pair_map[q]
        missing = [c for c in languages if c not in row]
        if missing:
            raise DataError(f"per_pair_map[{q!r}] has no candidate language(s) {missing}")
        for j, c in enumerate(languages):
            out[i, j] = _value(row[c])
    return out


def _heatmap(
    matrix: np.ndarray,
    languages: Sequence[str],
    title: str,
    cmap: Colormap,
    vmin: float,
    vmax: float,
    fmt: str,
    cbar_label: str,
) -> Figure:
    """Annotated heatmap with NaN cells grey and the diagonal (mono pairs) outlined."""
    n = len(languages)
    fig = Figure(figsize=HEATMAP_SIZE, layout="constrained")
    ax = fig.add_subplot()
    cmap = cmap.with_extremes(bad=MISSING_COLOR)
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=vmin, vmax=vmax)
    # White text on dark cells, black on light ones (relative luminance of the cell colour).
    rgb = cmap(image.norm(np.nan_to_num(matrix)))[..., :3]
    dark = rgb @ np.array([0.299, 0.587, 0.114]) < 0.5
    fig.colorbar(image, ax=ax, shrink=0.85, label=cbar_label)
    ax.set_xticks(range(n), labels=languages)
    ax.set_yticks(range(n), labels=languages)
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False, length=0)
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("candidate language")
    ax.set_ylabel("query language")
    ax.set_title(title)
    fontsize = 10 if n <= 6 else 8 if n <= 9 else 7
    for i in range(n):
        for j in range(n):
            v = matrix[i, j]
            if math.isnan(v):
                continue
            ax.text(
                j,
                i,
                format(v, fmt),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if dark[i, j] else "black",
            ).set_in_layout(False)  # inside the axes: skip it in layout (much faster)
        ax.add_patch(
            Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.6)
        )
    return fig


def pair_heatmap(
    per_pair_map: PairMap, languages: Sequence[str], title: str, path: PathLike
) -> Path:
    """Query (rows) x candidate (columns) mAP heatmap on a fixed 0..1 viridis scale.

    ``None`` cells are grey and unlabelled; the diagonal (monolingual pairs) is outlined.
    Raises :class:`DataError` if a language is missing from ``per_pair_map``.
    """
    matrix = _pair_matrix(per_pair_map, languages)
    fig = _heatmap(matrix, languages, title, colormaps["viridis"], 0.0, 1.0, ".2f", "mAP")
    return _save(fig, path)


def delta_heatmap(
    per_pair_a: PairMap,
    per_pair_b: PairMap,
    languages: Sequence[str],
    title: str,
    path: PathLike,
) -> Path:
    """Heatmap of per-pair mAP differences A - B on a symmetric RdBu scale.

    The colour limit is ``max |A - B|`` (at least 0.01); blue means A is better. Cells
    undefined in either input are grey. Raises :class:`DataError` on missing languages.
    """
    delta = _pair_matrix(per_pair_a, languages) - _pair_matrix(per_pair_b, languages)
    delta = np.round(delta, 2) + 0.0  # "+0.00" instead of "-0.00"
    finite = np.abs(delta[np.isfinite(delta)])
    limit = max(float(finite.max()) if finite.size else 0.0, 0.01)
    fig = _heatmap(
        delta,
        languages,
        title,
        colormaps["RdBu"],
        -limit,
        limit,
        "+.2f",
        "Δ mAP (A − B)",
    )
    return _save(fig, path)


def _colors(n: int) -> list[Any]:
    """One distinct colour per model label, stable in the order given."""
    cmap = colormaps["tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def _legend_below(fig: Figure, ax: Axes, n: int) -> None:
    """Put the model legend under the axes so it never hides bars."""
    fig.legend(
        *ax.get_legend_handles_labels(),
        loc="outside lower center",
        ncols=n if n <= 8 else math.ceil(n / 2),
        frameon=False,
        fontsize=9,
    )


def rank_distance_bars(values: Mapping[str, BarValue], title: str, path: PathLike) -> Path:
    """One bar per model label; a value is a float or ``(mean, ci_low, ci_high)``.

    Confidence intervals are drawn as error bars (a ``None`` bound draws none, a ``None``
    mean no bar). Raises :class:`DataError` on an empty
    input or a malformed tuple.
    """
    if not values:
        raise DataError("no rank distance values to plot")
    labels = list(values)
    means, lows, highs = [], [], []
    for label, v in values.items():
        if isinstance(v, tuple | list):
            if len(v) != 3:
                raise DataError(f"rank distance for {label!r} must be (mean, ci_low, ci_high)")
            mean, low, high = (_value(x) for x in v)
        else:
            mean = low = high = _value(v)
        means.append(mean)
        lows.append(max(mean - low, 0.0) if math.isfinite(mean - low) else 0.0)
        highs.append(max(high - mean, 0.0) if math.isfinite(high - mean) else 0.0)
    has_ci = any(lows) or any(highs)
    fig = Figure(figsize=(max(5.0, 1.1 * len(labels) + 2.0), 5.0), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    bars = ax.bar(
        x,
        means,
        color=_colors(len(labels)),
        yerr=[lows, highs] if has_ci else None,
        capsize=5 if has_ci else 0,
    )
    ax.bar_label(bars, fmt="%.1f", padding=3, fontsize=9)
    ax.set_xticks(x, labels=labels, rotation=20 if len(labels) > 5 else 0)
    ax.set_ylabel(f"mean {RANK_DISTANCE.axis_label}")
    tops = [m + h for m, h in zip(means, highs, strict=True) if math.isfinite(m + h)]
    ax.set_ylim(0, max(tops, default=0.0) * 1.15 or 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(title)
    return _save(fig, path)


def _grouped_bars(
    ax: Axes, groups: Sequence[str], series: Mapping[str, Sequence[float]], label_values: bool
) -> None:
    """Draw one bar per series within each group; NaN values leave a gap."""
    n = len(series)
    width = 0.8 / max(n, 1)
    x = np.arange(len(groups))
    for k, ((label, vals), color) in enumerate(zip(series.items(), _colors(n), strict=True)):
        bars = ax.bar(x + (k - (n - 1) / 2) * width, vals, width, label=label, color=color)
        if label_values:
            ax.bar_label(
                bars,
                labels=["" if math.isnan(v) else f"{v:.2f}" for v in vals],
                padding=2,
                fontsize=7 if n <= 4 else 6,
                rotation=90 if n > 4 else 0,
            )
    ax.set_xticks(x, labels=groups)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def zero_shot_bars(data: Mapping[str, Mapping[str, float]], title: str, path: PathLike) -> Path:
    """Grouped mAP bars for the zero-shot languages: ``data[model][setting] -> mAP``.

    Groups are the settings ("mono", "cross", "multi", in that order, those present), one
    bar per model label; the y axis is mAP 0..1.
    """
    if not data:
        raise DataError("no zero-shot results to plot")
    settings = [s for s in SETTINGS if any(s in m for m in data.values())]
    settings += sorted({s for m in data.values() for s in m} - set(SETTINGS))
    series = {label: [_value(m.get(s)) for s in settings] for label, m in data.items()}
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    _grouped_bars(ax, settings, series, label_values=True)
    ax.set_ylim(0, 1.08 if len(data) > 4 else 1.0)
    ax.set_ylabel("mAP")
    ax.set_xlabel("setting")
    ax.set_title(title)
    _legend_below(fig, ax, len(data))
    return _save(fig, path)


def per_language_bars(
    per_language: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    metric: str,
    title: str,
    path: PathLike,
    languages: Sequence[str] | None = None,
) -> Path:
    """Grouped bars of ``per_language[model][lang][metric]``: one group per language.

    ``languages`` fixes the order (default: the first model's). mAP/recall metrics use a
    0..1 axis. Missing languages or metrics leave a gap.
    """
    if not per_language:
        raise DataError("no per-language results to plot")
    langs = list(languages) if languages is not None else list(next(iter(per_language.values())))
    if not langs:
        raise DataError("no languages to plot")
    series = {
        label: [_value(rows.get(lang, {}).get(metric)) for lang in langs]
        for label, rows in per_language.items()
    }
    width = min(14.0, max(7.0, 0.13 * len(langs) * len(series) + 2.0))
    fig = Figure(figsize=(width, 5.0), layout="constrained")
    ax = fig.add_subplot()
    _grouped_bars(ax, langs, series, label_values=False)
    if "map" in metric or "recall" in metric:
        ax.set_ylim(0, 1)
    ax.set_ylabel(_metric_label(metric))
    ax.set_xlabel("query language")
    ax.set_title(title)
    _legend_below(fig, ax, len(series))
    return _save(fig, path)


def _curve_parts(run: Any) -> tuple[str, Any, Sequence[Mapping[str, Any]], Any]:
    """(label, seed, points, selected_step) of a RunCurve or an equivalent mapping."""
    if isinstance(run, Mapping):
        return run["label"], run.get("seed"), run["points"], run.get("selected_step")
    return run.label, run.seed, run.points, getattr(run, "selected_step", None)


def learning_curves(runs: Sequence[Any], path: PathLike, title: str | None = None) -> Path:
    """Validation loss and mono/cross/multi mAP vs training step, one line per label.

    ``runs`` are :class:`babelir.reporting.schema.RunCurve` objects or mappings with
    ``label``, ``seed``, ``points`` (and optionally ``selected_step``); a point is
    ``{"step": int, "val_loss": float, "val_mono_map": float, "val_cross_map": float,
    "val_multi_map": float}`` where any value but ``step`` may be missing or ``None``.
    Runs of the same label (seeds) are averaged step by step; with >= 2 seeds a band
    shows their min..max. A run's selected checkpoint is marked on the loss panel.
    Panels without values say so. Raises :class:`DataError` when nothing has a value.
    """
    series: dict[str, dict[str, dict[int, list[float]]]] = {}
    selected: dict[str, list[tuple[int, float]]] = {}
    seeds: dict[str, set[Any]] = {}
    for run in runs:
        label, seed, points, sel = _curve_parts(run)
        seeds.setdefault(label, set()).add(seed)
        per = series.setdefault(label, {k: {} for k, _ in CURVE_PANELS})
        loss_at: dict[int, float] = {}
        for p in points:
            if "step" not in p:
                raise DataError(f"learning curve of {label!r} (seed {seed}): a point has no step")
            step = int(p["step"])
            for key, _ in CURVE_PANELS:
                v = _value(p.get(key))
                if math.isfinite(v):
                    per[key].setdefault(step, []).append(v)
                    if key == "val_loss":
                        loss_at[step] = v
        if sel is not None and int(sel) in loss_at:
            selected.setdefault(label, []).append((int(sel), loss_at[int(sel)]))
    if not any(vals for per in series.values() for vals in per.values()):
        raise DataError("no learning-curve values to plot")
    fig = Figure(figsize=(11.0, 8.0), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    colors = dict(zip(series, _colors(len(series)), strict=True))
    for ax, (key, axis_label) in zip(axes, CURVE_PANELS, strict=True):
        drawn = False
        for label, per in series.items():
            if not per[key]:
                continue
            steps = sorted(per[key])
            vals = [per[key][s] for s in steps]
            mean = [float(np.mean(v)) for v in vals]
            n = len(seeds[label])
            name = f"{label} (mean of {n} seeds)" if n > 1 else label
            ax.plot(
                steps,
                mean,
                marker="o" if len(steps) <= 30 else None,
                markersize=3,
                color=colors[label],
                label=name,
            )
            if n > 1:
                ax.fill_between(
                    steps,
                    [min(v) for v in vals],
                    [max(v) for v in vals],
                    color=colors[label],
                    alpha=0.2,
                    linewidth=0,
                )
            if key == "val_loss" and label in selected:
                xs, ys = zip(*selected[label], strict=True)
                ax.scatter(
                    xs, ys, marker="*", s=90, color=colors[label], edgecolor="black", zorder=3
                )
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("training step")
        ax.set_ylabel(axis_label)
        ax.grid(alpha=0.3)
    fig.suptitle(title or "Validation curves (band: min..max over seeds; star: selected step)")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    n = len(labels)
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        frameon=False,
        fontsize=9,
        ncols=n if n <= 6 else math.ceil(n / 2),
    )
    return _save(fig, path)

"""Readable terminal tables of evaluation results (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metrics_table(m: dict[str, Any]) -> Group:
    """Headline metrics and a per-language table from a metrics.json document."""
    head = Table(
        title=f"{m.get('model', '?')} on {m['benchmark']} "
        f"({m['num_questions']} questions, {m['num_candidates']} candidates, "
        f"articles {m['articles']}, {m['candidate_mode']})",
        title_justify="left",
    )
    for col in (
        "mono mAP",
        "cross mAP",
        "multi mAP",
        "mono R@1",
        "cross R@1",
        "multi R@10",
        "rank distance",
    ):
        head.add_column(col, justify="right")
    head.add_row(
        _fmt(m["map"]["mono"]),
        _fmt(m["map"]["cross"]),
        _fmt(m["map"]["multi"]),
        _fmt(m["recall"]["mono@1"]),
        _fmt(m["recall"]["cross@1"]),
        _fmt(m["recall"]["multi@10"]),
        _fmt(m["rank_distance"], 1),
    )
    per = Table(title="per query language", title_justify="left")
    for col in ("lang", "mono mAP", "cross mAP (as query)", "multi mAP", "rank distance"):
        per.add_column(col, justify="right")
    pairs = m["per_pair_map"]
    for lang, row in m["per_language"].items():
        cross = [v for k, v in pairs[lang].items() if k != lang and v is not None]
        per.add_row(
            lang,
            _fmt(row["mono_map"]),
            _fmt(sum(cross) / len(cross) if cross else None),
            _fmt(row["multi_map"]),
            _fmt(row["rank_distance"], 1),
        )
    return Group(head, per)

"""Readable terminal tables of evaluation results (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from babelir.evaluation.measures import CROSS_MAP, LAREQA, MONO_MAP, MULTI_MAP, RANK_DISTANCE


def metrics_table(m: dict[str, Any]) -> Group:
    """Headline metrics and a per-language table from a metrics.json document."""
    head = Table(
        title=f"{m.get('model', '?')} on {m['benchmark']} "
        f"({m['num_questions']} questions, {m['num_candidates']} candidates, "
        f"articles {m['articles']}, {m['candidate_mode']})",
        title_justify="left",
    )
    for measure in LAREQA:
        head.add_column(measure.label, justify="right")
    head.add_row(*(measure.format(measure.get(m)) for measure in LAREQA))
    per = Table(title="per query language", title_justify="left")
    cols = (MONO_MAP, CROSS_MAP, MULTI_MAP, RANK_DISTANCE)
    per.add_column("lang", justify="right")
    for measure in cols:
        per.add_column(
            measure.label + (" (as query)" if measure is CROSS_MAP else ""), justify="right"
        )
    pairs = m["per_pair_map"]
    for lang, row in m["per_language"].items():
        cross = [v for k, v in pairs[lang].items() if k != lang and v is not None]
        row = {**row, CROSS_MAP.key: sum(cross) / len(cross) if cross else None}
        per.add_row(lang, *(measure.format(row.get(measure.key)) for measure in cols))
    return Group(head, per)

"""Readable terminal tables of evaluation results (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from babelir.evaluation.measures import (
    CROSS_MAP,
    LANG_PREF,
    LAREQA,
    MONO_MAP,
    MULTI_MAP,
    RANK_DISTANCE,
)


def metrics_table(m: dict[str, Any]) -> Group:
    """Headline metrics, language preference (when the document has it) and a
    per-language table from a metrics.json document."""
    head = Table(
        title=f"{m.get('model', '?')} on {m['benchmark']} "
        f"({m['num_questions']} questions, {m['num_candidates']} candidates, "
        f"articles {m['articles']}, {m['candidate_mode']})",
        title_justify="left",
    )
    for measure in LAREQA:
        head.add_column(measure.label, justify="right")
    head.add_row(*(measure.format(measure.get(m)) for measure in LAREQA))
    tables: list[Table] = [head]
    pref = [measure for measure in LANG_PREF if measure.present(m)]
    if pref:
        bias = Table(
            title="language preference of the pooled ranking (excess: minus a language-blind "
            "ranker's share; lower is less biased)",
            title_justify="left",
        )
        for measure in pref:
            bias.add_column(measure.label, justify="right")
        bias.add_column("language-blind share", justify="right")
        blind = m.get("lang_pref_expected")
        bias.add_row(
            *(measure.format(measure.get(m)) for measure in pref),
            "-" if blind is None else f"{blind:.4f}",
        )
        tables.append(bias)
    per = Table(title="per query language", title_justify="left")
    # the first (smallest-k) excess, where the document has it
    excess = [x for x in pref if x.key.startswith("lang_pref_excess@")][:1]
    cols = (MONO_MAP, CROSS_MAP, MULTI_MAP, RANK_DISTANCE, *excess)
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
    tables.append(per)
    return Group(*tables)

"""Terminal table of a MIRACL metrics.json document (rich), next to the LAReQA tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from babelir.evaluation.miracl import NDCG, RECALL


def _rows(t: Table, m: Mapping[str, Any], suffix: str = "") -> None:
    """One row per language, then the bold macro row, of one system (dense or a baseline)."""
    for lang, row in m["per_language"].items():
        t.add_row(
            f"{lang}{suffix}",
            f"{row[NDCG]:.4f}",
            f"{row[RECALL]:.4f}",
            str(row["num_queries"]),
            str(row["num_passages"]),
            str(row["qrels_docids_missing_from_corpus"]),
        )
    t.add_row(
        f"macro{suffix}",
        f"{m[NDCG]:.4f}",
        f"{m[RECALL]:.4f}",
        str(m["num_queries"]),
        str(m["num_passages"]),
        str(m["qrels_docids_missing_from_corpus"]),
        style="bold",
        end_section=True,
    )


def miracl_table(m: Mapping[str, Any]) -> Table:
    """nDCG@10, R@100 and counts per language, then the macro row; each baseline of
    ``baselines`` (BM25) follows in its own section, its rows marked ``(<name>)``."""
    t = Table(
        title=f"{m.get('model', '?')} on MIRACL {m['split']} ({m['index']['kind']} search, "
        f"passages '{m['passage_format']}')",
        title_justify="left",
    )
    for col in ("lang", "nDCG@10", "R@100", "queries", "passages", "missing judged docids"):
        t.add_column(col, justify="right")
    _rows(t, m)
    for name, section in (m.get("baselines") or {}).items():
        _rows(t, section, f" ({name})")
    return t

"""Terminal tables of the passage-retrieval metrics.json documents (MIRACL, XOR-Retrieve),
next to the LAReQA tables: one row per language, then the bold macro row, for the dense
system and each baseline (BM25) in its own section, its rows marked ``(<name>)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.table import Table

from babelir.evaluation.measures import MIRACL, XOR_RETRIEVE

Cells = Callable[[Mapping[str, Any]], list[str]]
_MISSING = "qrels_docids_missing_from_corpus"


def retrieval_table(
    title: str, columns: Sequence[str], m: Mapping[str, Any], cells: Cells
) -> Table:
    """``columns`` (the first: lang) with ``cells`` of a per-language row or of a whole
    document (its macro row: the same keys at the top level)."""
    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col, justify="right")
    sections = [("", m), *((f" ({k})", v) for k, v in (m.get("baselines") or {}).items())]
    for suffix, doc in sections:
        for lang, row in doc["per_language"].items():
            t.add_row(f"{lang}{suffix}", *cells(row))
        t.add_row(f"macro{suffix}", *cells(doc), style="bold", end_section=True)
    return t


def miracl_table(m: Mapping[str, Any]) -> Table:
    """nDCG@10, R@100 and counts per language, then the macro row."""
    return retrieval_table(
        f"{m.get('model', '?')} on MIRACL {m['split']} ({m['index']['kind']} search, "
        f"passages '{m['passage_format']}')",
        ("lang", *(x.label for x in MIRACL), "queries", "passages", "missing judged docids"),
        m,
        lambda r: [
            *(f"{r[x.key]:.4f}" for x in MIRACL),
            *(str(r[k]) for k in ("num_queries", "num_passages", _MISSING)),
        ],
    )


def xor_retrieve_table(m: Mapping[str, Any]) -> Table:
    """R@2kt, R@5kt (percent, as the task reports them) per language, then the macro row."""
    limit = f", first {m['num_passages']} passages" if m["corpus_limit"] else ""
    return retrieval_table(
        f"{m.get('model', '?')} on XOR-Retrieve {m['questions']} ({m['index']['kind']} "
        f"search, top {m['top_k']}{limit}; tokens: {m['tokenizer']})",
        ("lang", *(x.label for x in XOR_RETRIEVE), "questions"),
        m,
        lambda r: [*(f"{100 * r[x.key]:.2f}" for x in XOR_RETRIEVE), str(r["num_queries"])],
    )

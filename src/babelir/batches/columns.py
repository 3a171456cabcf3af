"""Columns of a pair table, read the same way from a ``datasets.Dataset`` or a plain
``{column: list}`` mapping (the trainer hands the sampler the one, tests and ``babelir
batches`` the other)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def column(table: Any, name: str) -> list[Any] | None:
    """Column ``name`` of a Dataset/mapping as a list, or None when absent.

    ``datasets`` 4+ returns a lazy ``Column`` whose ``list()`` is ~100x slower than
    slicing it, hence ``[:]``.
    """
    names = getattr(table, "column_names", None)
    if names is None and isinstance(table, Mapping):
        names = list(table.keys())
    if names is not None and name not in names:
        return None
    try:
        values = table[name]
    except (KeyError, ValueError, IndexError, TypeError):
        return None
    return values if isinstance(values, list) else list(values[:])


def num_rows(table: Any) -> int:
    """Rows of a Dataset, or of a plain ``{column: list}`` mapping (whose ``len`` is columns)."""
    if isinstance(table, Mapping) and not hasattr(table, "column_names"):
        return len(next(iter(table.values()), []))
    return len(table)


__all__ = ["column", "num_rows"]

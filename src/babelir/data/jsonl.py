"""One JSONL line to a dict, with errors that name the file and line."""

from __future__ import annotations

import json
from typing import Any

from babelir.errors import DataError


def parse_object(line: str, where: str) -> dict[str, Any]:
    """Parse ``line`` as a JSON object; ``where`` ("path:lineno") prefixes any error."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: malformed JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    return row

"""How a passage corpus is read, encoded and searched: one options schema, declared once.

MIRACL and XOR-Retrieve (``babelir evaluate``), ``babelir index`` and compare's benchmark
entries all take some of these options. Each field is a :func:`babelir.core.schema.option`
(default, range, help), so the command-line options (:mod:`babelir.cli.evaluate.common`)
and compare's keys (:class:`babelir.compare.config.BenchmarkSpec`, which keeps ``None``
for "the default" so its cache keys stay as they were) share one declaration. Light on
purpose: loading a compare config imports it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from babelir.core.schema import option as opt
from babelir.core.schema import raise_config_errors
from babelir.data.miracl import DEFAULT_PASSAGE_FORMAT

DEFAULT_SPLIT = "dev"
#: Passages retrieved per query: XOR-Retrieve's 5,000-token budget needs ~50.
DEFAULT_TOP_K = 100
#: A bound on retrieval depth: the score matrix of a query batch is queries x top_k.
MAX_TOP_K = 10_000
#: Passages per shard: the unit an interrupted encoding resumes from.
DEFAULT_SHARD_SIZE = 50_000

#: The types (ranges) of the counts, shared with compare's entries. Optional inside the
#: annotation, so the command line reads an int (a ``None`` default means "all").
CorpusLimit = Annotated[int | None, Field(ge=1)]
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K)]
ShardSize = Annotated[int, Field(ge=1)]

#: The fields that choose the data (the loader takes them), not how it is searched.
DATA_FIELDS = ("split", "corpus")


@raise_config_errors
@dataclass(frozen=True, config=ConfigDict(strict=True, extra="forbid"))
class RetrievalOptions:
    """The options of a passage-retrieval run; a family takes the subset its
    :class:`~babelir.evaluation.families.BenchmarkFamily` row names."""

    split: str = opt(DEFAULT_SPLIT, "Queries and judgements to score (a split name).")
    corpus: str | None = opt(None, "Passage corpus (default: the family's, under --data-dir).")
    corpus_limit: CorpusLimit = opt(
        None, "Only the first N passages (CPU trials; scores then are not the task's)."
    )
    passage_format: str = opt(
        DEFAULT_PASSAGE_FORMAT, "Passage text from its fields, e.g. '{title} {text}' or '{text}'."
    )
    top_k: TopK = opt(DEFAULT_TOP_K, "Passages retrieved per question (5,000 tokens need ~50).")
    shard_size: ShardSize = opt(DEFAULT_SHARD_SIZE, "Passages per shard (the resume unit).")


__all__ = [
    "DATA_FIELDS",
    "DEFAULT_SHARD_SIZE",
    "DEFAULT_SPLIT",
    "DEFAULT_TOP_K",
    "MAX_TOP_K",
    "CorpusLimit",
    "RetrievalOptions",
    "ShardSize",
    "TopK",
]

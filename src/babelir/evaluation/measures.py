"""The metric registry: every reported number's key, label, direction and precision, once.

In the spirit of ir_measures' ``measures/`` definitions: a :class:`Measure` says where a
headline number lives in a ``metrics.json`` document (the engine's keys do not change
here), how a table or plot labels it, whether higher is better and how many digits it is
shown with. The report, the terminal tables and the plots read these instead of repeating
names, so a new metric is added in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Measure:
    """One reported metric.

    ``key`` is the machine name (the ``per_language`` key of metrics.json where one
    exists); ``label`` is the human name, also the cell name in results.json/results.csv;
    ``path`` locates the headline value in a metrics.json document; ``setting`` names the
    per-query values the paired tests use (:func:`babelir.reporting.stats.per_query_settings`),
    ``None`` where there are none.
    """

    key: str
    label: str
    path: tuple[str, ...]
    higher_is_better: bool = True
    digits: int = 4
    setting: str | None = None
    description: str = ""

    def get(self, doc: Mapping[str, Any]) -> float | None:
        """The value in a metrics.json document; ``None`` when absent or undefined."""
        cur: Any = doc
        for part in self.path:
            if not isinstance(cur, Mapping) or part not in cur:
                return None
            cur = cur[part]
        return None if cur is None else float(cur)

    def present(self, doc: Mapping[str, Any]) -> bool:
        """Whether a metrics.json document has this measure's key at all (its value may
        still be ``None``, undefined); evaluations older than a measure lack it."""
        cur: Any = doc
        for part in self.path:
            if not isinstance(cur, Mapping) or part not in cur:
                return False
            cur = cur[part]
        return True

    def format(self, value: float | None, *, signed: bool = False) -> str:
        """``value`` with this measure's digits; ``-`` when undefined."""
        if value is None or math.isnan(value):
            return "-"
        return f"{value:{'+' if signed else ''}.{self.digits}f}"

    @property
    def axis_label(self) -> str:
        """A plot axis label that says the direction when lower is better."""
        return self.label if self.higher_is_better else f"{self.label} (lower is better)"


MONO_MAP = Measure(
    "mono_map",
    "mono mAP",
    ("map", "mono"),
    setting="mono",
    description="monolingual mAP (queries X vs candidates X), macro over languages",
)
CROSS_MAP = Measure(
    "cross_map",
    "cross mAP",
    ("map", "cross"),
    setting="cross",
    description="cross-lingual mAP (queries X vs candidates Y != X), macro over pairs",
)
MULTI_MAP = Measure(
    "multi_map",
    "multi mAP",
    ("map", "multi"),
    setting="multi",
    description="multilingual mAP against the pooled candidates of all languages",
)
MONO_R1 = Measure(
    "mono_recall@1",
    "mono R@1",
    ("recall", "mono@1"),
    description="monolingual recall@1, macro over languages",
)
CROSS_R1 = Measure(
    "cross_recall@1",
    "cross R@1",
    ("recall", "cross@1"),
    description="cross-lingual recall@1, macro over language pairs",
)
MULTI_R10 = Measure(
    "multi_recall@10",
    "multi R@10",
    ("recall", "multi@10"),
    description="multilingual recall@10 in the pooled setting",
)
RANK_DISTANCE = Measure(
    "rank_distance",
    "rank distance",
    ("rank_distance",),
    higher_is_better=False,
    digits=1,
    setting="rank_distance",
    description="language bias: max - min rank of a question's relevant candidates (pooled)",
)

#: LAReQA headline measures, in the paper's column order.
LAREQA: tuple[Measure, ...] = (
    MONO_MAP,
    CROSS_MAP,
    MULTI_MAP,
    MONO_R1,
    CROSS_R1,
    MULTI_R10,
    RANK_DISTANCE,
)
#: Cut-offs k of the language-preference measures.
LANG_PREF_KS = (10, 20)


def _lang_pref(k: int, excess: bool) -> Measure:
    name = f"lang_pref_excess@{k}" if excess else f"lang_pref@{k}"
    return Measure(
        name,
        f"lang pref excess@{k}" if excess else f"lang pref@{k}",
        (name,),
        higher_is_better=False,
        setting=name,
        description=(
            f"share of the pooled top {k} in the query's language minus a language-blind "
            "ranker's share (0: blind; > 0: prefers its own language)"
            if excess
            else f"share of the pooled top {k} in the query's language, mean over questions"
        ),
    )


#: Language preference of the pooled ranking (after MLAIRE's language preference rate,
#: arXiv 2605.07249): for each k, the raw share and its excess over a language-blind one.
LANG_PREF: tuple[Measure, ...] = tuple(
    _lang_pref(k, excess) for k in LANG_PREF_KS for excess in (False, True)
)
#: Every measure a LAReQA evaluation reports: the paper's, then language preference
#: (absent from evaluations stored before it: shown as missing).
LAREQA_ALL: tuple[Measure, ...] = (*LAREQA, *LANG_PREF)
#: MIRACL measures (keys as in miracl metrics.json ``per_language`` rows).
NDCG10 = Measure("ndcg@10", "nDCG@10", ("ndcg@10",), description="trec_eval ndcg_cut.10")
RECALL100 = Measure("recall@100", "R@100", ("recall@100",), description="recall@100")
MIRACL: tuple[Measure, ...] = (NDCG10, RECALL100)
#: XOR-Retrieve measures (keys as in its metrics.json; per-query 0/1 hits).
R2KT = Measure(
    "r@2kt", "R@2kt", ("r@2kt",), description="an answer within the first 2,000 tokens"
)
R5KT = Measure(
    "r@5kt", "R@5kt", ("r@5kt",), description="an answer within the first 5,000 tokens"
)
XOR_RETRIEVE: tuple[Measure, ...] = (R2KT, R5KT)

#: Every measure by key and by label.
_ALL = (*LAREQA_ALL, *MIRACL, *XOR_RETRIEVE)
BY_KEY: dict[str, Measure] = {m.key: m for m in _ALL}
BY_LABEL: dict[str, Measure] = {m.label: m for m in _ALL}


def measure(name: str) -> Measure:
    """The measure with this key or label (``KeyError`` names the known ones)."""
    if name in BY_KEY:
        return BY_KEY[name]
    if name in BY_LABEL:
        return BY_LABEL[name]
    raise KeyError(f"unknown measure {name!r} (known: {', '.join(BY_KEY)})")

"""What a report computes from its input: :class:`Analysis` and :func:`analyse`.

Its own module so that both the renderer (:mod:`babelir.reporting.markdown`) and the
writer (:mod:`babelir.reporting.report`) import it from below: neither imports the other
for the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from babelir.evaluation.measures import measure
from babelir.reporting import retrieval
from babelir.reporting.analysis import aggregate, paired_tests, pairwise_verdict, seed_tests
from babelir.reporting.beyond_verdict import beyond_effects, beyond_sentences
from babelir.reporting.claims import claim_sentence, evaluate_claims, plain_rows
from babelir.reporting.debias_verdict import debias_effects, debias_sentences
from babelir.reporting.precision_verdict import precision_effects, precision_sentences
from babelir.reporting.schema import ReportInput


@dataclass
class Analysis:
    """What the report computed from its input (everything results.json adds)."""

    reference_labels: list[str]
    cells: dict[str, dict[str, dict[str, Any]]]
    tests: list[dict[str, Any]]
    seed_tests: list[dict[str, Any]]
    claims: list[dict[str, Any]]
    pairwise: list[str]
    debias: list[dict[str, Any]]
    #: the passage-retrieval section (cells, paired_tests, claims); {} without one
    retrieval: dict[str, Any] = field(default_factory=dict)
    #: rows that differ only in training precision (:mod:`.precision_verdict`)
    precision: list[dict[str, Any]] = field(default_factory=list)
    #: merged rows and recipe variants vs base and reference (:mod:`.beyond_verdict`)
    beyond: list[dict[str, Any]] = field(default_factory=list)

    def verdict_lines(self) -> list[str]:
        """Claim sentences (LAReQA, then retrieval), post-hoc debiasing lines, training
        precision lines, then the per-query lines."""
        claims = [
            claim_sentence(v, measure(v["measure"]))
            for v in [*self.claims, *self.retrieval.get("claims", [])]
        ]
        return (
            claims
            + debias_sentences(self.debias)
            + precision_sentences(self.precision)
            + beyond_sentences(self.beyond)
            + self.pairwise
        )


def analyse(inp: ReportInput) -> Analysis:
    """Cells over seeds, per-query and seed-level tests, and the verdict on the claims."""
    # plain rows of the reference strategy; post-hoc rows (e.g. "hybrid+lsar") are "others"
    reference = [lab for lab in plain_rows(inp.reference, inp.runs) if lab in inp.display_labels()]
    tests = paired_tests(
        inp.evaluations,
        reference,
        permutations=inp.permutations,
        bootstrap=inp.bootstrap,
        level=inp.level,
    )
    return Analysis(
        reference_labels=reference,
        cells=aggregate(inp.evaluations, inp.level),
        tests=tests,
        seed_tests=seed_tests(inp.evaluations, reference, inp.level),
        claims=evaluate_claims(
            inp.evaluations, inp.runs, margin=inp.margin, bootstrap=inp.bootstrap, level=inp.level
        ),
        pairwise=pairwise_verdict(tests),
        debias=debias_effects(inp.evaluations, bootstrap=inp.bootstrap, level=inp.level),
        retrieval=retrieval.analyse(
            inp.retrieval,
            inp.runs,
            reference,
            permutations=inp.permutations,
            bootstrap=inp.bootstrap,
            level=inp.level,
            margin=inp.margin,
        ),
        precision=precision_effects(
            inp.evaluations, inp.runs, margin=inp.margin, level=inp.level
        ),
        beyond=beyond_effects(
            inp.evaluations,
            beyond_rows(inp),
            reference[0] if reference else inp.reference,
            margin=inp.margin,
            level=inp.level,
        ),
    )


def beyond_rows(inp: ReportInput) -> list[str]:
    """Merged rows and labelled recipe variants: what goes beyond the plain strategies."""
    variants = [r.label for r in inp.runs if r.spec.custom_label is not None]
    merged = [m["label"] for m in inp.merges]
    return list(dict.fromkeys([*variants, *merged]))

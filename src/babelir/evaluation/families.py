"""Benchmark families (LAReQA, MIRACL, XOR-Retrieve): one table row per family.

Like the batch-strategy table (:data:`babelir.batches.strategies.STRATEGY_TABLE`), this is
the one place that says how families differ: the keys of a compare entry, its splits and
BM25 row, the ``babelir evaluate`` command and which retrieval options it takes, how an
entry's data loads and is evaluated, and how the dry run and the report describe it.
Everything else asks :func:`get_family` instead of comparing family names, so a new
family is one more row.

Light on purpose (loading a compare config imports it): behaviour that needs torch,
numpy or a family's evaluation code is a :class:`Lazy` ``"module:function"`` reference,
imported when called, or a function here that imports inside; so the table loads fast
and closes no import cycle (:mod:`babelir.compare`, the CLI and the reports import it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from babelir.core.errors import ConfigError
from babelir.core.schema import option_map
from babelir.evaluation.measures import LAREQA_ALL, MIRACL, NDCG10, R5KT, XOR_RETRIEVE, Measure
from babelir.evaluation.options import DATA_FIELDS, RetrievalOptions

#: The family of a compare entry without ``kind:``.
DEFAULT_KIND = "lareqa"
#: :attr:`BenchmarkFamily.dataset` of a family whose entries name their dataset.
NAMED = "<name>"


class Lazy(str):
    """A ``"module:function"`` reference, imported when first called: keeps torch and a
    family's evaluation modules out of the table's import (and out of import cycles)."""

    def resolve(self) -> Callable[..., Any]:
        module, _, name = self.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


@dataclass(frozen=True)
class FamilyClaim:
    """The paper's claim a retrieval family tests (:class:`babelir.reporting.claims.Claim`'s
    fields; the report builds the claim from them)."""

    id: str
    text: str
    measure: Measure
    others: tuple[str, ...]
    kind: str = "non-inferior"


# eq=False: rows are compared (and hashed) by identity; their mappings are not hashable
@dataclass(frozen=True, eq=False)
class BenchmarkFamily:
    """What one benchmark family is and does; see the module docstring.

    Attributes:
        kind: compare's ``kind:`` and metrics.json's ``benchmark``.
        title: Display name (reports, ``--help``, errors).
        summary: One line for ``babelir evaluate --help``.
        benchmarks: The ``--benchmark`` names it takes (the first is its default).
        cli: Module holding the family's Typer ``app`` (one ``evaluate`` command).
        measures: Its metrics, the first the one its tables lead with.
        console_table: metrics.json -> the rich table the command prints.
        size: The dry run's size of an entry, from its summary (:attr:`facts` + counts).
        fact: The report's setup line of an entry: (summary, languages text) -> text.
        fallback: ``babelir evaluate`` sends every other name or folder to it.
        passage_retrieval: Ranks a passage corpus (shards, FAISS, per-query npz), rather
            than scoring a candidate pool by mAP.
        named: A compare entry's ``name`` picks one of its datasets (else it has none).
        dataset: The registry dataset ``babelir data fetch --profile`` gets for an entry
            (its queries and judgements), :data:`NAMED` for the entry's own name, None for
            none (corpora are fetched on purpose, never as a side effect).
        keys: The compare keys only some families take that this one accepts.
        splits: The split names it accepts; None: any (the loader checks it, e.g. a path).
        bm25: Whether an entry gets a BM25 row without ``bm25:``; None: it has none (the
            key is refused).
        options: The :class:`~babelir.evaluation.options.RetrievalOptions` fields its
            command takes.
        cli_names: Option names that differ from ``--field-name`` (its split, for one).
        cli_help: The family's own help of an option (``benchmark``, ``split``, ...).
        load: (data_dir, languages, split=, corpus=, root=) -> the loaded entry.
        files: loaded -> (query and judgement files, corpus files): the cache identity.
        queries: loaded -> (id, text) of every query: the training-leak check.
        facts: loaded -> ``languages``, ``num_questions`` and the corpus, for the summary.
        evaluate: (model, loaded, work_dir, options=, index=, info=, model_fingerprint=,
            **options) -> a result with ``metrics_json()`` and ``per_query_arrays()``.
        evaluate_bm25: (loaded, **options) -> the BM25 row, a result like ``evaluate``'s.
        corpus_dir: data dir -> the corpus folder (``<lang>/*.jsonl[.gz]``) that
            ``babelir index --corpus <kind>`` reads; None: no corpus by that name.
        describe: first metrics.json -> what the report's table measures.
        claim: The paper's claim it tests in the report.
    """

    kind: str
    title: str
    summary: str
    benchmarks: tuple[str, ...]
    cli: str
    measures: tuple[Measure, ...]
    console_table: Lazy
    size: Callable[[Mapping[str, Any]], str]
    fact: Callable[[Mapping[str, Any], str], str]
    fallback: bool = False
    passage_retrieval: bool = False
    named: bool = False
    dataset: str | None = None
    keys: tuple[str, ...] = ()
    splits: tuple[str, ...] | None = None
    bm25: bool | None = None
    options: tuple[str, ...] = ()
    cli_names: Mapping[str, str] = field(default_factory=dict)
    cli_help: Mapping[str, str] = field(default_factory=dict)
    load: Callable[..., Any] | None = None
    files: Callable[[Any], tuple[list[Path], list[Path]]] | None = None
    queries: Callable[[Any], list[tuple[str, str]]] | None = None
    facts: Callable[[Any], dict[str, Any]] | None = None
    evaluate: Lazy | None = None
    evaluate_bm25: Lazy | None = None
    corpus_dir: Callable[[Path], Path] | None = None
    describe: Callable[[Mapping[str, Any]], str] | None = None
    claim: FamilyClaim | None = None

    def accepts(self, key: str) -> bool:
        """Whether a compare entry of this family may set ``key`` (of :data:`FAMILY_KEYS`)."""
        return key in self.keys or (key == "bm25" and self.bm25 is not None)

    def dataset_of(self, name: str | None) -> str | None:
        """The registry dataset an entry named ``name`` reads (see :attr:`dataset`)."""
        return name if self.dataset == NAMED else self.dataset

    def option_name(self, name: str) -> str:
        """The command-line option of a :class:`RetrievalOptions` field in this family."""
        return self.cli_names.get(name) or option_map(RetrievalOptions)[name].cli_name

    def run_options(self, retrieval: RetrievalOptions, *, encodes: bool = True) -> dict[str, Any]:
        """The options its evaluation functions take as keywords: all it takes but those
        that pick the data (split, corpus); without the shard size where nothing is
        encoded (BM25)."""
        skip = (*DATA_FIELDS, *(() if encodes else ("shard_size",)))
        return {k: getattr(retrieval, k) for k in self.options if k not in skip}

    def command(self) -> Any:
        """The family's click command (imported on first use; Typer's click: typed loosely)."""
        return _command(self.cli)


@cache
def _command(module: str) -> Any:
    import typer

    return typer.main.get_command(importlib.import_module(module).app)


# --------------------------------------------------------------------------- LAReQA


def _lareqa_size(b: Mapping[str, Any]) -> str:
    return f"{b.get('num_questions', '?')} questions x {b.get('num_candidates', '?')} candidates"


def _lareqa_fact(v: Mapping[str, Any], langs: str) -> str:
    return (
        f"{v['num_questions']} questions, {v['num_candidates']} candidates, "
        f"articles {v['articles']}, {langs}"
    )


# --------------------------------------------------------------------------- MIRACL


def _miracl_load(
    data_dir: Path, languages: Any, *, split: str, corpus: Path | None, root: Path | None
) -> Any:
    from babelir.data.miracl import load_miracl

    return load_miracl(data_dir, languages, split=split, corpus=corpus, root=root)


def _miracl_corpus_dir(data_dir: Path) -> Path:
    from babelir.data.miracl import miracl_root

    return miracl_root(data_dir) / "corpus"


def _miracl_files(loaded: Any) -> tuple[list[Path], list[Path]]:
    judged = [p for ml in loaded for p in (ml.topics_path, ml.qrels_path)]
    return judged, [p for ml in loaded for p in ml.corpus_files]


def _miracl_queries(loaded: Any) -> list[tuple[str, str]]:
    return [(f"{ml.lang}/{q}", t) for ml in loaded for q, t in ml.topics.items()]


def _miracl_facts(loaded: Any) -> dict[str, Any]:
    # the queries scored: those with a relevant judgement (as the evaluation counts)
    queries = sum(
        any(g > 0 for g in ml.qrels.get(q, {}).values()) for ml in loaded for q in ml.topics
    )
    return {
        "languages": [ml.lang for ml in loaded],
        "num_questions": int(queries),
        "corpus_files": sum(len(ml.corpus_files) for ml in loaded),
    }


def _miracl_size(b: Mapping[str, Any]) -> str:
    return (
        f"{b.get('num_questions', '?')} queries in {', '.join(b.get('languages', []))}, "
        f"{b.get('corpus_files')} corpus files"
    )


def _miracl_fact(v: Mapping[str, Any], langs: str) -> str:
    return f"{v['num_questions']} queries, split {v['split']}, {langs}"


def _miracl_describe(m: Mapping[str, Any]) -> str:
    return (
        f"nDCG@10 and Recall@100 per query with relevant judgements, {m.get('split')} "
        "split, macro over languages (trec_eval conventions)"
    )


# --------------------------------------------------------------------------- XOR-Retrieve


def _xor_load(
    data_dir: Path, languages: Any, *, split: str, corpus: Path | None, root: Path | None
) -> Any:
    from babelir.data.xor_retrieve import load_xor_retrieve

    return load_xor_retrieve(data_dir, languages, questions=split, corpus=corpus, root=root)


def _xor_files(loaded: Any) -> tuple[list[Path], list[Path]]:
    return [Path(loaded.questions_path)], [Path(loaded.corpus_path)]


def _xor_queries(loaded: Any) -> list[tuple[str, str]]:
    return [(q.id, q.question) for q in loaded.questions]


def _xor_facts(loaded: Any) -> dict[str, Any]:
    return {
        "languages": list(loaded.languages),
        "num_questions": len(loaded.questions),
        "corpus_file": str(loaded.corpus_path),
    }


def _first(b: Mapping[str, Any]) -> str:
    limit = b.get("corpus_limit")
    return f" (first {limit})" if limit else ""


def _xor_size(b: Mapping[str, Any]) -> str:
    return f"{b.get('num_questions', '?')} questions, passages {b.get('corpus_file')}{_first(b)}"


def _xor_fact(v: Mapping[str, Any], langs: str) -> str:
    limit = f", first {v['corpus_limit']} passages" if v.get("corpus_limit") else ""
    return f"{v['num_questions']} questions, split {v['split']}, {langs}{limit}"


def _xor_describe(m: Mapping[str, Any]) -> str:
    return (
        "R@2kt / R@5kt: an answer within the first 2,000 / 5,000 tokens of the ranked "
        "passages, macro over languages (official script's definition"
        + ("" if m.get("official_tokenizer") else "; whitespace tokens, not NLTK's")
        + ")"
    )


# --------------------------------------------------------------------------- the table

_BM25_HELP = "bm25s, Lucene BM25 k1=0.9 b=0.4"

FAMILY_TABLE: dict[str, BenchmarkFamily] = {
    f.kind: f
    for f in (
        BenchmarkFamily(
            kind="lareqa",
            title="LAReQA",
            summary="xquad-r, mlqa-r or a LAReQA-format folder: mono/cross/multi mAP, recall, "
            "language bias",
            benchmarks=("xquad-r", "mlqa-r"),
            cli="babelir.cli.evaluate.lareqa",
            measures=LAREQA_ALL,
            console_table=Lazy("babelir.reporting.tables:metrics_table"),
            size=_lareqa_size,
            fact=_lareqa_fact,
            fallback=True,
            named=True,
            dataset=NAMED,
            keys=("articles", "candidates"),
            cli_help={"benchmark": "xquad-r, mlqa-r or a LAReQA-format folder."},
        ),
        BenchmarkFamily(
            kind="miracl",
            title="MIRACL",
            summary="miracl: nDCG@10 and Recall@100 per language over a corpus",
            benchmarks=("miracl",),
            cli="babelir.cli.evaluate.miracl",
            measures=MIRACL,
            console_table=Lazy("babelir.reporting.miracl_table:miracl_table"),
            size=_miracl_size,
            fact=_miracl_fact,
            passage_retrieval=True,
            dataset="miracl",  # topics and qrels; not the corpus
            keys=("split", "corpus", "passage_format"),
            splits=("dev", "train"),
            bm25=True,
            options=("split", "corpus", "passage_format", "shard_size"),
            cli_help={
                "split": "Topics and qrels split: dev or train.",
                "corpus": "Corpus folder <corpus>/<lang>/*.jsonl[.gz] (default: "
                "<data-dir>/miracl/corpus, where 'babelir data fetch miracl-corpus' puts it).",
                "bm25": f"Add a BM25 baseline row per language ({_BM25_HELP}) over the same "
                "passages; needs pip install 'babelir[bm25]'.",
            },
            load=_miracl_load,
            files=_miracl_files,
            queries=_miracl_queries,
            facts=_miracl_facts,
            evaluate=Lazy("babelir.evaluation.miracl:evaluate_miracl"),
            evaluate_bm25=Lazy("babelir.evaluation.bm25:miracl_bm25_row"),
            corpus_dir=_miracl_corpus_dir,
            describe=_miracl_describe,
            claim=FamilyClaim(
                "1",
                "hybrid ~ x-x-mono on monolingual retrieval (MIRACL nDCG@10)",
                NDCG10,
                ("x-x-mono",),
            ),
        ),
        BenchmarkFamily(
            kind="xor-retrieve",
            title="XOR-Retrieve",
            summary="xor-retrieve: XOR-TyDi R@2kt and R@5kt per language over English "
            "Wikipedia passages",
            benchmarks=("xor-retrieve",),
            cli="babelir.cli.evaluate.xor_retrieve",
            measures=XOR_RETRIEVE,
            console_table=Lazy("babelir.reporting.miracl_table:xor_retrieve_table"),
            size=_xor_size,
            fact=_xor_fact,
            passage_retrieval=True,
            keys=("split", "corpus", "corpus_limit", "passage_format", "top_k"),
            bm25=False,  # an in-memory index of its corpus: on request only
            options=("split", "corpus", "corpus_limit", "top_k", "passage_format", "shard_size"),
            cli_names={"split": "--questions"},
            cli_help={
                "split": "dev (v1.1), dev-v1.0, train (under <data-dir>/xor-retrieve/) or a "
                ".jsonl path.",
                "corpus": "Passages: a DPR TSV (id, text, title; .tsv[.gz]) or corpus JSONL "
                "(default: <data-dir>/xor-retrieve/corpus/enwiki_20190201_w100.tsv, else "
                "DPR's psgs_w100).",
                "output": "Folder for metrics.json and per_query.npz.",
                "bm25": f"Add a BM25 row ({_BM25_HELP}) over the same passages, questions "
                "untranslated; holds the corpus in memory (use --corpus-limit on a CPU); "
                "needs pip install 'babelir[bm25]'.",
            },
            load=_xor_load,
            files=_xor_files,
            queries=_xor_queries,
            facts=_xor_facts,
            evaluate=Lazy("babelir.evaluation.xor_retrieve:evaluate_xor_retrieve"),
            evaluate_bm25=Lazy("babelir.evaluation.xor_retrieve:evaluate_xor_retrieve_bm25"),
            describe=_xor_describe,
            claim=FamilyClaim(
                "2", "hybrid ~ x-y on cross-lingual retrieval (XOR-Retrieve R@5kt)", R5KT, ("x-y",)
            ),
        ),
    )
}
FAMILIES: tuple[BenchmarkFamily, ...] = tuple(FAMILY_TABLE.values())
RETRIEVAL_FAMILIES: tuple[BenchmarkFamily, ...] = tuple(f for f in FAMILIES if f.passage_retrieval)
#: The compare keys that only some families take (the rest are every entry's).
FAMILY_KEYS: frozenset[str] = frozenset(k for f in FAMILIES for k in (*f.keys, "bm25"))


def get_family(kind: str) -> BenchmarkFamily:
    """The family called ``kind``; a one-line ConfigError naming the valid ones."""
    try:
        return FAMILY_TABLE[kind]
    except KeyError:
        raise ConfigError(
            f"benchmark kind: unknown {kind!r} (valid: {', '.join(FAMILY_TABLE)})"
        ) from None


def family_of_benchmark(benchmark: str) -> BenchmarkFamily:
    """The family whose ``--benchmark`` names hold ``benchmark``, else the fallback's."""
    for family in FAMILIES:
        if benchmark in family.benchmarks:
            return family
    return next(f for f in FAMILIES if f.fallback)


def retrieval_family(kind: Any) -> BenchmarkFamily:
    """The passage-retrieval family of a metrics.json's ``benchmark``; ValueError else."""
    family = FAMILY_TABLE.get(kind) if isinstance(kind, str) else None
    if family is None or not family.passage_retrieval:
        raise ValueError(f"metrics.json of an unknown family {kind!r}")
    return family


__all__ = [
    "DEFAULT_KIND",
    "FAMILIES",
    "FAMILY_KEYS",
    "FAMILY_TABLE",
    "NAMED",
    "RETRIEVAL_FAMILIES",
    "BenchmarkFamily",
    "FamilyClaim",
    "Lazy",
    "family_of_benchmark",
    "get_family",
    "retrieval_family",
]

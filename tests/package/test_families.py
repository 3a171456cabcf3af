"""The benchmark-family table (issue 33, item 3): every row complete, every lazy reference
resolvable, and no family chosen by comparing its name anywhere else in the package."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from babelir.compare.config import BenchmarkSpec
from babelir.core.errors import ConfigError
from babelir.core.schema import option_map
from babelir.evaluation.families import (
    DEFAULT_KIND,
    FAMILIES,
    FAMILY_KEYS,
    FAMILY_TABLE,
    NAMED,
    Lazy,
    family_of_benchmark,
    get_family,
)
from babelir.evaluation.options import RetrievalOptions

SRC = Path(__file__).resolve().parents[2] / "src" / "babelir"
KINDS = "|".join(re.escape(k) for k in FAMILY_TABLE)
#: Choosing a family by its name: ``kind == "miracl"``, ``!= 'xor-retrieve'``,
#: ``in ("miracl", ...)`` or a dict literal keyed by family names.
NAME_DISPATCH = re.compile(
    rf"""[=!]=\s*["']({KINDS})["']"""  # kind == "miracl"
    rf"""|\bin\s*[(\[{{]\s*["']({KINDS})["']"""  # kind in ("miracl", ...)
    rf"""|(^|[{{,])\s*["']({KINDS})["']\s*:"""  # {"miracl": ...}
)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.kind)
def test_every_row_is_complete(family):
    assert FAMILY_TABLE[family.kind] is family and get_family(family.kind) is family
    assert family.title and family.summary and family.benchmarks and family.measures
    for name in family.benchmarks:
        assert family_of_benchmark(name) is family
    # the command exists and takes what the row says, under the row's names
    params = {p.name: p for p in family.command().params}
    for option in family.options:
        assert family.option_name(option) in params[option].opts, option
    assert set(family.options) <= set(option_map(RetrievalOptions))
    assert set(family.cli_names) | set(family.cli_help) <= {
        *option_map(RetrievalOptions), "benchmark", "output", "bm25"
    }  # fmt: skip
    # compare's keys are BenchmarkSpec fields; BM25 is a key where there is a row
    assert set(family.keys) <= set(BenchmarkSpec.model_fields)
    assert family.accepts("bm25") == (family.bm25 is not None) == ("bm25" in params)
    assert family.console_table.resolve() is not None
    assert family.size({}) and callable(family.fact)
    if family.named:
        assert family.dataset == NAMED and family.dataset_of("x") == "x"
    if family.passage_retrieval:
        hooks = (family.load, family.files, family.queries, family.facts, family.describe)
        assert all(callable(h) for h in hooks)
        assert isinstance(family.evaluate, Lazy) and callable(family.evaluate.resolve())
        assert family.claim is not None and family.claim.measure in family.measures
        # the evaluation functions take every option the row passes them
        for ref, encodes in ((family.evaluate, True), (family.evaluate_bm25, False)):
            if ref is None:
                continue
            taken = inspect.signature(ref.resolve()).parameters
            run = family.run_options(RetrievalOptions(), encodes=encodes)
            has_kwargs = any(p.kind is p.VAR_KEYWORD for p in taken.values())
            assert has_kwargs or set(run) <= set(taken), (ref, run)
        assert (family.evaluate_bm25 is None) == (family.bm25 is None)
    if family.corpus_dir is not None:
        assert family.corpus_dir(Path("d")).parts[0] == "d"


def test_the_table_as_a_whole():
    assert [f.kind for f in FAMILIES if f.fallback] == [DEFAULT_KIND]
    assert BenchmarkSpec().kind == DEFAULT_KIND
    names = [n for f in FAMILIES for n in f.benchmarks]
    assert len(names) == len(set(names))
    # every family-specific key belongs to some family, and some other family refuses it
    for key in FAMILY_KEYS:
        owners = [f for f in FAMILIES if f.accepts(key)]
        assert owners and len(owners) < len(FAMILIES), key
    with pytest.raises(ConfigError, match="benchmark kind: unknown 'bing'"):
        get_family("bing")


def test_importing_the_table_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, babelir.evaluation.families, babelir.evaluation.options\n"
        "print([m for m in ('torch', 'numpy', 'typer', 'rich') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_name_dispatch_pattern_finds_what_it_should():
    for bad in (
        'if kind == "miracl":',
        "x != 'xor-retrieve'",
        'fam in ("miracl", "xor-retrieve")',
        '{"lareqa": b.name, "miracl": "miracl"}.get(k)',
        '    "xor-retrieve": Claim(',
    ):
        assert NAME_DISPATCH.search(bad), bad
    for fine in ('"benchmark": "miracl",', 'get_family("miracl")', "Path('miracl') / x"):
        assert not NAME_DISPATCH.search(fine), fine


def test_no_family_is_chosen_by_name_outside_the_table():
    found = [
        f"{path.relative_to(SRC.parent)}:{i}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "families.py"
        for i, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if NAME_DISPATCH.search(line)
    ]
    assert not found, "ask babelir.evaluation.families instead:\n" + "\n".join(found)

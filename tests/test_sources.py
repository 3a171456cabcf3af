"""Several training sources in one run: spec parsing, linking by id, leak checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from babelir.data.types import ParallelItem, ParallelQA, Side
from babelir.errors import ConfigError, DataError
from babelir.training.sources import (
    BenchmarkTexts,
    SourceSpec,
    check_leaks,
    load_sources,
    normalise,
    parse_sources,
)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


def _squad(path: Path, questions: list[tuple[str, str, str, str]], title: str = "T") -> Path:
    """A SQuAD v1.1 file: (id, question, context, answer) per question, one paragraph each."""
    paragraphs = [
        {
            "context": ctx,
            "qas": [
                {"id": qid, "question": q, "answers": [{"text": a, "answer_start": ctx.find(a)}]}
            ],
        }
        for qid, q, ctx, a in questions
    ]
    path.write_text(
        json.dumps({"version": "1.1", "data": [{"title": title, "paragraphs": paragraphs}]}),
        "utf-8",
    )
    return path


def test_spec_parsing_forms():
    assert SourceSpec.parse("en:data/x.json") == SourceSpec("data/x.json", "en")
    assert SourceSpec.parse("xquad-r") == SourceSpec("xquad-r")
    assert SourceSpec.parse("zh-Hans:/abs/x.json") == SourceSpec("/abs/x.json", "zh-Hans")
    assert SourceSpec.parse({"path": "a.json", "lang": "pt", "weight": 0.5}).weight == 0.5
    assert SourceSpec.parse("https://host/x.json").lang is None  # a URL is no LANG: prefix
    with pytest.raises(ConfigError, match="weight"):
        SourceSpec.parse({"path": "a.json", "lang": "pt", "weight": 2})
    with pytest.raises(ConfigError, match="unknown key 'language'"):
        SourceSpec.parse({"path": "a.json", "language": "pt"})
    with pytest.raises(ConfigError, match="given twice"):
        parse_sources(["en:a.json", "en:a.json"])


def test_sources_link_by_id_and_monolingual_sets_stay_monolingual(tmp_path):
    en = _jsonl(tmp_path / "en.jsonl", [
        {"id": f"q{i}", "lang": "en", "query": f"question {i}", "positive": f"answer {i}"}
        for i in range(6)
    ])
    pt = _jsonl(tmp_path / "pt.jsonl", [
        {"id": f"q{i}", "lang": "pt", "query": f"pergunta {i}", "positive": f"resposta {i}"}
        for i in range(4)
    ])
    ar = _jsonl(tmp_path / "ar.jsonl", [
        {"id": f"a{i}", "lang": "ar", "query": f"سؤال {i}", "positive": f"جواب {i}"}
        for i in range(5)
    ])
    ms = load_sources(parse_sources([f"en:{en}", f"pt:{pt}", f"ar:{ar}"]), tmp_path)
    by_id = {it.id: it for it in ms.data.items}
    assert ms.languages == ["ar", "en", "pt"]
    assert sorted(by_id["q0"].sides) == ["en", "pt"]  # linked: gives x-y pairs
    assert sorted(by_id["q5"].sides) == ["en"]
    assert sorted(by_id["a0"].sides) == ["ar"]  # a native monolingual item: mono only
    assert [r.linked for r in ms.records] == [0, 4, 0]
    assert all(len(r.sha256 or "") == 64 for r in ms.records)


def test_lang_prefix_keeps_one_language_and_refuses_duplicates(tmp_path):
    both = _jsonl(tmp_path / "both.jsonl", [
        {"id": "q1", "lang": "en", "query": "q", "positive": "p"},
        {"id": "q1", "lang": "de", "query": "f", "positive": "a"},
    ])
    en = _jsonl(tmp_path / "en.jsonl", [{"id": "q1", "lang": "en", "query": "q", "positive": "p"}])
    ms = load_sources([SourceSpec(str(both), "de")], tmp_path)
    assert ms.data.languages == ["de"]
    with pytest.raises(DataError, match="q1 in 'en' comes from both"):
        load_sources(parse_sources([str(both), f"en:{en}"]), tmp_path)


def test_weight_keeps_the_same_ids_in_every_source(tmp_path):
    rows = [
        {"id": f"q{i}", "lang": "en", "query": f"q{i}", "positive": f"p{i}"} for i in range(400)
    ]
    en = _jsonl(tmp_path / "en.jsonl", rows)
    de = _jsonl(tmp_path / "de.jsonl", [dict(r, lang="de") for r in rows])
    ms = load_sources(
        [SourceSpec(str(en), "en", 0.5), SourceSpec(str(de), "de", 0.5)], tmp_path
    )
    n = len(ms.data.items)
    assert 150 < n < 250  # about half
    assert all(sorted(it.sides) == ["de", "en"] for it in ms.data.items)  # same ids kept


def test_squad_file_needs_a_language(tmp_path):
    f = _squad(tmp_path / "s.json", [("x1", "Who?", "Ann went home. Bob stayed.", "Bob")])
    with pytest.raises(ConfigError, match="carries no language; give it as LANG:PATH"):
        load_sources(parse_sources([str(f)]), tmp_path)


def test_missing_source_names_both_places_tried(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_sources(parse_sources(["en:nowhere/x.json"]), tmp_path)


def _bench(ids, questions, passages) -> BenchmarkTexts:
    return BenchmarkTexts(
        "bench", frozenset(ids), frozenset(map(normalise, questions)),
        frozenset(map(normalise, passages)),
    )


def test_leak_check_by_id_question_and_passage_text():
    data = ParallelQA([
        ParallelItem("same-id", {"en": Side("unrelated question one", "unrelated passage one")}),
        ParallelItem("b", {"en": Side("What is  the CAPITAL of France?", "x")}),
        ParallelItem(
            "c", {"de": Side("frage", "Paris is the capital and largest city of France.")}
        ),
        ParallelItem("d", {"en": Side("clean", "a clean passage about something else entirely")}),
    ])
    bench = _bench(
        ["same-id"], ["what is the capital of france"],
        ["paris is the capital and largest city of france"],
    )
    with pytest.raises(DataError, match=r"bench: 3 items \(1 by id, 1 by question text, 1 by "):
        check_leaks(data, [bench])
    kept, overlaps = check_leaks(data, [bench], drop=True)
    assert [it.id for it in kept.items] == ["d"]
    assert overlaps[0].items == {"same-id", "b", "c"}


def test_short_passages_are_not_compared_by_text():
    data = ParallelQA([ParallelItem("a", {"en": Side("q", "Yes.")})])
    kept, overlaps = check_leaks(data, [_bench([], [], ["yes"])])
    assert overlaps == [] and len(kept.items) == 1

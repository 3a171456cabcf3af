"""Several training sources in one run: spec parsing, linking by id, leak checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from babelir.core.errors import ConfigError, DataError
from babelir.data.types import ParallelItem, ParallelQA, Side
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


# --------------------------------------------------------------------------- real data

EN = "en:training/squad-v1.1-train-en/first10-articles.json"
PT = "pt:training/squad-v1.1-train-pt/sample-v1.1-pt.json"
AR = "ar:training/arcd/arcd.json"


@pytest.fixture(scope="module")
def zero_shot_data(shared_data_dir):
    from babelir.training.config import TrainConfig
    from babelir.training.data import build_training_data

    if not (shared_data_dir / "training" / "arcd").is_dir():
        pytest.skip("babelir input missing: training/ slices not in the data dir")
    cfg = TrainConfig(
        train_data=[EN, PT, AR], data_dir=str(shared_data_dir), strategy="hybrid",
        disjoint_from=["xquad-r"], batch_size=16,
    )
    return build_training_data(cfg), cfg


def test_validation_comes_from_held_out_training_articles_never_a_benchmark(
    zero_shot_data, shared_data_dir
):
    from babelir.data.lareqa import load_benchmark

    td, _ = zero_shot_data
    val_ids = set(td.val.ids)
    train_ids = set(td.data.ids)
    assert val_ids and not val_ids & train_ids
    # whole articles: no article has questions on both sides
    val_groups = {it.group for it in td.val.items}
    assert val_groups and not val_groups & {it.group for it in td.data.items}
    # every validation item is a training-source item, none is a benchmark question
    sources = load_sources(parse_sources([EN, PT, AR]), shared_data_dir).data
    assert val_ids <= set(sources.ids)
    bench = load_benchmark("xquad-r", shared_data_dir)
    assert not val_ids & set(bench.question_ids)
    assert not train_ids & set(bench.question_ids)
    record = td.validation_record()
    assert record["held_out_articles"] == sorted(val_groups)
    assert [s["label"] for s in td.sources] == [EN, PT, AR]


def test_batches_pair_across_linked_sources_only_and_never_repeat_an_id(zero_shot_data):
    """The issue's acceptance check: x-y pairs in en/pt only, mono batches in ar too."""
    from babelir.batches.sampler import ParallelBatchSampler

    td, _ = zero_shot_data
    sampler = ParallelBatchSampler(
        td.table, batch_size=16, strategy="hybrid", alpha=0.5, num_replicas=1, seed=0
    )
    kinds: dict[str, set[str]] = {"mono": set(), "cross": set()}
    for k, batch in zip(range(80), sampler.iter_batches(), strict=False):
        rows = [sampler.row_info(r) for r in batch.rows]
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)), f"batch {k} repeats an id"
        langs = {(r["query_lang"], r["passage_lang"]) for r in rows}
        if batch.type == "mono":
            assert len({q for q, _ in langs}) == 1 and all(q == p for q, p in langs)
        else:
            assert all(q != p for q, p in langs)
        kinds[batch.type].update(lang for pair in langs for lang in pair)
    assert kinds["cross"] == {"en", "pt"}
    assert kinds["mono"] == {"ar", "en", "pt"}


def test_an_overlapping_source_is_refused_or_dropped_with_its_count(shared_data_dir):
    """XQuAD's German file is SQuAD dev translated: the questions of XQuAD-R."""
    from babelir.training.config import TrainConfig
    from babelir.training.data import build_training_data

    leak = ["de:xquad/xquad.de.json", AR]
    cfg = dict(train_data=leak, data_dir=str(shared_data_dir), disjoint_from=["xquad-r"],
               val_articles="none")  # fmt: skip
    with pytest.raises(DataError, match=r"overlaps an evaluation benchmark: xquad-r: 1190 items"):
        build_training_data(TrainConfig(**cfg))
    td = build_training_data(TrainConfig(**cfg, drop_overlap=True))
    assert td.data.languages == ["ar"] and len(td.overlaps) == 1190


# ------------------------------------------------ article selections and stand-ins (#31)


def _squad_articles(path: Path, titles: list[str]) -> Path:
    """A SQuAD v1.1 file with one single-question article per title (ids T-0, T-1...)."""
    data = [
        {
            "title": t,
            "paragraphs": [
                {
                    "context": f"{t} was founded long ago. It is a long and old place.",
                    "qas": [
                        {
                            "id": f"{t}-q",
                            "question": f"When was {t} founded?",
                            "answers": [{"text": "long ago", "answer_start": len(t) + 12}],
                        }
                    ],
                }
            ],
        }
        for t in titles
    ]
    path.write_text(json.dumps({"version": "1.1", "data": data}), "utf-8")
    return path


def test_article_selection_in_string_and_mapping_forms():
    spec = SourceSpec.parse("en:train/x.json#articles=0-9")
    assert spec == SourceSpec("train/x.json", "en", 1.0, "0-9")
    assert spec.label == "en:train/x.json#articles=0-9"
    assert SourceSpec.parse(spec.label) == spec  # the label reads back
    mapping = SourceSpec.parse({"path": "x.json", "lang": "en", "articles": "%4!=0"})
    assert mapping.articles == "%4!=0"
    assert SourceSpec.parse(mapping.to_value()) == mapping
    weighted = SourceSpec.parse({"path": "x.json", "lang": "en", "weight": 0.5, "articles": "1"})
    assert SourceSpec.parse(weighted.to_value()) == weighted
    assert SourceSpec.parse("en:x.json#articles=all").articles is None  # one spelling
    with pytest.raises(ConfigError, match=r"en:x\.json#articles=nine: articles: cannot parse"):
        SourceSpec.parse("en:x.json#articles=nine")
    # the same file under two selections is two sources, not one given twice
    assert len(parse_sources(["en:x.json#articles=0", "en:x.json#articles=1"])) == 2


def test_article_selection_keeps_those_articles_of_a_squad_file(tmp_path):
    _squad_articles(tmp_path / "s.json", ["Alpha", "Beta", "Gamma", "Delta"])
    ms = load_sources([SourceSpec.parse("en:s.json#articles=1-2")], tmp_path)
    assert sorted(it.id for it in ms.data.items) == ["Beta-q", "Gamma-q"]
    assert ms.records[0].squad["articles"] == 2
    assert ms.records[0].label == "en:s.json#articles=1-2"
    every_other = load_sources([SourceSpec.parse("en:s.json#articles=%2==0")], tmp_path)
    assert sorted(it.id for it in every_other.data.items) == ["Alpha-q", "Gamma-q"]
    with pytest.raises(DataError, match=r"s\.json \(articles 7-9\): the selection holds no "
                       r"article \(the file has 4\)"):
        load_sources([SourceSpec.parse("en:s.json#articles=7-9")], tmp_path)


def test_article_selection_is_refused_on_a_source_that_is_not_squad(tmp_path):
    _jsonl(tmp_path / "p.jsonl", [{"id": "1", "lang": "en", "query": "q", "positive": "p"}])
    with pytest.raises(ConfigError, match="selects articles of a SQuAD-format file"):
        load_sources([SourceSpec.parse("en:p.jsonl#articles=0")], tmp_path)


def test_a_missing_file_is_read_through_its_registered_stand_in(tmp_path, monkeypatch):
    from babelir.data import registry
    from babelir.training.config import TrainConfig
    from babelir.training.sources import apply_stand_ins

    monkeypatch.setitem(
        registry.STAND_INS, ("off/full.json", "0-1"), ("slice/two.json", "two-ds", "why")
    )
    (tmp_path / "slice").mkdir()
    _squad_articles(tmp_path / "slice" / "two.json", ["Alpha", "Beta"])
    specs = parse_sources(["en:off/full.json#articles=0-1", "en:off/full.json#articles=0-2"])
    resolved, notes = apply_stand_ins(specs, tmp_path)
    # only the registered selection has a stand-in
    assert resolved == [SourceSpec("slice/two.json", "en"), specs[1]]
    assert len(notes) == 1 and "en:off/full.json#articles=0-1 is not in" in notes[0]
    assert "en:slice/two.json" in notes[0] and "two-ds" in notes[0]
    cfg = TrainConfig(
        output=tmp_path / "m", data_dir=str(tmp_path),
        train_data=["en:off/full.json#articles=0-1"],
    )  # fmt: skip
    assert cfg.train_data == ["en:slice/two.json"]  # the run names the file it reads

    (tmp_path / "off").mkdir()  # the official file present: read it, never the stand-in
    _squad_articles(tmp_path / "off" / "full.json", ["Alpha", "Beta", "Gamma"])
    assert apply_stand_ins(specs, tmp_path) == (specs, [])
    ms = load_sources(specs[:1], tmp_path)
    assert sorted(it.id for it in ms.data.items) == ["Alpha-q", "Beta-q"]


def test_the_shared_english_slice_is_the_registered_stand_in(shared_data_dir):
    """The default profiles name the official SQuAD file's first 10 articles; the shared
    slice holds those 10 articles with the official question ids (those of the pt
    translation, which keeps SQuAD's ids)."""
    from babelir.data.registry import SQUAD_TRAIN_FULL_DIR, STAND_INS

    local, dataset, _ = STAND_INS[(f"{SQUAD_TRAIN_FULL_DIR}/en/train-v1.1.json", "0-9")]
    assert dataset == "squad-train-en-sample"
    doc = json.loads((shared_data_dir / local).read_text("utf-8"))
    pt = json.loads(
        (shared_data_dir / "training/squad-v1.1-train-pt/sample-v1.1-pt.json").read_text("utf-8")
    )
    assert len(doc["data"]) == 10

    def ids(d):
        return [q["id"] for a in d["data"] for p in a["paragraphs"] for q in p["qas"]]

    assert ids(doc) == ids(pt)

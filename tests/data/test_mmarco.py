"""mMARCO-format training data: layout, id lookups, windows/chunks, sampler feed, bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import babelir.data.mmarco as mmarco_mod
from babelir.batches.sampler import ParallelBatchSampler
from babelir.core.errors import ConfigError, DataError
from babelir.data.corpus import open_corpus
from babelir.data.mmarco import MMARCO_LANGUAGES, MMarco, TsvLookup, iter_triples, load_mmarco
from babelir.data.parallel import pair_table

LANGS = ("en", "de", "zh")
N_TRIPLES = 200


def _q(lang: str, qid: int) -> str:
    return f"{lang} query {qid}"


def _p(lang: str, pid: int) -> str:
    return f"{lang} passage {pid}"


@pytest.fixture
def layout(tmp_path: Path) -> dict:
    """A small unicamp-dl/mMARCO tree: 40 queries, 300 passages, 200 id triples.

    Gaps: the German query of qid 1007 is empty and Chinese passage 5 is absent, as a
    partial translation would be.
    """
    rng = random.Random(0)
    root = tmp_path / "mmarco"
    g = root / "data" / "google"
    (g / "queries" / "train").mkdir(parents=True)
    (g / "collections").mkdir(parents=True)
    qids = [1000 + 7 * i for i in range(40)]
    positives = {q: [5 if i == 3 else rng.randrange(300)] for i, q in enumerate(qids)}
    positives[qids[0]].append(299)  # a query with two relevant passages
    for lang in LANGS:
        name = MMARCO_LANGUAGES[lang]
        lines = [f"{q}\t{'' if (lang, q) == ('de', 1007) else _q(lang, q)}\n" for q in qids]
        (g / "queries" / "train" / f"{name}_queries.train.tsv").write_text("".join(lines))
        pids = [p for p in range(300) if (lang, p) != ("zh", 5)]
        (g / "collections" / f"{name}_collection.tsv").write_text(
            "".join(f"{p}\t{_p(lang, p)}\n" for p in pids)
        )
    triples = []
    for i in range(N_TRIPLES):
        q = qids[i % 40] if i < 80 else rng.choice(qids)
        pos = rng.choice(positives[q])
        neg = 299 if q == qids[0] and i == 40 else rng.randrange(300)  # 299: a positive of q0
        triples.append(f"{q}\t{pos}\t{neg}\n")
    (root / "data" / "triples.train.ids.small.tsv").write_text("".join(triples))
    return {"root": root, "qids": qids, "positives": positives, "cache": tmp_path / "cache"}


def test_window_builds_parallel_items(layout: dict):
    mm = MMarco.open(layout["root"], cache=layout["cache"])
    assert mm.languages == ["de", "en", "zh"]  # every language with queries and a collection
    data = mm.parallel(max_triples=N_TRIPLES, negatives=2)
    st = mm.stats
    assert st.triples == N_TRIPLES and st.items == 40 == len(data.items)
    assert st.missing_query == {"de": 1}
    assert st.missing_passage == {"zh": 1}  # qid 1021's positive is the missing passage 5
    by_id = {x.id: x for x in data.items}
    q0 = by_id[str(layout["qids"][0])]
    for item in data.items:
        qid = int(item.id)
        for lang, side in item.sides.items():
            assert side.query == _q(lang, qid)
            assert side.positive in {_p(lang, p) for p in layout["positives"][qid]}
            assert len(side.negatives) <= 2
            for neg in side.negatives:  # a positive is never used as a negative
                assert neg not in {_p(lang, p) for p in layout["positives"][qid]}
    assert "de" not in by_id["1007"].sides and set(by_id["1021"].sides) == {"de", "en"}
    assert set(q0.sides) == {"de", "en", "zh"} and _p("en", 299) not in q0.sides["en"].negatives
    assert data.counts() == {"de": 39, "en": 40, "zh": 39}
    mm.close()


def test_chunks_and_windows_stream_the_triples(layout: dict):
    mm = MMarco.open(layout["root"], ["en", "zh"], cache=layout["cache"])
    parts = list(mm.chunks(chunk_triples=70))
    assert len(parts) == 3
    assert "lines 141..200" in parts[-1].source
    window = mm.parallel(start=150, max_triples=100)
    assert mm.stats.triples == 50 and "lines 151..200" in window.source
    first = load_mmarco(layout["root"], languages=["en"], max_triples=40)
    assert len(first.items) == 40 and first.languages == ["en"]
    mm.close()


def test_feeds_the_batch_sampler(layout: dict):
    data = MMarco.open(layout["root"], cache=layout["cache"]).parallel(max_triples=N_TRIPLES)
    table = pair_table(data, cross=True, hard_negatives=True)
    assert {"id", "query_lang", "passage_lang", "query", "positive", "negative"} <= set(table)
    sampler = ParallelBatchSampler(table, 8, False, strategy="hybrid", seed=1)
    batches = list(sampler)
    assert batches
    for batch in batches:
        ids = [table["id"][r] for r in batch]
        assert len(ids) == len(set(ids))  # one parallel item at most once per batch
        positives = {table["positive"][r] for r in batch}
        assert not positives & {table["negative"][r] for r in batch}


def test_tsv_lookup_is_exact_under_hash_collisions(tmp_path: Path, monkeypatch):
    path = tmp_path / "x.tsv"
    path.write_text("a\tfirst\nb-2\tsecond\n\nc\t\na\tduplicate\nzz\tlast\n")
    monkeypatch.setattr(mmarco_mod, "_key", lambda _raw: 0)  # every id collides
    lookup = TsvLookup(path, tmp_path / "cache")
    assert len(lookup) == 4  # the empty text of c is not indexed
    assert lookup.get_many(["zz", "a", "b-2", "c", "nope"]) == {
        "a": "first",  # a repeated id resolves to its first line
        "b-2": "second",
        "zz": "last",
    }
    lookup.close()
    monkeypatch.setattr(TsvLookup, "_scan", lambda self: pytest.fail("index not reused"))
    again = TsvLookup(path, tmp_path / "cache")
    assert again.get("b-2") == "second" and again.get("c") is None
    again.close()


def test_bad_input(layout: dict, tmp_path: Path):
    root = layout["root"]
    with pytest.raises(DataError, match="mMARCO folder not found"):
        MMarco.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not an mMARCO folder"):
        MMarco.open(tmp_path / "empty")
    with pytest.raises(ConfigError, match="no language 'xx'"):
        MMarco.open(root, ["en", "xx"])
    with pytest.raises(DataError, match=r"french_queries\.train\.tsv: mMARCO file for 'fr'"):
        MMarco.open(root, ["fr"])
    triples = root / "data" / "triples.train.ids.small.tsv"
    lines = triples.read_text().splitlines(keepends=True)
    lines[4] = "1000\t12\n"
    triples.write_text("".join(lines))
    with pytest.raises(DataError, match=r"triples\.train\.ids\.small\.tsv:5: expected"):
        list(iter_triples(triples))
    coll = root / "data" / "google" / "collections" / "english_collection.tsv"
    coll.write_text("0\tok\n1 no tab here\n")
    with pytest.raises(DataError, match=r"english_collection\.tsv:2: expected 'id<TAB>text'"):
        TsvLookup(coll, tmp_path / "c2")
    with pytest.raises(DataError, match=r"english_collection\.tsv:2: expected 'pid<TAB>passage'"):
        list(mmarco_mod.iter_collection(coll, "en"))


def test_collections_are_an_index_corpus(layout: dict, tmp_path: Path):
    src = open_corpus(layout["root"], tmp_path, languages=["de", "zh"])
    docs = list(src.passages())
    assert src.languages == ["de", "zh"] and len(docs) == 300 + 299
    assert docs[0].lang == "de" and docs[0].docid == "0" and docs[0].text == _p("de", 0)
    assert docs[-1].lang == "zh" and docs[-1].title == ""


def test_load_parallel_and_batches_cli_take_an_mmarco_folder(
    layout: dict, tmp_path: Path, monkeypatch
):
    """mMARCO feeds training like any other parallel data (`--train-data FOLDER`)."""
    from babelir.cli.main import main
    from babelir.data.parallel import load_parallel

    monkeypatch.setenv("BABELIR_CACHE_DIR", str(layout["cache"]))
    data = load_parallel(layout["root"], max_triples=N_TRIPLES)
    assert len(data.items) > 0 and len(data.languages) >= 2
    out = tmp_path / "batches.jsonl"
    with pytest.raises(SystemExit) as done:
        main(
            [
                "batches",
                "--train-data",
                str(layout["root"]),
                "--languages",
                ",".join(data.languages),
                "--batch-size",
                "2",
                "--num-batches",
                "3",
                "--output",
                str(out),
            ]
        )
    assert done.value.code in (0, None)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3 and all(len(b["pairs"]) == 2 for b in lines)

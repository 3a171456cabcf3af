"""MIRACL-format data and evaluation: real topics/qrels, metrics, end to end, bad input."""

from __future__ import annotations

import gzip
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from testkit.miracl import run_miracl_sw
from testkit.tiny_model import make_tiny_model

from babelir.cli.evaluate.common import FamilyRun
from babelir.cli.evaluate.miracl import evaluate_miracl_cli
from babelir.core.errors import ConfigError, DataError
from babelir.data.miracl import (
    DEFAULT_PASSAGE_FORMAT,
    Passage,
    check_passage_format,
    corpus_files,
    format_passage,
    iter_jsonl_passages,
    load_miracl,
    read_qrels,
    read_topics,
)
from babelir.data.registry import MIRACL_LANGUAGES
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.miracl import NDCG, RECALL, ndcg_at_k, score_run, trec_recall_at_k
from babelir.index.faiss_backend import IndexSpec

DEV_TOPICS = {
    "ar": 2896, "bn": 411, "de": 305, "en": 799, "es": 648, "fa": 632, "fi": 1271, "fr": 343,
    "hi": 350, "id": 960, "ja": 860, "ko": 213, "ru": 1252, "sw": 482, "te": 828, "th": 733,
    "yo": 119, "zh": 393,
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- real files


def test_real_dev_topics_and_qrels_parse(shared_data_dir: Path):
    langs = load_miracl(shared_data_dir, split="dev", require_corpus=False)
    assert [x.lang for x in langs] == list(MIRACL_LANGUAGES)
    assert {x.lang: len(x.topics) for x in langs} == DEV_TOPICS
    assert sum(len(x.topics) for x in langs) == 13_495  # MIRACL dev, as documented
    for x in langs:
        lines = sum(1 for line in x.qrels_path.read_text("utf-8").splitlines() if line.strip())
        assert sum(len(j) for j in x.qrels.values()) == lines  # no judgement lost or merged
        assert set(x.qrels) == set(x.topics)
        assert all(any(g > 0 for g in j.values()) for j in x.qrels.values())
    ar = langs[0]
    assert ar.topics["0"] == "هل عدم القيام بجهد جسماني ممكن ان يسبب الأرق؟"
    assert ar.qrels["0"]["151236#1"] == 1 and ar.qrels["0"]["151236#0"] == 0
    de = next(x for x in langs if x.lang == "de")
    assert de.topics["81674#0"] == "Wo ist das Gebiet der Irokesen-Indianer in Kanada?"


def test_real_train_split_and_fixture(shared_data_dir: Path):
    (sw,) = load_miracl(shared_data_dir, "sw", split="train", require_corpus=False)
    assert len(sw.topics) > 1000 and set(sw.qrels) <= set(sw.topics)
    with pytest.raises(
        DataError, match=r"topics\.miracl-v1\.0-de-train\.tsv: topics file not found"
    ):
        load_miracl(shared_data_dir, "de", split="train", require_corpus=False)
    fx = shared_data_dir / "fixtures" / "miracl"
    topics = read_topics(fx / "topics.miracl-v1.0-yo-dev.tiny.tsv")
    qrels = read_qrels(fx / "qrels.miracl-v1.0-yo-dev.tiny.tsv")
    assert len(topics) == 5 and set(qrels) == set(topics)
    assert sum(len(j) for j in qrels.values()) == 50


# --------------------------------------------------------------------------- metrics


def test_metrics_hand_computed():
    qrels = {"q1": {"a": 1, "b": 0, "c": 1, "d": 2}, "q2": {"x": 1}}
    ranking = ["b", "a", "z", "d"]  # c never retrieved; z unjudged (counts as non-relevant)
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranking, qrels["q1"], 10) == pytest.approx(dcg / idcg, abs=1e-12)
    assert dcg / idcg == pytest.approx(0.476626, abs=1e-6)
    assert trec_recall_at_k(ranking, qrels["q1"], 100) == pytest.approx(2 / 3)
    # the cut-off: a relevant passage at rank 101 does not count for Recall@100
    long = [f"n{i}" for i in range(100)] + ["x"]
    assert trec_recall_at_k(long, qrels["q2"], 100) == 0.0
    run = {
        "q1": {d: 10.0 - i for i, d in enumerate(ranking)},
        "q2": {d: 200.0 - i for i, d in enumerate(long)},
    }
    got = score_run(qrels, run)
    assert got["q1"][NDCG] == pytest.approx(dcg / idcg, abs=1e-9)
    assert got["q1"][RECALL] == pytest.approx(2 / 3)
    assert got["q2"] == {NDCG: 0.0, RECALL: 0.0}
    assert score_run(qrels, {"q1": run["q1"]})["q2"] == {NDCG: 0.0, RECALL: 0.0}  # no run: 0


def test_metrics_match_pytrec_eval_on_random_runs():
    rng = random.Random(7)
    qrels, run = {}, {}
    for q in range(60):
        docs = [f"d{i}" for i in range(400)]
        judged = rng.sample(docs, rng.randint(1, 25))
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 1, 2]) for d in judged}
        qrels[f"q{q}"][judged[0]] = rng.choice([1, 2])  # at least one relevant
        retrieved = rng.sample(docs, 150)
        scores = rng.sample(range(10_000), 150)  # distinct: no tie-breaking ambiguity
        run[f"q{q}"] = {d: float(s) for d, s in zip(retrieved, scores, strict=True)}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    ours = score_run(qrels, run)
    for q in qrels:
        ranking = sorted(run[q], key=lambda d: -run[q][d])
        assert ndcg_at_k(ranking, qrels[q], 10) == pytest.approx(ref[q]["ndcg_cut_10"], abs=1e-9)
        recall = trec_recall_at_k(ranking, qrels[q], 100)
        assert recall == pytest.approx(ref[q]["recall_100"], abs=1e-9)
        assert ours[q][NDCG] == pytest.approx(ref[q]["ndcg_cut_10"], abs=1e-9)
        assert ours[q][RECALL] == pytest.approx(ref[q]["recall_100"], abs=1e-9)


# --------------------------------------------------------------------------- end to end


def _write_corpus(folder: Path, docs: list[Passage], gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    half = len(docs) // 2
    for k, part in enumerate((docs[:half], docs[half:])):
        text = "".join(
            json.dumps({"docid": d.docid, "title": d.title, "text": d.text}, ensure_ascii=False)
            + "\n"
            for d in part
        )
        if gz and k == 1:
            (folder / f"docs-{k}.jsonl.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (folder / f"docs-{k}.jsonl").write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def miracl_dir(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path):
    """Real yo/de dev topics+qrels and a built corpus whose docids are the judged ones.

    Each query's first relevant passage has the query's own text (so a model ranks it
    first); three judged docids of yo are left out to exercise the missing-docid report.
    """
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(3)
    words = ["ọ̀rọ̀", "ilé", "omi", "Haus", "Wasser", "Stadt", "ìlú", "Jahr", "ọdún", "Land"]
    omitted: dict[str, set[str]] = {}
    identical: dict[str, dict[str, str]] = {}
    texts: list[str] = []
    for lang in ("yo", "de"):
        for kind in ("topics", "qrels"):
            dst = root / "miracl" / kind
            dst.mkdir(parents=True, exist_ok=True)
            name = f"{kind}.miracl-v1.0-{lang}-dev.tsv"
            shutil.copy(shared_data_dir / "miracl" / kind / name, dst / name)
        topics = read_topics(root / "miracl/topics" / f"topics.miracl-v1.0-{lang}-dev.tsv")
        qrels = read_qrels(root / "miracl/qrels" / f"qrels.miracl-v1.0-{lang}-dev.tsv")
        docs: dict[str, Passage] = {}
        identical[lang] = {}
        for qid, judged in qrels.items():
            for docid, grade in judged.items():
                if docid in docs:
                    continue
                if grade > 0 and qid not in identical[lang]:
                    identical[lang][qid] = docid
                    docs[docid] = Passage(docid, f"T {docid}", topics[qid], lang)
                else:
                    body = " ".join(rng.choice(words) for _ in range(8))
                    docs[docid] = Passage(docid, f"T {docid}", body, lang)
        for i in range(300):  # unjudged distractors
            body = " ".join(rng.choice(words) for _ in range(8))
            docs[f"x{i}"] = Passage(f"x{i}", "", body, lang)
        if lang == "yo":
            rel = sorted(identical["yo"].values())[:2]
            nonrel = next(d for j in qrels.values() for d, g in j.items() if g == 0)
            omitted["yo"] = {*rel, nonrel}
        kept = [d for k, d in docs.items() if k not in omitted.get(lang, set())]
        _write_corpus(root / "corpus" / lang, kept, gz=True)
        texts += [d.text for d in kept] + list(topics.values())
    model_dir = root / "model" / "tiny"
    make_tiny_model(model_dir.parent, texts, vocab_size=3000).save(str(model_dir))
    return root, model_dir, omitted, identical


def _read_run(path: Path) -> dict[str, list[tuple[str, float]]]:
    run: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text("utf-8").splitlines():
        qid, _, docid, rank, score, _ = line.split()
        run.setdefault(qid, []).append((docid, float(score)))
        assert int(rank) == len(run[qid])
    return run


def test_evaluate_miracl_end_to_end(tmp_path: Path, miracl_dir, capsys):
    root, model_dir, omitted, identical = miracl_dir
    out = tmp_path / "out"
    common = {
        "model": str(model_dir),
        "data_dir": root,
        "languages": "yo,de",
        "corpus": root / "corpus",
        "passage_format": "{text}",
        "options": EncodeOptions(max_seq_length=64, batch_size=256, show_progress=False),
        "work_dir": tmp_path / "work",
        "shard_size": 1000,
    }
    doc = evaluate_miracl_cli(FamilyRun.of("miracl", output=out, **common), save_run=True)
    assert doc is not None
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(doc))
    assert saved["benchmark"] == "miracl" and saved["split"] == "dev"
    assert saved["languages"] == ["yo", "de"] and saved["index"] == {"kind": "flat"}
    assert saved["model"] == str(model_dir) and saved["model_fingerprint"]
    assert saved["passage_format"] == "{text}" and "conventions" in saved
    per = saved["per_language"]
    assert per["yo"]["num_queries"] == 119 and per["de"]["num_queries"] == 305
    assert per["yo"]["qrels_docids_missing_from_corpus"] == 3
    assert per["yo"]["relevant_docids_missing_from_corpus"] == 2
    assert per["de"]["qrels_docids_missing_from_corpus"] == 0
    assert saved["qrels_docids_missing_from_corpus"] == 3
    assert "3 judged docids (2 relevant) are not in the corpus" in capsys.readouterr().err

    for lang in ("yo", "de"):
        (ml,) = load_miracl(root, lang, corpus=root / "corpus")
        run = _read_run(out / f"run.{lang}.trec")
        assert set(run) == set(ml.topics) and all(len(r) == 100 for r in run.values())
        firsts = [
            run[q][0][0] == d for q, d in identical[lang].items() if d not in omitted.get(lang, ())
        ]
        assert np.mean(firsts) > 0.95  # the passage equal to the query comes first
        # the file's metrics are the reference definitions applied to the written run
        ndcg = np.mean([ndcg_at_k([d for d, _ in run[q]], ml.qrels[q], 10) for q in run])
        rec = np.mean([trec_recall_at_k([d for d, _ in run[q]], ml.qrels[q], 100) for q in run])
        assert per[lang][NDCG] == pytest.approx(ndcg, abs=1e-6)
        assert per[lang][RECALL] == pytest.approx(rec, abs=1e-6)
        assert 0.3 < per[lang][NDCG] < 1.0
    macro = (per["yo"][NDCG] + per["de"][NDCG]) / 2
    assert saved[NDCG] == pytest.approx(macro, abs=1e-6)

    # an IVF run reuses the encoded shards and reports its recall against exact search
    ivf = evaluate_miracl_cli(
        FamilyRun.of("miracl", index=IndexSpec("ivf", nlist=8, nprobe=8), **common)
    )
    assert ivf is not None and ivf["index"] == {"kind": "ivf", "nlist": 8, "nprobe": 8}
    for lang in ("yo", "de"):
        row = ivf["per_language"][lang]
        assert row["recall_vs_exact"]["recall"] == pytest.approx(1.0)  # all cells probed
        assert row[NDCG] == pytest.approx(per[lang][NDCG], abs=1e-6)
        assert row["timing_s"]["encode"] < 2.0  # shards reused, not re-encoded


# --------------------------------------------------------------------------- bad input


def _mini(root: Path, topics: str, qrels: str | None, corpus: str | None = None) -> Path:
    (root / "miracl" / "topics").mkdir(parents=True, exist_ok=True)
    (root / "miracl" / "topics" / "topics.miracl-v1.0-sw-dev.tsv").write_text(topics)
    if qrels is not None:
        (root / "miracl" / "qrels").mkdir(parents=True, exist_ok=True)
        (root / "miracl" / "qrels" / "qrels.miracl-v1.0-sw-dev.tsv").write_text(qrels)
    if corpus is not None:
        (root / "miracl" / "corpus" / "sw").mkdir(parents=True, exist_ok=True)
        (root / "miracl" / "corpus" / "sw" / "a.jsonl").write_text(corpus)
    return root


def test_bad_input(tmp_path: Path):
    with pytest.raises(DataError, match=r"topics\.miracl-v1\.0-sw-dev\.tsv: topics file not found"):
        load_miracl(tmp_path / "none", "sw", require_corpus=False)
    root = _mini(tmp_path / "a", "1\tswali\n", None)
    with pytest.raises(DataError, match=r"qrels\.miracl-v1\.0-sw-dev\.tsv: qrels file not found"):
        load_miracl(root, "sw", require_corpus=False)
    root = _mini(tmp_path / "b", "1\tswali\n2\t  \n", "1 Q0 d1 1\n")
    with pytest.raises(
        DataError, match=r"topics\.miracl-v1\.0-sw-dev\.tsv:2: empty query for qid 2"
    ):
        load_miracl(root, "sw", require_corpus=False)
    root = _mini(tmp_path / "c", "1 swali\n", "1 Q0 d1 1\n")
    with pytest.raises(DataError, match=r":1: expected 'qid<TAB>query'"):
        load_miracl(root, "sw", require_corpus=False)
    root = _mini(tmp_path / "d", "1\tswali\n", "1 Q0 d1 1\n1 Q0 d2\n")
    with pytest.raises(
        DataError, match=r"qrels\.miracl-v1\.0-sw-dev\.tsv:2: expected 'qid Q0 docid rel'"
    ):
        load_miracl(root, "sw", require_corpus=False)
    root = _mini(tmp_path / "e", "1\tswali\n", "1 Q0 d1 yes\n")
    with pytest.raises(DataError, match=r":1: relevance 'yes' is not an integer"):
        load_miracl(root, "sw", require_corpus=False)
    with pytest.raises(ConfigError, match="no language xx"):
        load_miracl(root, "sw,xx", require_corpus=False)
    with pytest.raises(DataError, match="MIRACL corpus folder not found"):
        load_miracl(root, "sw")
    (root / "miracl" / "corpus" / "ar").mkdir(parents=True)
    with pytest.raises(DataError, match=r"corpus/sw: no MIRACL corpus folder for 'sw'"):
        load_miracl(root, "sw")

    good = '{"docid": "d1", "title": "T", "text": "maji"}\n'
    root = _mini(
        tmp_path / "f", "1\tswali\n", "1 Q0 d1 1\n", good + "\n" + '{"docid": "d2", "text": \n'
    )
    (ml,) = load_miracl(root, "sw")
    with pytest.raises(DataError, match=r"corpus/sw/a\.jsonl:3: malformed JSON"):
        list(ml.passages())
    for line, msg in [
        ('["d1"]\n', "expected a JSON object"),
        ('{"title": "T", "text": "x"}\n', "missing or empty field 'docid'"),
        ('{"docid": "d1", "title": 3, "text": "x"}\n', "field 'title' must be a string"),
        ('{"docid": "d1"}\n', "field 'text' must be a string"),
    ]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(good + line)
        with pytest.raises(DataError, match=rf"bad\.jsonl:2: {msg}"):
            list(iter_jsonl_passages([bad], "sw"))
    broken = tmp_path / "sw2" / "sw" / "x.jsonl.gz"
    broken.parent.mkdir(parents=True)
    lines = "".join(good.replace('"d1"', f'"d{i}"') for i in range(50))  # unique docids
    broken.write_bytes(gzip.compress(lines.encode())[:-20])
    with pytest.raises(DataError, match=r"x\.jsonl\.gz: unreadable after line"):
        list(iter_jsonl_passages(corpus_files(tmp_path / "sw2", "sw"), "sw"))


def test_unscored_topics_and_qrels_are_counted(tmp_path: Path, capsys):
    docs = "".join(
        json.dumps({"docid": f"d{i}", "title": "kichwa", "text": f"maji {i} ya mto"}) + "\n"
        for i in range(30)
    )
    root = _mini(
        tmp_path / "data",
        "1\tmaji 1 ya mto\n2\tmaji 2\n3\tmaji 3\n",
        "1 Q0 d1 1\n1 Q0 d9 0\n2 Q0 d2 0\n4 Q0 d4 1\n1 Q0 gone 1\n",
        docs,
    )
    model_dir = tmp_path / "m" / "tiny"
    make_tiny_model(
        model_dir.parent, ["maji ya mto kichwa"] * 5 + [str(i) for i in range(30)]
    ).save(str(model_dir))
    doc = run_miracl_sw(model_dir, root, tmp_path / "w", max_seq_length=64)
    assert doc is not None and doc["passage_format"] == DEFAULT_PASSAGE_FORMAT
    row = doc["per_language"]["sw"]
    assert row["num_queries"] == 1  # only topic 1 has a relevant judgement
    assert row["topics_without_relevant"] == 2 and row["qrels_without_topic"] == 1
    assert row["qrels_docids_missing_from_corpus"] == 1  # "gone"; d4 is judged and present
    assert row["relevant_docids_missing_from_corpus"] == 1
    assert row[RECALL] <= 0.5  # "gone" stays in the qrels: it cannot be retrieved


def test_passage_format():
    p = Passage("1", "Nairobi", "ni mji mkuu", "sw")
    assert format_passage(p) == "Nairobi ni mji mkuu"
    assert format_passage(Passage("1", "", "ni mji", "sw")) == "ni mji"  # no stray space
    assert format_passage(p, "{title}. {text}") == "Nairobi. ni mji mkuu"
    assert format_passage(p, "{text}") == "ni mji mkuu"
    for bad in ("{title}", "{text} {lang}", "{text"):
        with pytest.raises(ConfigError, match="passage format"):
            check_passage_format(bad)

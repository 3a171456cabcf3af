"""`babelir compare` with passage-retrieval benchmarks (issue 20, part 4): MIRACL entries
(with the BM25 and base rows) and XOR-Retrieve entries, planned, evaluated for every model,
tested per query and mapped to the paper's claims (MIRACL: mono, XOR-Retrieve: cross)."""

from __future__ import annotations

import csv
import gzip
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from testkit.tiny_model import make_tiny_model

from babelir.batches.strategies import StrategySpec
from babelir.compare import describe, load_config, prepare, run_compare
from babelir.compare.config import BenchmarkSpec
from babelir.core.errors import ConfigError
from babelir.data.miracl import read_qrels, read_topics
from babelir.data.parallel import from_lareqa
from babelir.evaluation.miracl import ndcg_at_k
from babelir.reporting import retrieval
from babelir.reporting.schema import EvalRecord, RunInfo

LANGS = ["en", "de", "zh"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_bytes(gzip.compress(text.encode(), mtime=0))


@pytest.fixture(scope="module")
def data(shared_data_dir: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A data dir: XQuAD-R (linked), MIRACL yo topics and qrels (real) with a synthetic
    corpus of the judged docids (a relevant passage repeats its query), XOR-Retrieve
    questions in 3 languages over 120 English passages; and a tiny model on all texts."""
    root = tmp_path_factory.mktemp("retrieval-compare")
    d = root / "data"
    d.mkdir()
    (d / "xquad-r").symlink_to(shared_data_dir / "xquad-r")
    for k in ("topics", "qrels"):
        name = f"{k}.miracl-v1.0-yo-dev.tsv"
        (d / "miracl" / k).mkdir(parents=True)
        shutil.copy(shared_data_dir / "miracl" / k / name, d / "miracl" / k / name)
    topics = read_topics(d / "miracl/topics/topics.miracl-v1.0-yo-dev.tsv")
    qrels = read_qrels(d / "miracl/qrels/qrels.miracl-v1.0-yo-dev.tsv")
    rng = random.Random(3)
    words = ["ọjà", "ìwé", "ọkọ̀", "àgbẹ̀", "ẹ̀kọ́", "ilẹ̀", "ìjọba", "ogun", "orin", "ẹja"]
    docs: dict[str, dict[str, str]] = {}
    for qid, judged in qrels.items():
        for docid, grade in judged.items():
            if docid not in docs:  # relevant: the query's words shuffled, among noise
                mine = topics[qid].split() if grade > 0 else []
                text = rng.sample(mine, len(mine)) + rng.choices(words, k=10)
                docs[docid] = {"docid": docid, "title": "", "text": " ".join(text)}
    _jsonl_gz(d / "miracl/corpus/yo/docs-0.jsonl.gz", list(docs.values()))

    vocab = [f"w{i}" for i in range(120)]
    # 200 words a passage: the 2,000 / 5,000-token budgets read the first 10 / 25 of 120
    passages = [(f"p{i}", " ".join(rng.choices(vocab, k=200)), f"T{i}") for i in range(120)]
    questions = []
    for j in range(30):  # the answer is a token of its passage only
        i = (7 * j) % 120
        words_i = passages[i][1].split()
        words_i[100] = f"answer{j}"
        passages[i] = (passages[i][0], " ".join(words_i), passages[i][2])
        lang = ("ja", "ru", "fi")[j % 3]
        questions.append(
            {"id": f"{lang}-{j}", "question": " ".join(words_i[:12]), "answers": [f"answer{j}"],
             "lang": lang}
        )  # fmt: skip
    corpus = d / "xor-retrieve" / "corpus" / "enwiki_20190201_w100.tsv"
    corpus.parent.mkdir(parents=True)
    corpus.write_text(
        "id\ttext\ttitle\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in passages), "utf-8"
    )
    (d / "xor-retrieve" / "xor_dev_retrieve_eng_span_v1_1.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in questions), "utf-8"
    )
    train = from_lareqa("xquad-r", shared_data_dir, languages=LANGS, articles="0-2")
    texts = [t for it in train.items for s in it.sides.values() for t in (s.query, s.positive)]
    texts += [r["text"] for r in docs.values()] + list(topics.values())
    texts += [p[1] for p in passages] + [q["question"] for q in questions]
    model = make_tiny_model(root / "build", texts, vocab_size=3000)
    model.save(str(root / "model"))
    return d, root / "model"


def _cfg(d: Path, model: Path | None, benchmarks: list[dict]) -> dict:
    return {
        "name": "r",
        "model": str(model) if model else None,
        "data_dir": str(d),
        "train": {"data": "xquad-r", "languages": LANGS, "articles": "1-2", "batch_size": 4,
                  "max_steps": 2, "max_seq_length": 32, "learning_rate": 1e-3},
        "evaluation": {"max_seq_length": 32, "batch_size": 32},
        "benchmarks": benchmarks,
        "permutations": 200,
        "bootstrap": 200,
    }


def _load(tmp_path: Path, cfg: dict):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(config_file=path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "xquad-r", "corpus": "/x"}, "'corpus' is a key of kind miracl"),
        ({"kind": "miracl", "articles": "0"}, "'articles' is a key of kind lareqa benchmarks"),
        ({"kind": "miracl", "name": "xquad-r"}, "name: 'xquad-r' with kind miracl"),
        ({"kind": "miracl", "split": "test"}, "MIRACL has dev and train"),
        ({"kind": "miracl", "top_k": 5}, "'top_k' is a key of kind xor-retrieve benchmarks, not"),
        ({"kind": "xor-retrieve", "corpus_limit": 0}, "greater than or equal to 1"),
        ({"kind": "bing"}, "kind"),
    ],
)
def test_benchmark_entries_are_checked_by_kind(entry, message, tmp_path):
    cfg = _cfg(tmp_path, None, [entry])
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, cfg)


def test_dry_run_plans_bm25_base_and_every_model(data, tmp_path):
    d, model = data
    cfg, _ = _load(
        tmp_path,
        _cfg(d, model, [
            {"kind": "miracl", "languages": ["yo"], "passage_format": "{text}"},
            {"kind": "xor-retrieve", "corpus_limit": 100},
        ]),
    )  # fmt: skip
    plan, facts = prepare(cfg, tmp_path / "out")
    lines = "\n".join(describe(plan, facts))
    assert "evaluate bm25" in lines and "on MIRACL (119 queries in yo, 1 corpus files)" in lines
    assert "on XOR-Retrieve (30 questions" in lines and "(first 100)" in lines
    jobs = [(j.label, j.benchmark.title()) for j in plan.eval_jobs]
    # MIRACL: bm25 + base + 3 trained; XOR-Retrieve: base + 3 trained (no BM25 row)
    assert len(jobs) == 5 + 4 and ("bm25", "XOR-Retrieve") not in jobs
    assert facts["regime"] == {"MIRACL": "zero-shot", "XOR-Retrieve": "zero-shot"}
    # the cache keys hold the files' content: another corpus, another key
    before = {j.label: j.key for j in plan.eval_jobs if j.benchmark.kind == "miracl"}
    shutil.copytree(d, tmp_path / "d2", symlinks=True)
    _jsonl_gz(tmp_path / "d2/miracl/corpus/yo/docs-0.jsonl.gz",
              [{"docid": "0#0", "title": "", "text": "other"}])  # fmt: skip
    cfg2, _ = _load(
        tmp_path, _cfg(tmp_path / "d2", model, [{"kind": "miracl", "languages": ["yo"]}])
    )
    plan2, _ = prepare(cfg2, tmp_path / "out")
    after = {j.label: j.key for j in plan2.eval_jobs}
    assert set(before) == set(after) and not set(before.values()) & set(after.values())


def test_dry_run_names_a_missing_corpus_and_a_leaked_question(data, tmp_path):
    d, model = data
    cfg, _ = _load(tmp_path, _cfg(d, model, [{"kind": "miracl", "languages": ["yo"],
                                               "corpus": str(tmp_path / "none")}]))  # fmt: skip
    with pytest.raises(ConfigError, match=r"benchmarks\[0\] \(MIRACL\): .*fetch miracl-corpus"):
        prepare(cfg, tmp_path / "out")
    # a training item whose question is a MIRACL query: refused by text
    topics = read_topics(d / "miracl/topics/topics.miracl-v1.0-yo-dev.tsv")
    leak = tmp_path / "leak.jsonl"
    rows = [
        {"id": f"i{i}", "lang": lang, "query": q, "positive": f"a {i} {lang}"}
        for i, q in enumerate([next(iter(topics.values())), *(f"q{k}" for k in range(11))])
        for lang in ("en", "de")
    ]
    leak.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    raw = _cfg(d, model, [{"kind": "miracl", "languages": ["yo"]}])
    raw["train"].update(data=str(leak))
    for k in ("languages", "articles"):
        raw["train"].pop(k)
    cfg, _ = _load(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"overlaps .*MIRACL"):
        prepare(cfg, tmp_path / "out")


def test_compare_reports_miracl_and_xor_retrieve(data, tmp_path, monkeypatch):
    d, model = data
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    cfg, raw = _load(
        tmp_path,
        _cfg(d, model, [
            {"name": "xquad-r", "languages": LANGS, "articles": "0"},
            {"kind": "miracl", "languages": ["yo"], "passage_format": "{text}"},
            {"kind": "xor-retrieve", "bm25": True},
        ]),
    )  # fmt: skip
    out = tmp_path / "cmp"
    report = run_compare(cfg, out, show_progress=False, raw_config=raw)
    text = report.read_text()
    assert "## mAP" in text and "## Passage retrieval (MIRACL, XOR-Retrieve)" in text
    assert "### MIRACL" in text and "### XOR-Retrieve" in text
    for row in ("| bm25 |", "| base |", "| x-x-mono |", "| x-y |", "| hybrid |"):
        assert row in text.split("### MIRACL")[1]
    assert "| bm25 |" not in text.split("## Passage retrieval")[0]  # no empty LAReQA row
    res = json.loads((out / "results.json").read_text())
    sec = res["retrieval"]
    assert set(sec["cells"]) == {"MIRACL", "XOR-Retrieve"}
    assert set(sec["cells"]["MIRACL"]) == {"bm25", "base", "x-x-mono", "x-y", "hybrid"}
    # XOR-Retrieve's BM25 row: untranslated questions, so only shared tokens match
    assert "bm25" in sec["cells"]["XOR-Retrieve"]
    # the cells are the engine's numbers: the BM25 macro nDCG@10 is the mean of its
    # per-query values, recomputed here from its saved arrays
    ev = {(e["label"], e["benchmark"]): e for e in res["evaluations"]}
    bm = ev[("bm25", "MIRACL")]
    z = np.load(Path(bm["folder"]) / "per_query.npz")
    assert sec["cells"]["MIRACL"]["bm25"]["nDCG@10"]["mean"] == pytest.approx(
        float(np.mean(z["ndcg@10"])), abs=1e-6
    )
    assert len(z["query_ids"]) == 119 and str(z["query_ids"][0]).startswith("yo/")
    # a relevant passage holds its query's words: BM25 finds it (nDCG well above 0)
    assert bm["metrics"]["ndcg@10"] > 0.5
    # the rows are each model's own numbers, not copies of one another
    miracl = sec["cells"]["MIRACL"]
    assert len({round(c["nDCG@10"]["mean"], 6) for c in miracl.values()}) > 2
    xor = sec["cells"]["XOR-Retrieve"]
    assert all(0 < c["R@2kt"]["mean"] <= c["R@5kt"]["mean"] <= 1 for c in xor.values())
    # paired tests: hybrid against every other row, on every measure of each family
    pairs = {(t["benchmark"], t["baseline"], t["measure"]) for t in sec["paired_tests"]}
    assert ("MIRACL", "bm25", "nDCG@10") in pairs and ("MIRACL", "base", "R@100") in pairs
    assert ("XOR-Retrieve", "x-y", "R@5kt") in pairs and ("XOR-Retrieve", "x-y", "R@2kt") in pairs
    assert all(0 < t["p_holm"] <= 1 for t in sec["paired_tests"])
    # claims: MIRACL maps to claim 1 (vs x-x-mono), XOR-Retrieve to claim 2 (vs x-y)
    claims = {(c["benchmark"], c["claim"]): c for c in sec["claims"]}
    assert claims[("MIRACL", "1")]["comparisons"][0]["vs"] == "x-x-mono"
    assert claims[("XOR-Retrieve", "2")]["comparisons"][0]["vs"] == "x-y"
    assert claims[("MIRACL", "1")]["caveat"] == "1 seed: test-set noise only"
    assert any("MIRACL, claim 1" in line for line in res["verdict"])
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["setting"] for r in rows if r["benchmark"] == "XOR-Retrieve"} == {"R@2kt", "R@5kt"}
    # LAReQA rows and tests are untouched by the retrieval entries
    assert {t["benchmark"] for t in res["paired_tests"]} == {"xquad-r"}

    again = run_compare(cfg, out, show_progress=False)
    assert again == report
    reused = json.loads((out / "results.json").read_text())["reused"]
    assert reused == {"train": 3, "eval": 4 + 5 + 5}
    # a truncated cached retrieval evaluation is recomputed, not fatal
    base = Path(ev[("base", "MIRACL")]["folder"])
    (base / "per_query.npz").write_bytes(b"PK\x03")
    run_compare(cfg, out, show_progress=False)
    assert json.loads((out / "results.json").read_text())["reused"]["eval"] == 13


def _rec(label: str, seed: int | None, values: list[float], ids: list[str]) -> EvalRecord:
    doc = {"benchmark": "miracl", "ndcg@10": float(np.mean(values)), "recall@100": 1.0,
           "per_language": {"yo": {"ndcg@10": float(np.mean(values)), "recall@100": 1.0}}}
    pq = {"query_ids": np.asarray(ids), "langs": np.asarray(["yo"] * len(ids)),
          "ndcg@10": np.asarray(values), "recall@100": np.ones(len(ids))}  # fmt: skip
    return EvalRecord(label, seed, "M", doc, pq)


def test_retrieval_tests_and_claims_by_hand():
    ids = ["q1", "q2", "q3", "q4"]
    recs = [
        _rec("hybrid", 0, [1.0, 0.5, 0.5, 0.0], ids),
        _rec("hybrid", 1, [1.0, 0.7, 0.5, 0.2], ids),
        _rec("x-x-mono", 0, [0.5, 0.5, 0.5, 0.0], ids),
        _rec("x-x-mono", 1, [0.5, 0.5, 0.7, 0.0], ids),
        _rec("base", None, [0.0, 0.0, 0.0, 0.0], ids),
    ]
    runs = [RunInfo(StrategySpec(s), seed) for s in ("hybrid", "x-x-mono") for seed in (0, 1)]
    sec = retrieval.analyse(recs, runs, ["hybrid"], permutations=500, bootstrap=500)
    cell = sec["cells"]["M"]["hybrid"]["nDCG@10"]
    assert cell["values"] == pytest.approx([0.5, 0.6]) and cell["mean"] == pytest.approx(0.55)
    t = next(
        t for t in sec["paired_tests"] if t["baseline"] == "x-x-mono" and t["measure"] == "nDCG@10"
    )
    # per-query means over seeds: hybrid (1, .6, .5, .1), x-x-mono (.5, .5, .6, 0)
    assert t["mean_difference"] == pytest.approx((0.5 + 0.1 - 0.1 + 0.1) / 4)
    assert t["seed_mean_difference"] == pytest.approx(((0.5 - 0.375) + (0.6 - 0.425)) / 2)
    (claim,) = sec["claims"]
    assert claim["claim"] == "1" and claim["comparisons"][0]["basis"] == "seeds"
    # hybrid - x-x-mono per seed: .125 and .175, 95% t-interval (1 df) ~ [-.168, +.468]:
    # neither above -0.01 (supported) nor below it (contradicted)
    assert claim["outcome"] == "not resolved at this budget"
    with pytest.raises(ValueError, match="scored on other queries"):
        retrieval.tests([recs[0], _rec("x-y", 0, [0, 0, 0, 0], ["q1", "q2", "q3", "q9"])],
                        ["hybrid"], permutations=100, bootstrap=100)  # fmt: skip


def test_title_and_defaults():
    assert BenchmarkSpec(kind="miracl").title() == "MIRACL"
    assert BenchmarkSpec(kind="xor-retrieve", label="X").title() == "X"
    assert BenchmarkSpec(name="xquad-r").is_retrieval is False
    q = ndcg_at_k(["a", "b"], {"b": 1})
    assert q == pytest.approx(1 / np.log2(3))

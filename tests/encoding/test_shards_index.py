"""Sharded encoding (kill + resume, torchrun), FAISS indexes, docstore and the index/search CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ConfigError, DataError
from babelir.data.miracl import Passage
from babelir.encoding.options import EncodeOptions
from babelir.index import (
    Docstore,
    IndexSpec,
    SearchIndex,
    build_faiss_index,
    exact_search,
    load_faiss,
    overlap_at_k,
    recall_vs_exact,
    save_faiss,
)
from babelir.index.shards import ShardSet, encode_shards
from babelir.models.loading import load_model

N_PASSAGES = 50_000
SHARD = 5_000
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "de", "pa", "zu", "fe"]


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct short texts over a 400-word pseudo-vocabulary (fast to encode)."""
    rng = random.Random(seed)
    words = sorted({"".join(rng.choice(_SYLLABLES) for _ in range(3)) for _ in range(3000)})[:400]
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen.setdefault(" ".join(rng.choice(words) for _ in range(rng.randint(4, 8))), None)
    return list(seen)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return synthetic_texts(N_PASSAGES)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    make_tiny_model(folder.parent, texts[:3000]).save(str(folder))
    return folder


@pytest.fixture(scope="module")
def model(model_dir: Path):
    return load_model(model_dir, device="cpu")


QUIET = EncodeOptions(show_progress=False)
B512 = EncodeOptions(batch_size=512, show_progress=False)


def records(texts: list[str]) -> list[tuple[str, str]]:
    return [(f"p{i}", t) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, model, texts: list[str]) -> ShardSet:
    folder = tmp_path_factory.mktemp("full") / "shards"
    rep = encode_shards(
        model, records(texts), folder, shard_size=SHARD, options=B512
    )
    assert rep.complete and rep.shards_encoded == N_PASSAGES // SHARD
    return ShardSet.open(folder)


def _encode_child(model, texts: list[str], folder: Path) -> None:
    import torch

    torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork()
    encode_shards(
        model, records(texts), folder, shard_size=SHARD, options=B512
    )


def test_killed_encoding_resumes_to_the_same_index(
    tmp_path: Path, model, texts: list[str], full_run: ShardSet
):
    folder = tmp_path / "shards"
    child = multiprocessing.get_context("fork").Process(
        target=_encode_child, args=(model, texts, folder)
    )
    child.start()
    deadline = time.monotonic() + 120
    while len(list(folder.glob("shard-*.npy"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)  # no cleanup, as in a crash or an OOM kill
    child.join()
    done = len(list(folder.glob("shard-*.npy")))
    assert 3 <= done < N_PASSAGES // SHARD, "the child must die mid-way"
    with pytest.raises(DataError, match="incomplete"):
        ShardSet.open(folder)

    rep = encode_shards(
        model, records(texts), folder, shard_size=SHARD, options=B512
    )
    assert rep.complete and rep.shards_skipped == done
    assert rep.shards_encoded == N_PASSAGES // SHARD - done
    resumed = ShardSet.open(folder)
    assert resumed.rows == full_run.rows and resumed.num_rows == N_PASSAGES
    assert list(resumed.iter_ids()) == list(full_run.iter_ids())
    np.testing.assert_allclose(resumed.load_all(), full_run.load_all(), rtol=0, atol=1e-6)
    _, queries = full_run.sample(64, seed=3)
    assert np.array_equal(
        exact_search(resumed, queries, 20)[1], exact_search(full_run, queries, 20)[1]
    )
    spec = IndexSpec("ivf", nlist=32, nprobe=4)
    a, b = build_faiss_index(resumed, spec), build_faiss_index(full_run, spec)
    assert np.array_equal(a.search(queries, 20)[1], b.search(queries, 20)[1])
    # a third run finds the manifest complete and does not even read the corpus
    again = encode_shards(model, iter(()), folder, shard_size=SHARD, options=QUIET)
    assert again.complete and again.shards_encoded == 0


def test_resume_refuses_other_settings_or_a_changed_corpus(tmp_path: Path, model, texts):
    folder = tmp_path / "s"
    small = records(texts[:250])
    rep = encode_shards(model, small, folder, shard_size=100, options=QUIET)
    assert rep.rows_total == 250 and ShardSet.open(folder).rows == [100, 100, 50]
    with pytest.raises(ConfigError, match="prefix"):
        encode_shards(model, small, folder, shard_size=100, prefix="passage: ", options=QUIET)
    (folder / "manifest.json").unlink()  # as if the first run had crashed before finishing
    (folder / "shard-00002.npy").unlink()
    changed = list(small)
    changed[150] = ("other", small[150][1])
    with pytest.raises(DataError, match="shard 1"):
        encode_shards(model, changed, folder, shard_size=100, options=QUIET)
    with pytest.raises(DataError, match="empty"):
        encode_shards(model, [], tmp_path / "empty", options=QUIET)


def test_exact_search_matches_brute_force(full_run: ShardSet):
    all_vecs = full_run.load_all()
    rows, queries = full_run.sample(50, seed=5)
    scores, found = exact_search(full_run, queries, 10)
    brute = np.argsort(-(queries @ all_vecs.T), axis=1, kind="stable")[:, :10]
    assert np.array_equal(found, brute)
    assert np.array_equal(found[:, 0], rows)  # each sampled vector finds itself first
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    ids = full_run.ids_for(found[:, 0])
    assert ids == [f"p{r}" for r in rows]


@pytest.mark.parametrize(
    "spec",
    [
        IndexSpec("ivf", nlist=64, nprobe=8),
        IndexSpec("hnsw", hnsw_m=8, ef_construction=40, ef_search=64),
        IndexSpec("IVF64,SQ8", nprobe=8),
    ],
    ids=["ivf", "hnsw", "factory"],
)
def test_approximate_indexes_report_recall_and_round_trip(tmp_path: Path, full_run: ShardSet, spec):
    index = build_faiss_index(full_run, spec)
    assert index.ntotal == N_PASSAGES
    rep = recall_vs_exact(index, full_run, k=100, num_queries=100)
    assert 0.5 < rep["recall"] <= 1.0 and rep["num_queries"] == 100
    save_faiss(index, tmp_path / "x.faiss")
    again = load_faiss(tmp_path / "x.faiss", spec)
    _, q = full_run.sample(20, seed=9)
    assert np.array_equal(index.search(q, 10)[1], again.search(q, 10)[1])


def test_overlap_and_spec_defaults():
    exact = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    approx = np.array([[4, 3, 9, 8], [6, 5, 7, -1]])
    assert overlap_at_k(approx, exact, 4) == pytest.approx((0.5 + 1.0) / 2)
    spec = IndexSpec("ivf").resolved(1_000_000)
    assert spec.nlist == 4000 and spec.nprobe == 250
    assert IndexSpec("ivf").resolved(100).nlist == 2  # >= 39 training points per cell
    with pytest.raises(ConfigError):
        IndexSpec("ivf", nlist=0)
    with pytest.raises(DataError, match="not a readable"):
        load_faiss(Path(__file__))


def test_docstore_round_trip(tmp_path: Path):
    docs = [
        Passage(f"d{i}", f"T{i}" if i % 2 else "", f"text {i}", "de" if i < 3 else "en")
        for i in range(7)
    ]
    counts = Docstore.build(tmp_path / "d.sqlite", docs, batch=2)
    assert counts == {"de": 3, "en": 4}
    store = Docstore(tmp_path / "d.sqlite")
    assert len(store) == 7
    assert store.get([6, 0, -1, 99]) == [docs[6], docs[0], None, None]
    store.close()


# --------------------------------------------------------------------------- CLI


def _miracl_corpus(root: Path, texts: list[str]) -> dict[str, list[Passage]]:
    out: dict[str, list[Passage]] = {}
    for li, lang in enumerate(("de", "yo")):
        part = texts[li * 300 : (li + 1) * 300]
        docs = [Passage(f"{i}#0", f"title {lang} {i}", t, lang) for i, t in enumerate(part)]
        (root / lang).mkdir(parents=True)
        for half in (0, 1):
            rows = docs[half * 150 : (half + 1) * 150]
            (root / lang / f"docs-{half}.jsonl").write_text(
                "".join(
                    json.dumps({"docid": d.docid, "title": d.title, "text": d.text}) + "\n"
                    for d in rows
                )
            )
        out[lang] = docs
    return out


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    import babelir.cli.search  # noqa: F401  (registers the commands)
    from babelir.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out, cap.err


def test_cli_index_and_search(
    tmp_path: Path, model_dir: Path, texts: list[str], capsys, monkeypatch
):
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    docs = _miracl_corpus(tmp_path / "corpus", texts)
    out = tmp_path / "idx"
    base = [
        "index",
        str(out),
        "--corpus",
        str(tmp_path / "corpus"),
        "--model",
        str(model_dir),
        "-q",
    ]
    code, _, err = _cli([*base, "--passage-format", "{text}", "--shard-size", "128"], capsys)
    assert code == 0, err
    assert "indexed 600 passages (de 300, yo 300)" in err
    meta = json.loads((out / "index.json").read_text())
    assert meta["num_rows"] == 600 and meta["index"] == {"kind": "flat"}
    assert meta["passage_format"] == "{text}" and meta["model"] == str(model_dir.resolve())

    query = docs["yo"][17].text  # identical text => identical embedding => rank 1
    code, stdout, err = _cli(
        ["search", str(out), query, docs["de"][5].text, "--json", "-k", "3"], capsys
    )
    assert code == 0, err
    res = json.loads(stdout)
    top = res[0]["hits"][0]
    assert (top["docid"], top["lang"], top["rank"]) == ("17#0", "yo", 1)
    assert top["title"] == "title yo 17" and top["text"] == query
    assert top["score"] == pytest.approx(1.0, abs=1e-5)
    assert res[1]["hits"][0]["docid"] == "5#0" and len(res[1]["hits"]) == 3

    code, stdout, _ = _cli(["search", str(out), query], capsys)
    assert code == 0 and "17#0" in stdout and "yo" in stdout

    # an existing index is not clobbered; --overwrite rebuilds it from the same shards
    code, _, err = _cli([*base, "--passage-format", "{text}", "--shard-size", "128"], capsys)
    assert code == 2 and "--overwrite" in err and "Traceback" not in err
    code, _, err = _cli(
        [
            *base,
            "--passage-format",
            "{text}",
            "--shard-size",
            "128",
            "--overwrite",
            "--index",
            "hnsw",
        ],
        capsys,
    )
    assert code == 0, err
    assert "5 of 5 shards reused" in err and "recall@100 vs exact" in err
    code, stdout, err = _cli(["search", str(out), query, "--json", "--ef-search", "200"], capsys)
    assert json.loads(stdout)[0]["hits"][0]["docid"] == "17#0"

    # user errors: one line, exit 2, no traceback
    for args, msg in [
        (["search", str(out), "  "], "empty"),
        (["search", str(tmp_path / "nope"), "q"], "not an index folder"),
        (["index", str(tmp_path / "x"), "--corpus", str(tmp_path / "missing")], "not a known name"),
        ([*base[:4], "--passage-format", "{body}"], "passage format"),
    ]:
        code, _, err = _cli(args, capsys)
        assert code == 2 and msg in err and "Traceback" not in err, (args, err)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"\xff\xfe not utf-8\n", r"bad\.jsonl:2: not UTF-8 text"),
        (b'{"docid": "2", "text": \n', r"bad\.jsonl:2: malformed JSON"),
    ],
    ids=["not-utf8", "malformed"],
)
def test_cli_index_bad_jsonl_leaves_nothing(
    tmp_path: Path, model_dir: Path, capsys, monkeypatch, bad: bytes, message: str
):
    """A bad line 2 is named as line 2 and leaves no manifest (issue 13)."""
    import re

    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    good = [json.dumps({"docid": str(i), "text": f"kalo {i}"}).encode() + b"\n" for i in (1, 3)]
    corpus = tmp_path / "bad.jsonl"
    corpus.write_bytes(good[0] + bad + good[1])
    args = ["--corpus", str(corpus), "--model", str(model_dir), "-q"]
    code, _, err = _cli(["index", str(tmp_path / "new"), *args], capsys)
    assert code == 2 and re.search(message, err) and "line 0" not in err, err
    assert not (tmp_path / "new").exists()  # created by this run: removed again
    (tmp_path / "mine").mkdir()  # the user's folder stays, but holds nothing of the run
    code, _, err = _cli(["index", str(tmp_path / "mine"), *args, "--shard-size", "1"], capsys)
    assert code == 2 and re.search(message, err), err
    assert list((tmp_path / "mine").rglob("*")) == []


# --------------------------------------------------------------------------- torchrun

_WORKER = """
import sys
import babelir.cli.search  # noqa: F401
from babelir.cli.main import main
main(sys.argv[1:])
"""


def test_torchrun_two_processes_equal_one(tmp_path: Path, model, model_dir: Path, texts: list[str]):
    """`torchrun --nproc_per_node 2 babelir index` (gloo, CPU) == one process."""
    part = texts[:6000]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"docid": str(i), "text": t, "lang": "en" if i % 3 else "de"}) + "\n"
            for i, t in enumerate(part)
        )
    )
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    out = tmp_path / "dist"
    env = {**os.environ, "BABELIR_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(worker), "index", str(out), "--corpus", str(corpus), "--model", str(model_dir),
        "--shard-size", "1000", "--batch-size", "256", "--passage-format", "{text}", "-q",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "encoded 3000 now" in proc.stderr  # rank 0 did half of the 6 shards

    single = tmp_path / "single"
    rep = encode_shards(
        model,
        ((f"{'en' if i % 3 else 'de'}:{i}", t) for i, t in enumerate(part)),
        single,
        shard_size=1000,
        options=EncodeOptions(batch_size=256, show_progress=False),
    )
    assert rep.complete and rep.shards_encoded == 6
    dist_shards, one = ShardSet.open(out / "shards"), ShardSet.open(single)
    assert dist_shards.rows == one.rows == [1000] * 6
    assert list(dist_shards.iter_ids()) == list(one.iter_ids())
    np.testing.assert_allclose(dist_shards.load_all(), one.load_all(), rtol=0, atol=1e-6)
    idx = SearchIndex(out)
    assert idx.meta["languages"] == {"de": 2000, "en": 4000} and len(idx.docstore) == 6000
    hits = idx.search_texts(model, [part[42]], 1)[0]
    assert (hits[0].docid, hits[0].lang) == ("42", "de")
    idx.close()

"""MIRACL corpus fetch (from a hub-like mirror, resumed) and the BM25 baseline.

The hub cannot be reached from here: every fetch reads a mirror built in the test (a
folder, or that folder served over HTTP from 127.0.0.1 with Range support), and a guard
fails any test that would open another address.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import math
import random
import shutil
import threading
import unicodedata
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from testkit.cli import call
from testkit.network import local_server, offline, send_range
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ConfigError, DataError, NetworkError
from babelir.data.fetch import LOCAL_SUMS, fetch_miracl_corpus, verify_miracl_corpus
from babelir.data.miracl import corpus_files, iter_jsonl_passages, load_miracl, read_topics
from babelir.data.registry import MIRACL_CORPUS_SHARDS, MIRACL_CORPUS_URL, MIRACL_LANGUAGES
from babelir.evaluation.bm25 import BM25Index, tokenize
from babelir.evaluation.miracl import NDCG, RECALL, ndcg_at_k, trec_recall_at_k

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch)


# --------------------------------------------------------------------------- mirror


def _docs(lang: str, n: int, start: int = 0, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    words = ["omi", "ilé", "ọ̀rọ̀", "maji", "mto", "pani", "ghar", "nadi", "ìlú", "kitabu"]
    return [
        {
            "docid": f"{i}#0",
            "title": f"T{i}",
            "text": " ".join(rng.choice(words) for _ in range(30)) + f" {lang}{i}",
        }
        for i in range(start, start + n)
    ]


def _write_shard(path: Path, rows: list[dict[str, str]]) -> bytes:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    data = gzip.compress(text.encode(), mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _mirror(root: Path, shards: dict[str, list[list[dict[str, str]]]]) -> dict[str, bytes]:
    """A folder laid out like the hub; returns ``{"<lang>/docs-<n>.jsonl.gz": bytes}``."""
    out = {}
    for lang, parts in shards.items():
        for n, rows in enumerate(parts):
            data = _write_shard(root / f"miracl-corpus-v1.0-{lang}" / f"docs-{n}.jsonl.gz", rows)
            out[f"{lang}/docs-{n}.jsonl.gz"] = data
    return out


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, dict[str, bytes], dict[str, list[dict[str, str]]]]:
    """yo (1 shard, as on the hub) and hi (2 shards, as on the hub), ~100-200 KB each."""
    assert MIRACL_CORPUS_SHARDS["yo"] == 1 and MIRACL_CORPUS_SHARDS["hi"] == 2
    rows = {"yo": _docs("yo", 2000, seed=1), "hi": _docs("hi", 3000, seed=2)}
    shards = {"yo": [rows["yo"]], "hi": [rows["hi"][:1500], rows["hi"][1500:]]}
    return tmp_path / "mirror", _mirror(tmp_path / "mirror", shards), rows


@contextlib.contextmanager
def serve(root: Path, cut_after: dict[str, int] | None = None) -> Iterator[tuple[str, list]]:
    """Serve ``root`` with HTTP Range support; ``cut_after[path]`` bytes into that file the
    connection drops once (an interrupted download). Yields (base URL, requests seen)."""
    seen: list[tuple[str, str | None]] = []
    cuts = dict(cut_after or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            seen.append((self.path, rng))
            f = root / urllib.parse.unquote(self.path.lstrip("/"))
            if not f.is_file():
                self.send_error(404)
                return
            data = f.read_bytes()
            body = send_range(self, data)
            start = len(data) - len(body)
            if not body:
                return
            if self.path in cuts:
                body = body[: cuts.pop(self.path) - start]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    with local_server(Handler) as url:
        yield url, seen


def _sums(folder: Path) -> dict[str, str]:
    pairs = (line.split() for line in (folder / LOCAL_SUMS).read_text().splitlines())
    return {name: h for h, name in pairs}


# --------------------------------------------------------------------------- fetch


def test_registry_table_and_url():
    assert set(MIRACL_CORPUS_SHARDS) == set(MIRACL_LANGUAGES)
    assert MIRACL_CORPUS_SHARDS["en"] == 66 and sum(MIRACL_CORPUS_SHARDS.values()) == 222
    assert MIRACL_CORPUS_URL.format(lang="sw", shard=0) == (
        "https://huggingface.co/datasets/miracl/miracl-corpus/resolve/main/"
        "miracl-corpus-v1.0-sw/docs-0.jsonl.gz"
    )


def test_fetch_from_folder_mirror_and_read_back(tmp_path: Path, mirror, monkeypatch):
    src, data, rows = mirror
    paths = fetch_miracl_corpus("yo,hi", tmp_path / "d", mirror=str(src), progress=False)
    corpus = tmp_path / "d" / "miracl" / "corpus"
    assert paths == [corpus / "yo/docs-0.jsonl.gz", corpus / "hi/docs-0.jsonl.gz",
                     corpus / "hi/docs-1.jsonl.gz"]  # fmt: skip
    for key, blob in data.items():
        assert (corpus / key).read_bytes() == blob
    for lang in ("yo", "hi"):
        expected = {
            k.split("/")[1]: hashlib.sha256(v).hexdigest()
            for k, v in data.items()
            if k.startswith(f"{lang}/")
        }
        assert _sums(corpus / lang) == expected
        got = list(iter_jsonl_passages(corpus_files(corpus, lang), lang))
        assert [(p.docid, p.title, p.text) for p in got] == [
            (r["docid"], r["title"], r["text"]) for r in rows[lang]
        ]
        assert all(p.lang == lang for p in got)
    assert not [p for p in corpus.rglob("*") if p.name.endswith(".part")]

    # a second fetch keeps complete shards: nothing is read from the mirror
    shutil.rmtree(src)
    assert fetch_miracl_corpus(["hi"], tmp_path / "d", mirror=str(src), progress=False)
    # --force fetches again, and fails naming the missing mirror file
    with pytest.raises(NetworkError, match=r"miracl-corpus-v1\.0-hi/docs-0\.jsonl\.gz"):
        fetch_miracl_corpus("hi", tmp_path / "d", mirror=str(src), force=True, progress=False)


def test_verify_checks_fetched_shards_by_their_recorded_hashes(tmp_path: Path, mirror, capsys):
    src, _, _ = mirror
    fetch_miracl_corpus("yo,hi", tmp_path / "d", mirror=str(src), progress=False)
    corpus = tmp_path / "d" / "miracl" / "corpus"
    hand = corpus / "sw"  # laid out by hand: no SHA256SUMS.local, listed unverified
    _write_shard(hand / "mine.jsonl.gz", _docs("sw", 3))
    report = verify_miracl_corpus(tmp_path / "d")
    assert {f.relpath: f.status for f in report.files} == {
        "miracl/corpus/hi/docs-0.jsonl.gz": "ok",
        "miracl/corpus/hi/docs-1.jsonl.gz": "ok",
        "miracl/corpus/sw/mine.jsonl.gz": "unverified",
        "miracl/corpus/yo/docs-0.jsonl.gz": "ok",
    }
    verify = ("data", "verify", "miracl-corpus", "--data-dir", str(tmp_path / "d"))
    code, out, _ = call(capsys, *verify)
    assert code == 0 and "3 ok, 0 missing, 0 mismatched, 1 unverified" in " ".join(out.split())
    # one flipped byte, one deleted shard: both named, exit 1
    blob = bytearray((corpus / "hi/docs-1.jsonl.gz").read_bytes())
    blob[100] ^= 1
    (corpus / "hi/docs-1.jsonl.gz").write_bytes(bytes(blob))
    (corpus / "yo/docs-0.jsonl.gz").unlink()
    code, out, err = call(capsys, *verify)
    out = (out + err).replace("\n", "")  # rich wraps long paths; file lines go to stderr
    assert code == 1
    assert "mismatch:" in out and "hi/docs-1.jsonl.gz" in out
    assert "missing:" in out and "yo/docs-0.jsonl.gz" in out
    assert verify_miracl_corpus(tmp_path / "empty").absent == ("miracl-corpus",)


def test_interrupted_http_fetch_resumes_with_range(tmp_path: Path, mirror):
    src, data, _ = mirror
    path = "/miracl-corpus-v1.0-hi/docs-1.jsonl.gz"
    cut = len(data["hi/docs-1.jsonl.gz"]) // 3
    data_dir = tmp_path / "d"
    corpus = data_dir / "miracl" / "corpus"
    with serve(src, cut_after={path: cut}) as (base, seen):
        with pytest.raises(NetworkError, match=r"docs-1\.jsonl\.gz .*rerun"):
            fetch_miracl_corpus("hi", data_dir, mirror=base, progress=False)
        part = corpus / "hi" / "docs-1.jsonl.gz.part"
        assert part.stat().st_size == cut  # the bytes received are kept
        assert (corpus / "hi/docs-0.jsonl.gz").read_bytes() == data["hi/docs-0.jsonl.gz"]
        assert not (corpus / "hi/docs-1.jsonl.gz").exists()
        # an evaluation refuses the half-fetched folder instead of scoring half a corpus
        with pytest.raises(DataError, match=r"docs-1\.jsonl\.gz\.part: an interrupted corpus"):
            corpus_files(corpus, "hi")
        seen.clear()
        fetch_miracl_corpus("hi", data_dir, mirror=base, progress=False)
    assert seen == [(path, f"bytes={cut}-")]  # only the missing bytes, only that shard
    assert (corpus / "hi/docs-1.jsonl.gz").read_bytes() == data["hi/docs-1.jsonl.gz"]
    assert not part.exists()
    assert (
        _sums(corpus / "hi")["docs-1.jsonl.gz"]
        == hashlib.sha256(data["hi/docs-1.jsonl.gz"]).hexdigest()
    )
    assert len(list(iter_jsonl_passages(corpus_files(corpus, "hi"), "hi"))) == 3000


def test_folder_mirror_resume_and_stale_part(tmp_path: Path, mirror):
    src, data, _ = mirror
    blob = data["yo/docs-0.jsonl.gz"]
    folder = tmp_path / "d" / "miracl" / "corpus" / "yo"
    folder.mkdir(parents=True)
    part = folder / "docs-0.jsonl.gz.part"
    part.write_bytes(blob[:1000])  # a good prefix: continued from byte 1000
    fetch_miracl_corpus("yo", tmp_path / "d", mirror=str(src), progress=False)
    assert (folder / "docs-0.jsonl.gz").read_bytes() == blob and not part.exists()

    (folder / "docs-0.jsonl.gz").unlink()
    part.write_bytes(b"\x1f\x8b" + b"x" * 998)  # not a prefix of the shard: caught, deleted
    with pytest.raises(NetworkError, match=r"not a complete gzip file .*deleted docs-0"):
        fetch_miracl_corpus("yo", tmp_path / "d", mirror=str(src), progress=False)
    assert not part.exists() and not (folder / "docs-0.jsonl.gz").exists()
    fetch_miracl_corpus("yo", tmp_path / "d", mirror=str(src), progress=False)
    assert (folder / "docs-0.jsonl.gz").read_bytes() == blob


def test_server_without_range_support_restarts_the_shard(tmp_path: Path, mirror):
    """A server that ignores Range answers 200 with the whole file: the .part restarts."""
    src, data, _ = mirror
    blob = data["yo/docs-0.jsonl.gz"]
    folder = tmp_path / "d" / "miracl" / "corpus" / "yo"
    folder.mkdir(parents=True)
    (folder / "docs-0.jsonl.gz.part").write_bytes(blob[:500])

    class Plain(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(src), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        fetch_miracl_corpus("yo", tmp_path / "d", mirror=base, progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert (folder / "docs-0.jsonl.gz").read_bytes() == blob  # not the prefix twice


def test_missing_shard_and_language_errors(tmp_path: Path, mirror, capsys):
    src, _, _ = mirror
    (src / "miracl-corpus-v1.0-hi" / "docs-1.jsonl.gz").unlink()
    with pytest.raises(NetworkError, match=r"miracl-corpus-v1\.0-hi/docs-1\.jsonl\.gz"):
        fetch_miracl_corpus("hi", tmp_path / "d", mirror=str(src), progress=False)
    corpus = tmp_path / "d" / "miracl" / "corpus"
    with pytest.raises(DataError, match=r"hi: 1 of 2 fetched shards missing \(docs-1"):
        corpus_files(corpus, "hi")

    with pytest.raises(ConfigError, match="MIRACL has no language xx, zz"):
        fetch_miracl_corpus("yo,xx,zz", tmp_path / "d", mirror=str(src))
    with pytest.raises(ConfigError, match="miracl-corpus needs --languages"):
        fetch_miracl_corpus(None, tmp_path / "d", mirror=str(src))
    for args, text in [
        (["--languages", "yo,klingon"], "MIRACL has no language klingon"),
        ([], "needs --languages"),
    ]:
        code, _, err = call(
            capsys, "data", "fetch", "miracl-corpus", "--mirror", str(src),
            "--data-dir", str(tmp_path / "d"), *args,
        )  # fmt: skip
        assert code == 2 and text in err and len(err.strip().splitlines()) == 1, err
    code, _, err = call(capsys, "data", "fetch", "xquad", "--languages", "de")
    assert code == 2 and "--languages is for miracl-corpus only" in err


# --------------------------------------------------------------------------- BM25


def test_tokenize_is_unicode_aware():
    nfd = unicodedata.normalize("NFD", "Ọ̀rọ̀ ilé")
    assert tokenize(nfd, "yo") == tokenize("Ọ̀rọ̀ ilé", "yo") == ["ọ̀rọ̀", "ilé"]
    assert tokenize("हिन्दी भाषा", "hi") == ["हिन्दी", "भाषा"]  # vowel signs stay inside
    assert tokenize("北京大学 GPU", "zh") == ["北京", "京大", "大学", "gpu"]
    assert tokenize("ภาษาไทย", "th") == ["ภา", "าษ", "ษา", "าไ", "ไท", "ทย"]
    assert tokenize("猫", "ja") == ["猫"]
    assert tokenize("The cat and THE hat", "en") == ["cat", "hat"]  # bm25s stopwords
    assert tokenize("The cat", "sw") == ["the", "cat"]  # no stopword list for sw
    assert tokenize("Straße daß", "de") == ["strasse"]  # casefold, daß is a stopword
    assert tokenize("ＡＢＣ１２３", "en") == ["abc123"]  # NFKC


def _lucene_bm25(query: list[str], docs: list[list[str]], k1=0.9, b=0.4) -> list[float]:
    n = len(docs)
    avgdl = sum(map(len, docs)) / n
    out = []
    for d in docs:
        s = 0.0
        for t in query:
            df = sum(t in x for x in docs)
            tf = d.count(t)
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                s += idf * tf / (tf + k1 * (1 - b + b * len(d) / avgdl))
        out.append(s)
    return out


def test_bm25_ranking_by_hand():
    docs = {
        "a": "river water river",
        "b": "water of the city",
        "c": "the city by the sea",
        "d": "mountain snow",
        "e": "river",
    }
    index = BM25Index.build(docs.items(), "en")
    run = index.search({"q1": "river water", "q2": "city sea", "q3": "volcano", "q4": "the"})
    # hand check: 'a' has both terms (river twice), 'e' is a one-word document about
    # river (short: a high weight), 'b' has only water; c and d match nothing
    assert [d for d, _ in run["q1"]] == ["a", "e", "b"]
    assert [d for d, _ in run["q2"]] == ["c", "b"]  # sea is rarer than city
    assert run["q3"] == [] and run["q4"] == []  # no term in the corpus / a stopword only
    toks = [tokenize(t, "en") for t in docs.values()]
    ref = dict(zip(docs, _lucene_bm25(["river", "water"], toks), strict=True))
    for docid, score in run["q1"]:
        assert score == pytest.approx(ref[docid], rel=1e-5)
    assert len(index.search({"q": "river"}, k=1)["q"]) == 1  # k caps the run


# --------------------------------------------------------------------------- end to end


def test_fetch_then_evaluate_with_bm25(tmp_path: Path, shared_data_dir: Path, capsys, monkeypatch):
    """Real yo topics and qrels; a synthetic corpus whose docids are the judged ones (the
    first relevant passage of each query is the query's own text), fetched from a
    mirror, then evaluated by a tiny model with the BM25 row."""
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    data_dir = tmp_path / "data"
    for kind in ("topics", "qrels"):
        name = f"{kind}.miracl-v1.0-yo-dev.tsv"
        (data_dir / "miracl" / kind).mkdir(parents=True)
        shutil.copy(shared_data_dir / "miracl" / kind / name, data_dir / "miracl" / kind / name)
    (ml,) = load_miracl(data_dir, "yo", require_corpus=False)
    topics = read_topics(ml.topics_path)
    rng = random.Random(5)
    words = ["ọjà", "ìwé", "ọkọ̀", "àgbẹ̀", "ẹ̀kọ́", "ilẹ̀", "ìjọba", "ogun", "orin", "ẹja"]
    by_id: dict[str, dict[str, str]] = {}
    first: dict[str, str] = {}
    for qid, judged in ml.qrels.items():
        for docid, grade in judged.items():
            if docid in by_id:
                continue
            text = " ".join(rng.choice(words) for _ in range(12))
            if grade > 0 and qid not in first:
                first[qid], text = docid, topics[qid]
            by_id[docid] = {"docid": docid, "title": "", "text": text}
    rows = list(by_id.values())
    _write_shard(tmp_path / "m" / "miracl-corpus-v1.0-yo" / "docs-0.jsonl.gz", rows)
    model_dir = tmp_path / "model" / "tiny"
    texts = [r["text"] for r in rows] + list(topics.values())
    make_tiny_model(model_dir.parent, texts, vocab_size=2000).save(str(model_dir))

    code, out, err = call(
        capsys, "data", "fetch", "miracl-corpus", "--mirror", str(tmp_path / "m"),
        "--languages", "yo", "--data-dir", str(data_dir),
    )  # fmt: skip
    assert code == 0, err
    assert (data_dir / "miracl/corpus/yo/docs-0.jsonl.gz").is_file()
    code, out, err = call(
        capsys, "evaluate", "--benchmark", "miracl", "--languages", "yo", "--bm25",
        "--model", str(model_dir), "--data-dir", str(data_dir), "-o", str(tmp_path / "out"),
        "--work-dir", str(tmp_path / "w"), "--max-seq-length", "32", "--passage-format",
        "{text}", "--save-embeddings", "-q",
    )  # fmt: skip
    assert code == 0, err
    assert "yo (bm25)" in out and "macro (bm25)" in out
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    bm = doc["baselines"]["bm25"]
    assert bm["params"] == {"k1": 0.9, "b": 0.4, "method": "lucene"}
    assert bm["tokenization"]["yo"]["stopwords"] is None
    row = bm["per_language"]["yo"]
    assert row["num_queries"] == doc["per_language"]["yo"]["num_queries"] == 119
    assert row["num_passages"] == len(rows) and row["qrels_docids_missing_from_corpus"] == 0
    # the BM25 row is the reference metrics applied to its written run
    run: dict[str, list[str]] = {}
    for line in (tmp_path / "out" / "run.bm25.yo.trec").read_text().splitlines():
        qid, _, docid, *_ = line.split()
        run.setdefault(qid, []).append(docid)
    assert len(run) == 119
    ndcg = sum(ndcg_at_k(run[q], ml.qrels[q]) for q in run) / len(run)
    rec = sum(trec_recall_at_k(run[q], ml.qrels[q]) for q in run) / len(run)
    assert row[NDCG] == pytest.approx(ndcg, abs=1e-6) and bm[NDCG] == row[NDCG]
    assert row[RECALL] == pytest.approx(rec, abs=1e-6)
    # a passage equal to the query: BM25 puts it first nearly always
    assert sum(run[q][0] == d for q, d in first.items()) / len(first) > 0.9
    assert 0.3 < bm[NDCG] <= 1.0
    assert NDCG in doc and doc["per_language"]["yo"][NDCG] >= 0.0  # the dense row is there

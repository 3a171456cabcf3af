"""Hostile inputs to `babelir index` / `babelir search` and the corpus readers (issue 21,
cases 2d, 8b and the JSONL id rule): duplicate docids, corrupt index files, FAISS settings
the corpus cannot support, an absurd -k, non-string ids. Each is one line, exit 2."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ConfigError, DataError
from babelir.data.corpus import open_corpus
from babelir.data.jsonl import UniqueIds, parse_object
from babelir.data.miracl import iter_jsonl_passages, load_miracl
from babelir.encoding.options import EncodeOptions
from babelir.index.faiss_backend import (
    IndexSpec,
    cached_faiss_index,
    check_corpus_size,
    check_file,
    file_record,
)
from babelir.index.shards import ShardSet, encode_shards

pytestmark = pytest.mark.usefixtures("one_thread")

N = 60  # passages: the corpus size
_WORDS = ["kalo", "mira", "tesu", "vono", "pade", "zuri", "fena", "soli", "rume", "tavi"]


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        out.setdefault(" ".join(rng.choice(_WORDS) for _ in range(6)), None)
    return list(out)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    make_tiny_model(folder.parent, _texts(200)).save(str(folder))
    return folder


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _corpus(path: Path, n: int = N) -> Path:
    return _jsonl(path, [{"docid": f"d{i}", "text": t} for i, t in enumerate(_texts(n))])


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    import babelir.cli.search  # noqa: F401  (registers the commands)
    from babelir.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out, cap.err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines and lines[-1].startswith("error:"), err
    return " ".join(err.split())  # rich may wrap a long line on narrow terminals


# --------------------------------------------------------------------------- duplicate docids


@pytest.mark.parametrize("same_text", [False, True], ids=["other-text", "same-text"])
def test_index_refuses_a_duplicate_docid_naming_both_lines(
    tmp_path: Path, model_dir: Path, capsys, monkeypatch, same_text: bool
):
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    texts = _texts(5)
    rows = [{"docid": f"d{i}", "text": t} for i, t in enumerate(texts)]
    rows.append({"docid": "d1", "text": texts[1] if same_text else "another passage"})
    corpus = _jsonl(tmp_path / "c.jsonl", rows)
    code, _, err = _cli(
        ["index", str(tmp_path / "idx"), "--corpus", str(corpus), "--model", str(model_dir), "-q"],
        capsys,
    )
    msg = _one_line_error(code, err)
    assert "'d1'" in msg and f"{corpus}:2" in msg and f"{corpus}:6" in msg, msg
    assert not (tmp_path / "idx").exists()


def test_miracl_corpus_refuses_a_docid_repeated_across_files(tmp_path: Path):
    root = tmp_path / "miracl"
    (root / "topics").mkdir(parents=True)
    (root / "qrels").mkdir()
    (root / "topics" / "topics.miracl-v1.0-yo-dev.tsv").write_text("q1\tquery\n")
    (root / "qrels" / "qrels.miracl-v1.0-yo-dev.tsv").write_text("q1 Q0 7#0 1\n")
    a = _jsonl(root / "corpus" / "yo" / "docs-0.jsonl", [{"docid": "7#0", "text": "a"}])
    b = _jsonl(
        root / "corpus" / "yo" / "docs-1.jsonl",
        [{"docid": "8#0", "text": "b"}, {"docid": "7#0", "text": "a copy"}],
    )
    (ml,) = load_miracl(tmp_path, "yo")
    with pytest.raises(DataError, match="appears twice") as exc:
        list(ml.passages())
    assert f"{a}:1" in str(exc.value) and f"{b}:2" in str(exc.value)
    # The same docid in two languages is two passages, not a repeat.
    _jsonl(root / "corpus" / "de" / "docs-0.jsonl", [{"docid": "8#0", "text": "c"}])
    pooled = open_corpus(root / "corpus", tmp_path, languages=["de"])
    assert [p.docid for p in pooled.passages()] == ["8#0"]
    mixed = _jsonl(
        tmp_path / "mixed.jsonl",
        [{"docid": "1", "text": "x", "lang": "de"}, {"docid": "1", "text": "y", "lang": "yo"}],
    )
    assert [p.lang for p in iter_jsonl_passages([mixed])] == ["de", "yo"]


def test_mmarco_collection_refuses_a_repeated_pid(tmp_path: Path):
    g = tmp_path / "mmarco" / "data" / "google"
    (g / "queries" / "train").mkdir(parents=True)
    (g / "collections").mkdir()
    (g / "queries" / "train" / "english_queries.train.tsv").write_text("1\tq\n")
    coll = g / "collections" / "english_collection.tsv"
    coll.write_text("1\tfirst\n2\tsecond\n1\tthird\n", encoding="utf-8")
    source = open_corpus(tmp_path / "mmarco", tmp_path)
    with pytest.raises(DataError, match=rf"'1' \(en\) appears twice: {coll}:1 and {coll}:3"):
        list(source.passages())


def test_a_hash_collision_is_not_taken_for_a_duplicate():
    # locate() finds fewer than two places: two ids merely shared a hash.
    unique = UniqueIds(lambda _id, _scope: ["x.jsonl:1"])
    unique.check("a", "en")
    unique.check("a", "en")  # a repeated hash, one place: let through
    twice = UniqueIds(lambda _id, _scope: ["x.jsonl:1", "x.jsonl:4"])
    twice.check("a", "en")
    twice.check("a", "de")  # another scope: another key
    with pytest.raises(
        DataError, match=r"docid 'a' \(en\) appears twice: x\.jsonl:1 and x\.jsonl:4"
    ):
        twice.check("a", "en")


# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("value", "shown"), [("true", "true"), ("1.5", "1.5"), ("null", "null"), ("[1]", "[1]")]
)
def test_non_string_non_int_ids_are_refused_by_every_jsonl_reader(
    tmp_path: Path, value: str, shown: str
):
    with pytest.raises(
        DataError, match=rf"f:3: field 'id' must be a string or an integer, not {re.escape(shown)}"
    ):
        parse_object('{"id": ' + value + ', "text": "x"}', "f:3")
    assert parse_object('{"id": 7}', "f:1")["id"] == 7
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"docid": "a", "text": "x"}\n{"docid": ' + value + ', "text": "y"}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:2: field 'docid'"):
        list(iter_jsonl_passages([corpus]))
    from babelir.data.parallel import from_jsonl

    train = tmp_path / "train.jsonl"
    row = '{"id": ' + value + ', "lang": "en", "query": "q", "positive": "p"}\n'
    train.write_text(row)
    with pytest.raises(DataError, match=r"train\.jsonl:1: field 'id'"):
        from_jsonl(train)


# --------------------------------------------------------------------------- FAISS bounds


def test_cells_and_quantizer_bits_are_checked_against_the_corpus_size():
    with pytest.raises(
        ConfigError, match=r"--nlist 1000000000: .* the corpus has 60 \(largest valid: 60"
    ):
        check_corpus_size(IndexSpec("ivf", nlist=1_000_000_000), N)
    with pytest.raises(ConfigError, match=r"'IVF4096,PQ32': 4096 IVF cells .*largest valid: 60"):
        check_corpus_size(IndexSpec("IVF4096,PQ32"), N)
    check_corpus_size(IndexSpec("ivf", nlist=60), N)  # one passage per cell: allowed
    check_corpus_size(IndexSpec("ivf"), N)  # the default fits any size
    check_corpus_size(IndexSpec("hnsw"), 1)


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> ShardSet:
    from babelir.models.loading import load_model

    folder = tmp_path_factory.mktemp("small") / "shards"
    model = load_model(model_dir, device="cpu")
    recs = [(f"d{i}", t) for i, t in enumerate(_texts(N))]
    encode_shards(model, recs, folder, options=EncodeOptions(show_progress=False))
    return ShardSet.open(folder)


def test_product_quantizer_bits_are_checked_and_the_largest_valid_named(small_shards: ShardSet):
    from babelir.index.faiss_backend import build_faiss_index

    with pytest.raises(
        ConfigError, match=r"trains 256 centroids \(8 bits\).*largest valid: 5 bits, e\.g\. 'PQ8x5'"
    ):
        build_faiss_index(small_shards, IndexSpec("PQ8"))
    index = build_faiss_index(small_shards, IndexSpec("IVF1,PQ8x5"))  # the suggestion works
    assert index.ntotal == N


def test_cli_index_refuses_cells_the_corpus_cannot_fill_and_keeps_the_shards(
    tmp_path: Path, model_dir: Path, capsys, monkeypatch
):
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    corpus = _corpus(tmp_path / "c.jsonl")
    out = tmp_path / "idx"
    base = ["index", str(out), "--corpus", str(corpus), "--model", str(model_dir), "-q"]
    for extra, what in [
        (["--index", "IVF4096,PQ32"], "'IVF4096,PQ32': 4096 IVF cells"),
        (["--index", "ivf", "--nlist", "1000000000"], "--nlist 1000000000"),
    ]:
        code, _, err = _cli([*base, *extra], capsys)
        msg = _one_line_error(code, err)
        assert what in msg and "largest valid: 60" in msg and "shards" in msg, msg
        assert not (out / "index.json").exists()
    # A typo in a factory string fails before anything is encoded.
    typo = ["index", str(tmp_path / "typo"), *base[2:], "--index", "IVFx,Flat"]
    code, _, err = _cli(typo, capsys)
    assert "factory string" in _one_line_error(code, err)
    assert not (tmp_path / "typo").exists()
    # The shards stay: a valid setting reuses them.
    code, _, err = _cli([*base, "--index", "ivf", "--nlist", "1"], capsys)
    assert code == 0, err
    assert "1 of 1 shards reused" in err


# --------------------------------------------------------------------------- search


@pytest.fixture
def ivf_index(tmp_path: Path, model_dir: Path, capsys, monkeypatch) -> Path:
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    corpus = _corpus(tmp_path / "c.jsonl")
    out = tmp_path / "idx"
    args = ["index", str(out), "--corpus", str(corpus), "--model", str(model_dir), "-q"]
    code, _, err = _cli([*args, "--index", "ivf", "--nlist", "1"], capsys)
    assert code == 0, err
    return out


def test_index_records_the_faiss_file_and_search_checks_it(ivf_index: Path, capsys):
    meta = json.loads((ivf_index / "index.json").read_text())
    record = meta["faiss_file"]
    assert record == file_record(ivf_index / "index.faiss") and record["bytes"] > 0
    code, out, err = _cli(["search", str(ivf_index), _texts(N)[3], "--json", "-k", "2"], capsys)
    assert code == 0, err
    assert json.loads(out)[0]["hits"][0]["docid"] == "d3"
    # Truncated: refused by its size before FAISS reads it.
    faiss_file = ivf_index / "index.faiss"
    data = faiss_file.read_bytes()
    faiss_file.write_bytes(data[: len(data) // 2])
    code, _, err = _cli(["search", str(ivf_index), "kalo"], capsys)
    msg = _one_line_error(code, err)
    assert str(faiss_file) in msg and "truncated" in msg
    # Same size, other content: refused by its hash.
    faiss_file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    code, _, err = _cli(["search", str(ivf_index), "kalo"], capsys)
    assert "SHA-256" in _one_line_error(code, err)
    with pytest.raises(DataError, match="SHA-256"):
        check_file(faiss_file, record, "index.json")


def test_search_refuses_a_truncated_index_json_and_docstore(ivf_index: Path, capsys):
    meta_path = ivf_index / "index.json"
    text = meta_path.read_text()
    meta_path.write_text(text[: len(text) // 2])
    code, _, err = _cli(["search", str(ivf_index), "kalo"], capsys)
    msg = _one_line_error(code, err)
    assert str(meta_path) in msg and "malformed JSON" in msg
    meta = json.loads(text)
    del meta["model_fingerprint"]
    meta_path.write_text(json.dumps(meta))
    code, _, err = _cli(["search", str(ivf_index), "kalo"], capsys)
    assert "field 'model_fingerprint'" in _one_line_error(code, err)
    meta_path.write_text(text)
    docstore = ivf_index / "docstore.sqlite"
    data = docstore.read_bytes()
    docstore.write_bytes(data[:4096])
    code, _, err = _cli(["search", str(ivf_index), "kalo"], capsys)
    assert str(docstore) in _one_line_error(code, err)
    docstore.write_bytes(data)
    # An index built before the file record existed still opens (nothing to compare).
    meta.update(json.loads(text))
    del meta["faiss_file"]
    meta_path.write_text(json.dumps(meta))
    code, _, err = _cli(["search", str(ivf_index), "kalo"], capsys)
    assert code == 0, err


def test_search_k_is_bounded_by_the_corpus(ivf_index: Path, capsys):
    code, out, err = _cli(
        ["search", str(ivf_index), "kalo mira", "--json", "-k", str(10**12)], capsys
    )
    assert code == 0, err
    assert "returning them all" in " ".join(err.split())
    hits = json.loads(out)[0]["hits"]
    assert len(hits) == N and len({h["docid"] for h in hits}) == N
    from babelir.index.search import SearchIndex

    idx = SearchIndex(ivf_index)
    _, rows = idx.search(np.zeros((1, idx.shards.dim), np.float32), 10**12)
    assert rows.shape == (1, N)
    idx.close()


def test_a_truncated_cached_index_is_rebuilt_not_read(small_shards: ShardSet):
    spec = IndexSpec("ivf", nlist=2, nprobe=2)
    _, path = cached_faiss_index(small_shards, spec)
    sidecar = path.with_suffix(".json")
    assert json.loads(sidecar.read_text()) == file_record(path)
    path.write_bytes(path.read_bytes()[:100])
    index, again = cached_faiss_index(small_shards, spec)
    assert again == path and index.ntotal == N
    assert json.loads(sidecar.read_text()) == file_record(path)

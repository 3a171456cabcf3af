"""Regression tests for the hostile inputs of issue 13 (sections 2 to 6).

Each test feeds one input that used to crash with a traceback, use unbounded memory or
give silently wrong numbers, and checks the new behaviour: a one-line babelir error naming
the file/option, or the right numbers. Benchmarks here are small synthetic LAReQA folders,
so no real data or model is needed (except the tiny random model for model folders).
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import stat
import subprocess
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from testkit.cli import call
from testkit.lareqa_docs import lang_doc

from babelir.core.errors import ConfigError, DataError, ModelError
from babelir.core.io import atomic_dir, write_text
from babelir.data.lareqa import load_benchmark
from babelir.data.parallel import from_jsonl
from babelir.data.types import ArticleSelection, parse_languages
from babelir.encoding.cache import EmbeddingCache
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.lareqa import (
    EvaluationResult,
    evaluate_model,
    score_benchmark,
    write_result,
)

REPO = Path(__file__).resolve().parents[2]
LANGS = ("en", "de")


# --------------------------------------------------------------------------- helpers


def _lang_doc(lang: str, articles: int = 3) -> dict:
    return lang_doc(lang, articles, topic=lambda a, p: a * 10 + p)


def make_bench(folder: Path, langs=LANGS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        (folder / f"{lang}.json").write_text(json.dumps(_lang_doc(lang)), encoding="utf-8")
    return folder


def save_embeddings(bench_dir: Path, out: Path, langs: str = "en,de", seed: int = 0) -> None:
    """What `evaluate --save-embeddings` writes, with random unit vectors."""
    bench = load_benchmark(bench_dir, languages=langs)
    rng = np.random.default_rng(seed)

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, 8)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q, c = unit(bench.num_questions), unit(bench.num_candidates)
    from babelir.evaluation.lareqa import Embeddings

    result = EvaluationResult(bench, score_benchmark(bench, q, c), Embeddings(q, c), {})
    write_result(result, out, save_embeddings=True)




@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Path]:
    bench = make_bench(tmp_path / "bench")
    out = tmp_path / "saved"
    save_embeddings(bench, out)
    return bench, out


def _from_saved(capsys, bench: Path, folder: Path, *extra: str) -> tuple[int, str, str]:
    return call(
        capsys, "evaluate", "--benchmark", str(bench), "--from-embeddings", str(folder), *extra
    )


# --------------------------------------------------------------------------- 2. bounded inputs


def test_huge_article_range_is_kept_as_a_range() -> None:
    tracemalloc.start()
    try:
        sel = ArticleSelection.parse("0-2000000,5,3000000-3000002")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # the old parser built a set of two million ints (~100 MB)
    assert sel.selects(0) and sel.selects(2_000_000) and sel.selects(3_000_001)
    assert not sel.selects(2_000_001) and not sel.selects(3_000_003)
    assert str(sel) == "0-2000000,5,3000000-3000002"
    with pytest.raises(ConfigError):
        ArticleSelection.parse("1" * 5000)  # a 5000-digit index: one-line error, no ValueError


def test_huge_article_range_loads_every_article(tmp_path: Path) -> None:
    # Guard: a parser that expands ranges would need ~60 GB below; fail fast instead.
    assert "ranges" in ArticleSelection.__dataclass_fields__
    bench_dir = make_bench(tmp_path / "b")
    full = load_benchmark(bench_dir, languages="en")
    huge = load_benchmark(bench_dir, languages="en", articles="0-999999999")
    assert huge.question_ids == full.question_ids


@pytest.mark.parametrize(
    "payload, message",
    [
        ("[" * 100_000 + "]" * 100_000, r"en\.json: JSON nested too deeply at line 1, column"),
        ('{"data": [' + "9" * 5000 + "]}", r"en\.json: number too long at line 1, column 11"),
    ],
)
def test_hostile_benchmark_json(tmp_path: Path, payload: str, message: str) -> None:
    (tmp_path / "en.json").write_text(payload, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_benchmark(tmp_path, languages="en")


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": ' + "[" * 100_000, r"t\.jsonl:2: JSON nested too deeply at column 207"),
        ('{"id": ' + "7" * 5000 + "}", r"t\.jsonl:2: number too long at column 8"),
    ],
)
def test_hostile_training_jsonl(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    good = json.dumps({"id": "1", "lang": "en", "query": "q", "positive": "p"})
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        from_jsonl(path)


# --------------------------------------------------------------------------- 3. wrong numbers


def test_from_embeddings_fewer_rows_than_metadata(capsys, saved) -> None:
    bench, folder = saved
    q = np.load(folder / "questions.npy")
    np.save(folder / "questions.npy", q[:-1])
    code, _, err = _from_saved(capsys, bench, folder)
    assert code == 2
    assert f"questions.npy has {len(q) - 1} rows but questions.jsonl has {len(q)} lines" in err


def test_from_embeddings_languages_are_aligned_not_positional(capsys, saved, tmp_path) -> None:
    bench, folder = saved
    outs = {}
    for order in ("en,de", "de,en"):
        out = tmp_path / order.replace(",", "-")
        code, _, err = _from_saved(capsys, bench, folder, "--languages", order, "-o", str(out))
        assert code == 0, err
        outs[order] = json.loads((out / "metrics.json").read_text())
    for lang in LANGS:  # each language keeps its own numbers whatever the order
        a = outs["en,de"]["per_language"][lang]
        b = outs["de,en"]["per_language"][lang]
        assert a == b
    assert outs["en,de"]["per_language"]["en"] != outs["en,de"]["per_language"]["de"]
    # A subset of the saved languages is picked by key too.
    out = tmp_path / "d"
    code, _, err = _from_saved(capsys, bench, folder, "--languages", "de", "-o", str(out))
    assert code == 0, err
    only_de = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert only_de["per_pair_map"]["de"]["de"] == outs["en,de"]["per_pair_map"]["de"]["de"]


def test_from_embeddings_other_selection_is_refused(capsys, saved) -> None:
    bench, folder = saved
    rows = (folder / "questions.jsonl").read_text().splitlines()
    first = json.loads(rows[0])
    first["text"] = "another question?"
    rows[0] = json.dumps(first)
    (folder / "questions.jsonl").write_text("\n".join(rows) + "\n")
    code, _, err = _from_saved(capsys, bench, folder)
    assert code == 2 and "has another text" in err


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_from_embeddings_non_finite_rows_are_refused(capsys, saved, bad) -> None:
    bench, folder = saved
    c = np.load(folder / "candidates.npy")
    c[3, 1] = bad
    np.save(folder / "candidates.npy", c)
    code, _, err = _from_saved(capsys, bench, folder)
    assert code == 2
    assert "candidates.npy: 1 embeddings hold NaN or inf (row 3:" in err
    assert "sentence" in err  # the text is named


def test_model_producing_nan_fails_naming_texts(tmp_path, monkeypatch) -> None:
    import babelir.evaluation.lareqa as lareqa

    bench = load_benchmark(make_bench(tmp_path / "b"), languages="en")

    def fake_encode(model, texts, **kwargs):
        out = np.ones((len(texts), 4), dtype=np.float32)
        out[1] = np.nan
        return out

    monkeypatch.setattr(lareqa, "encode_texts", fake_encode)
    with pytest.raises(ModelError, match=r"questions: 1 embeddings hold NaN or inf \(row 1: 'en"):
        evaluate_model(object(), bench, options=EncodeOptions(show_progress=False))


def test_cache_rows_failing_their_checksum_are_re_encoded(tmp_path: Path) -> None:
    path = tmp_path / "emb.sqlite"
    cache = EmbeddingCache(path)
    keys = [EmbeddingCache.key("m", "", 8, "fp32", f"t{i}") for i in range(10)]
    rows = np.arange(40, dtype=np.float32).reshape(10, 4) + 1
    cache.put_many(keys, rows)
    cache.close()
    with sqlite3.connect(path) as conn:  # flip one byte in three stored vectors
        for k in keys[:3]:
            vec = bytearray(conn.execute("SELECT vec FROM emb WHERE key=?", (k,)).fetchone()[0])
            vec[2] ^= 0xFF
            conn.execute("UPDATE emb SET vec=? WHERE key=?", (bytes(vec), k))
    cache = EmbeddingCache(path)
    with pytest.warns(UserWarning, match="3 rows failed their checksum"):
        found = cache.get_many(keys)
    assert set(found) == set(keys[3:]) and cache.corrupt == 3
    assert all(np.array_equal(found[k], rows[i]) for i, k in enumerate(keys) if k in found)
    cache.put_many(keys[:3], rows[:3])  # the caller re-encodes the misses: they replace
    again = cache.get_many(keys)
    assert len(again) == 10 and all(np.array_equal(again[k], rows[i]) for i, k in enumerate(keys))


def test_cache_never_stores_non_finite_rows(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    keys = [EmbeddingCache.key("m", "", 8, "fp32", f"t{i}") for i in range(2)]
    cache.put_many(keys, np.array([[1, 2], [np.nan, 1]], dtype=np.float32))
    assert set(cache.get_many(keys)) == {keys[0]}


def test_repeated_language_is_refused(capsys, tmp_path) -> None:
    with pytest.raises(ConfigError, match="en given more than once"):
        parse_languages("en,de,en")
    bench = make_bench(tmp_path / "b")
    code, _, err = call(capsys, "evaluate", "--benchmark", str(bench), "--languages", "en,en")
    assert code == 2 and "en given more than once" in err


def test_reversed_sentence_breaks_are_refused(tmp_path: Path) -> None:
    doc = _lang_doc("en")
    doc["data"][1]["paragraphs"][0]["sentence_breaks"][2] = [50, 10]
    (tmp_path / "en.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DataError, match=r"data\[1\]\.paragraphs\[0\]: sentence_breaks\[2\]"):
        load_benchmark(tmp_path, languages="en")


# --------------------------------------------------------------------------- 4. one-line errors


def test_language_file_that_is_a_folder(capsys, tmp_path) -> None:
    bench = make_bench(tmp_path / "b", langs=("de",))
    (bench / "en.json").mkdir()
    code, _, err = call(capsys, "evaluate", "--benchmark", str(bench), "--languages", "en")
    assert code == 2 and "en.json: is a folder" in err and "Traceback" not in err


def _tiny_model_dir(tmp_path: Path) -> Path:
    from testkit.tiny_model import make_tiny_model

    folder = tmp_path / "model"
    make_tiny_model(tmp_path / "build", ["hello world", "hallo welt"] * 10).save(str(folder))
    return folder


def test_hostile_model_folders(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from babelir.models.loading import load_model

    folder = _tiny_model_dir(tmp_path)
    weights = folder / "model.safetensors"
    state = {k: v.clone() for k, v in load_file(weights).items()}  # not a view of the mmap
    weights.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelError, match=r"a \.safetensors file is corrupt"):
        load_model(folder, device="cpu")
    weights.unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"only pickle weights found .*babelir loads safetensors"):
        load_model(folder, device="cpu")


def _write_npy_like(folder: Path, name: str, how: str) -> None:
    path = folder / name
    if how == "dims":
        np.save(path, np.load(path)[:, :5])
    elif how == "1d":
        np.save(path, np.load(path)[:, 0])
    elif how == "object":
        arr = np.empty(len(np.load(path)), dtype=object)
        np.save(path, arr, allow_pickle=True)
    elif how == "text":
        path.write_text("this is not numpy\n")
    elif how == "ints":
        np.save(path, np.ones((len(np.load(path)), 8), dtype=np.int64))


@pytest.mark.parametrize(
    "how, message",
    [
        ("dims", "questions.npy has dimension 5 but candidates.npy 8"),
        ("1d", "questions.npy: expected a 2-D array"),
        ("object", "questions.npy: not a readable .npy array"),
        ("text", "questions.npy: not a readable .npy array"),
        ("ints", "questions.npy: expected floating-point embeddings"),
    ],
)
def test_from_embeddings_bad_arrays(capsys, saved, how, message) -> None:
    bench, folder = saved
    _write_npy_like(folder, "questions.npy", how)
    code, _, err = _from_saved(capsys, bench, folder)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"candidates.jsonl:2: malformed JSON at column 2"),
        ('{"lang": "en", "text": "x"}', r"candidates.jsonl:2: missing field 'relevant_ids'"),
        ("[1, 2]", r"candidates.jsonl:2: expected a JSON object"),
    ],
)
def test_from_embeddings_malformed_jsonl(capsys, saved, line, message) -> None:
    bench, folder = saved
    rows = (folder / "candidates.jsonl").read_text().splitlines()
    rows[1] = line
    (folder / "candidates.jsonl").write_text("\n".join(rows) + "\n")
    code, _, err = _from_saved(capsys, bench, folder)
    assert code == 2 and message in err


def test_training_jsonl_that_is_not_utf8_or_not_gzip(tmp_path: Path) -> None:
    good = json.dumps({"id": "1", "lang": "en", "query": "q", "positive": "p"}) + "\n"
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(good.encode() + '{"id": "2", "lang": "en", "query": "caf\xe9"}\n'.encode(
        "latin-1"
    ))
    with pytest.raises(DataError, match=r"latin\.jsonl:2: not UTF-8 text"):
        from_jsonl(latin)
    plain = tmp_path / "plain.jsonl.gz"
    plain.write_text(good)
    with pytest.raises(DataError, match=r"plain\.jsonl\.gz: not a valid gzip file"):
        from_jsonl(plain)
    truncated = tmp_path / "cut.jsonl.gz"
    lines = [
        json.dumps({"id": str(i), "lang": "en", "query": f"q{i}", "positive": f"p{i}"}) + "\n"
        for i in range(2000)
    ]
    blob = gzip.compress("".join(lines).encode())
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cut\.jsonl\.gz: truncated after line \d+"):
        from_jsonl(truncated)


def test_non_utf8_yaml_config_is_one_line(tmp_path: Path) -> None:
    from babelir.compare.config import load_config

    path = tmp_path / "c.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"c\.yaml: not UTF-8 text"):
        load_config(config_file=path)


# --------------------------------------------------------------------------- 5. markup


def test_errors_are_printed_without_markup(capsys, tmp_path) -> None:
    code, _, err = call(capsys, "evaluate", "--benchmark", "nope[/x]")
    assert code == 2 and "nope[/x]" in err and "MarkupError" not in err
    doc = _lang_doc("en")
    doc["data"][0]["paragraphs"][0]["sentence_breaks"][0] = [1]
    bench = tmp_path / "b"
    bench.mkdir()
    (bench / "en.json").write_text(json.dumps(doc), encoding="utf-8")
    code, _, err = call(capsys, "evaluate", "--benchmark", str(bench))
    assert code == 2 and "sentence_breaks[0] is not a [start, end] pair" in err


# --------------------------------------------------------------------------- 6. files


def test_atomic_writes_respect_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            fd, name = tempfile.mkstemp(dir=tmp)  # how transformers writes model.safetensors
            os.close(fd)
            os.replace(name, tmp / "model.safetensors")
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "x.json").write_text("{}")
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "model" / "model.safetensors").stat().st_mode)
    assert mode == 0o644
    assert stat.S_IMODE((tmp_path / "model" / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_saved_model_folder_is_readable_by_the_group(tmp_path: Path) -> None:
    from testkit.tiny_model import make_tiny_model

    model = make_tiny_model(tmp_path / "build", ["hello world", "hallo welt"] * 10)
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "m") as tmp:
            model.save(str(tmp))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").rglob("*")}
    assert modes["model.safetensors"] == 0o644
    assert all(m in (0o644, 0o755) for m in modes.values()), modes


def test_make_test_first_makes_the_data_available() -> None:
    dry = subprocess.run(
        ["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    verify, fetch, pytest_at = (dry.find(x) for x in ("data verify", "data fetch", "pytest"))
    assert -1 < verify < pytest_at and -1 < fetch < pytest_at


_NEEDS_DATA = """
def test_uses_data(shared_data_dir):
    assert shared_data_dir.is_dir()

def test_plain():
    assert True
"""


@pytest.mark.parametrize("require", [False, True])
def test_missing_data_is_one_loud_line(tmp_path: Path, require: bool) -> None:
    import shutil
    import sys

    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(_NEEDS_DATA)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "BABELIR_REQUIRE_DATA")}
    env["BABELIR_DATA_DIR"] = str(tmp_path / "no-data")
    if require:
        env["BABELIR_REQUIRE_DATA"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if require:
        assert proc.returncode == 1 and "1 passed, 1 error" in proc.stdout
    else:
        assert proc.returncode == 0, proc.stdout
        line = next(x for x in proc.stdout.splitlines() if "did NOT run" in x)
        assert "1 tests did NOT run: real data folder" in line and "test_x.py (1)" in line


def test_ctrl_c_inside_a_command_says_interrupted_and_exits_130(capsys, monkeypatch, tmp_path):
    """Typer turns a KeyboardInterrupt in a command into a silent exit 130; main names it."""
    import babelir.data.fetch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(babelir.data.fetch, "verify", interrupted)
    code, _, err = call(capsys, "data", "verify", "xquad-r", "--data-dir", str(tmp_path))
    assert code == 130
    assert "error: interrupted" in err
    monkeypatch.undo()  # an exit code of the command's own is passed through as it was
    code, _, err = call(capsys, "data", "verify", "no-such-dataset", "--data-dir", str(tmp_path))
    assert code != 130 and "interrupted" not in err

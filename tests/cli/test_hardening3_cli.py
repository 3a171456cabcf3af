"""Hardening (third round) of the CLI and model loading: one-line errors, no tracebacks.

Usage errors Typer used to draw in a box, a one-token ``--max-seq-length``, a module
folder of pickles beside safetensors elsewhere, an unusable embedding cache (evaluate
goes on without it) and numba's kernel cache (never written into the package).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

import pytest
import torch
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

import babelir
from babelir.core.errors import ConfigError, ModelError
from babelir.encoding.options import EncodeOptions
from babelir.models.loading import load_model

PACKAGE = Path(babelir.__file__).resolve().parent


def _one_line_error(err: str) -> str:
    text = err.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1, err
    assert "Traceback" not in err and "╭" not in err and "Usage:" not in err, err
    return text


def _bench(folder: Path) -> Path:
    """A two-language LAReQA-format benchmark: 2 articles of 2 paragraphs of 3 sentences."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("en", "de"):
        data = []
        for a in range(2):
            paragraphs = []
            for p in range(2):
                sents = [f"{lang} sentence {a}.{p}.{k} about topic {a * 10 + p}." for k in range(3)]
                breaks, pos = [], 0
                for s in sents:
                    breaks.append([pos, pos + len(s)])
                    pos += len(s) + 1
                qas = [
                    {"id": f"q{a}-{p}-{k}", "question": f"{lang} question {a}.{p}.{k}?",
                     "answers": [{"text": sents[k], "answer_start": breaks[k][0]}]}
                    for k in range(2)
                ]  # fmt: skip
                paragraphs.append({"context": " ".join(sents), "sentences": sents,
                                   "sentence_breaks": breaks, "qas": qas})  # fmt: skip
            data.append({"title": f"article {a}", "paragraphs": paragraphs})
        (folder / f"{lang}.json").write_text(json.dumps({"version": "1.1", "data": data}))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    texts = [f"{lang} sentence question about topic {i}" for lang in ("en", "de")
             for i in range(20)]  # fmt: skip
    model = make_tiny_model(root / "build", texts)
    model.save(str(root / "model"))
    return root / "model"


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["evaluate", "--benchmark", "xor-retrieve", "--top-k", "0"], "--top-k"),
        (["evaluate", "--benchmark", "xor-retrieve", "--corpus-limit", "0"], "--corpus-limit"),
        (["train", "-o", "x", "--batch-size", "many"], "--batch-size"),
        (["data", "verify", "a", "b"], "unexpected extra argument"),
    ],
)
def test_usage_errors_are_one_line(capsys, tmp_path: Path, args: list[str], option: str) -> None:
    code, _, err = call(capsys, *args, "--data-dir", str(tmp_path))
    assert code == 2
    assert option in _one_line_error(err)


def test_help_and_bare_groups_still_show_help(capsys) -> None:
    code, out, _ = call(capsys, "data", "--help")
    assert code == 0 and "Usage" in out and "fetch" in out
    code, out, err = call(capsys, "data")  # a bare group: its help, no error line
    assert "verify" in out + err and "error:" not in err


# --------------------------------------------------------------------------- 17. max length


def test_max_seq_length_one_is_refused_with_the_range(capsys, tmp_path: Path, tiny: Path) -> None:
    with pytest.raises(ConfigError, match=r"max_seq_length .*>= 2, got 1"):
        EncodeOptions(max_seq_length=1)
    with pytest.raises(ConfigError, match=r"max_seq_length .*>= 2, got 1"):
        load_model(str(tiny), device="cpu", max_seq_length=1)
    assert EncodeOptions(max_seq_length=2).max_seq_length == 2
    code, _, err = call(
        capsys, "evaluate", "--model", str(tiny), "--benchmark", str(_bench(tmp_path / "b")),
        "--max-seq-length", "1", "--no-cache", "-q", "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 2 and "max_seq_length" in _one_line_error(err) and ">= 2" in err


# --------------------------------------------------------------------------- 19. pickles


def test_module_folder_of_pickles_only_is_refused_by_name(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from sentence_transformers.sentence_transformer.modules import Dense

    model = make_tiny_model(tmp_path / "build", ["hello world", "another text here"])
    model.append(Dense(32, 16))
    folder = tmp_path / "model"
    model.save(str(folder))
    dense = next(p for p in folder.iterdir() if p.name.endswith("_Dense"))
    weights = load_file(dense / "model.safetensors")
    (dense / "model.safetensors").unlink()
    torch.save(weights, dense / "pytorch_model.bin")
    assert (folder / "model.safetensors").is_file()  # the transformer's are safetensors
    with pytest.raises(ModelError) as err:
        load_model(str(folder), device="cpu")
    msg = str(err.value)
    assert str(dense) in msg and "pytorch_model.bin" in msg and "\n" not in msg


# --------------------------------------------------------------------------- embedding cache


def test_unusable_cache_dir_evaluates_uncached_with_a_warning(
    capsys, tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import babelir.encoding.cache as ec

    def read_only(*args, **kwargs):  # what SQLite says in a folder it cannot write
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ec.sqlite3, "connect", read_only)
    out = tmp_path / "out"
    code, stdout, err = call(
        capsys, "evaluate", "--model", str(tiny), "--benchmark", str(_bench(tmp_path / "b")),
        "--max-seq-length", "32", "-q", "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert (out / "metrics.json").is_file() and "mono mAP" in stdout
    text = " ".join(err.split())
    assert "warning:" in text and "without the embedding cache" in text, err
    assert "delete it" not in text and "Traceback" not in err


def test_read_only_cache_file_serves_hits_and_skips_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from babelir.encoding.cache import CacheWarning, EmbeddingCache

    path = tmp_path / "emb.sqlite"
    old, new = EmbeddingCache.key("m", "", None, "fp32", "a"), b"k" * 32
    with EmbeddingCache(path) as cache:
        cache.put_many([old], np.ones((1, 4), np.float32))
    # a read-only file (root may write any file, so SQLite is asked to open it read-only)
    monkeypatch.setattr(
        EmbeddingCache, "_open",
        lambda self: sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                     isolation_level=None, check_same_thread=False),
    )  # fmt: skip
    cache = EmbeddingCache(path)
    assert set(cache.get_many([old, new])) == {old}
    with pytest.warns(CacheWarning, match="read-only"):
        cache.put_many([new], np.ones((1, 4), np.float32))
    cache.put_many([new], np.ones((1, 4), np.float32))  # warned once; no error
    assert cache.read_only and set(cache.get_many([old, new])) == {old}


# --------------------------------------------------------------------------- numba cache


def test_numba_cache_never_points_into_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numba.core.config
    from numba.core.caching import UserProvidedCacheLocator

    from babelir.evaluation import metrics

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the fallback's parent
    (tmp_path / "tmp").mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(numba.core.config, "CACHE_DIR", numba.core.config.CACHE_DIR)
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    for given in (None, str(blocker / "numba")):
        if given is None:
            monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
        else:
            monkeypatch.setenv("NUMBA_CACHE_DIR", given)  # the user's, unusable
        metrics._numba_cache_dir()
        chosen = Path(os.environ["NUMBA_CACHE_DIR"])
        assert chosen.is_dir() and os.access(chosen, os.W_OK), chosen
        assert PACKAGE not in chosen.resolve().parents and chosen.parent == tmp_path / "tmp"
        assert chosen.stat().st_mode & 0o077 == 0  # private: numba's cache files are pickles
        assert str(chosen) == numba.core.config.CACHE_DIR
        # numba's first choice is then usable, so it never falls back to __pycache__
        locator = UserProvidedCacheLocator.from_function(metrics._KERNEL.py_func, metrics.__file__)
        assert locator is not None and Path(locator.get_cache_path()).is_relative_to(chosen)

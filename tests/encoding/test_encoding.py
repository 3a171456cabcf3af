"""Encoder path, embedding cache, streaming output and the chunked training step.

No timings here (the benchmarks in ``benchmarks/`` measure speed); these check that the
fast paths compute the same thing as the plain ones.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from babelir.core.errors import BabelirError, ConfigError
from babelir.encoding import encoder as encoding
from babelir.encoding.cache import EmbeddingCache
from babelir.encoding.encoder import (
    encode_texts,
    encoder_settings,
    resolve_precision,
    token_budget_batches,
)
from babelir.encoding.options import EncodeOptions
from babelir.encoding.streaming import encode_to_disk
from babelir.training.fast import (
    LengthSortedLoss,
    PretokenizedPreprocess,
    chunk_plan,
    embed_sorted,
)

FP32 = EncodeOptions(precision="fp32", show_progress=False)
TEXTS = [
    "the cat sat on the mat",
    "a dog",
    "rain falls in the green valley every spring and the rivers rise quickly",
    "hello",
    "the quick brown fox jumps over the lazy dog near the river bank today",
    "cats and dogs",
    "a very long sentence " * 6,
    "the cat sat on the mat",  # duplicate on purpose
    "mountains",
    "the valley is green",
]
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # -> SentenceTransformer
    from testkit.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny"), TEXTS * 3)


def _plain(model, texts: list[str], prefix: str = "") -> np.ndarray:
    return model.encode([prefix + t for t in texts], batch_size=4, normalize_embeddings=True)


# --------------------------------------------------------------------------- encoder


def test_matches_plain_encode_in_order(tiny) -> None:
    ours = encode_texts(tiny, TEXTS, prefix="q: ", options=replace(FP32, max_tokens=40))
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(ours, _plain(tiny, TEXTS, "q: "), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(ours[0], ours[7])  # duplicates encoded once


def test_empty_and_bad_options(tiny) -> None:
    assert encode_texts(tiny, [], options=FP32).shape == (0, 32)
    with pytest.raises(ConfigError):
        encode_texts(tiny, TEXTS, options=EncodeOptions(max_tokens=0))
    with pytest.raises(ConfigError):
        encode_texts(tiny, TEXTS, options=EncodeOptions(precision="int3"))
    with pytest.raises(TypeError):  # how to encode is the options object only
        encode_texts(tiny, TEXTS, precision="fp32")


def test_bf16_agrees_with_fp32_tiny(tiny) -> None:
    fp32 = encode_texts(tiny, TEXTS, options=FP32)
    bf16 = encode_texts(tiny, TEXTS, options=replace(FP32, precision="bf16"))
    assert (fp32 * bf16).sum(axis=1).min() > 0.99


def test_precision_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", "cpu")
    monkeypatch.setattr(encoding, "cpu_bf16_supported", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(encoding, "cpu_bf16_supported", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"


def test_settings_record_precision(tiny) -> None:
    info = encoder_settings(tiny, EncodeOptions(precision="fp32", max_tokens=512))
    assert info["precision"] == "fp32" and info["max_tokens"] == 512 and info["device"] == "cpu"


@pytest.mark.parametrize("budget", [1, 7, 40, 1000])
def test_token_budget_batches(budget: int) -> None:
    lengths = [5, 30, 2, 17, 17, 9, 1, 64, 3]
    batches = token_budget_batches(lengths, budget, max_rows=4)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 4
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget


# --------------------------------------------------------------------------- cache


def test_cache_hit_and_miss(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    cached = replace(FP32, cache=cache)
    first = encode_texts(tiny, TEXTS, prefix="p: ", options=cached, fingerprint="m1")
    assert cache.misses == len(set(TEXTS)) and cache.hits == 0 and len(cache) == len(set(TEXTS))

    def boom(*args, **kwargs):
        raise AssertionError("a cached text was encoded again")

    monkeypatch.setattr(encoding, "_encode_unique", boom)
    again = encode_texts(tiny, TEXTS[::-1], prefix="p: ", options=cached, fingerprint="m1")
    np.testing.assert_array_equal(again, first[::-1])
    monkeypatch.undo()
    # Any change in fingerprint, prefix or precision is a different entry.
    for kw in ({"fingerprint": "m2"}, {"prefix": "q: "}, {"precision": "bf16"}):
        args = {"fingerprint": "m1", "prefix": "p: ", **kw}
        opts = replace(cached, precision=args.pop("precision", "fp32"))
        encode_texts(tiny, TEXTS[:2], options=opts, **args)
    assert len(cache) == len(set(TEXTS)) + 6


def test_fingerprint_memo_follows_weight_updates(tiny) -> None:
    from babelir.models.loading import memo_fingerprint, model_fingerprint

    first = memo_fingerprint(tiny)
    assert first == model_fingerprint(tiny) == memo_fingerprint(tiny)
    weight = tiny[0].auto_model.embeddings.word_embeddings.weight
    with torch.no_grad():
        weight[0, 0] += 1.0
    try:
        assert memo_fingerprint(tiny) == model_fingerprint(tiny) != first
    finally:
        with torch.no_grad():
            weight[0, 0] -= 1.0


def test_cache_keys_are_unambiguous() -> None:
    key = EmbeddingCache.key
    assert key("m", "a", 128, "fp32", "bc") != key("m", "ab", 128, "fp32", "c")
    assert key("m", "", 128, "fp32", "x") != key("m", "", None, "fp32", "x")
    assert len(key("m", "", 1, "fp32", "x")) == 32


def test_cache_corrupt_file_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "emb.sqlite"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(BabelirError, match=r"emb\.sqlite"):
        EmbeddingCache(bad)


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from babelir.encoding.cache import EmbeddingCache
    cache = EmbeddingCache(sys.argv[1], timeout=60)
    keys = [EmbeddingCache.key("m", "", 8, "fp32", f"text {i}") for i in range(300)]
    rows = np.arange(300 * 4, dtype=np.float32).reshape(300, 4)
    for start in range(0, 300, 7):  # many small overlapping transactions
        cache.put_many(keys[start:start + 7], rows[start:start + 7])
    """
)


def test_cache_two_processes_writing_the_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "emb.sqlite"
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], env=env) for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    cache = EmbeddingCache(path)
    keys = [EmbeddingCache.key("m", "", 8, "fp32", f"text {i}") for i in range(300)]
    found = cache.get_many(keys)
    assert len(cache) == 300 and len(found) == 300
    expected = np.arange(300 * 4, dtype=np.float32).reshape(300, 4)
    assert all(np.array_equal(found[k], expected[i]) for i, k in enumerate(keys))


_CRASHER = textwrap.dedent(
    """
    import os, signal, sys, numpy as np
    from babelir.encoding.cache import EmbeddingCache
    cache = EmbeddingCache(sys.argv[1])
    keys = [EmbeddingCache.key("m", "", 8, "fp32", f"t{i}") for i in range(10)]
    rows = np.ones((10, 4), dtype=np.float32)
    cache.put_many(keys[:5], rows[:5])
    # The steps of put_many, killed between the inserts and the commit.
    conn = cache._connect()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT OR IGNORE INTO emb VALUES (?, ?, ?)",
                     [(k, 4, b"\\0" * 16) for k in keys[5:]])
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_cache_crash_mid_write_leaves_no_entry(tmp_path: Path) -> None:
    path = tmp_path / "emb.sqlite"
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(path)],
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cache = EmbeddingCache(path)
    keys = [EmbeddingCache.key("m", "", 8, "fp32", f"t{i}") for i in range(10)]
    found = cache.get_many(keys)
    assert set(found) == set(keys[:5]) and len(cache) == 5
    assert all(np.array_equal(v, np.ones(4, dtype=np.float32)) for v in found.values())


# --------------------------------------------------------------------------- streaming


def test_stream_to_disk_equals_in_memory(tiny, tmp_path: Path) -> None:
    out = tmp_path / "emb" / "corpus.npy"
    rows = encode_to_disk(tiny, iter(TEXTS), out, prefix="p: ", chunk_size=3, options=FP32)
    assert rows == len(TEXTS)
    on_disk = np.load(out, mmap_mode="r")
    assert on_disk.shape == (len(TEXTS), 32) and on_disk.dtype == np.float32
    memory = encode_texts(tiny, TEXTS, prefix="p: ", options=FP32)
    np.testing.assert_allclose(on_disk, memory, atol=1e-6)
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus.npy"]
    with pytest.raises(TypeError):  # how to encode is the options object only
        encode_to_disk(tiny, iter(TEXTS), tmp_path / "kw.npy", precision="fp32")


def test_stream_failure_leaves_nothing(tiny, tmp_path: Path) -> None:
    def texts():
        yield from TEXTS[:4]
        raise RuntimeError("reader broke")

    with pytest.raises(RuntimeError):
        encode_to_disk(tiny, texts(), tmp_path / "c.npy", chunk_size=2, options=FP32)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- training


def test_chunk_plan_covers_rows() -> None:
    plan = chunk_plan([3, 9, 1, 9, 4], 10)
    assert sorted(i for c in plan for i in c) == [0, 1, 2, 3, 4]
    assert plan[0] in ([1], [3])  # longest first; two 9s do not fit a 10-token chunk


def _grads(model, loss, features, labels) -> dict[str, torch.Tensor]:
    model.zero_grad()
    value = loss([dict(f) for f in features], labels)
    value.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("prompt", ["q: ", None])  # columns chunked apart / pooled
def test_length_sorted_step_has_identical_gradients(tiny, prompt: str | None) -> None:
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    anchors = [t for t in TEXTS if t != TEXTS[7]]
    positives = anchors[3:] + anchors[:3]
    features = [tiny.preprocess(anchors, prompt=prompt), tiny.preprocess(positives)]
    labels = torch.zeros(len(anchors))
    base = MultipleNegativesRankingLoss(tiny)
    calls: list[int] = []
    hook = tiny.register_forward_hook(lambda m, i, o: calls.append(len(o["sentence_embedding"])))
    tiny.eval()  # no dropout: the two paths must match draw for draw
    try:
        plain = _grads(tiny, base, features, labels)
        n_plain = len(calls)
        sorted_ = _grads(tiny, LengthSortedLoss(base, max_tokens=30), features, labels)
    finally:
        hook.remove()
        tiny.zero_grad()
    assert len(calls) - n_plain > n_plain  # really ran in several chunks
    assert sum(calls[n_plain:]) == 2 * len(anchors)
    assert plain.keys() == sorted_.keys() and len(plain) > 10
    for name, g in plain.items():
        torch.testing.assert_close(sorted_[name], g, atol=1e-6, rtol=1e-4, msg=name)
    with torch.no_grad():
        ref = [tiny(dict(f))["sentence_embedding"] for f in features]
        got = embed_sorted(tiny, features, max_tokens=30)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_length_sorted_loss_rejects_cached_loss(tiny) -> None:
    with pytest.raises(ConfigError):
        LengthSortedLoss(torch.nn.MSELoss())  # no compute_loss_from_embeddings


def test_pretokenized_preprocess_equals_model(tiny) -> None:
    pre = PretokenizedPreprocess.for_model(tiny)
    for _ in range(2):  # second pass is served from the cache
        for batch in (TEXTS[:4], TEXTS[3:9], TEXTS):
            got, want = pre(batch, prompt="q: "), tiny.preprocess(batch, prompt="q: ")
            assert got.keys() == want.keys()
            for k, v in want.items():
                assert torch.equal(got[k], v) if torch.is_tensor(v) else got[k] == v, k
    assert pre.misses == len(set(TEXTS)) and pre.hits > pre.misses


# --------------------------------------------------------------------------- real model


@pytest.mark.integration
def test_real_model_bf16_close_to_fp32(real_model_path: Path) -> None:
    from babelir.models.loading import load_model

    model = load_model(real_model_path, device="cpu", max_seq_length=128)
    texts = [
        "The Panthers finished the regular season with a 15–1 record.",
        "Die Panthers beendeten die reguläre Saison mit einer Bilanz von 15–1.",
        "黑豹队以15胜1负的战绩结束了常规赛。",
        "Les Panthers ont terminé la saison régulière avec un bilan de 15–1.",
    ]
    fp32 = encode_texts(model, texts, prefix="passage: ", options=FP32)
    plain = _plain(model, texts, "passage: ")
    np.testing.assert_allclose(fp32, plain, atol=1e-5)
    bf16 = encode_texts(model, texts, prefix="passage: ", options=replace(FP32, precision="bf16"))
    assert (fp32 * bf16).sum(axis=1).min() > 0.995
    # Translations stay each other's nearest neighbours under bf16.
    sims = bf16 @ bf16.T
    np.fill_diagonal(sims, -1)
    assert set(sims.argmax(axis=1)) <= set(range(4))


def test_trainer_runs_with_lean_step(tmp_path: Path) -> None:
    """The wrapper loss and the caching preprocess plug into SentenceTransformerTrainer."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )
    from testkit.tiny_model import make_tiny_model

    tiny = make_tiny_model(tmp_path, TEXTS * 3)  # trained here: not the shared fixture
    data = Dataset.from_dict({"query": TEXTS[:8], "positive": TEXTS[2:]})
    loss = LengthSortedLoss(MultipleNegativesRankingLoss(tiny), max_tokens=30)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "ckpt"),
        per_device_train_batch_size=4,
        max_steps=4,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        prompts={"query": "q: "},
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(model=tiny, args=args, train_dataset=data, loss=loss)
    pre = PretokenizedPreprocess.for_model(tiny)
    trainer.data_collator.preprocess_fn = pre
    before = tiny[0].auto_model.encoder.layer[0].output.dense.weight.detach().clone()
    trainer.train()
    assert pre.hits > 0  # the second epoch came from the cache
    assert not torch.equal(before, tiny[0].auto_model.encoder.layer[0].output.dense.weight)
    tiny.save(str(tmp_path / "saved"))  # model card generation sees the wrapped loss

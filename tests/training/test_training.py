"""Training: strategies end to end on a tiny model, resume, freezing, errors, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import BabelirError, ConfigError, DataError
from babelir.data.parallel import from_jsonl, from_lareqa, pair_table
from babelir.training.trainer import MARKER, TrainConfig, latest_checkpoint, train

LANGS = ["en", "de", "zh"]


@pytest.fixture(scope="module")
def fixture_dir(shared_data_dir: Path) -> Path:
    return shared_data_dir / "fixtures" / "xquad-r"


@pytest.fixture(scope="module")
def tiny_dir(fixture_dir: Path, tmp_path_factory) -> Path:
    data = from_lareqa(fixture_dir, languages=LANGS)
    texts = [t for item in data.items for s in item.sides.values() for t in (s.query, s.positive)]
    root = tmp_path_factory.mktemp("tiny")
    model = make_tiny_model(root / "build", texts)
    model.save(str(root / "model"))
    return root / "model"


def _cfg(tmp_path: Path, tiny_dir: Path, fixture_dir: Path, **kw) -> TrainConfig:
    base = dict(
        output=tmp_path / "out",
        model=str(tiny_dir),
        train_data=str(fixture_dir),
        languages=LANGS,
        batch_size=4,
        max_steps=2,
        max_seq_length=64,
        learning_rate=1e-3,
        logging_steps=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def _embed(path: Path, texts: list[str]) -> np.ndarray:
    return SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_numpy=True)


@pytest.mark.parametrize("strategy", ["hybrid", "x-x-mono", "x-y", "x-x", "en-en"])
def test_each_strategy_trains_and_saves_a_loadable_model(strategy, tmp_path, tiny_dir, fixture_dir):
    out = train(_cfg(tmp_path, tiny_dir, fixture_dir, strategy=strategy), show_progress=False)
    info = json.loads((out / MARKER).read_text())
    assert info["global_steps"] == 2
    assert info["config"]["strategy"] == strategy
    card = (out / "README.md").read_text()
    assert strategy in card and "steps x batch size" in card
    texts = ["How many points did the Panthers defense surrender?", "Wie viele Punkte?"]
    before, after = _embed(tiny_dir, texts), _embed(out, texts)
    assert before.shape == after.shape
    assert not np.allclose(before, after)  # training changed the model
    assert not (out / "checkpoints").exists()  # removed unless keep_checkpoints


def test_texts_are_tokenized_once_across_epochs(tmp_path, tiny_dir, fixture_dir):
    # 3 epochs of en-en (the same texts every epoch): from the second epoch on, texts
    # come from the cache instead of the tokenizer
    kw = dict(strategy="en-en")
    probe = train(_cfg(tmp_path / "probe", tiny_dir, fixture_dir, **kw), show_progress=False)
    per_epoch = json.loads((probe / MARKER).read_text())["batches_per_epoch"]
    out = train(
        _cfg(tmp_path, tiny_dir, fixture_dir, max_steps=3 * per_epoch, **kw),
        show_progress=False,
    )
    info = json.loads((out / MARKER).read_text())
    stats = info["tokenization"]
    texts_seen = stats["texts_reused"] + stats["texts_tokenized"]
    assert texts_seen == 3 * per_epoch * 4 * 2  # steps x batch x (query, positive)
    assert stats["texts_reused"] >= texts_seen // 2


def test_resume_continues_from_the_latest_checkpoint(tmp_path, tiny_dir, fixture_dir):
    first = _cfg(tmp_path, tiny_dir, fixture_dir, max_steps=2, save_steps=1, keep_checkpoints=True)
    train(first, show_progress=False)
    first_log = json.loads((tmp_path / "out" / MARKER).read_text())["log_history"]
    ckpt = latest_checkpoint(tmp_path / "out" / "checkpoints")
    assert ckpt is not None and ckpt.name == "checkpoint-2"
    again = _cfg(tmp_path, tiny_dir, fixture_dir, max_steps=4, save_steps=1, resume=True)
    with pytest.raises(ConfigError, match=r"max_steps \(2 -> 4\).*--allow-config-change"):
        train(again, show_progress=False)  # another schedule: refused unless asked for
    again = _cfg(
        tmp_path, tiny_dir, fixture_dir, max_steps=4, save_steps=1, resume=True,
        allow_config_change=True,
    )  # fmt: skip
    out = train(again, show_progress=False)
    info = json.loads((out / MARKER).read_text())
    assert info["resumed_from"].endswith("checkpoint-2")
    assert info["global_steps"] == 4
    losses = [h for h in info["log_history"] if "loss" in h]
    assert [h["step"] for h in losses] == [1, 2, 3, 4]
    # steps 1-2 come from the checkpoint's state, not from training them again
    assert losses[:2] == [h for h in first_log if "loss" in h]


def test_frozen_word_embeddings_do_not_change(tmp_path, tiny_dir, fixture_dir):
    from safetensors.numpy import load_file

    out = train(_cfg(tmp_path, tiny_dir, fixture_dir, freeze_embeddings=True), show_progress=False)
    info = json.loads((out / MARKER).read_text())
    assert info["frozen_parameters"] > 0
    before = load_file(str(tiny_dir / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    key = next(k for k in before if k.endswith("word_embeddings.weight"))
    assert np.array_equal(before[key], after[key])
    others = [k for k in before if "encoder.layer.0.attention" in k and k.endswith("weight")]
    assert any(not np.array_equal(before[k], after[k]) for k in others)


def test_hard_negatives_and_symmetric_cached_loss(tmp_path, tiny_dir, fixture_dir):
    cfg = _cfg(
        tmp_path,
        tiny_dir,
        fixture_dir,
        hard_negatives=True,
        loss="cached-mnrl",
        symmetric=True,
        mini_batch_size=2,
    )
    out = train(cfg, show_progress=False)
    assert json.loads((out / MARKER).read_text())["global_steps"] == 2


@pytest.mark.parametrize(
    ("changes", "error", "text"),
    [
        ({"strategy": "x-z"}, ConfigError, "strategy: unknown 'x-z'"),
        ({"alpha": 1.5}, ConfigError, "alpha"),
        ({"languages": ["en", "fr"]}, DataError, "'fr' is absent"),
        ({"batch_size": 64}, DataError, "distinct items"),
        ({"strategy": "x-y", "languages": ["en"]}, BabelirError, "at least two languages"),
        ({"strategy": "en-en", "languages": ["de", "zh"]}, BabelirError, "en-en"),
        ({"loss": "triplet"}, ConfigError, "loss"),
        ({"max_steps": 5, "epochs": 1.0}, ConfigError, "at most one of max_steps and epochs"),
        ({"warmup_ratio": 5}, ConfigError, "warmup_ratio"),
        ({"select": "best-val-map", "val_articles": "none"}, ConfigError, "needs a validation"),
    ],
)
def test_bad_training_input_fails_before_training(
    changes, error, text, tmp_path, tiny_dir, fixture_dir
):
    with pytest.raises(error, match=text):  # the schema refuses at construction, data later
        train(_cfg(tmp_path, tiny_dir, fixture_dir, **changes), show_progress=False)
    assert not (tmp_path / "out" / MARKER).exists()


def test_train_eval_article_overlap_is_refused(tmp_path, tiny_dir, shared_data_dir):
    cfg = _cfg(
        tmp_path,
        tiny_dir,
        shared_data_dir / "xquad-r",
        train_data="xquad-r",
        data_dir=str(shared_data_dir),
        languages=["en", "de"],
        articles="%4!=0",
        eval_articles="%2==0",
    )
    with pytest.raises(ConfigError, match="train/eval overlap"):
        train(cfg, show_progress=False)


def test_jsonl_training_data(tmp_path):
    good = tmp_path / "train.jsonl"
    rows = [
        {"id": "a", "lang": "en", "query": "q a", "positive": "p a", "negatives": ["n"]},
        {"id": "a", "lang": "de", "query": "f a", "positive": "d a"},
        {"id": "b", "lang": "en", "query": "q b", "positive": "p b"},
    ]
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = from_jsonl(good)
    assert data.counts() == {"de": 1, "en": 2}
    table = pair_table(data)
    assert sorted(zip(table["id"], table["query_lang"], table["passage_lang"], strict=False)) == [
        ("a", "de", "de"),
        ("a", "de", "en"),
        ("a", "en", "de"),
        ("a", "en", "en"),
        ("b", "en", "en"),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        from_jsonl(bad)
    bad.write_text(json.dumps({"id": "x", "lang": "en", "query": "q"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: missing field 'positive'"):
        from_jsonl(bad)
    with pytest.raises(BabelirError, match="'fr' has no data"):
        from_jsonl(good, languages="en,fr")


def test_torchrun_two_ranks_share_batch_type_with_disjoint_ids(tmp_path, tiny_dir, fixture_dir):
    """DDP on CPU (gloo): at every step both ranks train on the same batch type."""
    script = Path(__file__).parents[1] / "testkit" / "ddp_train_script.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(script),
        str(tiny_dir),
        str(fixture_dir),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) >= 3
    for a, b in zip(*ranks, strict=False):
        pairs = a + b
        kinds = {p[1] == p[2] for p in pairs}
        assert len(kinds) == 1  # all same-language (mono) or all cross-language
        if kinds == {True}:
            assert len({p[1] for p in pairs}) == 1  # one language for the whole step
        ids_a, ids_b = {p[0] for p in a}, {p[0] for p in b}
        assert len(ids_a) == len(a) and len(ids_b) == len(b)
        assert not ids_a & ids_b
    assert (tmp_path / "model" / MARKER).is_file()


@pytest.mark.integration
def test_real_model_few_steps_on_real_training_articles(tmp_path, shared_data_dir, real_model_path):
    """multilingual-e5-small, 2 hybrid steps of batch 4 on XQuAD-R training articles."""
    cfg = TrainConfig(
        output=tmp_path / "e5",
        model=str(real_model_path),
        strategy="hybrid",
        alpha=0.5,
        train_data="xquad-r",
        data_dir=str(shared_data_dir),
        languages=["en", "de", "el"],
        articles="1-3",
        eval_articles="%4==0",
        batch_size=4,
        max_steps=2,
        max_seq_length=32,
        learning_rate=1e-4,
        freeze_embeddings=True,
    )
    out = train(cfg, show_progress=False)
    info = json.loads((out / MARKER).read_text())
    assert info["global_steps"] == 2 and info["query_prefix"] == "query: "
    texts = [
        "query: How many points did the Panthers defense surrender?",
        "passage: Die Verteidigung der Panthers gab nur 308 Punkte ab.",
    ]
    before, after = _embed(real_model_path, texts), _embed(out, texts)
    assert np.abs(before - after).max() > 1e-4
    assert np.allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-4)  # still normalised


def _train_cli(args: list[str], crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CRASH": crash or ""}
    script = Path(__file__).parents[1] / "testkit" / "crash_train_script.py"
    return subprocess.run(
        [sys.executable, str(script), "train", *args], capture_output=True, text=True,
        env=env, timeout=600,
    )  # fmt: skip


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def test_killed_training_resumes_to_the_same_weights(tmp_path, tiny_dir, fixture_dir, capsys):
    """kill -9 during a checkpoint write and between checkpoints; resume; same weights."""
    common = [
        "--model", str(tiny_dir), "--train-data", str(fixture_dir), "--languages", "en,de,zh",
        "--batch-size", "4", "--max-steps", "9", "--save-steps", "3", "--max-seq-length", "32",
        "--lr", "1e-3", "--logging-steps", "1", "--quiet",
    ]  # fmt: skip
    ref = _train_cli([*common, "--output", str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr[-2000:]

    out = tmp_path / "crashed"
    died = _train_cli([*common, "--output", str(out)], crash="save:6")
    assert died.returncode == 137
    ckpts = out / "checkpoints"
    assert (ckpts / "checkpoint-6" / "model.safetensors").is_file()  # weights only
    assert not (ckpts / "checkpoint-6" / "trainer_state.json").exists()
    assert latest_checkpoint(ckpts, warn=False).name == "checkpoint-3"  # 6 is incomplete

    died = _train_cli([*common, "--output", str(out), "--resume"], crash="step:8")
    assert died.returncode == 137
    assert "skipping incomplete checkpoint(s) checkpoint-6" in died.stderr
    assert latest_checkpoint(ckpts, warn=False).name == "checkpoint-6"  # rewritten, complete

    done = _train_cli([*common, "--output", str(out), "--resume"])
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = _weights(tmp_path / "ref"), _weights(out)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    info_ref = json.loads((tmp_path / "ref" / MARKER).read_text())
    info = json.loads((out / MARKER).read_text())
    assert info["resumed_from"].endswith("checkpoint-6")
    assert info["train_loss"] == pytest.approx(info_ref["train_loss"], rel=1e-6)  # whole run

    # resuming with another configuration is refused, naming the field (in this process:
    # no kill is needed, and a subprocess costs ~10 s of imports)
    code, _, err = call(capsys, "train", *common, "--output", str(out), "--resume",
                        "--keep-checkpoints")  # fmt: skip
    assert code == 0, err  # nothing to resume (checkpoints removed): trains afresh
    code, _, err = call(capsys, "train", *common, "--output", str(tmp_path / "c2"),
                        "--keep-checkpoints")  # fmt: skip
    assert code == 0, err
    code, _, err = call(capsys, "train", *common, "--output", str(tmp_path / "c2"), "--resume",
                        "--strategy", "x-y")  # fmt: skip
    assert code == 2
    assert "strategy ('hybrid' -> 'x-y')" in err
    assert "Traceback" not in err


def test_validation_split_is_disjoint_from_training_and_evaluation(shared_data_dir):
    from babelir.data.lareqa import load_benchmark
    from babelir.training.data import build_training_data
    from babelir.training.validation import split_articles

    train_sel, val_sel = split_articles("%4!=0", "auto", 48)
    train_a = {int(x) for x in train_sel.split(",")}
    val_a = {int(x) for x in val_sel.split(",")}
    assert val_a and not (train_a & val_a)
    assert all(a % 4 != 0 for a in train_a | val_a)  # both inside the training articles
    assert len(train_a) + len(val_a) == 36

    cfg = TrainConfig(
        train_data="xquad-r", data_dir=str(shared_data_dir), languages=["en", "de"],
        articles="%4!=0", eval_articles="%4==0",
    )  # fmt: skip
    td = build_training_data(cfg)
    held = load_benchmark("xquad-r", shared_data_dir, languages=["en", "de"], articles="%4==0")
    val_ids, train_ids = set(td.val.ids), set(td.data.ids)
    assert val_ids and not (val_ids & train_ids) and not (val_ids & set(held.question_ids))
    # an explicit validation split must lie inside the training articles
    with pytest.raises(ConfigError, match="not among the training articles"):
        split_articles("%4!=0", "0,1", 48)

"""One precision policy, bf16 autocast training on CPU, and validation that stays cheap.

The CPU is faked with ``BABELIR_CPU_FLAGS`` (read at every call): ``avx512_bf16`` is a
CPU with native bf16, ``avx2`` one without. On a CPU without native bf16 the bf16 runs
here are emulated (slow, same numerics); the tiny model keeps them at a few seconds.
"""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ConfigError
from babelir.data.parallel import from_lareqa
from babelir.encoding import encoder as encoding
from babelir.precision import resolver as precision
from babelir.precision.resolver import CPU_FLAGS_ENV, cpu_bf16_supported, resolve, trainer_flags
from babelir.precision.vocabulary import PRECISIONS
from babelir.training import fast
from babelir.training.save import MARKER
from babelir.training.validation import VALIDATION, ValidationRecord

NATIVE, AVX2 = "fp16 avx512f avx512_bf16", "fma avx2"
LANGS = ["en", "de"]
ARTICLES = "0-3"  # 4 articles: 'auto' holds one out for validation


@pytest.fixture(scope="module")
def tiny_dir(shared_data_dir: Path, tmp_path_factory) -> Path:
    data = from_lareqa(shared_data_dir / "xquad-r", languages=LANGS, articles=ARTICLES)
    texts = [t for item in data.items for s in item.sides.values() for t in (s.query, s.positive)]
    root = tmp_path_factory.mktemp("tiny")
    model = make_tiny_model(root / "build", texts)
    model.save(str(root / "model"))
    return root / "model"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv(CPU_FLAGS_ENV, raising=False)
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))  # no embedding-cache hits
    monkeypatch.setattr(precision, "_warned", set())


# --------------------------------------------------------------------------- the policy

# (requested, purpose, native bf16) -> resolved on a CPU, or the refusal's words
CPU_TABLE = [
    ("auto", "encode", True, "bf16"),
    ("auto", "encode", False, "fp32"),
    ("auto", "train", True, "bf16"),  # CPU_TRAIN_AUTO: the seed-paired study found it equal
    ("auto", "train", False, "fp32"),
    ("fp32", "encode", True, "fp32"),
    ("fp32", "train", False, "fp32"),
    ("bf16", "encode", True, "bf16"),
    ("bf16", "encode", False, "bf16"),  # emulated: allowed, warned
    ("bf16", "train", True, "bf16"),
    ("bf16", "train", False, "bf16"),
    ("int8", "encode", False, "int8"),
    ("fp16", "encode", True, "fp16 is only supported on CUDA"),
    ("fp16", "train", True, "fp16 is only supported on CUDA"),
    ("int8", "train", True, "int8 is for evaluation"),
    ("int3", "encode", True, "unknown 'int3'"),
]


@pytest.mark.parametrize(("requested", "purpose", "native", "expected"), CPU_TABLE)
def test_cpu_policy(requested, purpose, native, expected, monkeypatch):
    monkeypatch.setenv(CPU_FLAGS_ENV, NATIVE if native else AVX2)
    if expected in PRECISIONS:
        assert resolve(requested, "cpu", purpose) == expected
        assert resolve(requested, torch.device("cpu"), purpose) == expected
    else:
        with pytest.raises(ConfigError, match=f"^precision: .*{expected}"):
            resolve(requested, "cpu", purpose)


@pytest.mark.parametrize("gpu_bf16", [True, False])
def test_cuda_policy(gpu_bf16, monkeypatch):
    monkeypatch.setattr(precision, "_cuda_bf16", lambda: gpu_bf16)
    for purpose in ("encode", "train"):
        assert resolve("auto", "cuda:0", purpose) == ("bf16" if gpu_bf16 else "fp16")
        assert resolve("fp16", "cuda", purpose) == "fp16"
        assert resolve("fp32", "cuda", purpose) == "fp32"
        if gpu_bf16:
            assert resolve("bf16", "cuda", purpose) == "bf16"
        else:
            with pytest.raises(ConfigError, match="this GPU does not support it"):
                resolve("bf16", "cuda", purpose)
    with pytest.raises(ConfigError, match="int8 runs on the CPU"):
        resolve("int8", "cuda", "encode")
    with pytest.raises(ConfigError, match="int8 is for evaluation"):
        resolve("int8", "cuda", "train")


def test_cpu_train_auto_is_one_constant(monkeypatch):
    """CPU_TRAIN_AUTO decides what auto trains in on native-bf16 CPUs only."""
    assert precision.CPU_TRAIN_AUTO == "bf16"  # what the precision study decided
    for train_auto in ("bf16", "fp32"):
        monkeypatch.setattr(precision, "CPU_TRAIN_AUTO", train_auto)
        monkeypatch.setenv(CPU_FLAGS_ENV, NATIVE)
        assert resolve("auto", "cpu", "train") == train_auto
        monkeypatch.setenv(CPU_FLAGS_ENV, AVX2)
        assert resolve("auto", "cpu", "train") == "fp32"  # no native bf16: never picked


def test_fake_cpu_flags_and_the_encoder_follow_one_function(monkeypatch):
    for flags, native in [(NATIVE, True), ("amx_bf16,amx_tile", True), (AVX2, False), ("", False)]:
        monkeypatch.setenv(CPU_FLAGS_ENV, flags)
        assert cpu_bf16_supported() is native
        assert encoding.cpu_bf16_supported() is native  # the encoder's name is the same one
        for p in ("auto", "fp32", "bf16", "int8"):  # the validator and trainer agree
            assert encoding.resolve_precision(p, "cpu") == resolve(p, "cpu", "encode")
        assert encoding.encoder_settings(torch.nn.Linear(1, 1))["cpu_bf16"] is native


def test_explicit_bf16_on_an_emulating_cpu_warns_once(monkeypatch, caplog):
    monkeypatch.setenv(CPU_FLAGS_ENV, AVX2)
    with caplog.at_level(logging.WARNING, logger="babelir.precision.resolver"):
        for _ in range(3):
            resolve("bf16", "cpu", "train")
    # (the faked flags are said once too: not this warning)
    warned = [r.getMessage() for r in caplog.records if CPU_FLAGS_ENV not in r.getMessage()]
    assert len(warned) == 1 and "fp32 kernels" in warned[0] and "training" in warned[0]
    assert precision.EMULATED_BF16_SLOWDOWN["fp32-kernels"]["train"] in warned[0]
    caplog.clear()
    monkeypatch.setenv("BABELIR_BF16_KERNELS", "onednn")  # torch's emulation: its own figure
    with caplog.at_level(logging.WARNING, logger="babelir.precision.resolver"):
        resolve("bf16", "cpu", "train")
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "oneDNN emulates" in warned[0]
    assert precision.EMULATED_BF16_SLOWDOWN["onednn-emulated"]["train"] in warned[0]
    caplog.clear()
    monkeypatch.setenv(CPU_FLAGS_ENV, NATIVE)
    with caplog.at_level(logging.WARNING, logger="babelir.precision.resolver"):
        resolve("bf16", "cpu", "encode")
    assert not [r for r in caplog.records if CPU_FLAGS_ENV not in r.getMessage()]


def test_trainer_flags():
    assert trainer_flags("fp32") == {"bf16": False, "fp16": False}
    assert trainer_flags("bf16") == {"bf16": True, "fp16": False}
    assert trainer_flags("fp16") == {"bf16": False, "fp16": True}
    with pytest.raises(ValueError):
        trainer_flags("auto")


# --------------------------------------------------------------------------- training


def _train_args(tiny_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--model", str(tiny_dir), "--train-data", "xquad-r", "--languages",
        ",".join(LANGS), "--articles", ARTICLES, "--batch-size", "4", "--max-steps", "2",
        "--max-seq-length", "32", "--lr", "1e-3", "--quiet", "--output", str(out), *extra,
    ]  # fmt: skip


class Spy:
    """Dtypes seen in training: Linear outputs and weights, and the loss."""

    def __init__(self, monkeypatch) -> None:
        self.linear: collections.Counter = collections.Counter()
        self.loss: set[torch.dtype] = set()
        self.handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        real = fast.LengthSortedLoss.forward

        def forward(loss_self, features, labels):
            out = real(loss_self, features, labels)
            self.loss.add(out.dtype)
            return out

        monkeypatch.setattr(fast.LengthSortedLoss, "forward", forward)

    def _hook(self, module, inputs, output) -> None:
        if isinstance(module, torch.nn.Linear) and module.training and torch.is_grad_enabled():
            self.linear[(output.dtype, module.weight.dtype)] += 1


@pytest.mark.parametrize(
    ("flags", "requested", "train_auto", "expected"),
    [
        (NATIVE, "auto", "bf16", "bf16"),  # the shipped policy (CPU_TRAIN_AUTO)
        (NATIVE, "auto", "fp32", "fp32"),  # the constant flipped back
        (AVX2, "auto", "bf16", "fp32"),  # never on an emulating CPU
        (AVX2, "bf16", "fp32", "bf16"),  # on request, even there
    ],
)
def test_train_records_and_uses_the_resolved_precision(
    flags, requested, train_auto, expected, tiny_dir, tmp_path, capsys, monkeypatch
):
    """`babelir train --precision` records what it trained in; bf16 is CPU autocast with
    fp32 master weights, optimizer state and loss."""
    monkeypatch.setenv(CPU_FLAGS_ENV, flags)
    monkeypatch.setattr(precision, "CPU_TRAIN_AUTO", train_auto)
    spy = Spy(monkeypatch)
    out = tmp_path / "run"
    try:
        code, _, err = call(
            capsys, *_train_args(tiny_dir, out, "--precision", requested, "--keep-checkpoints")
        )
    finally:
        spy.handle.remove()
    assert code == 0, err
    info = json.loads((out / MARKER).read_text())
    assert info["train_precision"] == expected
    want = torch.bfloat16 if expected == "bf16" else torch.float32
    assert set(spy.linear) == {(want, torch.float32)}  # computed in `want`, weights fp32
    assert spy.loss == {torch.float32}
    optimizer = torch.load(out / "checkpoints" / "checkpoint-2" / "optimizer.pt")
    moments = [t for s in optimizer["state"].values() for t in s.values() if t.dim() > 0]
    assert moments and {t.dtype for t in moments} == {torch.float32}
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}  # noqa: SIM118


def test_fp16_training_on_a_cpu_is_refused_in_one_line(tiny_dir, tmp_path, capsys):
    code, _, err = call(capsys, *_train_args(tiny_dir, tmp_path / "r", "--precision", "fp16"))
    assert code == 2
    assert "fp16 is only supported on CUDA" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # refused before any work


# --------------------------------------------------------------------------- validation


def test_validation_encodes_each_text_once_per_round_in_the_training_precision(
    tiny_dir, tmp_path, capsys, monkeypatch
):
    """auto validates the way auto trains (not the encoder's auto), each text once."""
    monkeypatch.setenv(CPU_FLAGS_ENV, NATIVE)  # encoder's auto is bf16 here...
    monkeypatch.setattr(precision, "CPU_TRAIN_AUTO", "fp32")  # ...training's, made fp32
    from babelir.training.validation import ValidationSet

    rounds: list[collections.Counter] = []  # one per validation: (text, precision) -> count
    distinct: list[int] = []  # texts a validation has to encode
    forward, measure = encoding._forward, ValidationSet.measure

    def spy_forward(model, texts, prec, device):
        rounds[-1].update((t, prec) for t in texts)
        return forward(model, texts, prec, device)

    def spy_measure(self, *args, **kwargs):
        rounds.append(collections.Counter())
        distinct.append(len(set(self.question_texts)) + len(set(self.passage_texts)))
        return measure(self, *args, **kwargs)

    monkeypatch.setattr(encoding, "_forward", spy_forward)
    monkeypatch.setattr(ValidationSet, "measure", spy_measure)
    out = tmp_path / "run"
    code, _, err = call(capsys, *_train_args(tiny_dir, out, "--eval-steps", "1"))
    assert code == 0, err
    info = json.loads((out / MARKER).read_text())
    assert info["train_precision"] == "fp32"
    assert [p["step"] for p in info["curve"]] == [0, 1, 2]
    assert len(rounds) == 3
    for r, n in zip(rounds, distinct, strict=True):
        assert len(r) == n and set(r.values()) == {1}  # every text once, none twice
        assert {prec for _, prec in r} == {"fp32"}
    assert info["timing_s"]["validation_encode"] > 0


def _linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    model[1].weight.requires_grad_(False)  # frozen weights are not kept
    return model


def test_best_weights_stay_in_memory_until_a_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    rec = ValidationRecord(folder, "best-val-loss")
    models = [_linear(s) for s in range(4)]
    for step, loss in enumerate([2.0, 1.0, 1.5, 0.5]):
        rec.add({"step": step, "val_loss": loss}, models[step])
    assert not folder.exists()  # four rounds, three new bests: nothing written
    assert rec.best["step"] == 3
    rec.persist()  # the trainer saves a checkpoint
    assert sorted(p.name for p in folder.iterdir()) == ["best-weights-3.safetensors", VALIDATION]
    target = _linear(9)
    rec.load_best(target)
    assert torch.equal(target[0].weight, models[3][0].weight)
    assert not torch.equal(target[1].weight, models[3][1].weight)  # frozen: untouched

    # a resumed run (from checkpoint 2, say) gets the curve up to it and the best, from disk
    again = ValidationRecord(folder, "best-val-loss")
    again.restore(2)
    assert [p["step"] for p in again.curve] == [0, 1, 2] and again.best["step"] == 3
    target = _linear(9)
    again.load_best(target)
    assert torch.equal(target[0].weight, models[3][0].weight)
    again.add({"step": 3, "val_loss": 0.5}, models[3])  # reached again: not "better"
    again.add({"step": 4, "val_loss": 0.25}, _linear(4))
    again.persist()
    assert (folder / "best-weights-4.safetensors").is_file()
    assert not (folder / "best-weights-3.safetensors").exists()  # removed after the JSON

    # validation.json naming a weight file that is gone: no best rather than a wrong one
    (folder / "best-weights-4.safetensors").unlink()
    lost = ValidationRecord(folder, "best-val-loss")
    lost.restore(10)
    assert lost.best is None and len(lost.curve) == 5


class Crash(Exception):
    """Stands for a kill: nothing after it runs (not KeyboardInterrupt, which saves)."""


def test_resume_after_a_crash_keeps_the_validated_selection(tiny_dir, tmp_path, monkeypatch):
    """A crash after a new in-memory best that no checkpoint wrote: resume selects the
    same step and saves the same weights as an uninterrupted run."""
    from safetensors.numpy import load_file

    from babelir.training import TrainConfig, train
    from babelir.training import trainer as trainer_mod

    def cfg(out: Path, **kw) -> TrainConfig:
        return TrainConfig(
            output=out, model=str(tiny_dir), train_data="xquad-r", languages=LANGS,
            articles=ARTICLES, batch_size=4, max_steps=5, max_seq_length=32,
            learning_rate=1e-3, eval_steps=1, save_steps=2, select="best-val-map",
            logging_steps=1, **kw,
        )  # fmt: skip

    ref = train(cfg(tmp_path / "ref"), show_progress=False)
    info_ref = json.loads((ref / MARKER).read_text())

    real = trainer_mod.Validator.measure

    def dying(self, step):
        real(self, step)
        if step == 3:
            raise Crash  # after step 3's validation (a new best, maybe), before checkpoint 4

    monkeypatch.setattr(trainer_mod.Validator, "measure", dying)
    out = tmp_path / "crashed"
    with pytest.raises(Crash):
        train(cfg(out), show_progress=False)
    doc = json.loads((out / "checkpoints" / VALIDATION).read_text())
    assert [p["step"] for p in doc["curve"]] == [0, 1, 2]  # as of checkpoint 2
    monkeypatch.setattr(trainer_mod.Validator, "measure", real)
    done = train(cfg(out, resume=True), show_progress=False)
    info = json.loads((done / MARKER).read_text())
    assert info["resumed_from"].endswith("checkpoint-2")
    assert info["selection"]["step"] == info_ref["selection"]["step"]
    assert [p["step"] for p in info["curve"]] == [0, 1, 2, 3, 4, 5]
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(done / "model.safetensors"))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)

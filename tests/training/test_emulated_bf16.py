"""bf16 matmuls on fp32 kernels (:mod:`babelir.precision.emulated_bf16`): same numerics as torch's
own bf16 kernels, used exactly where bf16 is not native, recorded in the run records.

The reference is torch's bf16 CPU kernel (oneDNN: emulated on an AVX2 CPU, native on an
AVX512_BF16/AMX one); both accumulate in fp32, so results may differ only by the
summation order: at most one bf16 ulp on a few elements.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

from babelir.data.parallel import from_lareqa
from babelir.encoding import encoder as encoding
from babelir.encoding.options import EncodeOptions
from babelir.precision import resolver as precision
from babelir.precision.emulated_bf16 import (
    KERNELS_ENV,
    Bf16OnFp32Kernels,
    bf16_kernels,
    kernels_for,
)
from babelir.precision.resolver import CPU_FLAGS_ENV
from babelir.training.save import MARKER

NATIVE, AVX2 = "avx512f avx512_bf16", "fma avx2"
ARTICLES = "0-3"  # 4 articles: 'auto' holds one out for validation
BF16_ULP = 2.0**-7  # bf16 keeps 8 significant bits: neighbours are <= 2^-7 apart, relative


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv(CPU_FLAGS_ENV, raising=False)
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "_warned", set())


def _bf16(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(torch.bfloat16)


def _ops() -> dict[str, tuple]:
    a, b, c = _bf16(48, 96, seed=0), _bf16(96, 40, seed=1), _bf16(48, 40, seed=2)
    x, y = _bf16(3, 24, 64, seed=3), _bf16(3, 64, 20, seed=4)
    bias = _bf16(40, seed=5)
    return {
        "mm": (torch.mm, a, b),
        "mm, column-major input": (torch.mm, a.T.contiguous().T, b),  # as backward passes
        "addmm": (torch.addmm, c, a, b),
        "bmm": (torch.bmm, x, y),
        "baddbmm": (torch.baddbmm, _bf16(3, 24, 20, seed=6), x, y),
        "linear": (torch.nn.functional.linear, a, b.T.contiguous(), bias),
        "matmul 3-d x 2-d": (torch.matmul, x, _bf16(64, 8, seed=7)),
        "mv": (torch.mv, a, _bf16(96, seed=8)),
    }


def _agree(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """Share of elements that differ, and the largest difference in bf16 ulps."""
    g, w = got.double(), want.double()
    differ = (g != w).double().mean().item()
    ulps = ((g - w).abs() / (w.abs() * BF16_ULP).clamp_min(1e-30)).max().item()
    return differ, ulps


@pytest.mark.parametrize("name", list(_ops()))
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
def test_each_matmul_matches_torchs_bf16_kernel(name, grad):
    fn, *args = _ops()[name]
    want = fn(*args)
    ctx = torch.enable_grad() if grad else torch.inference_mode()
    with ctx, Bf16OnFp32Kernels() as mode:
        got = fn(*args)
    assert mode.calls >= 1  # rerouted, not passed through
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    differ, ulps = _agree(got, want)
    assert differ <= 0.02 and ulps <= 1.0 + 1e-6, (differ, ulps)
    # and it is bf16, not fp32: the fp32 product differs on most elements
    exact = fn(*[t.float() for t in args])
    assert (got.float() != exact).float().mean() > 0.5


def test_other_dtypes_and_mixed_calls_pass_through():
    a32 = torch.randn(8, 8)
    with Bf16OnFp32Kernels() as mode:
        assert torch.equal(a32 @ a32, torch.mm(a32, a32))  # fp32: untouched
        with pytest.raises(RuntimeError):  # mixed dtypes fail as without the mode
            torch.mm(a32.to(torch.bfloat16), a32)
        y = torch.nn.functional.gelu(a32.to(torch.bfloat16))  # not a matmul: torch's kernel
    assert mode.calls == 0 and y.dtype == torch.bfloat16


def test_backward_matmuls_are_rerouted_and_gradients_are_bf16_sized():
    """Under autocast the backward pass's mm run in the mode too; the gradient error
    against fp32 is bf16-sized (the same order as torch's bf16 kernels), not zero."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 16))
    x = torch.randn(32, 64)

    def grads(kernels: str | None, autocast: bool) -> tuple[torch.Tensor, int]:
        net.zero_grad()
        with (
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
            bf16_kernels(kernels or "fp32", "cpu") as mode,
        ):
            net(x).float().pow(2).mean().backward()
        g = torch.cat([p.grad.flatten() for p in net.parameters()])
        return g, (mode.calls if mode else 0)

    fp32, _ = grads(None, False)
    torch_bf16, _ = grads(None, True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CPU_FLAGS_ENV, AVX2)
        ours, calls = grads("bf16", True)
    assert calls >= 2 + 3  # 2 forward linears, >= 3 backward mm (input and weight grads)
    assert ours.dtype == torch.float32  # master gradients stay fp32

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / b.norm()).item()

    e_torch, e_ours = rel(torch_bf16, fp32), rel(ours, fp32)
    assert 1e-4 < e_ours < 3 * e_torch, (e_ours, e_torch)
    assert rel(ours, torch_bf16) < 2 * e_torch


@pytest.mark.parametrize(
    ("resolved", "device", "flags", "env", "expected"),
    [
        ("bf16", "cpu", AVX2, None, "fp32-kernels"),
        ("bf16", "cpu", AVX2, "onednn", "onednn-emulated"),
        ("bf16", "cpu", NATIVE, None, "native"),
        ("bf16", "cuda", AVX2, None, "native"),
        ("bf16", torch.device("cpu"), AVX2, None, "fp32-kernels"),
        ("fp32", "cpu", AVX2, None, None),
        ("fp16", "cuda", AVX2, None, None),
        ("int8", "cpu", AVX2, None, None),
    ],
)
def test_where_the_fp32_kernels_are_used(resolved, device, flags, env, expected, monkeypatch):
    monkeypatch.setenv(CPU_FLAGS_ENV, flags)
    if env:
        monkeypatch.setenv(KERNELS_ENV, env)
    assert kernels_for(resolved, device) == expected
    with bf16_kernels(resolved, device) as mode:
        assert isinstance(mode, Bf16OnFp32Kernels) == (expected == "fp32-kernels")
        with bf16_kernels(resolved, device) as inner:
            assert inner is None  # never stacked twice


# --------------------------------------------------------------------------- encoder, trainer


@pytest.fixture(scope="module")
def tiny_dir(shared_data_dir: Path, tmp_path_factory) -> Path:
    data = from_lareqa(shared_data_dir / "xquad-r", languages=["en", "de"], articles="0-3")
    texts = [t for item in data.items for s in item.sides.values() for t in (s.query, s.positive)]
    root = tmp_path_factory.mktemp("tiny-bf16")
    model = make_tiny_model(root / "build", texts)
    model.save(str(root / "model"))
    return root / "model"


@pytest.fixture()
def count_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    dispatch = Bf16OnFp32Kernels.__torch_dispatch__

    def spy(self, func, types, args=(), kwargs=None):
        calls.append(1)
        return dispatch(self, func, types, args, kwargs)

    monkeypatch.setattr(Bf16OnFp32Kernels, "__torch_dispatch__", spy)
    return calls


@pytest.mark.parametrize(
    ("env", "expected"), [(None, "fp32-kernels"), ("onednn", "onednn-emulated")]
)
def test_bf16_encoding_without_native_bf16(env, expected, tiny_dir, monkeypatch, count_calls):
    from babelir.models.loading import load_model

    monkeypatch.setenv(CPU_FLAGS_ENV, AVX2)
    if env:
        monkeypatch.setenv(KERNELS_ENV, env)
    model = load_model(str(tiny_dir), device="cpu", max_seq_length=32)
    texts = ["the first text", "ein zweiter Text", "a third, longer text about articles"]
    opts = EncodeOptions(precision="bf16", batch_size=2)
    emb = encoding.encode_texts(model, texts, options=opts)
    assert bool(count_calls) == (expected == "fp32-kernels")
    assert encoding.encoder_settings(model, opts)["bf16_kernels"] == expected
    fp32 = encoding.encode_texts(model, texts, options=EncodeOptions(precision="fp32"))
    cos = (emb * fp32).sum(1)  # rows are L2-normalised
    assert (cos > 0.99).all()  # close to fp32...
    assert abs(emb - fp32).max() > 1e-6  # ...but bf16-rounded (fp32 twice gives 0)


@pytest.mark.parametrize(
    ("flags", "requested", "kernels"),
    [(AVX2, "bf16", "fp32-kernels"), (NATIVE, "bf16", "native"), (AVX2, "fp32", None)],
)
def test_train_uses_and_records_the_kernels(
    flags, requested, kernels, tiny_dir, tmp_path, capsys, monkeypatch, count_calls
):
    monkeypatch.setenv(CPU_FLAGS_ENV, flags)
    out = tmp_path / "run"
    args = [
        "train", "--model", str(tiny_dir), "--train-data", "xquad-r", "--languages", "en,de",
        "--articles", ARTICLES, "--output", str(out), "--max-steps", "2", "--batch-size", "4",
        "--max-seq-length", "32", "--eval-steps", "1", "--precision", requested, "--quiet",
    ]  # fmt: skip
    code, _, err = call(capsys, *args)
    assert code == 0, err
    info = json.loads((out / MARKER).read_text())
    assert info["train_precision"] == requested
    assert info["train_bf16_kernels"] == kernels
    assert bool(count_calls) == (kernels == "fp32-kernels")

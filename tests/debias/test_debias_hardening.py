"""Hostile inputs to debias fits and where they are used (issue 21, cases 1, 2, 7, 8c):
non-finite or edited fit matrices, a fit of another model (also through
--from-embeddings), non-UTF-8 fit data, --device cuda without CUDA, and an exported LSAR
model evaluated in int8."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from testkit.cli import call
from testkit.lareqa_docs import append_to_sentences
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ConfigError, DataError
from babelir.debias import (
    check_fit_model,
    collect_fit_texts,
    fit_from_texts,
    load_transform,
    save_transform,
)


def _synthetic_fit(method: str, **info):
    rng = np.random.default_rng(0)
    emb = {x: rng.normal(size=(12, 8)) for x in ("en", "de", "zh")}
    return fit_from_texts(method, emb, fit_info=info)


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    assert [x for x in err.splitlines() if x.strip()][-1].startswith("error:"), err
    return " ".join(err.split())


# --------------------------------------------------------------------------- case 1


@pytest.mark.parametrize(
    ("method", "name", "value"),
    [("center", "means", np.nan), ("center", "means", np.inf), ("lsar", "bases", np.nan)],
)
def test_a_fit_holding_nan_or_inf_is_refused_naming_the_file(tmp_path, method, name, value):
    from safetensors.numpy import load_file, save_file

    folder = save_transform(_synthetic_fit(method), tmp_path / "fit")
    tensors_path = folder / "debias.safetensors"
    tensors = load_file(str(tensors_path))
    tensors[name] = tensors[name].copy()
    tensors[name][0, 0] = value
    save_file(tensors, str(tensors_path), metadata={"format": "babelir-debias"})  # valid file
    with pytest.raises(DataError, match=rf"debias\.safetensors: '{name}' holds 1 NaN or inf"):
        load_transform(folder)


def test_a_fit_whose_bases_are_not_orthonormal_is_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = save_transform(_synthetic_fit("lir"), tmp_path / "fit")
    path = folder / "debias.safetensors"
    tensors = load_file(str(path))
    tensors["bases"] = tensors["bases"] * 3.0  # finite, right shape, no longer a projection
    save_file(tensors, str(path))
    with pytest.raises(DataError, match="not orthonormal"):
        load_transform(folder)
    assert load_transform(save_transform(_synthetic_fit("lir"), tmp_path / "ok")).method == "lir"


# --------------------------------------------------------------------------- case 2 (unit)


def test_fit_model_check_matches_refuses_and_warns():
    fit = _synthetic_fit(
        "center", model="A", model_fingerprint="aaa", model_source_fingerprint="sa"
    )
    assert check_fit_model(fit, {"model_fingerprint": "aaa"}) == []
    # int8 changes the in-memory fingerprint; the source fingerprint still matches
    assert check_fit_model(fit, {"model_fingerprint": "q8", "model_source_fingerprint": "sa"}) == []
    other = {"model": "B", "model_fingerprint": "bbb", "model_source_fingerprint": "sb"}
    with pytest.raises(
        ConfigError, match=r"fitted with A \(fingerprint aaa\).*B \(fingerprint bbb\)"
    ):
        check_fit_model(fit, other, fit_path="F")
    (warning,) = check_fit_model(fit, other, fit_path="F", allow_mismatch=True)
    assert "fingerprint aaa" in warning and "fingerprint bbb" in warning and "anyway" in warning
    old = _synthetic_fit("center")  # fitted before fits recorded their model
    (warning,) = check_fit_model(old, other)
    assert "records no model fingerprint" in warning
    (warning,) = check_fit_model(fit, {"embeddings_source": "E"})
    assert "embeddings in E record no model fingerprint" in warning
    again = {"model_fingerprint": "aaa", "embeddings_source": "E", "embeddings_debiased": "lsar"}
    (warning,) = check_fit_model(fit, again)
    assert "already debiased (lsar)" in warning


def test_embeddings_provenance_reads_what_metrics_json_recorded(tmp_path):
    from babelir.debias import embeddings_provenance

    (tmp_path / "metrics.json").write_text(
        json.dumps({"model": "m", "model_fingerprint": "f1", "debias": {"method": "center"}})
    )
    assert embeddings_provenance(tmp_path) == {
        "model_fingerprint": "f1",
        "embeddings_model": "m",
        "embeddings_debiased": "center",
    }
    (tmp_path / "metrics.json").write_text('{"model": "m", "model_fing')  # truncated
    assert embeddings_provenance(tmp_path) == {}
    assert embeddings_provenance(tmp_path / "missing") == {}


# --------------------------------------------------------------------------- CLI fixtures


@pytest.fixture(scope="module")
def bench(tmp_path_factory, shared_data_dir) -> Path:
    """The en/de/zh fixture plus a renamed copy of its article (article 1): a disjoint
    fit (1) / evaluation (0) split, as in test_debias.py."""
    src = shared_data_dir / "fixtures" / "xquad-r"
    folder = tmp_path_factory.mktemp("bench") / "two"
    folder.mkdir()
    for lang in ("en", "de", "zh"):
        doc = json.loads((src / f"{lang}.json").read_text(encoding="utf-8"))
        art = copy.deepcopy(doc["data"][0])
        for para in art["paragraphs"]:
            append_to_sentences(para, " (2)")  # context and breaks follow
            for qa in para["qas"]:
                qa["id"] += "-b"
                qa["question"] += " (2)"
        doc["data"] = [doc["data"][0], art]
        (folder / f"{lang}.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory, bench) -> dict[str, Path]:
    """Two tiny models of the same dimension, differently initialised."""
    texts = collect_fit_texts(bench).all_texts()
    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for name, seed in (("a", 0), ("b", 1)):
        make_tiny_model(root / f"build-{name}", texts, seed=seed).save(str(root / name))
        out[name] = root / name
    return out


def _common(model: Path) -> list[str]:
    return ["--model", str(model), "--max-seq-length", "64", "--precision", "fp32", "-q"]


def _eval(model: Path, bench: Path, *extra: str) -> list[str]:
    return ["evaluate", *_common(model), "--benchmark", str(bench), "--articles", "0",
            "--no-cache", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def fit_a(tmp_path_factory, models, bench) -> Path:
    out = tmp_path_factory.mktemp("fits") / "center-a"
    from babelir.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["debias", *_common(models["a"]), "--method", "center", "--fit-data", str(bench),
              "--articles", "1", "--output", str(out), "--no-cache"])  # fmt: skip
    assert exc.value.code in (0, None)
    return out


# --------------------------------------------------------------------------- case 1, 2 (CLI)


def test_cli_fit_records_its_model_and_refuses_another(models, bench, fit_a, tmp_path, capsys):
    info = load_transform(fit_a).fit_info
    assert info["model_fingerprint"] and info["model_source_fingerprint"]
    assert info["precision"] == "fp32" and info["source"] == str(bench)
    # the model it was fitted with: accepted, recorded as matching
    center = ["--debias", "center", "--debias-fit", str(fit_a)]
    code, _, err = call(capsys, *_eval(models["a"], bench, *center, "-o", str(tmp_path / "ok")))
    assert code == 0, err
    assert json.loads((tmp_path / "ok" / "metrics.json").read_text())["debias"][
        "model_fingerprint_matches"
    ]
    # another model of the same dimension: refused naming both fingerprints
    code, _, err = call(capsys, *_eval(models["b"], bench, *center, "-o", str(tmp_path / "bad")))
    msg = _one_line_error(code, err)
    assert info["model_fingerprint"] in msg and "--allow-fit-mismatch" in msg
    assert not (tmp_path / "bad").exists()
    # ... unless told: a warning, and metrics.json says it did not match
    forced_args = [*center, "--allow-fit-mismatch", "-o", str(tmp_path / "forced")]
    code, _, err = call(capsys, *_eval(models["b"], bench, *forced_args))
    assert code == 0, err
    assert "warning:" in err and "anyway" in " ".join(err.split())
    forced = json.loads((tmp_path / "forced" / "metrics.json").read_text())["debias"]
    assert forced["model_fingerprint_matches"] is False and forced["warnings"]


def test_cli_from_embeddings_checks_the_fit_against_the_embeddings_model(
    models, bench, fit_a, tmp_path, capsys
):
    saved = {}
    for name in ("a", "b"):
        saved[name] = tmp_path / f"emb-{name}"
        code, _, err = call(capsys, *_eval(models[name], bench, "--save-embeddings",
                                           "-o", str(saved[name])))  # fmt: skip
        assert code == 0, err
    scored = ["evaluate", "--benchmark", str(bench), "--articles", "0", "-q", "--debias",
              "center", "--debias-fit", str(fit_a), "--from-embeddings"]  # fmt: skip
    code, _, err = call(capsys, *scored, str(saved["b"]))
    msg = _one_line_error(code, err)
    assert str(saved["b"]) in msg and str(models["b"]) in msg and "fingerprint" in msg
    code, _, err = call(capsys, *scored, str(saved["a"]), "-o", str(tmp_path / "re"))
    assert code == 0, err
    # the re-scored metrics.json keeps naming the embeddings' model
    again = json.loads((tmp_path / "re" / "metrics.json").read_text())
    assert again["model_fingerprint"] == load_transform(fit_a).fit_info["model_fingerprint"]
    # embeddings whose metrics.json is gone: nothing binds them to a model, refused
    # (hardening 3, case 3: saved embeddings are checked against their metrics.json)
    (saved["b"] / "metrics.json").unlink()
    code, _, err = call(capsys, *scored, str(saved["b"]))
    msg = _one_line_error(code, err)
    assert f"{saved['b'] / 'metrics.json'}: not found" in msg


def test_cli_old_fit_without_fingerprint_warns(models, bench, fit_a, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(fit_a, old)
    meta = json.loads((old / "debias.json").read_text())
    for key in ("model_fingerprint", "model_source_fingerprint"):
        meta["fit_info"].pop(key)
    (old / "debias.json").write_text(json.dumps(meta))
    code, _, err = call(capsys, *_eval(models["b"], bench, "--debias", "center",
                                       "--debias-fit", str(old)))  # fmt: skip
    assert code == 0, err
    assert "records no model fingerprint" in " ".join(err.split())


def test_cli_refuses_a_fit_with_nan_means(models, bench, fit_a, tmp_path, capsys):
    import shutil

    from safetensors.numpy import load_file, save_file

    bad = tmp_path / "nan"
    shutil.copytree(fit_a, bad)
    tensors = load_file(str(bad / "debias.safetensors"))
    tensors["means"] = np.full_like(tensors["means"], np.nan)
    save_file(tensors, str(bad / "debias.safetensors"))
    args = ["--debias", "center", "--debias-fit", str(bad), "-o", str(tmp_path / "m")]
    code, _, err = call(capsys, *_eval(models["a"], bench, *args))
    msg = _one_line_error(code, err)
    assert str(bad / "debias.safetensors") in msg and "NaN" in msg
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- case 7


def test_fit_data_that_is_not_utf8_is_named_by_file_and_line(tmp_path, models, capsys):
    good = json.dumps({"lang": "en", "text": "hello"}).encode() + b"\n"
    path = tmp_path / "fit.jsonl"
    path.write_bytes(good + b'{"lang": "de", "text": "gr\xfc\xdf"}\n' + good)
    with pytest.raises(DataError, match=r"fit\.jsonl:2: not UTF-8 text"):
        collect_fit_texts(path)
    code, _, err = call(capsys, "debias", *_common(models["a"]), "--method", "center",
                        "--fit-data", str(path), "--output", str(tmp_path / "out"))  # fmt: skip
    assert f"{path}:2: not UTF-8" in _one_line_error(code, err)
    gz = tmp_path / "fit.jsonl.gz"
    import gzip

    gz.write_bytes(gzip.compress(good * 3)[:-12])  # truncated gzip
    with pytest.raises(DataError, match=r"fit\.jsonl\.gz: (truncated|not a valid gzip)"):
        collect_fit_texts(gz)


# --------------------------------------------------------------------------- case 8c


def test_device_cuda_without_cuda_is_one_line(models, bench, capsys):
    import torch

    from babelir.models.loading import check_device

    with pytest.raises(ConfigError, match="not a torch device"):
        check_device("gpu0")
    assert check_device("cpu") == "cpu"
    if torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA device"):
            check_device(f"cuda:{torch.cuda.device_count()}")
        return
    with pytest.raises(ConfigError, match="CUDA is not available"):
        check_device("cuda")
    code, _, err = call(capsys, *_eval(models["a"], bench, "--device", "cuda"))
    assert "--device cuda: CUDA is not available" in _one_line_error(code, err)


def test_int8_self_check_runs_an_lsar_head_without_autograd(models, bench, tmp_path):
    """`evaluate --model <exported LSAR> --precision int8` raised RuntimeError: the int8
    build's self-check ran the model's heads after pooling (LSAR's Dense, with trainable
    weights) outside inference mode and called numpy() on the result. The check is run
    here with the fp32 backbone standing in for the ONNX session (fast, same code path)."""
    import torch

    from babelir.debias import export_lsar_model, fit_model
    from babelir.models.int8.session import _reference, _run
    from babelir.models.loading import load_model

    st = load_model(models["a"], device="cpu")
    t = fit_model(st, collect_fit_texts(bench, articles="1"), "lsar")
    lsar = load_model(export_lsar_model(st, t, tmp_path / "lsar"), device="cpu")
    assert any(p.requires_grad for p in lsar[-2].parameters())  # the Dense head

    class Backbone:  # InferenceSession.run(outputs, feed) with the torch backbone
        def run(self, _outputs, feed):
            with torch.no_grad():
                inputs = {k: torch.from_numpy(v) for k, v in feed.items()}
                return [lsar[0].auto_model(**inputs).last_hidden_state.numpy()]

    texts = ["a question", "eine Frage (2)", "问题"]
    got = _run(Backbone(), ["input_ids", "attention_mask"], texts, lsar)
    np.testing.assert_allclose(got, _reference(lsar, texts), atol=1e-5)

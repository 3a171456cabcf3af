"""The command line as a user meets it: help, one-line errors, outputs, saved embeddings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

from babelir.data.parallel import from_lareqa


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a fresh process (slow: use for a few end-to-end checks)."""
    return subprocess.run(
        [sys.executable, "-m", "babelir.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )




@pytest.mark.parametrize(
    "command",
    [
        [],
        ["evaluate"],
        ["train"],
        ["batches"],
        ["compare"],
        ["data", "fetch"],
        ["index"],
        ["search"],
    ],
)
def test_help(command, capsys):
    code, out, err = call(capsys, *command, "--help")
    assert code == 0, err
    assert "Usage" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "--benchmark", "xquad-q"], "unknown benchmark 'xquad-q'"),
        (["evaluate", "--languages", "en,xx"], "language 'xx' is absent"),
        (["evaluate", "--model", "./no/such/model", "-l", "en"], "does not exist"),
        (["evaluate", "--articles", "%4==9"], "articles:"),
        (["train", "--output", "x", "--strategy", "zz"], "strategy: unknown 'zz'"),
        (["batches", "-o", "x.jsonl", "--alpha", "2"], "--alpha: Input should be less than"),
        # issue 13: negative counts and impossible outputs are refused before any work
        (["batches", "-o", "x.jsonl", "--num-batches", "-1"], "--num-batches"),
        (["batches", "-o", "x.jsonl", "--epoch", "-1"], "--epoch"),
        (["batches", "-o", "x.jsonl", "--seed", "-1"], "--seed: Input should be greater than"),
        (["batches", "-o", "/tmp"], "--output: /tmp is a folder"),
        (["train", "-o", "x", "--warmup-ratio", "5"], "--warmup-ratio: Input should be less"),
        (["train", "-o", "/etc/hostname"], "--output: /etc/hostname exists and is not a folder"),
        (["train", "-o", "x", "--precision", "int8"], "--precision: int8 is for evaluation"),
        (["evaluate", "--precision", "int3"], "precision: unknown 'int3'"),
        (["compare", "--profile", "huge"], "unknown profile 'huge'"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message, shared_data_dir, capsys, monkeypatch):
    monkeypatch.setenv("BABELIR_DATA_DIR", str(shared_data_dir))
    code, _, err = call(capsys, *args)
    assert code == 2
    assert message in err.replace("\n", " ")
    assert err.strip().startswith("error:")


def test_errors_from_a_fresh_process_have_no_traceback(shared_data_dir):
    proc = run(
        "evaluate",
        "--benchmark",
        str(shared_data_dir / "fixtures" / "xquad-r"),
        "--languages",
        "en,fr",
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert "fr.json" in proc.stderr


def test_evaluate_writes_metrics_and_embeddings_that_recompute(shared_data_dir, tmp_path, capsys):
    fixture = shared_data_dir / "fixtures" / "xquad-r"
    data = from_lareqa(fixture, languages="en,de,zh")
    texts = [t for it in data.items for s in it.sides.values() for t in (s.query, s.positive)]
    model_dir = tmp_path / "tiny"
    make_tiny_model(tmp_path / "build", texts).save(str(model_dir))
    out = tmp_path / "eval"
    code, stdout, err = call(
        capsys,
        "evaluate",
        "--model",
        str(model_dir),
        "--benchmark",
        str(fixture),
        "--max-seq-length",
        "64",
        "--output",
        str(out),
        "--save-embeddings",
        "-q",
    )
    assert code == 0, err[-2000:]
    assert "mono mAP" in stdout
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "map",
        "recall",
        "rank_distance",
        "per_pair_map",
        "model",
        "benchmark",
        "languages",
        "articles",
        "candidate_mode",
        "babelir_version",
    ):
        assert key in m
    assert set(m["recall"]) == {"mono@1", "cross@1", "multi@10"}
    assert not list(out.glob(".*"))  # no temporary leftovers
    # Independent recomputation of the pooled mAP from the saved files alone.
    q = np.load(out / "questions.npy")
    c = np.load(out / "candidates.npy")
    qs = [json.loads(x) for x in (out / "questions.jsonl").read_text().splitlines()]
    cs = [json.loads(x) for x in (out / "candidates.jsonl").read_text().splitlines()]
    assert len(qs) == len(q) and len(cs) == len(c)
    aps = [
        average_precision_score([row["id"] in cand["relevant_ids"] for cand in cs], c @ q[i])
        for i, row in enumerate(qs)
    ]
    assert m["map"]["multi"] == pytest.approx(float(np.mean(aps)), abs=1e-6)
    # --from-embeddings scores the saved files without a model and agrees.
    again = tmp_path / "again"
    code, _, err = call(
        capsys,
        "evaluate",
        "--benchmark",
        str(fixture),
        "--from-embeddings",
        str(out),
        "--output",
        str(again),
        "-q",
    )
    assert code == 0, err[-2000:]
    assert json.loads((again / "metrics.json").read_text())["map"] == m["map"]


def test_batches_cli_writes_what_the_sampler_draws(shared_data_dir, tmp_path, capsys):
    out = tmp_path / "b.jsonl"
    code, _, err = call(
        capsys,
        "batches",
        "--train-data",
        str(shared_data_dir / "fixtures" / "xquad-r"),
        "--languages",
        "en,de,zh",
        "--strategy",
        "hybrid",
        "--alpha",
        "0.5",
        "--batch-size",
        "4",
        "--num-batches",
        "6",
        "--seed",
        "3",
        "--output",
        str(out),
    )
    assert code == 0, err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
    for r in rows:
        assert r["type"] in ("mono", "cross")
        same = {p["query_lang"] == p["passage_lang"] for p in r["pairs"]}
        assert same == ({True} if r["type"] == "mono" else {False})
        assert len({p["id"] for p in r["pairs"]}) == 4


def _commands() -> dict[str, object]:
    """The click commands that take encoding options (evaluate: one per family)."""
    import typer

    from babelir.cli.evaluate import FAMILIES
    from babelir.cli.main import app

    top = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    out = {f"evaluate {f.title}": f.command() for f in FAMILIES}
    out.update({name: top[name] for name in ("debias", "index", "search")})
    return out


def test_encoding_options_have_one_definition_in_every_command():
    """Same default and help (EncodeOptions' schema) in evaluate, debias, index, search."""
    from babelir.cli.app import ENCODE_OPTIONS
    from babelir.core.schema import option_map
    from babelir.encoding.options import EncodeOptions

    fields = option_map(EncodeOptions)
    seen = {}
    for name, cmd in _commands().items():
        params = {p.name: p for p in cmd.params}  # type: ignore[attr-defined]
        wanted = ["precision"] if name == "search" else ENCODE_OPTIONS
        for field in wanted:
            p = params[field]
            assert p.default == fields[field].default, (name, field)
            assert p.help == fields[field].help_text(), (name, field)
            seen.setdefault(field, set()).add((p.default, p.help))
        for own in ("quiet", "no_cache"):
            if own in params:
                assert params[own].default is False
    assert all(len(v) == 1 for v in seen.values()), seen
    assert set(seen) == set(ENCODE_OPTIONS)
    assert fields["max_seq_length"].default is None  # compare's default (the model's limit)


LAREQA_ONLY = ["--articles", "--candidates", "--from-embeddings", "--debias", "--debias-fit"]
MIRACL_ONLY = ["--split", "--corpus", "--passage-format", "--index", "--work-dir", "--shard-size"]


def test_evaluate_help_lists_the_families_and_each_family_only_its_options(
    capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "300")
    code, out, err = call(capsys, "evaluate", "--help")
    assert code == 0, err
    assert "LAReQA" in out and "MIRACL" in out
    assert "babelir evaluate --benchmark miracl --help" in out
    assert "--corpus" not in out and "--articles" not in out
    code, out, err = call(capsys, "evaluate", "--benchmark", "miracl", "--help")
    assert code == 0, err
    options = set(re.findall(r"--[a-z][a-z-]*", out))
    assert set(MIRACL_ONLY) <= options and "--precision" in options
    assert not set(LAREQA_ONLY) & options
    code, out, err = call(capsys, "evaluate", "-b", "xquad-r", "--help")
    assert code == 0, err
    options = set(re.findall(r"--[a-z][a-z-]*", out))
    assert set(LAREQA_ONLY) <= options and "--precision" in options
    assert not set(MIRACL_ONLY) & options


@pytest.mark.parametrize(
    ("args", "option", "family"),
    [
        (["--benchmark", "miracl", "--articles", "0"], "--articles", "LAReQA"),
        (["-b", "miracl", "-q", "--from-embeddings=x"], "--from-embeddings", "LAReQA"),
        (["--benchmark", "xquad-r", "--corpus", "c"], "--corpus", "MIRACL"),
        (["--query-prefix", "--corpus", "--work-dir", "w"], "--work-dir", "MIRACL"),
        (["-b", "miracl", "--bogus"], "--bogus", None),
    ],
)
def test_an_option_of_another_family_is_a_one_line_error(args, option, family, capsys):
    code, _, err = call(capsys, "evaluate", *args)
    assert code == 2
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    assert option in err and "Traceback" not in err
    if family:
        assert f"option of {family}" in err
    else:
        assert "no such option" in err


def test_compare_help_names_every_shipped_profile():
    """A new profile YAML that --help forgets is invisible to users."""
    from importlib.resources import files

    import typer

    from babelir.cli.main import app

    profiles = files("babelir.profiles").iterdir()
    shipped = {p.name.removesuffix(".yaml") for p in profiles if p.name.endswith(".yaml")}
    assert {"zero-shot-quick", "in-domain-quick", "smoke", "precision-study"} <= shipped
    params = {p.name: p for p in typer.main.get_command(app).commands["compare"].params}
    help_text = params["profile"].help
    missing = [name for name in sorted(shipped) if f"{name} (" not in help_text]
    assert not missing, missing

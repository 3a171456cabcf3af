"""One EncodeOptions object from the CLI to the encoder: ``--precision`` reaches every path.

Each command that encodes (``evaluate`` on LAReQA and MIRACL, ``index``, ``search``) is
run with ``--precision fp32`` and ``--precision bf16`` while the encoder's forward pass
records the precision it was handed; the precision written to the outputs is checked too.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ConfigError
from babelir.encoding import encoder as encoding
from babelir.encoding.options import EncodeOptions, option_help

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ["maji", "ya", "mto", "kichwa", "nyumba", "mji", "ilé", "omi", "Haus", "Wasser"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny model and a MIRACL-format data dir (sw: 3 topics, 40 passages)."""
    root = tmp_path_factory.mktemp("data")
    texts = [" ".join(WORDS[(i + j) % 10] for j in range(i % 3, i % 3 + 5)) for i in range(40)]
    docs = [{"docid": f"d{i}", "title": "kichwa", "text": t} for i, t in enumerate(texts)]
    (root / "miracl" / "topics").mkdir(parents=True)
    (root / "miracl" / "qrels").mkdir(parents=True)
    (root / "miracl" / "corpus" / "sw").mkdir(parents=True)
    (root / "miracl" / "topics" / "topics.miracl-v1.0-sw-dev.tsv").write_text(
        "1\tmaji ya mto\n2\tnyumba mji\n3\tomi ilé\n"
    )
    (root / "miracl" / "qrels" / "qrels.miracl-v1.0-sw-dev.tsv").write_text(
        "1 Q0 d1 1\n2 Q0 d2 1\n3 Q0 d3 1\n"
    )
    (root / "miracl" / "corpus" / "sw" / "a.jsonl").write_text(
        "".join(json.dumps(d) + "\n" for d in docs)
    )
    model_dir = root / "m" / "tiny"
    make_tiny_model(model_dir.parent, [d["text"] for d in docs] + WORDS).save(str(model_dir))
    return root, model_dir


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Precisions handed to the forward pass (the lowest level every path goes through)."""
    calls: list[str] = []
    forward = encoding._forward

    def spy(model, texts, precision, device):
        calls.append(precision)
        return forward(model, texts, precision, device)

    monkeypatch.setattr(encoding, "_forward", spy)
    return calls


_cli = call  # the entry point in this process: exit code, stdout, stderr


@pytest.mark.parametrize(
    "precision",
    [
        "fp32",
        "bf16",
        pytest.param(
            "int8",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("onnxruntime") is None,
                reason="int8 extra not installed (pip install 'babelir[int8]')",
            ),
        ),
    ],
)
def test_precision_reaches_the_encoder_on_every_path(
    precision: str,
    data,
    seen: list[str],
    shared_data_dir: Path,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
):
    root, model_dir = data
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    common = ["--model", str(model_dir), "--precision", precision, "-q"]

    # evaluate, LAReQA
    out = tmp_path / "lareqa"
    fixture = shared_data_dir / "fixtures" / "xquad-r"
    code, _, err = _cli(
        capsys, "evaluate", "-b", str(fixture), "-l", "en,de", "-o", str(out),
        "--max-seq-length", "64", "--no-cache", *common,
    )  # fmt: skip
    assert code == 0, err
    assert seen and set(seen) == {precision}
    encoder = json.loads((out / "metrics.json").read_text())["encoder"]
    assert encoder["precision"] == precision
    assert (encoder["int8"] is not None) == (precision == "int8")  # the ONNX Runtime build ran
    seen.clear()

    # evaluate, MIRACL (--precision used to be dropped here)
    out = tmp_path / "miracl"
    code, _, err = _cli(
        capsys, "evaluate", "-b", "miracl", "--data-dir", str(root), "-l", "sw",
        "-o", str(out), "--max-seq-length", "64", "--work-dir", str(tmp_path / "work"),
        *common,
    )  # fmt: skip
    assert code == 0, err
    assert seen and set(seen) == {precision}
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["encoder"]["precision"] == precision and doc["per_language"]["sw"]["num_queries"]
    manifests = list((tmp_path / "work").glob("*/manifest.json"))
    assert [json.loads(m.read_text())["config"]["precision"] for m in manifests] == [precision]
    seen.clear()

    # index
    corpus = root / "miracl" / "corpus" / "sw" / "a.jsonl"
    idx = tmp_path / "idx"
    code, _, err = _cli(capsys, "index", str(idx), "--corpus", str(corpus), *common)
    assert code == 0, err
    assert seen and set(seen) == {precision}
    meta = json.loads((idx / "index.json").read_text())
    assert meta["encoder"]["precision"] == precision
    assert json.loads((idx / "shards" / "manifest.json").read_text())["config"]["precision"] == (
        precision
    )
    seen.clear()

    # search
    code, stdout, err = _cli(
        capsys, "search", str(idx), "maji ya mto", "--json", "--precision", precision
    )
    assert code == 0, err
    assert seen and set(seen) == {precision}
    assert json.loads(stdout)[0]["hits"]


def test_shards_of_another_precision_are_not_mixed(data, tmp_path: Path, capsys, monkeypatch):
    """MIRACL keys its shard folder by the resolved precision; index --overwrite re-encodes."""
    root, model_dir = data
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))
    base = ["--model", str(model_dir), "-q", "--max-seq-length", "64"]
    for precision in ("fp32", "bf16"):
        code, _, err = _cli(
            capsys, "evaluate", "-b", "miracl", "--data-dir", str(root), "-l", "sw",
            "--work-dir", str(tmp_path / "work"), "--precision", precision, *base,
        )  # fmt: skip
        assert code == 0, err
    assert len(list((tmp_path / "work").glob("*/manifest.json"))) == 2
    corpus = str(root / "miracl" / "corpus" / "sw" / "a.jsonl")
    idx = tmp_path / "idx"
    assert _cli(capsys, "index", str(idx), "--corpus", corpus, "--precision", "fp32", *base)[0] == 0
    code, _, err = _cli(
        capsys, "index", str(idx), "--corpus", corpus, "--precision", "bf16", "--overwrite", *base
    )
    assert code == 0, err
    assert "0 of 1 shards reused" in err
    assert json.loads((idx / "index.json").read_text())["encoder"]["precision"] == "bf16"


def test_options_validate():
    with pytest.raises(ConfigError, match="precision: unknown 'int3'"):
        EncodeOptions(precision="int3")
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        EncodeOptions(batch_size=0)
    with pytest.raises(ConfigError, match="max_seq_length"):
        EncodeOptions(max_seq_length=-1)
    assert EncodeOptions(cache=True).describe()["cache"] is True
    assert EncodeOptions().embedding_cache() is None
    assert "fp16" in option_help("precision")


def test_truncation_mismatch_is_refused(data):
    _, model_dir = data
    model, opts = encoding.load_encoder(str(model_dir), EncodeOptions(max_seq_length=32))
    assert model.max_seq_length == 32 and opts.max_seq_length == 32
    assert opts.query_prefix == "" and opts.passage_prefix == ""  # not an e5 model
    assert encoding.encode_texts(model, ["maji"], options=opts).shape == (1, 32)
    with pytest.raises(ConfigError, match="truncates at 32"):
        encoding.encode_texts(model, ["maji"], options=replace(opts, max_seq_length=16))


def test_evaluate_model_takes_everything_from_options(
    data, seen: list[str], shared_data_dir: Path
):
    """Prefixes, batch size and precision reach the encoder through the options alone."""
    from babelir.data.lareqa import load_benchmark
    from babelir.evaluation.lareqa import evaluate_model

    _, model_dir = data
    model, _ = encoding.load_encoder(str(model_dir))
    fixture = shared_data_dir / "fixtures" / "xquad-r"
    bench = load_benchmark(fixture, shared_data_dir, languages="en")
    opts = EncodeOptions(
        query_prefix="q: ", passage_prefix="p: ", batch_size=16, show_progress=False,
        precision="bf16",
    )
    result = evaluate_model(model, bench, options=opts, info={"model": "tiny"})
    assert set(seen) == {"bf16"}
    assert result.info["encoder"]["precision"] == "bf16" and result.info["query_prefix"] == "q: "
    assert result.info["passage_prefix"] == "p: "
    with pytest.raises(TypeError):  # no keyword layer over the options any more
        evaluate_model(model, bench, options=opts, precision="fp32")


@pytest.mark.parametrize("command", ["evaluate", "index", "search"])
def test_cli_defaults_match_the_options_schema(command: str):
    """The encoding options of each command default to EncodeOptions' values (no drift)."""
    import typer

    import babelir.cli.main  # noqa: F401  (registers the commands)
    from babelir.cli.app import app

    if command == "evaluate":  # a dispatcher: the options are its families' commands
        from babelir.cli.evaluate import family_of

        cmd = family_of("miracl").command()
    else:
        cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    params = {p.name: p for p in cmd.params}
    defaults = EncodeOptions()
    assert params["precision"].default == defaults.precision
    assert "fp16" in params["precision"].help
    if "batch_size" in params:
        assert params["batch_size"].default == defaults.batch_size

"""The zero-shot default (issue 31): `babelir compare` without --profile and `make demo`
plan the paper's zero-shot regime, and the default path's data is fetchable and verified
from pinned sources (here: a local mirror), the English SQuAD slice included."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from testkit.cli import call
from testkit.network import offline

from babelir.compare.config import DEFAULT_PROFILE, load_config
from babelir.data import registry
from babelir.data.fetch import git_blob_sha1

OFFICIAL_EN = f"{registry.SQUAD_TRAIN_FULL_DIR}/en/train-v1.1.json"
SLICE_EN = "training/squad-v1.1-train-en/first10-articles.json"
#: The datasets of the default profile besides the English SQuAD file.
OTHER_DATASETS = (
    "xquad-r", "squad-train-pt-sample", "squad-train-de-sample", "arcd", "cmrc2018",
    "iapp-wiki-qa",
)  # fmt: skip


def test_the_default_profile_is_zero_shot_and_old_names_still_run():
    cfg, _ = load_config()
    assert cfg.name == DEFAULT_PROFILE == "zero-shot-quick"
    sources = cfg.train["data"]
    assert isinstance(sources, list) and not any("xquad" in str(s) for s in sources)
    assert f"en:{OFFICIAL_EN}#articles=0-9" in sources  # fetchable: the official file
    assert [b.name for b in cfg.benchmarks] == ["xquad-r"]
    assert load_config("quick")[0].name == "in-domain-quick"
    assert load_config("study")[0].name == "in-domain-study"
    study, _ = load_config("zero-shot-study")
    assert study.seeds == [0, 1, 2] and study.benchmarks[0].articles == "all"
    assert [v.label for v in study.variants()] == ["x-x-mono", "x-y", "hybrid"]


def _mirror(tmp_path: Path, shared: Path) -> Path:
    """A data-dir-layout mirror of the default path's pinned files, with an official
    English file of 11 articles: the slice's 10 and one more that ``#articles=0-9``
    must leave out."""
    mirror = tmp_path / "mirror"
    for name in OTHER_DATASETS:
        for f in registry.get(name).files:
            (mirror / f.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared / f.path, mirror / f.path)
    doc = json.loads((shared / SLICE_EN).read_text("utf-8"))
    extra = copy.deepcopy(doc["data"][0])
    extra["title"] = "Extra_article"
    for p in extra["paragraphs"]:
        for q in p["qas"]:
            q["id"] += "-extra"
    doc["data"].append(extra)
    official = mirror / OFFICIAL_EN
    official.parent.mkdir(parents=True)
    official.write_text(json.dumps(doc), "utf-8")
    return mirror


def _pin_official(monkeypatch: pytest.MonkeyPatch, blob: str) -> None:
    """The registry as shipped, with squad-train-en pinned to the mirror's file."""
    known = dict(registry.datasets())
    ds = known["squad-train-en"]
    (f,) = ds.files
    known["squad-train-en"] = dataclasses.replace(
        ds, files=(dataclasses.replace(f, git_blob=blob),)
    )
    monkeypatch.setattr(registry, "datasets", lambda: known)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every download must come from the mirror folder (file://)."""
    offline(monkeypatch)


def test_without_the_shared_folder_the_default_path_is_fetched_verified_and_planned(
    tmp_path, shared_data_dir, monkeypatch, capsys, no_network
):
    import babelir.compare.plan as plan_mod

    mirror = _mirror(tmp_path, shared_data_dir)
    _pin_official(monkeypatch, git_blob_sha1(mirror / OFFICIAL_EN))
    data = tmp_path / "data"  # empty: no shared folder
    code, out, err = call(
        capsys, "data", "fetch", "--profile", "default", "--data-dir", str(data),
        "--mirror", str(mirror),
    )  # fmt: skip
    assert code == 0, err
    text = " ".join((out + err).split())
    for name in ("squad-train-en", *OTHER_DATASETS):
        assert f"{name}: fetched" in text
    assert "profile zero-shot-quick: 7 datasets ready" in text
    assert (data / OFFICIAL_EN).read_bytes() == (mirror / OFFICIAL_EN).read_bytes()
    assert not (data / SLICE_EN).exists()  # the official file, not the shared slice

    code, out, err = call(
        capsys, "data", "fetch", "--profile", "default", "--data-dir", str(data),
        "--mirror", str(tmp_path / "nowhere"),
    )  # fmt: skip
    assert code == 0, err  # everything verifies: nothing downloaded again
    again = " ".join((out + err).split())
    assert ": fetched" not in again and "squad-train-en: verified" in again

    monkeypatch.setattr(plan_mod, "base_identity", lambda model: "test-base")  # no model build
    code, out, err = call(
        capsys, "compare", "--dry-run", "--data-dir", str(data), "--output", str(tmp_path / "o")
    )
    assert code == 0, err
    text = " ".join(out.split())
    assert "profile zero-shot-quick: 3 training + 4 evaluation jobs" in text
    assert "regime: Zero-shot (xquad-r: no benchmark is the training data" in text
    assert "In-domain" not in text
    assert "stand-in" not in text
    # the selection keeps the 10 articles (3,286 questions), never the 11th
    assert f"source en:{OFFICIAL_EN}#articles=0-9: 3286 items" in text


def test_a_file_that_does_not_match_its_pin_is_refused_and_nothing_is_left(
    tmp_path, shared_data_dir, monkeypatch, capsys, no_network
):
    mirror = _mirror(tmp_path, shared_data_dir)
    _pin_official(monkeypatch, git_blob_sha1(mirror / OFFICIAL_EN))
    arcd = mirror / "training/arcd/arcd.json"
    arcd.write_bytes(arcd.read_bytes() + b" ")  # pinned by SHA-256: one byte off
    data = tmp_path / "data"
    code, _, err = call(
        capsys, "data", "fetch", "--profile", "default", "--data-dir", str(data),
        "--mirror", str(mirror),
    )  # fmt: skip
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "arcd.json" in " ".join(err.split())  # one line, the file
    assert "Traceback" not in err
    assert not (data / "training/arcd/arcd.json").exists()
    leftovers = [p for p in data.rglob("*") if p.name.startswith(".") or ".tmp" in p.name
                 or p.suffix == ".part"]
    assert leftovers == []

    # a wrong pin on the official English file is refused the same way
    _pin_official(monkeypatch, "0" * 40)
    arcd.write_bytes((shared_data_dir / "training/arcd/arcd.json").read_bytes())
    fresh = tmp_path / "data2"
    code, _, err = call(
        capsys, "data", "fetch", "--profile", "default", "--data-dir", str(fresh),
        "--mirror", str(mirror),
    )  # fmt: skip
    assert code != 0 and "0" * 40 in " ".join(err.split())
    assert not (fresh / OFFICIAL_EN).exists()


def test_data_fetch_wants_a_name_or_a_profile(capsys, tmp_path):
    code, _, err = call(capsys, "data", "fetch", "--data-dir", str(tmp_path))
    assert code == 2 and "give a dataset NAME, or --profile" in err
    code, _, err = call(
        capsys, "data", "fetch", "xquad-r", "--profile", "default", "--data-dir", str(tmp_path)
    )
    assert code == 2 and "one of them" in err


def test_with_the_shared_folder_the_default_path_verifies_through_the_stand_in(
    shared_data_dir, capsys
):
    code, out, err = call(capsys, "data", "fetch", "--profile", "default",
                          "--data-dir", str(shared_data_dir))
    assert code == 0, err
    text = " ".join((out + err).split())
    assert "squad-train-en-sample: verified" in text and ": fetched" not in text

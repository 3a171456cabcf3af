"""Hardening (third round) of training sources, SQuAD files, the sampler and TrainConfig.

Each test feeds one input that used to be accepted with wrong results (a file under two
languages, an ``EN`` language code) or to end in a traceback, and checks the one-line
babelir error, or that the input is now read.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from babelir.batches.sampler import ParallelBatchSampler
from babelir.core.errors import ConfigError, DataError
from babelir.data.squad import is_squad_file, load_squad
from babelir.training.config import TrainConfig
from babelir.training.sources import SourceSpec, load_sources, parse_sources

CONTEXT = "Ann went home early. Bob stayed at the house."


def _doc(context: str = CONTEXT, question: str = "Who stayed?") -> dict:
    qas = [
        {"id": "q1", "question": question, "answers": [{"text": "Bob", "answer_start": 21}]},
        {"id": "q2", "question": "Who went home?", "answers": [{"text": "Ann", "answer_start": 0}]},
    ]
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": [
        {"context": context, "qas": qas}]}]}  # fmt: skip


def _squad(path: Path, doc: dict | None = None) -> Path:
    path.write_text(json.dumps(doc or _doc()), "utf-8")
    return path


# --------------------------------------------------------------------------- 6. one file, two langs


def test_same_squad_file_under_two_languages_is_refused(tmp_path: Path) -> None:
    f = _squad(tmp_path / "s.json")
    copy = tmp_path / "copy.json"
    copy.write_bytes(f.read_bytes())  # same bytes under another name: the same text
    for other in (f, copy):
        with pytest.raises(DataError) as err:
            load_sources(parse_sources([f"en:{f}", f"de:{other}"]), tmp_path)
        msg = str(err.value)
        assert f"en:{f}" in msg and f"de:{other}" in msg and "same" in msg and "\n" not in msg
    # one language per file, and a multilingual JSONL file under two LANG: prefixes, load
    ms = load_sources(parse_sources([f"en:{f}"]), tmp_path)
    assert ms.languages == ["en"]
    both = tmp_path / "both.jsonl"
    both.write_text(
        json.dumps({"id": "a", "lang": "en", "query": "q", "positive": "p"}) + "\n"
        + json.dumps({"id": "a", "lang": "de", "query": "f", "positive": "a"}) + "\n",
        "utf-8",
    )
    ms = load_sources(parse_sources([f"en:{both}", f"de:{both}"]), tmp_path)
    assert sorted(ms.data.items[0].sides) == ["de", "en"]


# --------------------------------------------------------------------------- 7. one lang check


@pytest.mark.parametrize("lang", ["EN", "en fr", "../../etc", "e", "english"])
def test_mapping_lang_is_validated_like_the_cli_prefix(lang: str) -> None:
    with pytest.raises(ConfigError, match="not a language code") as err:
        SourceSpec.parse({"path": "a.json", "lang": lang})
    assert repr(lang) in str(err.value) or lang in str(err.value)
    with pytest.raises(ConfigError, match="not a language code"):
        TrainConfig(train_data=[{"path": "a.json", "lang": lang}])
    assert SourceSpec.parse({"path": "a.json", "lang": "zh-Hans"}).lang == "zh-Hans"


@pytest.mark.parametrize("spec", ["EN:x.json", "e:x.json", "En-us:x.json"])
def test_invalid_lang_prefix_is_named_not_reported_as_missing_file(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"language code .* is invalid|not a language code"):
        parse_sources([spec])
    with pytest.raises(ConfigError, match="not a language code"):
        TrainConfig(train_data=spec)
    # paths and URLs that merely hold a colon are no LANG: prefix
    assert SourceSpec.parse("https://host/x.json").lang is None
    assert SourceSpec.parse("data.zip:valid.jsonl").lang is None


# --------------------------------------------------------------------------- 14. surrogates


@pytest.mark.parametrize(
    ("field", "where"),
    [("context", r"data\[0\] \(T\)\.paragraphs\[0\]"), ("question", r"paragraphs\[0\]\.qas\[0\]")],
)
def test_lone_surrogate_is_refused_naming_file_place_and_field(
    tmp_path: Path, field: str, where: str
) -> None:
    text = json.dumps(_doc())
    old = "Bob stayed" if field == "context" else "Who stayed"
    path = tmp_path / "sur.json"
    path.write_text(text.replace(old, old[:3] + " \\ud800" + old[3:]), "utf-8")  # valid JSON
    with pytest.raises(DataError) as err:
        load_squad(path, "en")
    msg = str(err.value)
    assert str(path) in msg and f"'{field}'" in msg and "surrogate" in msg and "\n" not in msg
    import re

    assert re.search(where, msg), msg


# --------------------------------------------------------------------------- smaller ones


def test_bom_prefixed_squad_file_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_doc()).encode())
    assert is_squad_file(path)
    ms = load_sources(parse_sources([f"en:{path}"]), tmp_path)
    assert len(ms.data.items) == 2 and ms.records[0].squad is not None


def test_empty_zip_is_called_an_empty_zip(tmp_path: Path) -> None:
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w"):
        pass
    for load in (
        lambda: load_squad(path, "en"),
        lambda: load_sources(parse_sources([f"en:{path}"]), tmp_path),
    ):
        with pytest.raises(DataError, match="empty zip") as err:
            load()
        assert "JSON" not in str(err.value) and str(path) in str(err.value)


# --------------------------------------------------------------------------- 20. library errors


def _table(n: int = 8) -> dict[str, list]:
    rows: dict[str, list] = {k: [] for k in ("id", "query_lang", "passage_lang", "query",
                                             "positive")}  # fmt: skip
    for i in range(n):
        for lang in ("en", "de"):
            rows["id"].append(f"q{i}")
            rows["query_lang"].append(lang)
            rows["passage_lang"].append(lang)
            rows["query"].append(f"{lang} question {i}")
            rows["positive"].append(f"{lang} passage {i}")
    return rows


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"dataset": None}, "dataset"),
        ({"dataset": 5}, "dataset"),
        ({"seed": "abc"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
    ],
)
def test_sampler_bad_arguments_are_config_errors(kwargs: dict, text: str) -> None:
    args = {"dataset": _table(), "batch_size": 2, "strategy": "x-x-mono", **kwargs}
    with pytest.raises(ConfigError, match=text) as err:
        ParallelBatchSampler(**args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("epoch", [-1, "1", 1.5, None])
def test_sampler_set_epoch_refuses_non_epochs(epoch: object) -> None:
    sampler = ParallelBatchSampler(_table(), batch_size=2, strategy="x-x-mono")
    with pytest.raises(ConfigError, match="epoch"):
        sampler.set_epoch(epoch)  # type: ignore[arg-type]
    sampler.set_epoch(3)
    assert sampler.epoch == 3 and len(list(sampler)) == len(sampler)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch_size": "x"}, "batch_size"),
        ({"warmup_ratio": 5}, "warmup_ratio"),
        ({"max_seq_length": 1}, "max_seq_length"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_train_config_raises_config_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(**kwargs)
    msg = str(err.value)
    assert msg.startswith(f"{field}:") and "\n" not in msg, msg

"""SQuAD-format training data: answer checks, input forms, errors, counts on the real files."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from babelir.core.errors import DataError
from babelir.core.settings import data_dir
from babelir.data.squad import load_squad, split_agreement, split_sentences
from babelir.data.types import ParallelItem

S1 = "The university was founded in 1842 by Father Edward Sorin."
S2 = "Its main building has a golden dome."
S3 = "A statue of Mary stands on top of it."
CONTEXT = f"{S1} {S2} {S3}"


def qa(qid: str, question: str, text: str, start: int) -> dict[str, Any]:
    return {"id": qid, "question": question, "answers": [{"text": text, "answer_start": start}]}


def doc(*qas: dict[str, Any], context: str = CONTEXT, title: str = "Notre_Dame") -> dict:
    return {"version": "1.1", "data": [{"title": title, "paragraphs": [
        {"context": context, "qas": list(qas)}]}]}  # fmt: skip


def write(tmp_path: Path, content: Any, name: str = "train.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content) if not isinstance(content, str) else content, "utf-8")
    return path


def test_exact_offset_gives_answer_sentence_and_the_others_as_negatives(tmp_path: Path) -> None:
    start = CONTEXT.index("golden dome")
    path = write(tmp_path, doc(qa("q1", " What tops it? ", "golden dome", start)))
    data, stats = load_squad(path, "en")
    [item] = data.items
    assert item.id == "q1" and item.group == "Notre_Dame"
    side = item.sides["en"]
    assert (side.query, side.positive, side.negatives) == ("What tops it?", S2, (S1, S3))
    assert stats["exact"] == 1 and stats["found_by_text"] == stats["paragraph"] == 0
    shape = (stats["articles"], stats["paragraphs"], stats["sentences"], stats["items"])
    assert shape == (1, 1, 3, 1)
    assert json.loads(json.dumps(stats)) == stats  # JSON-safe for the run record


def test_wrong_offset_is_found_by_text(tmp_path: Path) -> None:
    entries = qa("q1", "Who?", "Father Edward Sorin", 0), qa("q2", "?", "Mary", 99)
    path = write(tmp_path, doc(*entries))
    data, stats = load_squad(path, "en")
    assert [it.sides["en"].positive for it in data.items] == [S1, S3]
    assert stats["found_by_text"] == 2 and stats["exact"] == 0


def test_absent_answer_pairs_with_the_paragraph_or_is_dropped(tmp_path: Path) -> None:
    path = write(tmp_path, doc(qa("q1", "Where?", "Lourdes", 0), qa("q2", "Dome?", "dome", 0)))
    data, stats = load_squad(path, "en")
    assert data.items[0].sides["en"].positive == CONTEXT
    assert data.items[0].sides["en"].negatives == ()
    assert (stats["paragraph"], stats["found_by_text"], stats["dropped"]) == (1, 1, 0)
    data, stats = load_squad(path, "en", on_missing="drop")
    assert data.ids == ["q2"] and (stats["paragraph"], stats["dropped"]) == (0, 1)


def test_paragraph_mode_and_counts_of_bad_entries(tmp_path: Path) -> None:
    entries = (
        qa("q1", "Dome?", "golden dome", CONTEXT.index("golden")),
        qa("q1", "Again?", "dome", 0),  # repeated id: first kept
        qa("q3", "  ", "dome", 0),  # empty question
        {"id": "q4", "question": "No answers?", "answers": []},  # empty (SQuAD 2 style)
        {"id": "q5", "question": "Broken?", "answers": "dome"},  # invalid
        "not an object",  # invalid
    )
    data, stats = load_squad(write(tmp_path, doc(*entries)), "en", passage="paragraph")
    assert data.ids == ["q1"] and data.items[0].sides["en"].positive == CONTEXT
    counts = (stats["duplicate"], stats["empty"], stats["invalid"], stats["questions"])
    assert counts == (1, 2, 2, 6)


def test_gzip_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "train-v1.1_de.json_chkp1"  # SQuAD-de's real name has no .json end
    path.write_bytes(gzip.compress(json.dumps(doc(qa("q1", "Dome?", "dome", 0))).encode()))
    data, stats = load_squad(path, "de")
    assert data.ids == ["q1"] and stats["found_by_text"] == 1
    assert stats["source"] == str(path)


def rows(n: int, split: str) -> str:
    out = []
    for i in range(n):
        out.append(json.dumps({
            "question_id": f"{split}_{i}", "article_id": f"art{i % 2}", "title": f"T{i % 2}",
            "context": CONTEXT, "question": f"q {i}?",
            "answers": {"text": ["golden dome"], "answer_start": [CONTEXT.index("golden")]},
        }))  # fmt: skip
    return "\n".join(out) + "\n"


def test_zip_of_jsonl_picks_train_or_the_named_member(tmp_path: Path) -> None:
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/", "")
        zf.writestr("data/train.jsonl", rows(3, "train"))
        zf.writestr("data/valid.jsonl", rows(2, "valid"))
    data, stats = load_squad(path, "th")
    assert data.ids == ["train_0", "train_2", "train_1"]  # rows grouped by article
    assert stats["source"] == f"{path}:data/train.jsonl" and stats["exact"] == 3
    assert {it.group for it in data.items} == {"art0", "art1"}
    assert stats["articles"] == 2 and stats["paragraphs"] == 2
    assert load_squad(f"{path}:valid.jsonl", "th")[0].ids == ["valid_0", "valid_1"]
    assert load_squad(f"{path}:data/valid.jsonl", "th")[0].ids == ["valid_0", "valid_1"]
    with pytest.raises(DataError, match=r"data\.zip: no member 'test'.*data/train\.jsonl"):
        load_squad(f"{path}:test", "th")

    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.jsonl", rows(1, "a"))
        zf.writestr("b.jsonl", rows(1, "b"))
    with pytest.raises(DataError, match=r"two\.zip: cannot tell which member.*two\.zip:MEMBER"):
        load_squad(two, "th")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("train.jsonl", rows(1, "x") + "{oops\n")
    with pytest.raises(DataError, match=r"bad\.zip:train\.jsonl:2: malformed JSON"):
        load_squad(bad, "th")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("{not json", r"bad\.json: malformed JSON at line 1"),
        ("[1, 2]", r"bad\.json: not SQuAD v1\.1 format .*got list"),
        ('{"version": "1.1"}', r"bad\.json: not SQuAD v1\.1 format .*keys \['version'\]"),
        ('{"data": [{"title": "A"}]}', r"bad\.json: data\[0\] \(A\): missing field 'paragraphs'"),
        (
            json.dumps({"data": [{"title": "A", "paragraphs": [{"qas": []}]}]}),
            r"bad\.json: data\[0\] \(A\)\.paragraphs\[0\]: missing field 'context'",
        ),
        (
            json.dumps({"data": [{"title": "A", "paragraphs": [{"context": "x"}]}]}),
            r"bad\.json: data\[0\] \(A\)\.paragraphs\[0\]: missing field 'qas'",
        ),
        ("PK\x03\x04 truncated", r"bad\.json: not a readable zip"),
        (json.dumps(doc(qa("q1", "Where?", "Lourdes", 0))), r"bad\.json: no usable question"),
    ],
)
def test_errors_name_the_file_and_place(tmp_path: Path, content: str, pattern: str) -> None:
    path = write(tmp_path, content, "bad.json")
    on_missing = "drop" if "Lourdes" in content else "paragraph"
    with pytest.raises(DataError, match=pattern) as err:
        load_squad(path, "en", on_missing=on_missing)  # type: ignore[arg-type]
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_missing_file_and_gz_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.json: file not found"):
        load_squad(tmp_path / "nope.json", "en")
    broken = tmp_path / "x.json.gz"
    broken.write_bytes(gzip.compress(b'{"data": []}')[:-6])
    with pytest.raises(DataError, match=r"x\.json\.gz: not a readable gzip"):
        load_squad(broken, "en")


def test_spans_are_character_offsets_in_chinese_and_arabic() -> None:
    zh = "黑豹队的防守只丢了308分。职业碗防守截锋卡万·肖特领先全队！他的队友贡献了6½次擒杀。"
    spans = split_sentences(zh, "zh")
    assert [zh[s:e] for s, e in spans] == [
        "黑豹队的防守只丢了308分。", "职业碗防守截锋卡万·肖特领先全队！", "他的队友贡献了6½次擒杀。"
    ]  # fmt: skip
    ar = "ذهب الولد إلى المدرسة. هل ذهبت؟ نعم، ذهبت."
    assert [ar[s:e] for s, e in split_sentences(ar, "ar")] == [
        "ذهب الولد إلى المدرسة.", "هل ذهبت؟", "نعم، ذهبت."]  # fmt: skip
    assert split_sentences("   ", "en") == []


def test_group_falls_back_to_article_index(tmp_path: Path) -> None:
    content = doc(qa("q1", "Dome?", "dome", 0))
    del content["data"][0]["title"]
    data, _ = load_squad(write(tmp_path, content), "en")
    assert data.items[0].group == "article 0"
    assert ParallelItem("x").group is None  # other loaders leave it unset


def test_split_agreement_on_the_fixture(shared_data_dir: Path) -> None:
    r = split_agreement(shared_data_dir / "fixtures" / "xquad-r" / "en.json", "en")
    assert r["paragraphs"] == 2 and r["questions"] == 30
    assert 0.8 < r["f1"] <= 1.0 and 0.8 < r["same_positive"] <= 1.0


TRAINING = [
    ("en", "squad-v1.1-train-en/first10-articles.json"),
    ("pt", "squad-v1.1-train-pt/sample-v1.1-pt.json"),
    ("de", "squad-v1.1-train-de/train-v1.1_translated.json_chkp1"),
    ("ar", "arcd/arcd.json"),
    ("zh", "cmrc2018/cmrc2018_dev.json"),
    ("zh", "cmrc2018/cmrc2018_trial.json"),
    ("th", "iapp-wiki-qa/data.zip"),
]


def test_real_training_files_give_plausible_counts() -> None:
    root = data_dir() / "training"
    if not all((root / p).is_file() for _, p in TRAINING):
        pytest.skip(f"training data not found under {root}")
    stats = {p: load_squad(root / p, lang)[1] for lang, p in TRAINING}
    for s in stats.values():
        located = s["exact"] + s["found_by_text"] + s["paragraph"] + s["dropped"]
        assert located + s["empty"] + s["invalid"] + s["duplicate"] == s["questions"]
        assert s["sentences"] >= s["paragraphs"] > 0
    en, pt, de = (stats[TRAINING[i][1]] for i in range(3))
    assert en["exact"] == en["questions"] == 3286  # rebuilt with every span checked
    assert pt["questions"] == 3286 and pt["exact"] == 2110  # as the data README counts
    assert de["questions"] == 1027 and de["exact"] == 614
    assert stats["arcd/arcd.json"]["questions"] == 1395
    assert stats["cmrc2018/cmrc2018_dev.json"]["questions"] == 3219
    iapp = stats["iapp-wiki-qa/data.zip"]
    assert iapp["source"].endswith("data.zip:data/train.jsonl") and iapp["items"] == 5761
    en_ids = set(load_squad(root / TRAINING[0][1], "en")[0].ids)
    assert set(load_squad(root / TRAINING[2][1], "de")[0].ids) <= en_ids  # ids link sources

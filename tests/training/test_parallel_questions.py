"""Parallel questions (Mintaka, XOR-TyDi translations, JSONL): x-y batches only.

Slices of the real files: the first Mintaka entries, the first lines of two XOR-TyDi
language pairs; QA data: the shared SQuAD en and pt slices (linked by id).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from testkit.cli import call, compare_dry_run

from babelir.batches.sampler import ParallelBatchSampler
from babelir.core.errors import ConfigError, DataError
from babelir.data.parallel import pair_table
from babelir.data.parallel_questions import load_questions, question_format
from babelir.data.types import QUESTION, ParallelQA
from babelir.training.config import TrainConfig
from babelir.training.data import build_training_data
from babelir.training.sources import BenchmarkTexts, SourceSpec, check_leaks, normalise

EN = "en:training/squad-v1.1-train-en/first10-articles.json"
PT = "pt:training/squad-v1.1-train-pt/sample-v1.1-pt.json"
MINTAKA = "training/mintaka/mintaka_dev.json"
XOR = "training/xor-tydi-question-translations"


@pytest.fixture(scope="module")
def slices(shared_data_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """The first 300 Mintaka entries (its own layout) and the first 150 lines of XOR-TyDi's
    ar-en and fi-en (a folder of line-aligned folders)."""
    root = tmp_path_factory.mktemp("pq")
    entries = json.loads((shared_data_dir / MINTAKA).read_text("utf-8"))[:300]
    mintaka = root / "mintaka-300.json"
    mintaka.write_text(json.dumps(entries, indent=4, ensure_ascii=False), "utf-8")
    xor = root / "xor-slice"
    for pair in ("ar-en", "fi-en"):
        (xor / pair).mkdir(parents=True)
        for f in (shared_data_dir / XOR / pair).glob("*.txt"):
            lines = f.read_text("utf-8").split("\n")[:150]
            (xor / pair / f.name).write_text("\n".join(lines) + "\n", "utf-8")
    return {"mintaka": mintaka, "xor": xor}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def _batches(capsys, out: Path, *args: str) -> tuple[list[dict], str]:
    """The batches written and what the command printed (on stderr, as its other notes)."""
    code, stdout, stderr = call(capsys, "batches", "--output", str(out), *args)
    assert code == 0, stdout + stderr
    return [json.loads(line) for line in out.read_text("utf-8").splitlines()], stderr


def _check_guarantees(batches: list[dict], replicas: int = 1) -> None:
    """No id twice in a step; one batch type per step; question pairs in x-y batches only,
    always across two languages."""
    steps: dict[int, list[dict]] = {}
    for b in batches:
        steps.setdefault(b["step"], []).append(b)
    for group in steps.values():
        assert len(group) == replicas and len({b["type"] for b in group}) == 1
        ids = [p["id"] for b in group for p in b["pairs"]]
        assert len(ids) == len(set(ids))
    for b in batches:
        for p in b["pairs"]:
            if p["origin"] == QUESTION:
                assert b["type"] == "cross" and p["query_lang"] != p["passage_lang"]


# ------------------------------------------------------------------ formats, real files


def test_formats_are_told_apart_by_their_bytes(shared_data_dir, slices, tmp_path):
    d = shared_data_dir
    assert question_format(d / MINTAKA) == "mintaka"
    assert question_format(slices["mintaka"]) == "mintaka"
    assert question_format(d / XOR) == "aligned"  # a folder of {ar,bn,...}-en folders
    assert question_format(d / XOR / "ar-en") == "aligned"
    rows = [{"id": 1, "lang": "en", "text": "Who?"}, {"id": 1, "lang": "de", "text": "Wer?"}]
    assert question_format(_jsonl(tmp_path / "q.data", rows)) == "jsonl"  # any file name
    for other in (d / EN[3:], d / "training/mintaka", d / "xquad-r", d / PT[3:]):
        assert question_format(other) is None
    qa = [{"id": "a", "lang": "en", "query": "q", "positive": "p", "text": "t"}]
    assert question_format(_jsonl(tmp_path / "qa.jsonl", qa)) is None  # QA JSONL


def test_real_xor_translations_skip_blank_and_untranslated_lines(shared_data_dir):
    data, stats = load_questions(shared_data_dir / XOR)
    assert stats["format"] == "aligned" and stats["questions"] == len(data.items) > 30_000
    assert stats["blank"] >= 1  # ar-en/en.txt has an empty line
    assert stats["same_text"] >= 100  # fi-en/en.txt repeats Finnish questions untranslated
    langs = Counter(lang for it in data.items for lang in it.sides)
    assert set(langs) == {"ar", "bn", "fi", "ja", "ko", "ru", "te", "en"}
    assert langs["en"] == len(data.items)  # every pair is LANG + en
    assert all(it.kind == QUESTION and len(it.sides) == 2 for it in data.items)
    first = next(it for it in data.items if it.id == "ar-en:1")
    assert first.sides["en"].query.startswith("When was the law of gender identity")


def test_real_mintaka_gives_nine_languages_per_question(shared_data_dir):
    data, stats = load_questions(shared_data_dir / MINTAKA)
    assert stats["format"] == "mintaka" and len(data.items) > 1900
    assert all(len(it.sides) == 9 for it in data.items)
    assert data.languages == ["ar", "de", "en", "es", "fr", "hi", "it", "ja", "pt"]
    table = pair_table(ParallelQA(data.items[:5]))
    assert set(table["origin"]) == {QUESTION}
    assert len(table["id"]) == 5 * 9 * 8  # cross-language rows only
    assert all(q != p for q, p in zip(table["query_lang"], table["passage_lang"], strict=True))
    row = table["query_lang"].index("de")
    item = data.items[0]
    assert table["positive"][row] == item.sides[table["passage_lang"][row]].query
    assert pair_table(ParallelQA(data.items[:5]), cross=False)["id"] == []


# ------------------------------------------------------------------ specs and config


def test_prefix_mapping_and_plain_path_all_name_a_parallel_source(shared_data_dir):
    spec = SourceSpec.parse(f"parallel:{XOR}")
    assert spec == SourceSpec(XOR, parallel=True) and spec.label == f"parallel:{XOR}"
    assert SourceSpec.parse(spec.to_value()) == spec
    half = SourceSpec.parse({"path": XOR, "parallel": True, "weight": 0.5})
    assert half.to_value() == {"path": XOR, "weight": 0.5, "parallel": True}
    with pytest.raises(ConfigError, match="parallel questions take no language"):
        SourceSpec.parse({"path": XOR, "parallel": True, "lang": "ar"})
    with pytest.raises(ConfigError, match="'parallel' must be true or false"):
        SourceSpec.parse({"path": XOR, "parallel": "yes"})
    # a plain path recognised by its bytes is read as parallel:PATH (also in cache keys)
    cfg = TrainConfig(train_data=MINTAKA, data_dir=str(shared_data_dir))
    assert cfg.train_data == [f"parallel:{MINTAKA}"]
    assert TrainConfig(train_data="xquad-r", data_dir=str(shared_data_dir)).train_data == "xquad-r"


def test_parallel_share_is_validated_and_keys_only_when_set():
    assert "parallel_share" not in TrainConfig().identity()  # earlier runs keep their keys
    assert TrainConfig(parallel_share=0.3).identity()["parallel_share"] == 0.3
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="parallel_share"):
            TrainConfig(parallel_share=bad)
    with pytest.raises(ConfigError, match="parallel_share"):
        TrainConfig(parallel_share=True)


def test_a_language_prefix_or_the_same_questions_twice_are_refused(shared_data_dir, slices,
                                                                   tmp_path):
    cfg = TrainConfig(train_data=[f"ar:{XOR}/ar-en", EN], data_dir=str(shared_data_dir))
    with pytest.raises(ConfigError, match="holds parallel questions in several languages"):
        build_training_data(cfg)
    copy = tmp_path / "copy.json"
    copy.write_bytes(slices["mintaka"].read_bytes())
    cfg = TrainConfig(train_data=[str(slices["mintaka"]), str(copy)], strategy="x-y")
    with pytest.raises(DataError, match="hold the same parallel questions"):
        build_training_data(cfg)


# ------------------------------------------------------------------ batches


def test_batches_cli_puts_question_pairs_in_xy_batches_only(shared_data_dir, slices, tmp_path,
                                                            capsys):
    """The issue's check: parallel questions beside linked en/pt QA sources."""
    batches, stdout = _batches(
        capsys, tmp_path / "b.jsonl", "--strategy", "hybrid", "--batch-size", "16",
        "--num-batches", "40", "--data-dir", str(shared_data_dir), "--train-data", EN,
        "--train-data", PT, "--train-data", str(slices["mintaka"]),
        "--train-data", f"parallel:{slices['xor']}",
    )  # fmt: skip
    _check_guarantees(batches)
    kinds = Counter(b["type"] for b in batches)
    assert kinds["mono"] and kinds["cross"]
    for b in batches:
        origins = Counter(p["origin"] for p in b["pairs"])
        if b["type"] == "mono":
            assert set(origins) == {"qa"}
            assert len({(p["query_lang"], p["passage_lang"]) for p in b["pairs"]}) == 1
    cross = [p for b in batches if b["type"] == "cross" for p in b["pairs"]]
    questions = [p for p in cross if p["origin"] == QUESTION]
    assert questions and any(p["origin"] == "qa" for p in cross)
    assert {p["id"].split(":")[0] for p in questions} == {"mintaka-300.json", "xor-slice"}
    qa_langs = {(p["query_lang"], p["passage_lang"]) for p in cross if p["origin"] == "qa"}
    assert qa_langs <= {("en", "pt"), ("pt", "en")}
    # the per-language-pair counts of what was written
    assert "from QA data / from parallel questions" in stdout
    n = sum(1 for p in cross if {p["query_lang"], p["passage_lang"]} == {"en", "pt"})
    q = sum(1 for p in questions if {p["query_lang"], p["passage_lang"]} == {"en", "pt"})
    assert f"  en-pt: {n - q} QA / {q} parallel questions" in stdout


@pytest.mark.parametrize("share", [0.25, 1.0])
def test_parallel_share_fixes_the_question_pairs_of_every_xy_batch(
    share, shared_data_dir, slices, tmp_path, capsys
):
    batches, stdout = _batches(
        capsys, tmp_path / "b.jsonl", "--strategy", "x-y", "--batch-size", "16",
        "--num-batches", "12", "--data-dir", str(shared_data_dir), "--train-data", EN,
        "--train-data", PT, "--train-data", str(slices["mintaka"]),
        "--parallel-share", str(share),
    )  # fmt: skip
    _check_guarantees(batches)
    assert f"(parallel_share {share:g})" in stdout
    for b in batches:
        assert sum(p["origin"] == QUESTION for p in b["pairs"]) == round(share * 16)


def test_fractional_share_is_drawn_per_step_and_equal_on_every_rank(shared_data_dir, slices):
    cfg = TrainConfig(train_data=[EN, PT, str(slices["mintaka"])], data_dir=str(shared_data_dir),
                      val_articles="none", parallel_share=0.3)  # fmt: skip
    table = build_training_data(cfg).table
    sampler = ParallelBatchSampler(table, batch_size=10, strategy="x-y", num_replicas=2,
                                   num_batches=200)  # fmt: skip
    assert sampler.parallel_share == 0.3  # read from the table
    per_step: dict[int, set[int]] = {}
    total = 0
    for b in sampler.iter_batches():
        k = sum(table["origin"][r] == QUESTION for r in b.rows)
        per_step.setdefault(b.step, set()).add(k)
        total += k
    assert all(len(ks) == 1 for ks in per_step.values())  # both ranks take the same count
    assert {k for ks in per_step.values() for k in ks} == {3}  # 0.3 x 10: exact
    sampler = ParallelBatchSampler(table, batch_size=10, strategy="x-y", num_replicas=2,
                                   num_batches=400, parallel_share=0.35)  # fmt: skip
    counts = Counter()
    for b in sampler.iter_batches():
        counts[(b.step, sum(table["origin"][r] == QUESTION for r in b.rows))] += 1
    assert {k for _, k in counts} == {3, 4} and all(n == 2 for n in counts.values())
    mean = sum(k for _, k in counts) / len(counts)
    assert math.isclose(mean, 3.5, abs_tol=0.35)


def test_no_monolingual_strategy_ever_sees_a_question(shared_data_dir, slices):
    cfg = TrainConfig(train_data=[EN, PT, str(slices["mintaka"])], data_dir=str(shared_data_dir),
                      val_articles="none")  # fmt: skip
    table = build_training_data(cfg).table
    for strategy in ("x-x-mono", "x-x", "en-en", "hybrid"):
        sampler = ParallelBatchSampler(table, batch_size=8, strategy=strategy, num_batches=60)
        for b in sampler.iter_batches():
            if b.type == "mono":
                assert all(table["origin"][r] == "qa" for r in b.rows), strategy
    bad = {"id": ["a", "b"], "query_lang": ["en", "de"], "passage_lang": ["en", "en"],
           "query": ["q1", "q2"], "positive": ["p1", "p2"], "origin": [QUESTION, QUESTION]}
    with pytest.raises(DataError, match="row 0 pairs a parallel question with its own language"):
        ParallelBatchSampler(bad, batch_size=2, strategy="x-y")


def test_questions_alone_feed_xy_without_validation(shared_data_dir, slices):
    cfg = TrainConfig(train_data=str(slices["xor"]), strategy="x-y")
    assert cfg.train_data == [f"parallel:{slices['xor']}"]
    td = build_training_data(cfg)
    assert td.val is None and "no QA items to validate on" in td.val_note
    assert set(td.table["origin"]) == {QUESTION}
    with pytest.raises(DataError, match="needs same-language pairs"):
        ParallelBatchSampler(td.table, batch_size=8, strategy="hybrid")
    assert len(ParallelBatchSampler(td.table, batch_size=8, strategy="x-y")) > 0


def test_share_hard_negatives_and_missing_qa_pairs_are_refused(shared_data_dir, slices):
    base = dict(data_dir=str(shared_data_dir), val_articles="none")
    with pytest.raises(ConfigError, match="parallel_share: the training data holds no parallel"):
        build_training_data(TrainConfig(train_data=[EN, PT], parallel_share=0.5, **base))
    with pytest.raises(ConfigError, match="parallel_share: the training data holds no parallel"):
        build_training_data(TrainConfig(train_data="xquad-r", parallel_share=0.5, **base))
    with pytest.raises(ConfigError, match="hard_negatives: parallel questions have no passages"):
        build_training_data(TrainConfig(train_data=[EN, PT, str(slices["mintaka"])],
                                        hard_negatives=True, **base))  # fmt: skip
    # a monolingual QA source gives no x-y pairs: a share below 1 cannot be met
    td = build_training_data(TrainConfig(train_data=[EN, str(slices["mintaka"])],
                                         parallel_share=0.5, **base))  # fmt: skip
    with pytest.raises(DataError, match=r"set parallel_share to 1"):
        ParallelBatchSampler(td.table, batch_size=8, strategy="hybrid")
    ParallelBatchSampler(td.table, batch_size=8, strategy="hybrid", parallel_share=1.0)


# ------------------------------------------------------------------ leaks


def test_leak_checks_compare_every_translation_with_benchmark_questions(tmp_path):
    rows = [
        {"id": "1", "lang": "en", "text": "Who wrote Hamlet?"},
        {"id": "1", "lang": "de", "text": "Wer schrieb Hamlet?"},
        {"id": "2", "lang": "en", "text": "Where is Paris?"},
        {"id": "2", "lang": "fr", "text": "Où est Paris ?"},
    ]
    data, _ = load_questions(_jsonl(tmp_path / "q.jsonl", rows))
    bench = BenchmarkTexts("bench", frozenset(), frozenset({normalise("Wer schrieb Hamlet")}),
                           frozenset())  # fmt: skip
    with pytest.raises(DataError, match="by question text"):
        check_leaks(data, [bench])
    kept, overlaps = check_leaks(data, [bench], drop=True)
    assert [it.id for it in kept.items] == ["2"] and overlaps[0].by_question == {"1"}


def test_a_real_question_source_is_checked_against_xquad_r(shared_data_dir, slices, tmp_path):
    """An XQuAD-R German question slipped into a question file is found and dropped."""
    de = json.loads((shared_data_dir / "xquad-r" / "de.json").read_text("utf-8"))
    question = de["data"][0]["paragraphs"][0]["qas"][0]["question"]
    rows = [{"id": "x", "lang": "de", "text": question}, {"id": "x", "lang": "en", "text": "Q?"}]
    leak = _jsonl(tmp_path / "leak.jsonl", rows)
    cfg = dict(data_dir=str(shared_data_dir), disjoint_from=["xquad-r"], val_articles="none",
               strategy="x-y")  # fmt: skip
    with pytest.raises(DataError, match=r"xquad-r: 1 items .*by question text"):
        build_training_data(TrainConfig(train_data=[str(slices["mintaka"]), str(leak)], **cfg))
    td = build_training_data(TrainConfig(train_data=[str(slices["mintaka"]), str(leak)],
                                         drop_overlap=True, **cfg))  # fmt: skip
    assert td.overlaps == ["leak.jsonl:x"]


# ------------------------------------------------------------------ bad files


def _mintaka_entry(qid: str, **change) -> dict:
    entry = {"id": qid, "question": "Who?", "translations": {"de": "Wer?", "fr": "Qui ?"}}
    entry.update(change)
    return entry


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_mintaka_entry("b", translations=["Wer?"]), r"entry 1: 'translations' must map"),
        (_mintaka_entry("b", translations={"DE": "Wer?"}), r"entry 1: translations: 'DE' is not"),
        (_mintaka_entry("a"), r"id 'a' given twice \(entries 0 and 1\)"),
        ({"id": "b", "question": "Who?"}, r"entry 1 has no 'translations'"),
        (_mintaka_entry("b", translations={"en": "Who?"}), r"entry 1: 'translations' repeats"),
    ],
)
def test_bad_mintaka_entries_name_file_and_line(entry, message, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([_mintaka_entry("a"), entry], indent=4), "utf-8")
    line = json.dumps([_mintaka_entry("a"), entry], indent=4).split("\n").index("    {", 2) + 1
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:{line}: {message}") as e:
        load_questions(path, "mintaka")
    assert "\n" not in str(e.value)


def test_bad_files_give_one_line_errors_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"id": "a", "question": "Who?",\n  "translations": {"de": }}\n]', "utf-8")
    with pytest.raises(DataError, match=rf"{bad}: malformed JSON at line 3"):
        load_questions(bad, "mintaka")
    rows = tmp_path / "q.jsonl"
    rows.write_text('{"id": 1, "lang": "en", "text": "Who?"}\n{"id": 1, "lang": "de"}\n', "utf-8")
    with pytest.raises(DataError, match=rf"{rows}:2: missing field 'text'"):
        load_questions(rows)
    rows.write_text('{"id": 1, "lang": "en", "text": "A?"}\n{"id": 1, "lang": "en", "text": "B"}\n')
    with pytest.raises(DataError, match=rf"{rows}:2: id 1 has a second 'en' line \(first on line"):
        load_questions(rows)
    folder = tmp_path / "aligned"
    folder.mkdir()
    (folder / "ar.txt").write_bytes("س١\nس٢\n".encode() + b"\xff\xfe\n")
    (folder / "en.txt").write_text("Q1\nQ2\nQ3\n", "utf-8")
    with pytest.raises(DataError, match=rf"{folder / 'ar.txt'}:3: not UTF-8 text"):
        load_questions(folder)
    (folder / "ar.txt").write_text("س١\nس٢\n", "utf-8")
    with pytest.raises(DataError, match=r"files differ in length \(lines: ar.txt 2, en.txt 3"):
        load_questions(folder)
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"version": "1.1", "data": []}), "utf-8")
    with pytest.raises(DataError, match="not a parallel-question source"):
        build_training_data(TrainConfig(train_data=[f"parallel:{squad}"], val_articles="none"))
    # through the command line: exit 2, one line naming the file and line
    rows.write_text('{"id": 1, "lang": "EN", "text": "A?"}\n', "utf-8")
    code, _, err = call(capsys, "batches", "--output", str(tmp_path / "o.jsonl"),
                        "--train-data", f"parallel:{rows}")  # fmt: skip
    assert code == 2 and f"{rows}:1: field 'lang': 'EN' is not a language code" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unpaired_and_duplicate_questions_are_skipped_and_counted(tmp_path):
    rows = [
        {"id": "1", "lang": "en", "text": "Who?"},
        {"id": "1", "lang": "de", "text": "Wer?"},
        {"id": "2", "lang": "en", "text": "Alone?"},  # one language: no pair
        {"id": "3", "lang": "en", "text": "Who?"},  # asked again
        {"id": "3", "lang": "es", "text": "¿Quién?"},
        {"id": "4", "lang": "en", "text": "Same"},
        {"id": "4", "lang": "fi", "text": "Same"},  # not translated
        {"id": "4", "lang": "de", "text": "  "},
    ]
    data, stats = load_questions(_jsonl(tmp_path / "q.jsonl", rows))
    assert [it.id for it in data.items] == ["1"]
    assert stats == {"format": "jsonl", "questions": 1, "blank": 1, "duplicates": 1,
                     "same_text": 1, "unpaired": 2}  # fmt: skip


# ------------------------------------------------------------------ compare dry run


def test_compare_dry_run_counts_xy_pairs_per_language_pair(shared_data_dir, slices, tmp_path,
                                                           capsys, monkeypatch):
    import babelir.compare.plan as plan_mod

    monkeypatch.setattr(plan_mod, "base_identity", lambda model: "test-base")  # no model build
    code, out, err = compare_dry_run(
        capsys, tmp_path,
        "name: pq\nseeds: [0]\nstrategies: [x-x-mono, x-y, hybrid]\n"
        f"train: {{data: ['{EN}', '{PT}', '{slices['mintaka']}', "
        f"{{path: '{slices['xor']}', parallel: true}}], parallel_share: 0.25, "
        "batch_size: 8, max_steps: 2}\n"
        "benchmarks: [{name: xquad-r, languages: [en, de], articles: '0'}]\n",
        shared_data_dir,
    )  # fmt: skip
    assert code == 0, out + err
    assert "source " + str(slices["mintaka"]) + ": 300 parallel questions (mintaka;" in out
    assert f"source parallel:{slices['xor']}: " in out and "(aligned; x-y batches only" in out
    assert "x-y pairs per language pair, from QA data / from parallel questions " in out
    assert "(parallel_share 0.25:" in out
    pairs = {
        m.group(1): (int(m.group(2)), int(m.group(3)))
        for m in re.finditer(r"^  (\S+): (\d+) QA / (\d+) parallel questions$", out, re.M)
    }
    assert set(pairs) >= {"en-pt", "ar-en", "en-fi", "de-fr", "ar-de"}
    n = len(load_questions(slices["mintaka"])[0].items)  # each in all nine languages
    assert pairs["en-pt"][0] > 0 and pairs["en-pt"][1] == 2 * n  # both directions
    assert pairs["ar-de"] == (0, 2 * n)
    assert pairs["en-fi"][0] == 0 and 0 < pairs["en-fi"][1] <= 2 * 150

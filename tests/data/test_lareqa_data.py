"""Loading LAReQA-format benchmarks: relevance, selections and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from babelir.core.errors import BabelirError, ConfigError, DataError
from babelir.data.lareqa import check_disjoint, find_sentence, load_benchmark
from babelir.data.types import ArticleSelection


def test_fixture_relevance(shared_data_dir: Path):
    b = load_benchmark(shared_data_dir / "fixtures" / "xquad-r")
    assert b.languages == ["de", "en", "zh"]
    assert b.num_questions == 90  # 30 questions in each of 3 languages
    # every question has exactly one relevant sentence per language (XQuAD is parallel)
    assert all(len(r) == 3 for r in b.relevant)
    for qi, rel in enumerate(b.relevant):
        langs = sorted(b.candidate_langs[c] for c in rel)
        assert langs == ["de", "en", "zh"]
        for c in rel:
            assert b.question_ids[qi] in b.candidate_relevant_ids[c]
    # the English answer text lies inside its relevant English sentence
    en = json.loads((shared_data_dir / "fixtures/xquad-r/en.json").read_text())
    qa = en["data"][0]["paragraphs"][0]["qas"][0]
    qi = b.question_ids.index(qa["id"])
    en_rel = next(c for c in b.relevant[qi] if b.candidate_langs[c] == "en")
    assert qa["answers"][0]["text"] in b.candidate_sentences[en_rel]


def test_real_xquad_r_counts(shared_data_dir: Path):
    b = load_benchmark("xquad-r", shared_data_dir)
    assert b.num_questions == 11 * 1190
    assert b.num_candidates == 13014
    assert {len(r) for r in b.relevant} == {11}


def test_mlqa_fixture_partial_parallelism(shared_data_dir: Path):
    b = load_benchmark(shared_data_dir / "fixtures" / "mlqa-r", languages="en,de")
    assert b.languages == ["en", "de"]
    for qi, rel in enumerate(b.relevant):
        assert len(rel) >= 1
        assert all(b.question_ids[qi] in b.candidate_relevant_ids[c] for c in rel)


def test_half_open_spans_shared_boundary():
    # zh files let consecutive spans share a boundary: the shared index starts sentence 2
    assert find_sentence([[0, 61], [61, 103]], 61) == 1
    assert find_sentence([[0, 165], [166, 288]], 165) == 1  # whitespace gap -> next
    assert find_sentence([[0, 10]], 10) is None


def test_article_selection():
    held = ArticleSelection.parse("%4==0")
    train = ArticleSelection.parse("%4!=0")
    assert [i for i in range(9) if held.selects(i)] == [0, 4, 8]
    assert all(held.selects(i) != train.selects(i) for i in range(50))
    assert [i for i in range(12) if ArticleSelection.parse("0-2,7").selects(i)] == [0, 1, 2, 7]
    for bad in ["%0==0", "%4==4", "abc", "3-1"]:
        with pytest.raises(ConfigError):
            ArticleSelection.parse(bad)


def test_selection_splits_are_disjoint(shared_data_dir: Path):
    held = load_benchmark("xquad-r", shared_data_dir, languages="en,de", articles="%4==0")
    train = load_benchmark("xquad-r", shared_data_dir, languages="en,de", articles="%4!=0")
    assert held.num_questions + train.num_questions == 2 * 1190
    check_disjoint(train.question_ids, held.question_ids)
    with pytest.raises(ConfigError, match="overlap"):
        check_disjoint(train.question_ids, train.question_ids[:5])


def test_sentence_plus_context(shared_data_dir: Path):
    b = load_benchmark(shared_data_dir / "fixtures" / "xquad-r", candidate_mode="sentence+context")
    texts = b.candidate_texts()
    assert texts[0].startswith(b.candidate_sentences[0])
    assert b.candidate_contexts[0] in texts[0]
    with pytest.raises(ConfigError):
        load_benchmark(shared_data_dir / "fixtures" / "xquad-r", candidate_mode="paragraph")


@pytest.fixture
def bench_copy(shared_data_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bench"
    shutil.copytree(shared_data_dir / "fixtures" / "xquad-r", dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def _edit(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_errors_name_file_and_field(bench_copy: Path, shared_data_dir: Path):
    cases = []
    # malformed JSON -> file, line and column
    (bench_copy / "de.json").write_text('{"data": [\n  {"title": }\n]}')
    cases.append(("de.json", "malformed JSON at line 2"))
    for expect_file, expect_text in cases:
        with pytest.raises(DataError, match=expect_text) as e:
            load_benchmark(bench_copy)
        assert expect_file in str(e.value)


def test_error_missing_sentence_breaks(bench_copy: Path):
    _edit(bench_copy / "en.json", lambda d: d["data"][0]["paragraphs"][1].pop("sentence_breaks"))
    with pytest.raises(DataError) as e:
        load_benchmark(bench_copy)
    msg = str(e.value)
    assert "en.json" in msg and "paragraphs[1]" in msg and "sentence_breaks" in msg


def test_error_answer_outside_sentences(bench_copy: Path):
    def bad(d):
        d["data"][0]["paragraphs"][0]["qas"][2]["answers"][0]["answer_start"] = 10**6

    _edit(bench_copy / "zh.json", bad)
    with pytest.raises(DataError, match=r"zh\.json.*qas\[2\].*answer_start 1000000 lies outside"):
        load_benchmark(bench_copy)


def test_error_missing_language_and_unknown_name(bench_copy: Path, tmp_path: Path):
    with pytest.raises(DataError, match=r"fr\.json: language 'fr' is absent"):
        load_benchmark(bench_copy, languages="en,fr")
    with pytest.raises(DataError, match="unknown benchmark 'xquad-q'"):
        load_benchmark("xquad-q", tmp_path)
    with pytest.raises(DataError, match="babelir data fetch mlqa-r"):
        load_benchmark("mlqa-r", tmp_path)  # known name, not in this data dir
    assert issubclass(DataError, BabelirError)


def test_data_modules_form_no_import_cycle() -> None:
    """Dataset modules share types through babelir.data.types, never through each other in
    a circle (parallel <-> mmarco used to import each other behind a lazy import)."""
    import ast
    from pathlib import Path

    import babelir.data

    folder = Path(babelir.data.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("babelir.data."):
                deps.add(node.module.rsplit(".", 1)[-1])
        graph[path.stem] = deps

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for dep in graph.get(start, ()):
            if dep == target or (dep not in seen and reaches(dep, target, seen | {dep})):
                return True
        return False

    assert graph["types"] == set()  # the shared types depend on no dataset module
    assert [m for m in graph if reaches(m, m, {m})] == []

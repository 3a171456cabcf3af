"""Regression tests for the benchmark cases of the third hardening issue (3, 4, 5, 8, 11,
12, 14, 15, 16, 20).

Each test feeds one hostile input that used to give silently wrong numbers, a broken
file or a traceback, and checks the new behaviour: a one-line babelir error naming the
file, line, paragraph or option, or a warning. Benchmarks are small synthetic folders;
the models are tiny random BERTs (tests/testkit/tiny_model.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from testkit.cli import call
from testkit.lareqa_docs import lang_doc
from testkit.miracl import run_miracl_sw
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ConfigError, DataError
from babelir.data.corpus import open_corpus
from babelir.data.jsonl import parse_object
from babelir.data.lareqa import load_benchmark
from babelir.data.miracl import check_passage_format, load_miracl, read_qrels, read_topics
from babelir.data.xor_retrieve import iter_passages, read_questions
from babelir.evaluation.lareqa import (
    Embeddings,
    EvaluationResult,
    load_saved_embeddings,
    score_benchmark,
    write_result,
)

pytestmark = pytest.mark.usefixtures("one_thread")

EMBEDDING_FILES = ("questions.npy", "candidates.npy", "questions.jsonl", "candidates.jsonl")
XQUAD_R = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")


# --------------------------------------------------------------------------- helpers


def _lang_doc(lang: str, articles: int = 2, paragraphs: int = 2, sentences: int = 3) -> dict:
    return lang_doc(lang, articles, paragraphs, sentences)


def _write_bench(folder: Path, docs: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, doc in docs.items():
        (folder / f"{lang}.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def _bench(folder: Path, langs=("en", "de")) -> Path:
    return _write_bench(folder, {lang: _lang_doc(lang) for lang in langs})


def _one_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def _miracl(root: Path, topics: str, qrels: str, docs: list[dict] | None, lang="sw") -> Path:
    for kind, text in (("topics", topics), ("qrels", qrels)):
        (root / "miracl" / kind).mkdir(parents=True, exist_ok=True)
        path = root / "miracl" / kind / f"{kind}.miracl-v1.0-{lang}-dev.tsv"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    if docs is not None:
        _jsonl(root / "miracl" / "corpus" / lang / "a.jsonl", docs)
    return root


_SW_DOCS = [{"docid": f"d{i}", "title": "kichwa", "text": f"maji {i} ya mto"} for i in range(20)]


@pytest.fixture(scope="module")
def sw_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sw-model")
    texts = ["maji ya mto kichwa swali"] * 5 + [str(i) for i in range(30)]
    make_tiny_model(root / "build", texts).save(str(root / "tiny"))
    return root / "tiny"


def _miracl_cli(model: Path, root: Path, tmp_path: Path, **kw):
    return run_miracl_sw(model, root, tmp_path / "work", **kw)


# --------------------------------------------------------------------------- 3. saved embeddings


def _fake_result(bench_dir: Path, fingerprint: str, seed: int) -> EvaluationResult:
    bench = load_benchmark(bench_dir, languages="en,de")
    rng = np.random.default_rng(seed)

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, 8)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q, c = unit(bench.num_questions), unit(bench.num_candidates)
    info = {"model": f"model-{fingerprint}", "model_fingerprint": fingerprint}
    return EvaluationResult(bench, score_benchmark(bench, q, c), Embeddings(q, c), info)


def _from_saved(capsys, bench: Path, folder: Path, *extra: str) -> tuple[int, str, str]:
    return call(
        capsys, "evaluate", "--benchmark", str(bench), "--from-embeddings", str(folder), *extra
    )


def test_evaluate_without_save_embeddings_removes_stale_ones(tmp_path: Path, capsys) -> None:
    """Model A saves embeddings into DIR, model B evaluates into DIR without saving: A's
    files must not be scored afterwards under B's metrics.json (its fingerprint)."""
    bench = _bench(tmp_path / "bench")
    loaded = load_benchmark(bench)
    texts = loaded.question_texts + loaded.candidate_sentences
    models = []
    for seed in (0, 1):
        folder = tmp_path / f"model{seed}"
        make_tiny_model(tmp_path / f"build{seed}", texts, seed=seed).save(str(folder))
        models.append(folder)
    out = tmp_path / "out"
    common = ["--benchmark", str(bench), "--languages", "en,de", "-o", str(out), "--no-cache",
              "-q", "--max-seq-length", "32"]  # fmt: skip
    code, _, err = call(capsys, "evaluate", "--model", str(models[0]), *common,
                        "--save-embeddings")  # fmt: skip
    assert code == 0, err
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["saved_embeddings"]["model_fingerprint"] == saved["model_fingerprint"]
    code, _, err = _from_saved(capsys, bench, out, "--languages", "en,de")
    assert code == 0, err  # a whole, bound folder scores

    code, _, err = call(capsys, "evaluate", "--model", str(models[1]), *common)
    assert code == 0, err
    assert not any((out / name).exists() for name in EMBEDDING_FILES)
    msg = _one_line(*_from_saved(capsys, bench, out, "--languages", "en,de")[::2])
    assert "questions.npy: not found" in msg


def test_saved_embeddings_are_bound_to_their_metrics_json(tmp_path: Path, capsys) -> None:
    bench = _bench(tmp_path / "bench")
    a, b = tmp_path / "a", tmp_path / "b"
    write_result(_fake_result(bench, "AAAA", 0), a, save_embeddings=True)
    write_result(_fake_result(bench, "BBBB", 1), b, save_embeddings=True)
    load_saved_embeddings(a)  # whole: loads

    # A's embedding files beside B's metrics.json (copied, or left by an older babelir)
    mixed = tmp_path / "mixed"
    shutil.copytree(a, mixed)
    shutil.copy(b / "metrics.json", mixed / "metrics.json")
    msg = _one_line(*_from_saved(capsys, bench, mixed)[::2])
    assert "questions.npy: not the file" in msg and "sha256 differs" in msg
    with pytest.raises(DataError, match="sha256 differs"):
        load_saved_embeddings(mixed)  # compare's reader checks them too

    # B's metrics.json without the digests (an evaluation that saved nothing)
    doc = json.loads((b / "metrics.json").read_text())
    del doc["saved_embeddings"]
    (mixed / "metrics.json").write_text(json.dumps(doc))
    msg = _one_line(*_from_saved(capsys, bench, mixed)[::2])
    assert "metrics.json: records no digests of the saved embeddings" in msg

    # the fingerprint of metrics.json edited to another model's
    doc = json.loads((a / "metrics.json").read_text())
    doc["model_fingerprint"] = "BBBB"
    (mixed / "metrics.json").write_text(json.dumps(doc))
    msg = _one_line(*_from_saved(capsys, bench, mixed)[::2])
    assert "saved for model fingerprint AAAA but metrics.json names BBBB" in msg


def test_reordered_questions_jsonl_is_refused(tmp_path: Path, capsys) -> None:
    """Rows are aligned by key, so swapping two lines of questions.jsonl (not the .npy)
    silently gives each question the other's vector; the digest catches it."""
    bench = _bench(tmp_path / "bench")
    out = tmp_path / "saved"
    write_result(_fake_result(bench, "AAAA", 0), out, save_embeddings=True)
    rows = (out / "questions.jsonl").read_text().splitlines()
    rows[0], rows[1] = rows[1], rows[0]
    (out / "questions.jsonl").write_text("\n".join(rows) + "\n")
    msg = _one_line(*_from_saved(capsys, bench, out)[::2])
    assert "questions.jsonl: not the file" in msg


def test_output_into_the_from_embeddings_folder_needs_save_embeddings(
    tmp_path: Path, capsys
) -> None:
    bench = _bench(tmp_path / "bench")
    out = tmp_path / "saved"
    write_result(_fake_result(bench, "AAAA", 0), out, save_embeddings=True)
    msg = _one_line(*_from_saved(capsys, bench, out, "-o", str(out))[::2])
    assert "is the --from-embeddings folder" in msg
    assert all((out / name).is_file() for name in EMBEDDING_FILES)


# --------------------------------------------------------------------------- 4. LAReQA breaks


def _broken(tmp_path: Path, edit) -> Path:
    doc = _lang_doc("en")
    edit(doc["data"][1]["paragraphs"][0])
    return _write_bench(tmp_path / "b", {"en": doc})


def _replace_sentence(p: dict) -> None:
    p["sentences"][1] = "A sentence that is not in the context at all."


def _shift_breaks(p: dict) -> None:
    p["context"] = "x" * 40 + p["context"]


def _overlap(p: dict) -> None:
    p["sentence_breaks"][1][0] -= 5


def _beyond(p: dict) -> None:
    p["sentence_breaks"][2][1] += 10


@pytest.mark.parametrize(
    "edit, message",
    [
        (_replace_sentence, r"paragraphs\[0\]: sentences\[1\] is not the context at its"),
        (_shift_breaks, r"paragraphs\[0\]: sentences\[0\] is not the context at its"),
        (_overlap, r"paragraphs\[0\]: sentence_breaks\[1\] .* starts before sentence_breaks\[0\]"),
        (_beyond, r"paragraphs\[0\]: sentence_breaks\[2\] .* ends beyond the context"),
    ],
    ids=["replaced", "shifted", "overlapping", "out-of-range"],
)
def test_sentences_must_agree_with_breaks_and_context(tmp_path: Path, edit, message) -> None:
    folder = _broken(tmp_path, edit)
    with pytest.raises(DataError, match=rf"en\.json: data\[1\]\.{message}"):
        load_benchmark(folder, languages="en")


def test_a_few_disagreeing_sentences_are_warned_about(tmp_path: Path, capsys) -> None:
    """300 sentences tolerate 3 (1%) with a warning naming each; 4 are refused."""
    doc = _lang_doc("en", articles=10, paragraphs=5, sentences=6)
    for a in range(3):
        doc["data"][a]["paragraphs"][2]["sentences"][5] = "Replaced."
    folder = _write_bench(tmp_path / "b", {"en": doc})
    with pytest.warns(UserWarning) as caught:
        bench = load_benchmark(folder, languages="en")
    assert bench.num_candidates == 300
    named = sorted(str(w.message) for w in caught)
    assert len(named) == 3 and "data[0].paragraphs[2]: sentences[5]" in named[0]
    code, _, err = call(capsys, "evaluate", "--benchmark", str(folder), "--languages", "en",
                        "--from-embeddings", str(tmp_path / "none"))  # fmt: skip
    assert code == 2 and err.count("warning: ") == 3  # one line each, then the error
    assert err.count("(tolerated)") == 3
    doc["data"][3]["paragraphs"][2]["sentences"][5] = "Replaced."
    _write_bench(folder, {"en": doc})
    with pytest.raises(DataError, match=r"4 of the 300 sentences .* \(at most 3 tolerated\)"):
        load_benchmark(folder, languages="en")


def test_real_lareqa_files_still_load(shared_data_dir: Path) -> None:
    with pytest.warns(UserWarning) as caught:
        bench = load_benchmark("xquad-r", shared_data_dir)
    assert bench.languages == list(XQUAD_R) and bench.num_candidates == 13_014
    messages = [str(w.message) for w in caught]
    # tr's two sentences whose breaks are one character off, and nothing else
    assert len(messages) == 2, messages
    assert all("tr.json: data[9].paragraphs[3]" in m for m in messages)
    mlqa = load_benchmark(shared_data_dir / "fixtures" / "mlqa-r")
    assert mlqa.languages == ["de", "en", "es"] and mlqa.num_questions > 0


def test_a_language_sharing_no_question_id_is_warned_about(tmp_path: Path) -> None:
    de = _lang_doc("de")
    for article in de["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                qa["id"] = "de-" + qa["id"]
    folder = _write_bench(tmp_path / "b", {"en": _lang_doc("en"), "de": de, "es": _lang_doc("es")})
    with pytest.warns(UserWarning, match=r"de\.json: no question id of de occurs in en, es"):
        load_benchmark(folder, languages="en,de,es")


# --------------------------------------------------------------------------- 5. collections


def test_miracl_folder_is_one_collection(tmp_path: Path) -> None:
    rows = [{"docid": "d1", "title": "", "text": "maji", "lang": lg}
            for lg in ("sw", "yo", "de", "en", "fr")]  # fmt: skip
    root = _miracl(tmp_path / "a", "1\tswali\n", "1 Q0 d1 1\n", rows)
    (ml,) = load_miracl(root, "sw")
    with pytest.raises(DataError, match=r"sw/a\.jsonl:2: field 'lang' is 'yo' in a corpus of"):
        list(ml.passages())
    pooled = open_corpus(root / "miracl" / "corpus", tmp_path, languages=["sw"])
    with pytest.raises(DataError, match=r"a\.jsonl:2: field 'lang' is 'yo'"):
        list(pooled.passages())
    # a docid twice in the folder (its own language, or none) is named with both lines
    rows = [{"docid": "d1", "text": "maji"}, {"docid": "d2", "text": "mto"},
            {"docid": "d1", "text": "maji", "lang": "sw"}]  # fmt: skip
    root = _miracl(tmp_path / "b", "1\tswali\n", "1 Q0 d1 1\n", rows)
    (ml,) = load_miracl(root, "sw")
    with pytest.raises(DataError, match=r"'d1' \(sw\) appears twice: .*a\.jsonl:1 and .*:3"):
        list(ml.passages())


def test_xor_corpus_is_one_collection(tmp_path: Path) -> None:
    corpus = _jsonl(tmp_path / "c.jsonl", [{"docid": "p1", "text": "a", "lang": "en"},
                                           {"docid": "p1", "text": "b", "lang": "de"}])  # fmt: skip
    with pytest.raises(DataError, match=r"c\.jsonl:2: field 'lang' is 'de' in a corpus of"):
        list(iter_passages(corpus))
    # a pooled corpus file given to `babelir index` may mix languages, as before
    source = open_corpus(corpus, tmp_path)
    assert [(p.docid, p.lang) for p in source.passages()] == [("p1", "en"), ("p1", "de")]


# --------------------------------------------------------------------------- 8. BOM, unscored


def test_bom_in_topics_and_unscored_counts_are_warned(tmp_path: Path, sw_model, capsys) -> None:
    root = _miracl(
        tmp_path / "d",
        "\ufeff1\tmaji 1 ya mto\n2\tmaji 2\n3\tmaji 3\n".encode(),  # a BOM, as Notepad saves
        "1 Q0 d1 1\n2 Q0 d2 1\n9 Q0 d3 1\n",
        _SW_DOCS,
    )
    topics = read_topics(root / "miracl/topics/topics.miracl-v1.0-sw-dev.tsv")
    assert list(topics) == ["1", "2", "3"]
    assert set(read_qrels(root / "miracl/qrels/qrels.miracl-v1.0-sw-dev.tsv")) == {"1", "2", "9"}
    doc = _miracl_cli(sw_model, root, tmp_path)
    assert doc is not None and doc["per_language"]["sw"]["num_queries"] == 2  # "1" kept
    err = capsys.readouterr().err
    assert (
        "warning: sw: 1 topics without a relevant judgement and 1 qrels qids without a topic" in err
    )


# --------------------------------------------------------------------------- 11. XOR ids


@pytest.mark.parametrize("qid", ["a\tb", "a\nb", "a b", " ", ""])
def test_xor_question_id_with_whitespace_is_refused(tmp_path: Path, qid: str) -> None:
    good = {"id": "ok", "question": "q?", "answers": ["x"], "lang": "ja"}
    path = _jsonl(tmp_path / "q.jsonl", [good, {**good, "id": qid}])
    with pytest.raises(DataError, match=r"q\.jsonl:2: field 'id' .* is empty or holds whitespace"):
        read_questions(path)


# --------------------------------------------------------------------------- 12. empty passages


@pytest.mark.parametrize("text", ["", "   \t "])
def test_empty_passages_are_refused_for_dense_and_bm25(tmp_path: Path, sw_model, text: str) -> None:
    from babelir.evaluation.bm25 import evaluate_language_bm25

    docs = [*_SW_DOCS[:3], {"docid": "e1", "title": "kichwa", "text": text}]
    root = _miracl(tmp_path / "d", "1\tmaji 1 ya mto\n", "1 Q0 d1 1\n", docs)
    where = r"corpus/sw/a\.jsonl:4: field 'text' is empty"
    with pytest.raises(DataError, match=where):
        _miracl_cli(sw_model, root, tmp_path)
    (ml,) = load_miracl(root, "sw")
    with pytest.raises(DataError, match=where):
        evaluate_language_bm25(ml)


# --------------------------------------------------------------------------- 14. surrogates


def test_lone_surrogates_in_jsonl_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"t\.jsonl:3: field 'query' holds a lone surrogate"):
        parse_object('{"id": "1", "query": "a\\ud800b"}', "t.jsonl:3")
    with pytest.raises(DataError, match=r"field 'answers\[1\]' holds a lone surrogate"):
        parse_object('{"answers": ["ok", "\\udfff"]}', "t.jsonl:1")
    assert parse_object('{"q": "\\ud83d\\ude00"}', "t.jsonl:1") == {"q": "\U0001f600"}  # a pair
    good = {"id": "ok", "question": "q?", "answers": ["x"], "lang": "ja"}
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "question": "\ud800?"}) + "\n")
    with pytest.raises(DataError, match=r"q\.jsonl:2: field 'question' holds a lone surrogate"):
        read_questions(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["qas"][1].update(question="\ud800?"), r"\.qas\[1\]: field 'question'"),
        (lambda p: p["sentences"].__setitem__(0, "\udc00"), r": field 'sentences\[0\]'"),
    ],
    ids=["question", "sentence"],
)
def test_lone_surrogates_in_lareqa_are_refused(tmp_path: Path, edit, message) -> None:
    folder = _broken(tmp_path, edit)  # json.dumps writes them as \ud800 escapes
    with pytest.raises(DataError, match=rf"data\[1\]\.paragraphs\[0\]{message} holds a lone"):
        load_benchmark(folder, languages="en")


# --------------------------------------------------------------------------- 15. passage format


@pytest.mark.parametrize("template", ["{text!r:>999999999999}", "{text:>99}", "{title!s} {text}"])
def test_passage_format_with_conversion_or_spec_is_refused(
    tmp_path: Path, capsys, template: str
) -> None:
    with pytest.raises(ConfigError, match=r"--passage-format: passage format .* without a conv"):
        check_passage_format(template)
    for bench in ("miracl", "xor-retrieve"):
        code, _, err = call(capsys, "evaluate", "--benchmark", bench, "--data-dir",
                            str(tmp_path), "--passage-format", template)  # fmt: skip
        assert "--passage-format: passage format" in _one_line(code, err)


def test_compare_passage_format_is_checked_in_the_dry_run(tmp_path: Path) -> None:
    from babelir.compare.config import BenchmarkSpec, CompareConfig
    from babelir.compare.plan import unique_benchmarks

    root = _miracl(tmp_path, "1\tswali\n", "1 Q0 d1 1\n", _SW_DOCS)
    spec = BenchmarkSpec(kind="miracl", languages=["sw"], passage_format="{text!r:>999999999}")
    cfg = CompareConfig(benchmarks=[spec])
    with pytest.raises(ConfigError, match=r"passage_format of benchmark MIRACL: passage format"):
        unique_benchmarks(cfg, root)
    ok = CompareConfig(benchmarks=[BenchmarkSpec(kind="miracl", languages=["sw"],
                                                 passage_format="{title}: {text}")])  # fmt: skip
    assert len(unique_benchmarks(ok, root)[0]) == 1


# --------------------------------------------------------------------------- 16. relevance


@pytest.mark.parametrize(
    "rel, message",
    [
        ("99999999999999999999", "out of range"),
        ("-99999999999999999999", "out of range"),
        ("1001", "out of range"),
        ("1_0", "is not an integer"),
        ("١", "is not an integer"),
    ],
)
def test_qrels_relevance_is_range_checked(tmp_path: Path, rel: str, message: str) -> None:
    path = tmp_path / "qrels.tsv"
    path.write_text(f"1 Q0 d1 1\n1 Q0 d2 {rel}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"qrels\.tsv:2: relevance .*{message}"):
        read_qrels(path)
    path.write_text("1 Q0 d1 1000\n1 Q0 d2 0\n1 Q0 d3 -1\n", encoding="utf-8")
    assert read_qrels(path) == {"1": {"d1": 1000, "d2": 0, "d3": -1}}


# --------------------------------------------------------------------------- 20. articles


@pytest.mark.parametrize("articles", [5, 1.5, ["0-3"]])
def test_non_string_articles_is_a_config_error(tmp_path: Path, articles) -> None:
    folder = _bench(tmp_path / "b")
    with pytest.raises(ConfigError, match=r"^articles: expected a selection .* \(a string\)"):
        load_benchmark(folder, languages="en", articles=articles)

"""XOR-TyDi XOR-Retrieve: data readers, the R@kt metric against a re-implementation of the
official script, and the command end to end with a tiny random model."""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import random
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from testkit.cli import call
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ConfigError, DataError
from babelir.data import registry
from babelir.data.xor_retrieve import (
    QUESTION_FILES,
    find_corpus,
    iter_passages,
    iter_tsv_passages,
    load_xor_retrieve,
    read_questions,
)
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.xor_retrieve import (
    BUDGETS,
    R2KT,
    R5KT,
    evaluate_xor_retrieve,
    first_tokens,
    hits_at_budgets,
    macro_scores,
    recall_at_k_tokens,
    resolve_tokenizer,
    span_answers,
    whitespace_tokenize,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- official script
# A re-implementation of AkariAsai/XORQA evals/eval_xor_retrieve.py (evaluate_top_k_hit and
# the loop of main), kept in that script's own shape on purpose: a list of prediction dicts
# {"id", "lang", "ctxs": [passage texts]}, answers looked up by id, yes/no answers skipped,
# tokens concatenated until the budget then cut, a substring test on the space-joined
# tokens, percentages per language and their plain mean. `word_tokenize` is a parameter:
# the script imports NLTK's; the whitespace tokeniser stands in where NLTK is absent.


def official_evaluate_top_k_hit(results, gt_answers, max_token_num, word_tokenize):
    per_lang = {}
    for item in results:
        q_id = item["id"]
        lang = item["lang"]
        per_lang.setdefault(lang, {"count": 0, "hit": 0})
        ctxs = item["ctxs"]
        if q_id not in gt_answers:
            continue
        answers = gt_answers[q_id]
        span_answers = []
        for answer in answers:
            if answer not in ["yes", "no"]:
                span_answers.append(answer)
        if len(span_answers) == 0:
            continue
        per_lang[lang]["count"] += 1
        concat_string_tokens = []
        for ctx_text in ctxs:
            tokenized_text = word_tokenize(ctx_text)
            concat_string_tokens += tokenized_text
            if len(concat_string_tokens) >= max_token_num:
                break
        concat_string_tokens = concat_string_tokens[:max_token_num]
        concat_string = " ".join(concat_string_tokens)
        hit = False
        for answer in span_answers:
            if answer in concat_string:
                hit = True
        if hit is True:
            per_lang[lang]["hit"] += 1
    return {lang: result for lang, result in per_lang.items() if result["count"] > 0}


def official_main(predictions, input_data, word_tokenize):
    """{"r@2kt": ({lang: percent}, macro percent), "r@5kt": ...} as main() prints them."""
    qid2answers = {item["id"]: item["answers"] for item in input_data}
    out = {}
    for topk in [2, 5]:
        results = official_evaluate_top_k_hit(predictions, qid2answers, topk * 1000, word_tokenize)
        per_lang = {}
        for lang in results:
            per_lang[lang] = (results[lang]["hit"] / results[lang]["count"]) * 100
        out[f"r@{topk}kt"] = (per_lang, statistics.mean(per_lang.values()))
    return out


def tokenizers():
    """Whitespace always; NLTK's word_tokenize (the official one) where installed."""
    out = [pytest.param(whitespace_tokenize, id="whitespace")]
    with contextlib.suppress(ConfigError):
        out.append(pytest.param(resolve_tokenizer("nltk")[1], id="nltk"))
    return out


# --------------------------------------------------------------------------- metric


def test_hand_computed_tiny_case():
    ranked = ["a b c", "d e", "f g h i"]
    assert first_tokens(ranked, 4) == ["a", "b", "c", "d"]  # cut inside the 2nd passage
    assert first_tokens(ranked, 100) == list("abcdefghi")  # fewer tokens than the budget
    assert recall_at_k_tokens(ranked, ["c d"], 4) == 1.0  # spans two passages
    assert recall_at_k_tokens(ranked, ["e"], 4) == 0.0  # token 5
    assert recall_at_k_tokens(ranked, ["e"], 5) == 1.0
    assert recall_at_k_tokens(ranked, ["d e"], 4) == 0.0  # cut mid-answer
    assert recall_at_k_tokens(ranked, ["yes", "b"], 2) == 1.0  # yes/no ignored, b found
    assert recall_at_k_tokens(["yes no maybe"], ["yes", "no"], 3) == 0.0  # never looked for
    assert span_answers(["yes", "no", "Yes", ""]) == ["Yes", ""]
    assert recall_at_k_tokens(ranked, ["B"], 4) == 0.0  # case-sensitive
    assert recall_at_k_tokens(["alphabet soup"], ["lphab"], 1) == 1.0  # substring of a token
    assert recall_at_k_tokens(["x  y"], ["x  y"], 2) == 0.0  # tokens re-joined by one space
    hits, n, read = hits_at_budgets(ranked, ["e", "zzz"], {"k4": 4, "k5": 5})
    assert hits == {"k4": False, "k5": True} and n == 5 and read == 2  # 3rd not read
    rows = {
        "1": {"lang": "x", "a": True, "b": True},
        "2": {"lang": "x", "a": False, "b": True},
        "3": {"lang": "y", "a": True, "b": False},
    }
    langs, macro = macro_scores(rows, ("a", "b"))
    assert langs == {"x": {"a": 0.5, "b": 1.0}, "y": {"a": 1.0, "b": 0.0}}
    assert macro == {"a": 0.75, "b": 0.5}  # unweighted over languages, not over questions


def _ranked(answer_at: dict[int, str], total: int, sizes: list[int]) -> list[str]:
    """``total`` filler tokens cut into passages of ``sizes`` (cycled), with the tokens of
    ``answer_at`` (1-indexed position -> token) in place."""
    tokens = [f"t{i}" for i in range(1, total + 1)]
    for pos, tok in answer_at.items():
        tokens[pos - 1] = tok
    out, i, j = [], 0, 0
    while i < total:
        n = sizes[j % len(sizes)]
        out.append(" ".join(tokens[i : i + n]))
        i, j = i + n, j + 1
    return out


def synthetic_predictions() -> tuple[list[dict], list[dict]]:
    """(predictions, input data) in the official formats: answers at token 1999/2000/2001
    and 4999/5000/5001, answers spanning two passages and the 2000-token cut, unicode
    answers, yes/no questions, rankings shorter than the budgets, several languages."""
    cases: list[tuple[str, list[str], list[str]]] = []  # (lang, ctxs, answers)
    for pos in (1999, 2000, 2001, 4999, 5000, 5001):
        cases.append(("ja", _ranked({pos: "ANSWER"}, 6000, [100]), ["ANSWER"]))
    # "Санкт Петербург" across a passage boundary (tokens 1000 | 1001), and across the cut
    cases.append(
        ("ru", _ranked({1000: "Санкт", 1001: "Петербург"}, 6000, [100]), ["Санкт Петербург"])
    )
    cases.append(
        ("ru", _ranked({2000: "Санкт", 2001: "Петербург"}, 6000, [100]), ["Санкт Петербург"])
    )
    cases.append(
        ("ru", _ranked({5000: "Санкт", 5001: "Петербург"}, 6000, [97, 13]), ["Санкт Петербург"])
    )
    cases.append(("ar", _ranked({1234: "القاهرة"}, 6000, [61, 120, 7]), ["القاهرة", "no"]))
    cases.append(("ar", _ranked({3000: "東京都"}, 6000, [100]), ["東京"]))  # substring of a token
    cases.append(("ar", _ranked({10: "x"}, 300, [100]), ["t250"]))  # short ranking, found
    cases.append(("ar", _ranked({}, 300, [100]), ["missing"]))
    cases.append(("te", _ranked({1: "yes"}, 6000, [100]), ["yes"]))  # only yes/no: unscored
    cases.append(("te", _ranked({}, 6000, [100]), ["no", "yes"]))
    cases.append(("ko", _ranked({}, 6000, [100]), ["t2000", "zzz"]))  # 2nd answer unfound
    cases.append(("ko", _ranked({}, 6000, [100]), ["t2001"]))
    cases.append(("ko", _ranked({}, 6000, [100]), ["t200 t201"]))
    cases.append(("bn", [], ["anything"]))  # nothing retrieved
    preds, data = [], []
    for i, (lang, ctxs, answers) in enumerate(cases):
        qid = f"q{i}" if i % 3 else i  # the released files use string ids; ints survive too
        preds.append({"id": qid, "lang": lang, "ctxs": ctxs})
        data.append({"id": qid, "question": f"question {i}", "answers": answers, "lang": lang})
    return preds, data


def test_synthetic_boundaries_hand_checked():
    preds, data = synthetic_predictions()
    by_pos = {p: hits_at_budgets(preds[i]["ctxs"], ["ANSWER"])[0] for i, p in
              enumerate((1999, 2000, 2001, 4999, 5000, 5001))}  # fmt: skip
    assert [by_pos[p][R2KT] for p in (1999, 2000, 2001)] == [True, True, False]
    assert [by_pos[p][R5KT] for p in (4999, 5000, 5001)] == [True, True, False]
    spans = [hits_at_budgets(preds[i]["ctxs"], data[i]["answers"])[0] for i in (6, 7, 8)]
    assert spans[0] == {R2KT: True, R5KT: True}  # spans two passages
    assert spans[1] == {R2KT: False, R5KT: True}  # cut between its two tokens at 2000
    assert spans[2] == {R2KT: False, R5KT: False}  # cut between its two tokens at 5000


@pytest.mark.parametrize("tokenize", tokenizers())
def test_matches_official_script_on_synthetic_fixture(tokenize):
    preds, data = synthetic_predictions()
    official = official_main(preds, data, tokenize)
    answers = {d["id"]: d["answers"] for d in data}
    rows = {}
    for p in preds:
        hits, _, _ = hits_at_budgets(p["ctxs"], answers[p["id"]], BUDGETS, tokenize)
        if span_answers(answers[p["id"]]):  # the library's own choice of scored questions
            rows[str(p["id"])] = {"lang": p["lang"], **hits}
        for name, budget in BUDGETS.items():  # the one-question function agrees too
            assert recall_at_k_tokens(p["ctxs"], answers[p["id"]], budget, tokenize) == hits[name]
    langs, macro = macro_scores(rows)
    assert set(langs) == {"ja", "ru", "ar", "ko", "bn"}  # te (yes/no only) is left out
    for name in BUDGETS:
        per, mean = official[name]
        assert per.keys() == langs.keys()
        for lang in per:
            assert 100 * langs[lang][name] == pytest.approx(per[lang], abs=1e-9)
        assert 100 * macro[name] == pytest.approx(mean, abs=1e-9)
    assert official[R2KT][0]["ja"] == pytest.approx(100 * 2 / 6)  # 1999, 2000 of 6
    assert official[R5KT][0]["ja"] == pytest.approx(100 * 5 / 6)


def test_tokenizer_choice():
    name, tok = resolve_tokenizer("whitespace")
    assert name == "whitespace" and tok("a  b\u3000c\n") == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="--tokenizer bogus"):
        resolve_tokenizer("bogus")
    try:
        import nltk  # noqa: F401
    except ImportError:
        assert resolve_tokenizer("auto")[0] == "whitespace"
        with pytest.raises(ConfigError, match="NLTK is not installed"):
            resolve_tokenizer("nltk")


# --------------------------------------------------------------------------- data


def _write_tsv(path: Path, rows: list[tuple[str, str, str]], *, header: bool = True) -> None:
    opener = gzip.open if path.name.endswith(".gz") else open
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        if header:
            w.writerow(["id", "text", "title"])
        w.writerows(rows)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


@pytest.mark.parametrize("name", ["p.tsv", "p.tsv.gz"])
def test_dpr_tsv_reader(tmp_path: Path, name: str):
    rows = [
        ("1", 'Aaron ( or ; "Ahärôn") is a prophet', "Aaron"),
        ("2", "tab-free text, with a comma", "Title, with comma"),
        ("3", "Москва — столица", "Москва"),
    ]
    _write_tsv(tmp_path / name, rows)
    got = list(iter_tsv_passages(tmp_path / name))
    assert [(p.docid, p.text, p.title, p.lang) for p in got] == [
        (*r[:1], r[1], r[2], "en") for r in rows
    ]
    assert [p.docid for p in iter_passages(tmp_path / name, limit=2)] == ["1", "2"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("id\ttext\ttitle\n1\tonly two\n", r"p\.tsv:2: expected 3 tab-separated fields .*got 2"),
        ("1\ta\tA\n2\tb\tB\n1\tc\tC\n", r"passage id '1' appears twice: .*p\.tsv:1 and .*p\.tsv:3"),
        ("1\ta\tA\n\tb\tB\n", r"p\.tsv:2: empty passage id"),
        ('1\ta\tA\n2\t"never closed\tB\n' + "3\tx\tX\n" * 3, r"p\.tsv:2: malformed TSV row"),
    ],
)
def test_dpr_tsv_bad_rows(tmp_path: Path, body: str, message: str):
    path = tmp_path / "p.tsv"
    if "never closed" in body:  # an unclosed quote swallows lines up to the field limit
        body += "y" * (csv.field_size_limit() + 10) + "\n"
    path.write_text(body, "utf-8")
    with pytest.raises(DataError, match=message):
        list(iter_tsv_passages(path))


def test_tsv_not_utf8(tmp_path: Path):
    path = tmp_path / "p.tsv"
    path.write_bytes(b"1\ta\tA\n2\t\xff\xfe\tB\n")
    with pytest.raises(DataError, match=r"p\.tsv: not UTF-8"):
        list(iter_tsv_passages(path))


def test_questions_reader_and_errors(tmp_path: Path):
    good = [
        {"id": "a", "question": "¿Qué?", "answers": ["x"], "lang": "ja"},
        {"id": 7, "question": "Кто?", "answers": ["yes"], "lang": "ru"},
    ]
    _write_jsonl(tmp_path / "q.jsonl", good)
    qs = read_questions(tmp_path / "q.jsonl")
    assert [(q.id, q.raw_id, q.lang, q.answers) for q in qs] == [
        ("a", "a", "ja", ("x",)),
        ("7", 7, "ru", ("yes",)),
    ]
    assert [q.id for q in read_questions(tmp_path / "q.jsonl", "ru")] == ["7"]
    with pytest.raises(ConfigError, match=r"no questions in fi \(languages: ja, ru\)"):
        read_questions(tmp_path / "q.jsonl", "fi")
    bad = {
        "missing": ({"id": "a", "question": "q", "lang": "ja"}, r":1: missing field 'answers'"),
        "answers": ({"id": "a", "question": "q", "answers": "x", "lang": "ja"}, "list of str"),
        "question": ({"id": "a", "question": " ", "answers": [], "lang": "ja"}, "'question'"),
        "id": ({"id": True, "question": "q", "answers": [], "lang": "ja"}, "'id' must be"),
    }
    for name, (row, message) in bad.items():
        _write_jsonl(tmp_path / f"{name}.jsonl", [row])
        with pytest.raises(DataError, match=message):
            read_questions(tmp_path / f"{name}.jsonl")
    _write_jsonl(tmp_path / "dup.jsonl", [good[0], good[1], good[0]])
    with pytest.raises(DataError, match=r"dup\.jsonl:3: question id 'a' appears twice .*line 1"):
        read_questions(tmp_path / "dup.jsonl")
    with pytest.raises(DataError, match="babelir data fetch xor-retrieve"):
        read_questions(tmp_path / "absent.jsonl")


def test_layout_and_registry(tmp_path: Path):
    root = tmp_path / "xor-retrieve"
    _write_jsonl(
        root / QUESTION_FILES["dev"], [{"id": "a", "question": "q", "answers": ["x"], "lang": "te"}]
    )
    with pytest.raises(DataError, match="babelir data fetch xor-retrieve-corpus"):
        load_xor_retrieve(tmp_path)
    _write_tsv(root / "dpr-corpus" / "psgs_w100.tsv.gz", [("1", "t", "T")])
    assert load_xor_retrieve(tmp_path).corpus_path.name == "psgs_w100.tsv.gz"
    _write_tsv(root / "corpus" / "enwiki_20190201_w100.tsv", [("1", "t", "T")])
    bench = load_xor_retrieve(tmp_path)  # the official collection comes first
    assert bench.corpus_path.name == "enwiki_20190201_w100.tsv" and bench.languages == ["te"]
    _write_jsonl(tmp_path / "c.jsonl", [{"docid": "d1", "title": "T", "text": "body"}])
    bench = load_xor_retrieve(tmp_path, corpus=tmp_path / "c.jsonl")  # babelir's corpus JSONL
    assert [(p.docid, p.text, p.lang) for p in bench.passages()] == [("d1", "body", "en")]
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(DataError, match=r"c\.txt: a passage file must be"):
        find_corpus(root, tmp_path / "c.txt")
    with pytest.raises(ConfigError, match="--questions nope"):
        load_xor_retrieve(tmp_path, questions="nope")
    # every questions name and the corpus are registered downloads, unpinned (no hashes
    # are published) so that fetch records and warns
    ds = registry.get("xor-retrieve")
    assert {f.path for f in ds.files} == {f"xor-retrieve/{n}" for n in QUESTION_FILES.values()}
    assert all(f.url.startswith(registry.XORQA_DATA_URL) for f in ds.files) and not ds.pinned
    (corpus,) = registry.get("xor-retrieve-corpus").files
    assert corpus.path == "xor-retrieve/corpus/enwiki_20190201_w100.tsv" and corpus.sha256 is None
    (dpr,) = registry.get("dpr-wiki-corpus").files
    assert dpr.url == "https://dl.fbaipublicfiles.com/dpr/wikipedia_split/psgs_w100.tsv.gz"
    assert registry.languages("xor-retrieve") == ("ar", "bn", "fi", "ja", "ko", "ru", "te")


def test_fetch_from_a_mirror_records_unpinned_hashes(tmp_path: Path):
    """The machines here cannot reach the task's site: fetch from a local mirror."""
    from babelir.data.fetch import UnpinnedHashWarning, fetch, verify

    mirror = tmp_path / "mirror" / "xor-retrieve"
    for i, name in enumerate(QUESTION_FILES.values()):
        row = {"id": f"q{i}", "question": "q", "answers": ["a"], "lang": "fi"}
        _write_jsonl(mirror / name, [row])
    with pytest.warns(UnpinnedHashWarning, match="no pinned SHA256 for 3 file"):
        paths = fetch(
            "xor-retrieve", tmp_path / "data", mirror=str(tmp_path / "mirror"), progress=False
        )
    assert [p.read_bytes() for p in paths] == [(mirror / p.name).read_bytes() for p in paths]
    assert (tmp_path / "data" / "xor-retrieve" / "SHA256SUMS.local").is_file()
    assert verify("xor-retrieve", tmp_path / "data").ok
    (tmp_path / "data" / "xor-retrieve" / QUESTION_FILES["dev"]).write_text("changed\n")
    assert [f.relpath for f in verify("xor-retrieve", tmp_path / "data").mismatched] == [
        f"xor-retrieve/{QUESTION_FILES['dev']}"
    ]


# --------------------------------------------------------------------------- end to end

LANGS = ("ar", "ja", "ru", "te")


@pytest.fixture(scope="module")
def xor_dir(tmp_path_factory: pytest.TempPathFactory):
    """A data dir in the registry layout: 240 passages of 60 words (DPR TSV), questions in
    4 languages whose text repeats their answer passage (so a model can find it), and a
    tiny model trained on those texts."""
    root = tmp_path_factory.mktemp("xor")
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(150)] + ["Москва", "東京", "القاهرة", 'say "hi"']
    passages = []
    for i in range(240):
        words = [rng.choice(vocab) for _ in range(60)]
        passages.append((f"p{i}", " ".join(words), f"Title {i}"))
    passages[3] = ("p3", passages[3][1] + " Санкт Петербург", "Saint Petersburg")
    _write_tsv(root / "xor-retrieve" / "corpus" / "enwiki_20190201_w100.tsv", passages)
    questions = []
    for j in range(40):
        lang = LANGS[j % 4]
        target = passages[(7 * j) % 240]
        words = target[1].split()
        answers = [words[30]] if j % 5 else ["not-in-any-passage"]
        if j == 4:
            answers = ["yes"]
        if j == 8:
            answers = ["Санкт Петербург"]
        questions.append(
            {
                "id": f"{lang}-{j}",
                "question": " ".join(words[:20]),
                "answers": answers,
                "lang": lang,
            }
        )
    _write_jsonl(root / "xor-retrieve" / QUESTION_FILES["dev"], questions)
    texts = [p[1] for p in passages] + [q["question"] for q in questions]
    model_dir = root / "model" / "tiny"
    make_tiny_model(model_dir.parent, texts, vocab_size=400).save(str(model_dir))
    return root, model_dir, questions, passages


def _table(out: str) -> dict[str, tuple[float, float, int]]:
    rows = {}
    for m in re.finditer(r"│\s*(\w+)\s*│\s*([\d.]+)\s*│\s*([\d.]+)\s*│\s*(\d+)\s*│", out):
        rows[m.group(1)] = (float(m.group(2)), float(m.group(3)), int(m.group(4)))
    return rows


def test_cli_end_to_end_equals_official_script(tmp_path: Path, xor_dir, capsys):
    root, model_dir, questions, passages = xor_dir
    out = tmp_path / "out"
    args = ["evaluate", "--benchmark", "xor-retrieve", "--data-dir", str(root),
            "-m", str(model_dir), "--work-dir", str(tmp_path / "work"), "--max-seq-length", "64",
            "--shard-size", "100", "--tokenizer", "whitespace", "-q", "--no-cache"]  # fmt: skip
    code, stdout, err = call(capsys, *args, "-o", str(out), "--save-run")
    assert code == 0, err
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["benchmark"] == "xor-retrieve" and doc["questions"] == "dev"
    assert doc["num_passages"] == 240 and doc["top_k"] == 100 and doc["tokenizer"] == "whitespace"
    assert doc["languages"] == ["ar", "ja", "ru", "te"] and doc["num_queries"] == 39
    assert doc["per_language"]["ar"]["questions_without_span_answer"] == 1  # j == 4: "yes"
    assert "not the official NLTK word_tokenize" in err

    # the prediction file, scored by the official script, gives the printed numbers
    preds = json.loads((out / "xor_retrieve_predictions.json").read_text())
    official = official_main(preds, questions, whitespace_tokenize)
    table = _table(stdout)
    for lang in LANGS:
        for i, name in enumerate((R2KT, R5KT)):
            assert doc["per_language"][lang][name] * 100 == pytest.approx(
                official[name][0][lang], abs=1e-4
            )
            assert table[lang][i] == pytest.approx(official[name][0][lang], abs=0.005)
    for i, name in enumerate((R2KT, R5KT)):
        assert doc[name] * 100 == pytest.approx(official[name][1], abs=1e-4)
        assert table["macro"][i] == pytest.approx(official[name][1], abs=0.005)
    assert 0 < doc[R2KT] <= doc[R5KT] < 1  # some found, the planted misses are not

    # ... and so does the whole top-100 of run.trec (the predictions hold only what the
    # 5,000-token budget reads, which must not change a score)
    text = {pid: t for pid, t, _ in passages}
    ranked: dict[str, list[str]] = {}
    for line in (out / "run.trec").read_text().splitlines():
        qid, _, pid, rank, _, _ = line.split()
        ranked.setdefault(qid, []).append(text[pid])
        assert int(rank) == len(ranked[qid])
    assert all(len(r) == 100 for r in ranked.values())
    full = [{"id": q, "lang": q.split("-")[0], "ctxs": r} for q, r in ranked.items()]
    assert official_main(full, questions, whitespace_tokenize) == official
    z = np.load(out / "per_query.npz")
    assert len(z["question_ids"]) == 39 and set(z["r2kt"]) <= {0.0, 1.0}
    assert z["r5kt"].mean() == pytest.approx(
        np.mean([v for v in official_per_query(full, questions)])
    )

    # --corpus-limit: a prefix of the file, in its own shard folder, with a warning
    code, stdout, err = call(capsys, *args, "--corpus-limit", "50", "--languages", "ja,ru")
    assert code == 0, err
    assert "only the first 50 passages" in " ".join(err.split())
    assert "first 50 passages" in " ".join(stdout.split())  # rich wraps the title
    assert set(_table(stdout)) == {"ja", "ru", "macro"}
    assert len(list((tmp_path / "work").iterdir())) == 2


def test_bm25_row_is_scored_as_the_official_script(tmp_path: Path, xor_dir, capsys):
    """--bm25: a BM25 row over the same passages and questions, equal to the official
    script applied to the BM25 ranking (BM25 itself is checked by hand in
    test_miracl_corpus_bm25.py)."""
    from babelir.data.miracl import format_passage
    from babelir.evaluation.bm25 import BM25Index

    root, model_dir, questions, _ = xor_dir
    out = tmp_path / "out"
    code, stdout, err = call(
        capsys, "evaluate", "--benchmark", "xor-retrieve", "--data-dir", str(root), "-m",
        str(model_dir), "--work-dir", str(tmp_path / "work"), "--max-seq-length", "64",
        "--tokenizer", "whitespace", "-q", "--no-cache", "--bm25", "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "macro (bm25)" in stdout and "ja (bm25)" in stdout
    bm = json.loads((out / "metrics.json").read_text())["baselines"]["bm25"]
    assert bm["params"] == {"k1": 0.9, "b": 0.4, "method": "lucene"}
    assert bm["queries"] == "untranslated" and bm["num_passages"] == 240
    bench = load_xor_retrieve(root)
    docs = {p.docid: p for p in bench.passages()}
    index = BM25Index.build(((d, format_passage(p)) for d, p in docs.items()), "en")
    run = index.search({q.id: q.question for q in bench.questions}, 100)
    preds = [
        {"id": q.raw_id, "lang": q.lang, "ctxs": [docs[d].text for d, _ in run[q.id]]}
        for q in bench.questions
    ]
    official = official_main(preds, questions, whitespace_tokenize)
    for name in (R2KT, R5KT):
        for lang in LANGS:
            assert bm["per_language"][lang][name] * 100 == pytest.approx(
                official[name][0][lang], abs=1e-4
            )
        assert bm[name] * 100 == pytest.approx(official[name][1], abs=1e-4)
    assert bm[R5KT] > 0  # the questions repeat their passage's words: BM25 finds some


def official_per_query(preds, data):
    """R@5kt 0/1 per scored question, by the official function one question at a time."""
    answers = {d["id"]: d["answers"] for d in data}
    out = []
    for p in preds:
        res = official_evaluate_top_k_hit([p], answers, 5000, whitespace_tokenize)
        if res:
            out.append(next(iter(res.values()))["hit"])
    return out


def test_cli_errors_are_one_line(tmp_path: Path, xor_dir, capsys):
    root = xor_dir[0]
    base = ["evaluate", "--benchmark", "xor-retrieve", "--data-dir", str(root)]
    code, _, err = call(capsys, *base, "--split", "dev")
    assert code == 2 and "--split is an option of MIRACL benchmarks, not of XOR-Retrieve" in err
    code, _, err = call(capsys, *base, "--bogus")
    assert code == 2 and "no such option: --bogus (the XOR-Retrieve options" in err
    code, _, err = call(capsys, *base, "--questions", str(tmp_path / "none.jsonl"))
    assert code == 2 and "none.jsonl: XOR-Retrieve questions file not found" in err
    assert "Traceback" not in err
    code, _, err = call(capsys, *base, "--languages", "fi")
    assert code == 2 and "no questions in fi" in err
    code, _, err = call(capsys, *base, "--corpus-limit", "0")
    assert code == 2 and "--corpus-limit" in err


def test_torchrun_ranks_share_the_encoding(tmp_path: Path, xor_dir, monkeypatch):
    """Two ranks (no process group: torchrun's env only) each encode their shards; the
    rank that completes them scores, the other returns None."""
    from babelir.models.loading import load_model

    root, model_dir, _, _ = xor_dir
    bench = load_xor_retrieve(root)
    model = load_model(str(model_dir), device="cpu", max_seq_length=64)
    opts = EncodeOptions(max_seq_length=64, show_progress=False)
    kw = {"options": opts, "model_fingerprint": "tiny", "shard_size": 60, "tokenizer": "whitespace"}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert evaluate_xor_retrieve(model, bench, tmp_path, **kw) is None
    (folder,) = tmp_path.iterdir()
    assert sorted(p.name for p in folder.glob("*.npy")) == ["shard-00000.npy", "shard-00002.npy"]
    monkeypatch.setenv("RANK", "1")
    res = evaluate_xor_retrieve(model, bench, tmp_path, **kw)
    assert res is not None and res.num_passages == 240 and len(res.per_query) == 39
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")}
    assert len(stamps) == 4
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    again = evaluate_xor_retrieve(model, bench, tmp_path, **kw)  # reuses the shards
    assert again is not None and again.scores() == res.scores()
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")} == stamps

"""Post-hoc debiasing (center, LIR, LSAR): the maths on a hand-checkable case, the saved
forms, the LSAR export through plain sentence-transformers, and the CLI end to end."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from testkit.cli import call
from testkit.lareqa_docs import append_to_sentences
from testkit.tiny_model import make_tiny_model

from babelir.core.errors import ConfigError, DataError
from babelir.debias import (
    METHODS,
    collect_fit_texts,
    export_lsar_model,
    fit_from_texts,
    fit_lsar,
    load_transform,
    save_transform,
)
from babelir.evaluation.metrics import evaluate_embeddings

# ----------------------------------------------------------------------------- synthetic
# n items, L languages, d = n + L. Content c_i = e_i - mean_j e_j (zero mean over items,
# |c_i|^2 = 1 - 1/n); language offset o_l = 2 e_{n+l}. Every question and candidate of
# item i in language l is c_i + o_l. Scores: own candidate 5 - 1/n, other items in the
# same language 4 - 1/n, the translations 1 - 1/n (tied). In the pooled ranking the L-1
# translations all sit behind the n-1 same-language distractors, at pessimistic rank
# n + L - 1, so AP = (1 + (L-1) * L / (n+L-1)) / L: 2/3 for n = 4, L = 3. Without the
# offset every translation ties with the own candidate at the top: AP = 1.

N_ITEMS, LANGS = 4, ["en", "de", "zh"]

_call = call



def _synthetic(sign: float = 1.0):
    n, n_lang = N_ITEMS, len(LANGS)
    d = n + n_lang
    content = np.eye(n, d) - np.eye(n, d).mean(0)
    rows, langs, items = [], [], []
    for k, lang in enumerate(LANGS):
        offset = 2.0 * np.eye(d)[n + k]
        for i in range(n):
            rows.append(sign * content[i] + offset)
            langs.append(lang)
            items.append(i)
    emb = np.asarray(rows)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), np.asarray(langs), np.asarray(items)


def _metrics(emb: np.ndarray, langs: np.ndarray, items: np.ndarray):
    codes = np.array([LANGS.index(x) for x in langs])
    relevant = [np.flatnonzero(items == it) for it in items]
    return evaluate_embeddings(emb, emb, codes, codes, relevant, LANGS)


def _by_lang(emb: np.ndarray, langs: np.ndarray) -> dict[str, np.ndarray]:
    return {x: emb[langs == x] for x in LANGS}


def test_synthetic_baseline_is_the_hand_computed_value():
    emb, langs, items = _synthetic()
    m = _metrics(emb, langs, items)
    n, n_lang = N_ITEMS, len(LANGS)
    expected = (1 + (n_lang - 1) * n_lang / (n + n_lang - 1)) / n_lang
    assert expected == pytest.approx(2 / 3)
    assert m.multi_map() == pytest.approx(expected)
    assert m.to_dict()["map"]["mono"] == pytest.approx(1.0)
    assert m.mean_rank_distance() == pytest.approx(n + n_lang - 2)  # ranks 1 and n+L-1


@pytest.mark.parametrize("method", METHODS)
def test_each_method_removes_the_language_offset(method):
    emb, langs, items = _synthetic()
    fit_emb, fit_langs, _ = _synthetic(sign=-1.0)  # other texts: negated content
    t = fit_from_texts(method, _by_lang(fit_emb, fit_langs))
    before = _metrics(emb, langs, items)
    after = _metrics(t.apply(emb, langs), langs, items)
    assert before.multi_map() < 0.7
    assert after.multi_map() == pytest.approx(1.0)  # the mono level
    assert after.to_dict()["map"]["mono"] == pytest.approx(1.0)
    # all translations in the top L (float32 noise may order the tied ones)
    assert after.mean_rank_distance() <= len(LANGS) - 1 < before.mean_rank_distance()


def test_defaults_follow_the_reference_code():
    emb, langs, _ = _synthetic()
    lir = fit_from_texts("lir", _by_lang(emb, langs))
    lsar = fit_from_texts("lsar", _by_lang(emb, langs))
    assert lir.rank == 1 and lir.bases.shape == (3, emb.shape[1], 1)
    # LSAR scripts use rank = number of languages; the centred means have rank L - 1.
    assert lsar.rank == 3 and lsar.effective_rank == 2
    assert fit_from_texts("center", _by_lang(emb, langs)).rank is None


def test_lsar_projection_is_idempotent_and_orthogonal_to_the_language_means():
    rng = np.random.default_rng(0)
    by_lang = {f"l{k}": rng.normal(size=(30, 16)) + rng.normal(size=16) * 3 for k in range(5)}
    t = fit_from_texts("lsar", by_lang)
    p = t.projection()
    assert np.allclose(p @ p, p, atol=1e-6)
    assert np.allclose(p, p.T, atol=1e-7)
    means = np.stack([x.mean(0) for x in by_lang.values()])
    assert np.abs((means - means.mean(0)) @ p).max() < 1e-5  # spread of the means removed
    assert np.abs(means.mean(0) @ p - means.mean(0)).max() > 0.1  # the common part is kept
    u = t.bases.astype(np.float64)
    assert np.allclose(u.T @ u, np.eye(4), atol=1e-6)
    x = rng.normal(size=(7, 16)).astype(np.float32)
    once = t.apply(x, normalize=False)
    assert np.allclose(t.apply(once, normalize=False), once, atol=1e-5)


def test_lsar_matches_the_reference_construction_for_lower_ranks():
    """The reference (zhxieml/LSAR, _low_rank.py) re-centres the best rank-k fit of the
    means on wc_new = pinv(B)^T 1 / |.|^2 and takes the top-k left singular vectors of
    B - wc_new; same subspace as the top-k principal directions of the centred means."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(12, 6)) + 2.0  # d x L language means
    for k in (1, 2, 4):
        wc = w.mean(1, keepdims=True)
        u, s, vh = np.linalg.svd(w - wc)
        best = wc + u[:, :k] @ np.diag(s[:k]) @ vh[:k]
        c = np.linalg.pinv(best).T @ np.ones(w.shape[1])
        prod = best - (c / (c**2).sum())[:, None]
        ref = np.linalg.svd(prod)[0][:, :k]
        ours = fit_lsar(w.T, k)
        assert np.allclose(ref @ ref.T, ours @ ours.T, atol=1e-8)


def test_apply_needs_languages_for_center_and_lir_and_knows_them():
    emb, langs, _ = _synthetic()
    for method in ("center", "lir"):
        t = fit_from_texts(method, _by_lang(emb, langs))
        with pytest.raises(ConfigError, match="needs the language"):
            t.apply(emb)
        with pytest.raises(ConfigError, match="fr"):
            t.apply(emb[:1], ["fr"])
    out = fit_from_texts("lsar", _by_lang(emb, langs)).apply(emb)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_without_pickle(method, tmp_path):
    emb, langs, _ = _synthetic()
    t = fit_from_texts(method, _by_lang(emb, langs), fit_info={"source": "x"}, fit_texts=["a"])
    save_transform(t, tmp_path / "fit")
    assert sorted(p.name for p in (tmp_path / "fit").iterdir()) == [
        "debias.json",
        "debias.safetensors",
    ]
    back = load_transform(tmp_path / "fit")
    assert (back.method, back.rank, back.languages, back.n_texts) == (
        t.method,
        t.rank,
        t.languages,
        {"en": 4, "de": 4, "zh": 4},
    )
    assert back.data_fingerprint == t.data_fingerprint and len(t.data_fingerprint) == 16
    assert np.array_equal(back.apply(emb, langs), t.apply(emb, langs))
    meta = json.loads((tmp_path / "fit" / "debias.json").read_text())
    meta["method"] = "pca"
    (tmp_path / "fit" / "debias.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="method"):
        load_transform(tmp_path / "fit")


def test_fit_refuses_bad_inputs():
    with pytest.raises(ConfigError, match="method"):
        fit_from_texts("pca", {"en": np.ones((2, 3))})
    with pytest.raises(ConfigError, match="two languages"):
        fit_from_texts("lsar", {"en": np.ones((2, 3))})
    with pytest.raises(DataError, match="dimension"):
        fit_from_texts("center", {"en": np.ones((2, 3)), "de": np.ones((2, 4))})


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def two_article_bench(tmp_path_factory, shared_data_dir):
    """The en/de/zh fixture with its article repeated under new ids and texts (article 1),
    so articles 0 and 1 are a disjoint fit / evaluation split."""
    src = shared_data_dir / "fixtures" / "xquad-r"
    folder = tmp_path_factory.mktemp("bench") / "two"
    folder.mkdir()
    for lang in ("en", "de", "zh"):
        doc = json.loads((src / f"{lang}.json").read_text(encoding="utf-8"))
        art = copy.deepcopy(doc["data"][0])
        for para in art["paragraphs"]:
            append_to_sentences(para, " (2)")  # context and breaks follow
            for qa in para["qas"]:
                qa["id"] = qa["id"] + "-b"
                qa["question"] = qa["question"] + " (2)"
        doc["data"] = [doc["data"][0], art]
        (folder / f"{lang}.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return folder


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, two_article_bench):
    fit = collect_fit_texts(two_article_bench)
    build = tmp_path_factory.mktemp("tiny")
    make_tiny_model(build / "build", fit.all_texts()).save(str(build / "model"))
    return build / "model"


def test_collect_fit_texts_from_a_benchmark_and_refusal(two_article_bench):
    fit = collect_fit_texts(two_article_bench, articles="1", languages="en,de")
    assert fit.languages == ["en", "de"]
    assert all(q.endswith(" (2)") for q in fit.queries["en"])
    assert fit.question_ids and all(i.endswith("-b") for i in fit.question_ids)
    assert fit.n_texts()["en"] == len(fit.queries["en"]) + len(fit.passages["en"])
    emb = {x: np.random.default_rng(0).normal(size=(n, 8)) for x, n in fit.n_texts().items()}
    t = fit_from_texts("center", emb, fit_info=fit.provenance(), fit_texts=fit.all_texts())
    from babelir.data.lareqa import load_benchmark

    held = load_benchmark(two_article_bench, languages="en,de", articles="0")
    t.check_evaluation(  # disjoint: passes
        benchmark_name=held.name,
        benchmark_path=held.path,
        question_ids=held.question_ids,
        texts=[*held.question_texts, *held.candidate_texts()],
    )
    same = load_benchmark(two_article_bench, languages="en,de", articles="1")
    with pytest.raises(ConfigError, match="overlap"):
        t.check_evaluation(
            benchmark_name=same.name, benchmark_path=same.path, question_ids=same.question_ids
        )
    with pytest.raises(ConfigError, match="overlap"):  # texts alone, any benchmark
        t.check_evaluation(texts=same.question_texts[:1])


def test_fit_texts_of_a_run_are_its_training_texts(two_article_bench, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = {"train_data": str(two_article_bench), "articles": "1", "eval_articles": "0"}
    (run / "babelir-train.json").write_text(
        json.dumps({"config": config, "train_languages": ["en", "zh"]})
    )
    fit = collect_fit_texts(run)
    direct = collect_fit_texts(two_article_bench, articles="1", languages="en,zh")
    assert fit.queries == direct.queries and fit.passages == direct.passages
    assert fit.info["run"] == str(run) and fit.info["run_eval_articles"] == "0"
    with pytest.raises(ConfigError, match="trained on articles 1"):
        collect_fit_texts(run, articles="0")


def test_exported_lsar_folder_loads_with_plain_sentence_transformers(
    tiny_model_dir, two_article_bench, tmp_path
):
    from sentence_transformers import SentenceTransformer

    from babelir.debias import fit_model
    from babelir.encoding.encoder import encode_texts
    from babelir.encoding.options import EncodeOptions
    from babelir.models.loading import load_model

    st = load_model(str(tiny_model_dir), device="cpu")
    fit = collect_fit_texts(two_article_bench, articles="1")
    t = fit_model(st, fit, "lsar", extra_info={"model": "tiny"})
    out = export_lsar_model(st, t, tmp_path / "lsar", model_name="tiny")
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules][-2:] == ["Dense", "Normalize"]
    assert list(out.rglob("*.safetensors")) and not list(out.rglob("*.bin"))
    card = (out / "README.md").read_text()
    assert "LSAR" in card and "| articles | 1 |" in card and "| languages | de, en, zh |" in card
    texts = collect_fit_texts(two_article_bench, articles="0").all_texts()[:40]
    plain = SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_numpy=True)
    fp32 = EncodeOptions(precision="fp32", show_progress=False)
    ours = t.apply(encode_texts(st, texts, options=fp32))
    assert plain.shape == ours.shape
    assert np.abs(plain - ours).max() < 1e-5
    assert load_transform(out).data_fingerprint == t.data_fingerprint
    # The fit's prefixes travel as prompts (an e5 folder's name no longer implies them).
    t.fit_info.update(query_prefix="query: ", passage_prefix="passage: ")
    again = SentenceTransformer(str(export_lsar_model(st, t, tmp_path / "p")), device="cpu")
    assert again.prompts["query"] == "query: " and again.prompts["passage"] == "passage: "




def test_cli_debias_and_evaluate_end_to_end(
    tiny_model_dir, two_article_bench, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("BABELIR_CACHE_DIR", str(tmp_path / "cache"))  # debias uses the cache
    common = [
        "--model", str(tiny_model_dir), "--max-seq-length", "64", "--precision", "fp32", "-q"
    ]  # fmt: skip
    bench = str(two_article_bench)
    # Fitting on the held-out articles is refused in one line.
    code, _, err = _call(
        capsys, "debias", *common, "--method", "center", "--fit-data", bench,
        "--articles", "all", "--eval-articles", "0", "--output", str(tmp_path / "bad"),
    )  # fmt: skip
    assert code == 2 and err.strip().startswith("error:") and "overlap" in err
    assert not (tmp_path / "bad").exists()
    fits = {}
    for method in ("center", "lsar"):
        fits[method] = tmp_path / method
        code, _, err = _call(
            capsys, "debias", *common, "--method", method, "--fit-data", bench,
            "--articles", "1", "--eval-articles", "0", "--output", str(fits[method]),
        )  # fmt: skip
        assert code == 0, err[-2000:]
    assert (fits["lsar"] / "modules.json").is_file()
    assert (fits["center"] / "debias.json").is_file()
    base = tmp_path / "eval-base"
    code, _, err = _call(
        capsys, "evaluate", *common, "--benchmark", bench, "--articles", "0",
        "--output", str(base), "--no-cache",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    for method in ("center", "lsar"):
        out = tmp_path / f"eval-{method}"
        code, _, err = _call(
            capsys, "evaluate", *common, "--benchmark", bench, "--articles", "0",
            "--debias", method, "--debias-fit", str(fits[method]), "--output", str(out),
            "--no-cache",
        )  # fmt: skip
        assert code == 0, err[-2000:]
        m = json.loads((out / "metrics.json").read_text())
        assert m["debias"]["method"] == method
        assert m["debias"]["articles"] == "1" and m["debias"]["model_fingerprint_matches"]
        assert m["debias"]["n_texts"]["en"] > 0
        assert m["map"] != json.loads((base / "metrics.json").read_text())["map"]
        # The fit split is remembered: evaluating on the fit articles is refused.
        code, _, err = _call(
            capsys, "evaluate", *common, "--benchmark", bench, "--articles", "1",
            "--debias", method, "--debias-fit", str(fits[method]), "--no-cache",
        )  # fmt: skip
        assert code == 2 and "overlap" in err and "Traceback" not in err
    # The exported LSAR model evaluated directly agrees with the evaluation-time transform.
    direct = tmp_path / "eval-lsar-model"
    code, _, err = _call(
        capsys, "evaluate", "--model", str(fits["lsar"]), "--max-seq-length", "64", "-q",
        "--benchmark", bench, "--articles", "0", "--output", str(direct), "--no-cache",
        "--precision", "fp32",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    a = json.loads((direct / "metrics.json").read_text())["map"]
    b = json.loads((tmp_path / "eval-lsar" / "metrics.json").read_text())["map"]
    assert a == pytest.approx(b, abs=1e-4)
    # Wrong method for the fit, and a JSONL fit.
    code, _, err = _call(
        capsys, "evaluate", *common, "--benchmark", bench, "--articles", "0",
        "--debias", "lir", "--debias-fit", str(fits["center"]),
    )  # fmt: skip
    assert code == 2 and "center fit" in err
    jsonl = tmp_path / "fit.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"lang": lang, "text": f"{lang} text number {i}"}) + "\n"
            for lang in ("en", "de", "zh")
            for i in range(5)
        )
    )
    code, _, err = _call(
        capsys, "debias", *common, "--method", "lir", "--rank", "2", "--fit-data", str(jsonl),
        "--output", str(tmp_path / "lir"),
    )  # fmt: skip
    assert code == 0, err[-2000:]
    t = load_transform(tmp_path / "lir")
    assert t.method == "lir" and t.rank == 2 and t.n_texts == {"en": 5, "de": 5, "zh": 5}

"""Language preference of the pooled ranking (lang_pref@k, lang_pref_excess@k): a
hand-computed pool, an independent plain-loop implementation on random data (ties
included), both engine paths, and the report's handling (paired tests, seed statistics,
evaluations stored before the measures)."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import numpy as np
import pytest

from babelir.evaluation import metrics
from babelir.evaluation.measures import LANG_PREF, LAREQA, LAREQA_ALL, measure
from babelir.evaluation.metrics import evaluate_embeddings, language_preference_at_k
from babelir.reporting.analysis import TESTED, aggregate, paired_tests, seed_tests
from babelir.reporting.schema import EvalRecord

# ----------------------------------------------------------------- a hand-computed pool
# 1-d embeddings, so a score is a product of two numbers. Candidates (language, value):
#   c0 en .9 | c1 de .7 | c2 en .5 | c3 de .5 | c4 en .3 | c5 en .1
# pool: 4 en, 2 de -> a language-blind ranker's share is 4/6 for en, 2/6 for de.
# q0 (en) and q1 (de) are [1]: ranking c0 c1 {c2 c3 tied} c4 c5.
# q2 (de) is [-1]: ranking c5 c4 {c2 c3 tied} c1 c0.
CAND = np.array([[0.9], [0.7], [0.5], [0.5], [0.3], [0.1]], dtype=np.float32)
CAND_BLOCKS = np.array([0, 1, 0, 1, 0, 0])
QUESTIONS = np.array([[1.0], [1.0], [-1.0]], dtype=np.float32)
Q_BLOCKS = np.array([0, 1, 1])
RELEVANT = [np.array([2, 3]), np.array([2, 3]), np.array([1])]

# per question, by k (worked out in test_hand_computed_pool)
HAND = {
    1: [1.0, 0.0, 0.0],
    2: [1 / 2, 1 / 2, 0.0],
    3: [1.5 / 3, 1.5 / 3, 0.5 / 3],
    4: [2 / 4, 2 / 4, 1 / 4],
    10: [4 / 6, 2 / 6, 2 / 6],  # pool of 6 < k: the whole pool
}
BLIND = [4 / 6, 2 / 6, 2 / 6]


def _hand_metrics(**kw):
    return evaluate_embeddings(
        QUESTIONS, CAND, Q_BLOCKS, CAND_BLOCKS, RELEVANT, ["en", "de"], top_ks=tuple(HAND), **kw
    )


def test_hand_computed_pool():
    # q0, k=3: c0 (en) and c1 (de) are above the cut (.5); one of the two slots' worth of
    # the tie {c2 en, c3 de} is left, shared half en: (1 + 1/2) / 3. k=4 takes the whole
    # tie: (1 + 1) / 4. q2, k=3: c5 c4 (en) above, half of the tie is de: (0 + 1/2) / 3.
    m = _hand_metrics()
    for k, want in HAND.items():
        assert m.lang_pref[k] == pytest.approx(want, abs=1e-12), k
    assert m.lang_pref_expected == pytest.approx(BLIND, abs=1e-12)
    d = m.to_dict()
    assert d["lang_pref@1"] == pytest.approx(1 / 3)
    assert d["lang_pref_excess@1"] == pytest.approx(1 / 3 - 4 / 9)
    assert d["lang_pref@3"] == pytest.approx(7 / 18)
    assert d["lang_pref_excess@3"] == pytest.approx(7 / 18 - 8 / 18)
    assert d["lang_pref@10"] == pytest.approx(4 / 9)
    assert d["lang_pref_excess@10"] == pytest.approx(0.0, abs=1e-12)  # pool smaller than k
    assert d["lang_pref_expected"] == pytest.approx(4 / 9)
    assert d["per_language"]["en"]["lang_pref@3"] == pytest.approx(0.5)
    assert d["per_language"]["de"]["lang_pref@3"] == pytest.approx((0.5 + 1 / 6) / 2)
    assert d["per_language"]["de"]["lang_pref_excess@4"] == pytest.approx(3 / 8 - 1 / 3)
    # the existing numbers of the same pool are unchanged by the new measures
    assert d["rank_distance"] == pytest.approx(0.0)  # c2, c3 tied: both at rank 4 (q0, q1)


def test_hand_computed_pool_by_the_reference_function_and_the_torch_path(monkeypatch):
    scores = QUESTIONS @ CAND.T
    for k, want in HAND.items():
        own = [Q_BLOCKS[i] == CAND_BLOCKS for i in range(3)]
        got = [language_preference_at_k(scores[i], own[i], k) for i in range(3)]
        assert got == pytest.approx(want, abs=1e-12)
    monkeypatch.setattr(metrics, "_KERNEL", None)  # the torch path (GPUs; no numba)
    m = _hand_metrics()
    for k, want in HAND.items():
        assert m.lang_pref[k] == pytest.approx(want, abs=1e-12), k


def test_a_language_blind_ranker_has_zero_excess_at_every_k():
    # a zero question scores every candidate 0: one tie, shared out by the pool's languages
    q = np.zeros((2, 1), dtype=np.float32)
    m = evaluate_embeddings(
        q, CAND, np.array([0, 1]), CAND_BLOCKS, [np.array([0]), np.array([1])], ["en", "de"],
        top_ks=(1, 2, 3, 5, 6, 7),
    )  # fmt: skip
    for k in (1, 2, 3, 5, 6, 7):
        assert m.lang_pref_values(k, excess=True) == pytest.approx([0.0, 0.0], abs=1e-12)


def test_default_cut_offs_are_10_and_20_in_metrics_json():
    m = evaluate_embeddings(QUESTIONS, CAND, Q_BLOCKS, CAND_BLOCKS, RELEVANT, ["en", "de"])
    d = m.to_dict()
    for key in ("lang_pref@10", "lang_pref_excess@10", "lang_pref@20", "lang_pref_excess@20"):
        assert key in d and key in d["per_language"]["de"]
        assert measure(key).get(d) == d[key]
    assert d["lang_pref@20"] == pytest.approx(4 / 9)  # pool of 6: the whole pool


def test_bad_cut_off_is_refused():
    with pytest.raises(ValueError, match="cut-offs must be >= 1"):
        evaluate_embeddings(
            QUESTIONS, CAND, Q_BLOCKS, CAND_BLOCKS, RELEVANT, ["en", "de"], top_ks=(0, 10)
        )


# ------------------------------------------------- independent implementation, random data


def _plain_lang_pref(scores, cand_langs, q_lang, k):
    """Plain loops, another formulation: a candidate with g candidates strictly above it
    and e at its score (itself included) holds a uniformly random position among
    g+1 .. g+e under random tie-breaking, so it is in the top k' with probability
    clamp((k' - g) / e, 0, 1); the expected own-language count is the sum of those."""
    n = len(scores)
    cut = min(k, n)
    own = 0.0
    for i in range(n):
        if cand_langs[i] != q_lang:
            continue
        greater = 0
        equal = 0
        for j in range(n):
            if scores[j] > scores[i]:
                greater += 1
            elif scores[j] == scores[i]:
                equal += 1
        own += min(1.0, max(0.0, (cut - greater) / equal))
    in_lang = sum(1 for x in cand_langs if x == q_lang)
    return own / cut, own / cut - in_lang / n


def _random_case(seed, *, ties):
    rng = np.random.default_rng(seed)
    n_lang = int(rng.integers(2, 5))
    nc = int(rng.integers(5, 60))
    nq = int(rng.integers(3, 25))
    dim = 4
    if ties:  # small integers: exact float32 products, many tied scores
        q = rng.integers(-2, 3, (nq, dim)).astype(np.float32)
        c = rng.integers(-1, 2, (nc, dim)).astype(np.float32)
    else:
        q = rng.standard_normal((nq, dim)).astype(np.float32)
        c = rng.standard_normal((nc, dim)).astype(np.float32)
    cb = rng.integers(0, n_lang, nc)
    qb = rng.integers(0, n_lang, nq)
    rel = [rng.choice(nc, size=int(rng.integers(1, 3)), replace=False) for _ in range(nq)]
    return q, c, qb, cb, rel, [f"l{i}" for i in range(n_lang)]


@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("path", ["numba", "torch"])
def test_engine_matches_plain_loops(seed, ties, path, monkeypatch):
    if path == "torch":
        monkeypatch.setattr(metrics, "_KERNEL", None)
    q, c, qb, cb, rel, langs = _random_case(seed, ties=ties)
    ks = (1, 3, 10, 20)
    counts = metrics.relevant_counts(q, c, cb, rel, num_blocks=len(langs), chunk_size=7, top_ks=ks)
    m = metrics.lareqa_metrics(counts, qb, langs)
    scores = (q.astype(np.float32) @ c.T.astype(np.float32)).tolist()
    for k in ks:
        want = [_plain_lang_pref(scores[i], cb.tolist(), int(qb[i]), k) for i in range(len(qb))]
        assert m.lang_pref[k] == pytest.approx([w[0] for w in want], abs=1e-9)
        assert m.lang_pref_values(k, excess=True) == pytest.approx([w[1] for w in want], abs=1e-9)
        ref = [
            language_preference_at_k(np.asarray(scores[i]), qb[i] == cb, k) for i in range(len(qb))
        ]
        assert m.lang_pref[k] == pytest.approx(ref, abs=1e-9)
        # headline: mean over questions
        assert m.to_dict()[f"lang_pref_excess@{k}"] == pytest.approx(
            np.mean([w[1] for w in want]), abs=1e-9
        )


def test_numba_and_torch_paths_count_the_same_on_a_larger_pool(monkeypatch):
    rng = np.random.default_rng(7)
    q = rng.integers(-3, 4, (300, 8)).astype(np.float32)
    c = rng.integers(-1, 2, (900, 8)).astype(np.float32)
    cb, rel = rng.integers(0, 5, 900), [np.array([i % 900]) for i in range(300)]
    fast = metrics.relevant_counts(q, c, cb, rel, num_blocks=5, chunk_size=64)
    monkeypatch.setattr(metrics, "_KERNEL", None)
    slow = metrics.relevant_counts(q, c, cb, rel, num_blocks=5, chunk_size=50)
    assert fast.top_ks == slow.top_ks == (10, 20)
    assert np.array_equal(fast.top_above, slow.top_above)
    assert np.array_equal(fast.top_tied, slow.top_tied)
    assert fast.top_tied.sum() > 0  # the integer embeddings did tie at the cut
    # at each cut: above < k <= above + tied
    for j, k in enumerate(fast.top_ks):
        assert (fast.top_above[:, j].sum(1) < k).all()
        assert (fast.top_above[:, j].sum(1) + fast.top_tied[:, j].sum(1) >= k).all()


# --------------------------------------------------------------------- registry and report


def test_registry_keeps_the_paper_measures_and_adds_language_preference():
    assert len(LAREQA) == 7 and LAREQA_ALL[:7] == LAREQA
    assert [m.key for m in LANG_PREF] == [
        "lang_pref@10",
        "lang_pref_excess@10",
        "lang_pref@20",
        "lang_pref_excess@20",
    ]
    assert measure("lang pref excess@20") is measure("lang_pref_excess@20")
    assert all(not m.higher_is_better and m.setting == m.key for m in LANG_PREF)
    # the raw share and its excess differ per query by a constant both models share:
    # only the excess is tested, once
    tested = {m.key for m in TESTED}
    assert {"lang_pref_excess@10", "lang_pref_excess@20"} <= tested
    assert not {"lang_pref@10", "lang_pref@20"} & tested
    assert measure("lang_pref@10").present({"lang_pref@10": None})
    assert not measure("lang_pref@10").present({"rank_distance": 3.0})


LANGS = ["en", "de", "zh"]


def _record(label, seed, shift, *, old=False, n_per_lang=30):
    """An evaluation record from real engine output on synthetic embeddings; ``shift``
    pulls every question towards its own language's candidates (language bias).
    ``old``: as stored before the language-preference measures."""
    from babelir.evaluation.records import lang_pref_arrays

    rng = np.random.default_rng(1000 * (seed or 0) + int(shift * 100))
    nl = len(LANGS)
    dim = 16
    lang_vec = rng.standard_normal((nl, dim))
    topic = rng.standard_normal((n_per_lang, dim))
    cand = np.concatenate([topic + 0.3 * lang_vec[z] for z in range(nl)])
    cb = np.repeat(np.arange(nl), n_per_lang)
    qv = np.concatenate([topic + shift * lang_vec[z] for z in range(nl)])
    qv += 0.8 * rng.standard_normal(qv.shape)
    qb = np.repeat(np.arange(nl), n_per_lang)
    rel = [np.arange(nl) * n_per_lang + (i % n_per_lang) for i in range(len(qb))]
    m = evaluate_embeddings(qv.astype(np.float32), cand.astype(np.float32), qb, cb, rel, LANGS)
    doc = {"languages": LANGS, **m.to_dict()}
    pq = {
        "pair_ap": m.pair_ap,
        "multi_ap": m.multi_ap,
        "question_blocks": m.question_blocks,
        "rank_distance": m.rank_distance,
        "multi_recall10": m.multi_recall10,
        "question_ids": np.asarray([f"q{i % n_per_lang}" for i in range(len(qb))]),
        **lang_pref_arrays(m),
    }
    if old:
        doc = {k: v for k, v in doc.items() if not k.startswith("lang_pref")}
        pq = {k: v for k, v in pq.items() if not k.startswith("lang_pref")}
    return EvalRecord(label, seed, "xquad-r", doc, pq)


def test_paired_and_seed_tests_cover_the_excess_like_the_other_measures():
    recs = [_record("biased", s, 2.0) for s in (0, 1)] + [
        _record("blind", s, 0.0) for s in (0, 1)
    ]
    for r in recs:
        assert r.per_query["lang_pref"].shape == (90, 2)
    tests = paired_tests(recs, ["blind"], permutations=200, bootstrap=200)
    by = {t["setting"]: t for t in tests}
    assert set(by) == {m.setting for m in TESTED}
    for k in (10, 20):
        t = by[f"lang_pref_excess@{k}"]
        key = f"lang_pref_excess@{k}"
        want = np.mean([r.metrics[key] for r in recs[2:]]) - np.mean(
            [r.metrics[key] for r in recs[:2]]
        )
        # mean over seeds of the per-query difference == difference of the headline means
        assert t["mean_difference"] == pytest.approx(want, abs=1e-9)
        assert t["bootstrap_ci"][1] < 0 and t["p_holm"] < 0.05  # less own-language
        assert t["n_seeds"] == 2 and t["seed_ci"] is not None
    cells = aggregate(recs)["xquad-r"]
    for m in LANG_PREF:
        c = cells["biased"][m.label]
        want = np.mean([m.get(r.metrics) for r in recs[:2]])
        assert c["n"] == 2 and c["mean"] == pytest.approx(want)
    st = {(t["measure"], t["baseline"]) for t in seed_tests(recs, ["blind"])}
    assert ("lang pref excess@10", "biased") in st and ("lang pref@20", "biased") in st


def test_old_cached_evaluations_show_the_measures_as_missing(tmp_path):
    from babelir.batches.strategies import StrategySpec
    from babelir.reporting.markdown import render_csv
    from babelir.reporting.report import write_report
    from babelir.reporting.schema import Provenance, ReportInput, RunInfo

    recs = [
        _record("base", None, 1.0, old=True),  # stored before the measures
        _record("hybrid", 0, 0.5),
        _record("x-y", 0, 0.5, old=True),
        _record("x-y", 1, 0.4),  # one seed old, one new: the cell is missing, not a mean
        _record("hybrid", 1, 0.6),
    ]
    cells = aggregate(recs)["xquad-r"]
    ex = "lang pref excess@10"
    assert cells["base"][ex]["mean"] is None and cells["base"][ex]["n"] == 0
    assert cells["x-y"][ex]["mean"] is None
    assert cells["hybrid"][ex]["n"] == 2
    assert cells["x-y"]["multi mAP"]["n"] == 2  # the other measures are untouched
    tests = paired_tests(recs, ["hybrid"], permutations=100, bootstrap=100)
    assert {t["setting"] for t in tests} == {"mono", "cross", "multi", "rank_distance"}
    assert all(t["measure"] in {m.label for m in LAREQA} for t in seed_tests(recs, ["hybrid"]))

    rows = list(csv.DictReader(io.StringIO(render_csv(recs, []))))
    names = {(r["model"], r["seed"]): {x["setting"] for x in rows if x["model"] == r["model"]
             and x["seed"] == r["seed"]} for r in rows}  # fmt: skip
    assert ex not in names[("base", "")] and ex in names[("hybrid", "0")]

    runs = [RunInfo(StrategySpec(s, alpha_in_label=False), seed) for seed in (0, 1)
            for s in ("x-y", "hybrid")]  # fmt: skip
    inp = ReportInput(
        name="t",
        reference="hybrid",
        evaluations=recs,
        runs=runs,
        provenance=Provenance(versions={}, git_commit=None),
        permutations=100,
        bootstrap=100,
    )
    text = write_report(inp, tmp_path).read_text()
    head = next(line for line in text.splitlines() if "xquad-r rank distance" in line)
    assert "xquad-r lang pref@10" in head and "xquad-r lang pref excess@20" in head
    rows = text.splitlines()
    base = rows[rows.index(head) + 2]  # below the header and its rule: base comes first
    assert base.startswith("| base |")
    assert base.rstrip(" |").endswith("| - | - | - | -")


def test_terminal_table_shows_language_preference():
    from rich.console import Console

    from babelir.reporting.tables import metrics_table

    doc = {
        **_record("x", 0, 1.0).metrics,
        "model": "x",
        "benchmark": "xquad-r",
        "num_questions": 90,
        "num_candidates": 90,
        "articles": "all",
        "candidate_mode": "sentence",
    }
    console = Console(record=True, width=250)
    console.print(metrics_table(doc))
    text = console.export_text()
    for m in LANG_PREF:
        assert m.label in text
    assert measure("lang_pref_excess@10").format(doc["lang_pref_excess@10"]) in text
    old = {k: v for k, v in doc.items() if not k.startswith("lang_pref")}
    old["per_language"] = {
        x: {k: v for k, v in row.items() if not k.startswith("lang_pref")}
        for x, row in doc["per_language"].items()
    }
    console = Console(record=True, width=250)
    console.print(metrics_table(old))
    assert "lang pref" not in console.export_text()


def test_saved_evaluation_keeps_the_per_query_values(tmp_path):
    from babelir.evaluation.lareqa import Embeddings, EvaluationResult
    from babelir.evaluation.records import load_evaluation, save_evaluation

    m = _hand_metrics()
    bench = SimpleNamespace(
        name="tiny", path=tmp_path, languages=["en", "de"], articles="all",
        candidate_mode="sentence", num_questions=3, num_candidates=6,
        question_ids=["a", "a", "b"],
    )  # fmt: skip
    result = EvaluationResult(bench, m, Embeddings(QUESTIONS, CAND), {"model": "tiny"})  # type: ignore[arg-type]
    stored = save_evaluation(result, tmp_path / "eval", save_embeddings=False)
    assert stored.per_query["lang_pref_k"].tolist() == sorted(HAND)
    assert stored.per_query["lang_pref"][:, 2] == pytest.approx(HAND[3])
    assert stored.per_query["lang_pref_expected"] == pytest.approx(BLIND)
    assert stored.metrics["lang_pref@3"] == pytest.approx(7 / 18)
    assert "lang_pref" in stored.metrics["conventions"]
    assert load_evaluation(tmp_path / "eval").per_query["lang_pref"].shape == (3, len(HAND))

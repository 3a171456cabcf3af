"""LAReQA metrics: hand-computed cases, tie convention, and independent cross-checks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from babelir.evaluation.metrics import (
    average_precision,
    evaluate_embeddings,
    pessimistic_recall_at_k,
    ranks_pessimistic,
)


def test_ap_hand_computed_with_tie():
    # scores 0.9 0.8 0.8 0.5, relevant: 2nd and 4th. The relevant 0.8 ties with a
    # non-relevant 0.8 and is ranked after it (rank 3): AP = (1/3 + 2/4) / 2 = 5/12.
    scores = np.array([0.9, 0.8, 0.8, 0.5])
    rel = np.array([False, True, False, True])
    assert ranks_pessimistic(scores).tolist() == [1, 3, 3, 4]
    assert average_precision(scores, rel) == pytest.approx(5 / 12, abs=1e-12)
    assert average_precision_score(rel, scores) == pytest.approx(5 / 12, abs=1e-12)
    assert pessimistic_recall_at_k(scores, rel, 3) == 0.5
    assert pessimistic_recall_at_k(scores, rel, 2) == 0.0


def test_ap_divides_by_all_relevant_not_cutoff():
    # Perfect ranking of 3 relevant among 5: AP 1. One relevant last: (1 + 1 + 3/5) / 3.
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert average_precision(scores, np.array([1, 1, 1, 0, 0], bool)) == 1.0
    got = average_precision(scores, np.array([1, 1, 0, 0, 1], bool))
    assert got == pytest.approx((1 + 1 + 3 / 5) / 3)


def _tiny():
    # 1-d embeddings, so each score is the product of two numbers.
    # languages en (candidates 0, 1), de (2, 3); question 0 (en) and 1 (de) share id A,
    # whose answer is candidate 1 in en and candidate 2 in de.
    q = np.array([[1.0], [-1.0]], dtype=np.float32)
    c = np.array([[0.9], [0.5], [0.7], [0.1]], dtype=np.float32)
    rel = [np.array([1, 2]), np.array([1, 2])]
    return q, c, np.array([0, 1]), np.array([0, 0, 1, 1]), rel


def test_all_settings_hand_computed():
    q, c, qb, cb, rel = _tiny()
    m = evaluate_embeddings(q, c, qb, cb, rel, ["en", "de"])
    d = m.to_dict()
    # q0 en->en: c0 .9 > c1 .5 -> rank 2, AP 1/2; en->de: c2 first -> AP 1.
    # q1 (scores negated) de->de: c3 -.1 > c2 -.7 -> AP 1/2; de->en: c1 first -> AP 1.
    assert d["per_pair_map"] == {"en": {"en": 0.5, "de": 1.0}, "de": {"en": 1.0, "de": 0.5}}
    assert d["map"]["mono"] == 0.5
    assert d["map"]["cross"] == 1.0
    # pooled: q0 ranks c0 c2 c1 c3 -> relevant at 2, 3: AP (1/2 + 2/3)/2 = 7/12; q1 same.
    assert d["map"]["multi"] == pytest.approx(7 / 12)
    assert d["recall"] == {"mono@1": 0.0, "cross@1": 1.0, "multi@10": 1.0}
    assert d["rank_distance"] == 1.0
    assert m.subset(["de"])["map"]["multi"] == pytest.approx(7 / 12)


def test_ties_are_pessimistic_everywhere():
    # All candidates score the same: every relevant one is ranked last among them.
    q = np.ones((1, 2), dtype=np.float32)
    c = np.ones((4, 2), dtype=np.float32)
    m = evaluate_embeddings(
        q, c, np.array([0]), np.array([0, 0, 1, 1]), [np.array([0, 2])], ["a", "b"]
    )
    d = m.to_dict()
    assert d["per_pair_map"]["a"] == {"a": 0.5, "b": 0.5}
    assert d["recall"]["mono@1"] == 0.0
    assert d["map"]["multi"] == pytest.approx(0.5)  # 2 relevant at rank 4: (2/4 + 2/4)/2
    assert d["rank_distance"] == 0.0


def test_question_without_relevant_in_a_language_is_skipped_there():
    # Question 1 (lang a) has no answer in language b: (a->b) averages question 0 only.
    q = np.array([[1.0], [1.0]], dtype=np.float32)
    c = np.array([[0.2], [0.9], [0.5], [0.1]], dtype=np.float32)
    rel = [np.array([0, 3]), np.array([1])]
    m = evaluate_embeddings(q, c, np.array([0, 0]), np.array([0, 0, 1, 1]), rel, ["a", "b"])
    d = m.to_dict()
    assert d["per_pair_map"]["a"]["b"] == 0.5  # q0: candidate 3 ranked 2nd of 2
    assert d["per_pair_map"]["a"]["a"] == pytest.approx((0.5 + 1.0) / 2)
    assert d["per_pair_map"]["b"]["a"] is None  # no questions in b
    assert np.isnan(m.rank_distance[1])  # a single relevant: no distance


def _random_problem(seed, nq=120, nc=150, n_lang=3, d=6, ties=False):
    rng = np.random.default_rng(seed)
    if ties:  # small integer vectors give many exactly equal scores
        q = rng.integers(-2, 3, (nq, d)).astype(np.float32)
        c = rng.integers(-2, 3, (nc, d)).astype(np.float32)
    else:
        q = rng.standard_normal((nq, d)).astype(np.float32)
        c = rng.standard_normal((nc, d)).astype(np.float32)
    cb = np.sort(rng.integers(0, n_lang, nc))
    qb = np.sort(rng.integers(0, n_lang, nq))
    rel = [np.sort(rng.choice(nc, rng.integers(1, 7), replace=False)) for _ in range(nq)]
    return q, c, qb, cb, rel


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_per_question(seed, ties):
    q, c, qb, cb, rel = _random_problem(seed, ties=ties)
    m = evaluate_embeddings(q, c, qb, cb, rel, ["x", "y", "z"])
    scores = q @ c.T
    for i in range(len(q)):
        labels = np.zeros(len(c), bool)
        labels[rel[i]] = True
        assert m.multi_ap[i] == pytest.approx(average_precision_score(labels, scores[i]), abs=1e-9)
        for z in range(3):
            mask = cb == z
            if labels[mask].any():
                ref = average_precision_score(labels[mask], scores[i][mask])
                assert m.pair_ap[i, z] == pytest.approx(ref, abs=1e-9)
            else:
                assert np.isnan(m.pair_ap[i, z])


def test_matches_ir_measures_without_ties():
    ir_measures = pytest.importorskip("ir_measures")
    q, c, qb, cb, rel = _random_problem(5, nq=40, nc=80)
    m = evaluate_embeddings(q, c, qb, cb, rel, ["x", "y", "z"])
    scores = (q @ c.T).astype(np.float64)
    qrels = [ir_measures.Qrel(str(i), str(j), 1) for i in range(len(q)) for j in rel[i]]
    run = [
        ir_measures.ScoredDoc(str(i), str(j), float(scores[i, j]))
        for i in range(len(q))
        for j in range(len(c))
    ]
    per_query = {r.query_id: r.value for r in ir_measures.iter_calc([ir_measures.AP], qrels, run)}
    r10 = {r.query_id: r.value for r in ir_measures.iter_calc([ir_measures.R @ 10], qrels, run)}
    for i in range(len(q)):
        assert m.multi_ap[i] == pytest.approx(per_query[str(i)], abs=1e-9)
        assert m.multi_recall10[i] == pytest.approx(r10[str(i)], abs=1e-9)


def test_chunking_does_not_change_results():
    from babelir.evaluation.metrics import relevant_counts

    q, c, _qb, cb, rel = _random_problem(3, ties=True)
    a = relevant_counts(q, c, cb, rel, num_blocks=3, chunk_size=7)
    b = relevant_counts(q, c, cb, rel, num_blocks=3, chunk_size=1000)
    assert np.array_equal(a.counts, b.counts)
    # pooled ranks equal the brute-force count of candidates scoring >= the relevant one
    scores = q @ c.T
    for i in range(len(q)):
        for r, row in enumerate(rel[i]):
            assert a.counts[i, r].sum() == int((scores[i] >= scores[i, row]).sum())


def test_numba_and_torch_paths_agree(monkeypatch):
    from babelir.evaluation import metrics

    assert metrics._KERNEL is not None  # numba is a dependency: the fast path is in use
    q, c, _qb, cb, rel = _random_problem(4, ties=True)
    fast = metrics.relevant_counts(q, c, cb, rel, num_blocks=3, chunk_size=50)
    monkeypatch.setattr(metrics, "_KERNEL", None)
    slow = metrics.relevant_counts(q, c, cb, rel, num_blocks=3, chunk_size=50)
    # padding slots carry no meaning (every consumer masks them with ``valid``)
    v = fast.valid
    assert np.array_equal(v, slow.valid) and v.sum() > len(q)
    assert np.array_equal(fast.counts[v], slow.counts[v])
    assert np.array_equal(fast.scores[v], slow.scores[v])

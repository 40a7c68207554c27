import math

import numpy as np

from similarity import BM25Vectorizer


def test_bm25_matches_a_hand_computed_score():
    docs = ["stem cells scleroderma", "scleroderma scleroderma skin", "diabetes insulin"]
    est = BM25Vectorizer(k1=1.2, b=0.75, stop_words=None).fit(docs)
    scores = (est.transform(docs) @ est.query_transform(["scleroderma"]).T).toarray().ravel()
    n, df = 3, 2
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    avgdl = (3 + 3 + 2) / 3
    expected0 = idf * 1 * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * 3 / avgdl))
    expected1 = idf * 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / avgdl))
    np.testing.assert_allclose(scores, [expected0, expected1, 0.0], rtol=1e-5)


def test_query_terms_count_once():
    est = BM25Vectorizer(stop_words=None).fit(["a b", "b c"])
    q = est.query_transform(["b b b"]).toarray()
    assert q.max() == 1.0

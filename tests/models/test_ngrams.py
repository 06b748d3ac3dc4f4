"""The n-gram head's features: one definition for training (scipy) and serving (numpy)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.models.ngrams import (
    ARTEFACT_TOKENS,
    DEFAULT_DIM,
    FIRST_WORD_ID,
    VOCAB,
    NgramHead,
    row_features,
    sparse_features,
)

ids_rows = st.lists(st.lists(st.integers(0, VOCAB - 1), max_size=70), min_size=1, max_size=12)


def test_special_tokens_and_padding_do_not_count() -> None:
    words = np.array([2023, 2003, 1037, 3231])
    with_specials = np.array([101, 2023, 2003, 1037, 3231, 102, 0, 0])
    np.testing.assert_array_equal(row_features(words), row_features(with_specials))
    assert len(row_features(np.array([101, 102, 0, 100]))) == 0


def test_platform_artefacts_are_dropped_and_their_ids_match_the_tokenizer() -> None:
    from guard.models.tokenizer import WindowTokenizer

    tok = WindowTokenizer.from_file(max_tokens=512)._tok
    for text, token_id in ARTEFACT_TOKENS.items():
        assert tok.token_to_id(text) == token_id, text
    tweet = tok.encode("@USER RT you are a genius & #winning", add_special_tokens=False).ids
    plain = tok.encode("you are a genius winning", add_special_tokens=False).ids
    np.testing.assert_array_equal(row_features(np.array(tweet)), row_features(np.array(plain)))


def test_unigrams_are_the_ids_and_bigrams_live_above_the_vocabulary() -> None:
    f = row_features(np.array([2023, 2003, 2023]))
    assert set(f[f < VOCAB]) == {2023, 2003}
    assert ((f[f >= VOCAB] >= VOCAB) & (f[f >= VOCAB] < DEFAULT_DIM)).all()
    assert (f >= VOCAB).sum() == 2  # (2023, 2003) and (2003, 2023) are different bigrams


@settings(max_examples=60, deadline=None)
@given(ids_rows)
def test_serving_logits_equal_the_training_matrix_product(rows: list[list[int]]) -> None:
    arrays = [np.array(r, np.int64) for r in rows]
    rng = np.random.default_rng(len(rows))
    coef = rng.standard_normal((DEFAULT_DIM, 3)).astype(np.float32) * (rng.random((DEFAULT_DIM, 1)) < 0.2)
    head = NgramHead.from_dense(coef, np.array([0.1, -0.2, 0.3], np.float32), keep=DEFAULT_DIM)
    x = sparse_features(arrays)
    expect = np.asarray(x @ head.dense()) + head.bias
    np.testing.assert_allclose(head.logits(arrays), expect, rtol=1e-4, atol=1e-4)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    has_words = np.array([len(row_features(a)) > 0 for a in arrays])
    np.testing.assert_allclose(norms[has_words], 1.0, rtol=1e-5)


def test_from_dense_keeps_the_strongest_rows() -> None:
    coef = np.zeros((DEFAULT_DIM, 2), np.float32)
    coef[FIRST_WORD_ID + 1] = [3.0, 0.0]
    coef[FIRST_WORD_ID + 2] = [0.0, -2.0]
    coef[FIRST_WORD_ID + 3] = [0.1, 0.1]
    head = NgramHead.from_dense(coef, np.zeros(2, np.float32), keep=2)
    assert head.index.tolist() == [FIRST_WORD_ID + 1, FIRST_WORD_ID + 2]
    out = head.logits([np.array([FIRST_WORD_ID + 1]), np.array([FIRST_WORD_ID + 3])])
    np.testing.assert_allclose(out, [[3.0, 0.0], [0.0, 0.0]])

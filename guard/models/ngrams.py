"""Word-piece n-gram head: a sparse linear model over the window's own token ids.

Why a second head beside the MLP: mean-pooled encoder layers blur a single decisive word — one slur
in a long sentence, one profanity in a tweet — and the frozen encoder was never taught which words
those are. A linear model over the window's word pieces and their bigrams sees exactly that. Its
logit is added to the MLP's (``Heads.mix`` per category, chosen on out-of-fold train scores), and
the sum is calibrated as one score. Measured on the dev split, the sum beats either part alone
(see ``calibration.json``).

Features must be computed the same way at training time (``sparse_features``, scipy) and at
serving time (``NgramHead.logits``, numpy only, in Triton's python backend): both go through
``row_features``. Ids below ``FIRST_WORD_ID`` ([PAD], [CLS], [SEP], [UNK], [MASK] and the
``[unused*]`` rows of the BERT vocabulary) are dropped, so padding and special tokens never count;
so are a few tweet-platform artefacts (``ARTEFACT_TOKENS``).
Features are binary and L2-normalised per window. Bigram ids are hashed into ``dim - VOCAB`` slots;
only the ``keep`` rows with the largest weights are stored (a few hundred KB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VOCAB = 30522
FIRST_WORD_ID = 999
#: Platform artefacts of the tweet corpora, not content: ``@``, ``user`` (OLID's ``@USER``), ``rt``,
#: ``&`` ``amp`` (HTML-escaped tweets), ``http`` ``https`` ``www``, ``#``. Left in, the regression
#: learns the sources' formatting (e.g. ``@`` → profanity from Davidson, ``user`` → not hate from
#: OLID), which says nothing about an LLM's answer. Ids of the MiniLM (BERT uncased) vocabulary;
#: ``tests/models/test_ngrams.py`` checks them against the shipped tokenizer.
ARTEFACT_TOKENS = {"@": 1030, "user": 5310, "rt": 19387, "&": 1004, "amp": 23713, "http": 8299,
                   "https": 16770, "www": 7479, "#": 1001}
_ARTEFACT_IDS = np.array(sorted(ARTEFACT_TOKENS.values()), dtype=np.int64)
#: Names the feature definition; part of the heads' version hash, so heads trained on different
#: features never share a version. Change it whenever ``row_features`` changes.
NGRAM_FEATURES = "wordpiece-uni+bigram-hash/v2-no-artefacts"
DEFAULT_DIM = 1 << 18
_P1, _P2 = 1_000_003, 7_919


def row_features(ids: np.ndarray, dim: int = DEFAULT_DIM) -> np.ndarray:
    """Sorted unique feature ids of one window: word pieces and hashed word-piece bigrams."""
    a = np.asarray(ids, dtype=np.int64)
    a = a[(a >= FIRST_WORD_ID) & ~np.isin(a, _ARTEFACT_IDS)]
    if len(a) < 2:
        return np.unique(a)
    bigrams = VOCAB + (a[:-1] * _P1 + a[1:] * _P2) % (dim - VOCAB)
    return np.unique(np.concatenate([a, bigrams]))


def sparse_features(rows: Sequence[np.ndarray], dim: int = DEFAULT_DIM):  # -> scipy.sparse.csr_matrix
    """``[n, dim]`` binary, row-L2-normalised features (training and offline evaluation)."""
    import scipy.sparse as sp

    feats = [row_features(r, dim) for r in rows]
    lens = np.array([len(f) for f in feats], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lens)])
    indices = np.concatenate(feats) if feats else np.zeros(0, np.int64)
    values = np.repeat((1.0 / np.sqrt(np.maximum(lens, 1))).astype(np.float32), lens)
    return sp.csr_matrix((values, indices, indptr), shape=(len(rows), dim))


@dataclass(frozen=True)
class NgramHead:
    """Per-category linear logits over ``row_features``; only stored rows have non-zero weight."""

    index: np.ndarray  # int64 [K] feature ids with a stored weight (sorted)
    weight: np.ndarray  # float32 [K, C]
    bias: np.ndarray  # float32 [C]
    dim: int = DEFAULT_DIM

    def __post_init__(self) -> None:
        slot = np.full(self.dim, -1, dtype=np.int32)
        slot[self.index] = np.arange(len(self.index), dtype=np.int32)
        object.__setattr__(self, "_slot", slot)

    @classmethod
    def from_dense(cls, coef: np.ndarray, bias: np.ndarray, keep: int) -> NgramHead:
        """Keep the ``keep`` feature rows with the largest ``max |w|`` over categories (float16)."""
        strength = np.abs(coef).max(axis=1)
        keep = min(keep, int((strength > 0).sum()))
        index = np.sort(np.argsort(-strength, kind="stable")[:keep]).astype(np.int64)
        w = coef[index].astype(np.float16).astype(np.float32)
        return cls(index, w, bias.astype(np.float32), dim=coef.shape[0])

    def dense(self) -> np.ndarray:
        """``[dim, C]`` weights (zeros where nothing is stored), for sparse matrix products."""
        out = np.zeros((self.dim, self.weight.shape[1]), np.float32)
        out[self.index] = self.weight
        return out

    def logits(self, rows: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """``[n, C]`` logits; ``rows`` are id rows (padding and special tokens are ignored)."""
        slot: np.ndarray = self._slot  # type: ignore[attr-defined]
        out = np.empty((len(rows), self.weight.shape[1]), np.float32)
        for i, r in enumerate(rows):
            f = row_features(r, self.dim)
            s = slot[f]
            hit = s[s >= 0]
            out[i] = self.bias + self.weight[hit].sum(axis=0) / np.sqrt(max(len(f), 1))
        return out

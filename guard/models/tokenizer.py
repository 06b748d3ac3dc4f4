"""Client-side tokenization for windowing.

The windowing code needs token ids *and* the character span of each token, so it can cut windows
on token boundaries and map findings back to absolute offsets. Two deliberate differences from the
shipped ``tokenizer.json``:

- no special tokens: a window is a slice of a stream's tokens, and ``[CLS] ... [SEP]`` belong
  around the *window*, not around each chunk. The detectors add them (``add_special_tokens``).
- no padding: the file pads every text to a fixed 128, which doubles model cost (MEASURED §6);
  batches are padded to their longest member by whoever runs the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from guard.models import paths
from guard.models.build import CLS_ID, MAX_SEQ_LEN, PAD_ID, SEP_ID

#: Longest window content: the encoder's 256 positions minus [CLS] and [SEP].
MAX_CONTENT_TOKENS = MAX_SEQ_LEN - 2


@dataclass(frozen=True, slots=True)
class Encoded:
    """Token ids (int64 ``[n]``, no special tokens) and char offsets (int64 ``[n, 2]``, end exclusive)."""

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class WindowTokenizer:
    """Wraps a configured ``tokenizers.Tokenizer``; build it with ``from_file``."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int) -> None:
        self._tok = tokenizer
        self.max_tokens = max_tokens

    @classmethod
    def from_file(cls, path: str | Path | None = None, max_tokens: int = 4096) -> WindowTokenizer:
        """Load ``tokenizer.json`` (the built copy, else the packaged one).

        ``max_tokens`` caps one ``encode`` call; the default is large because callers tokenize
        chunks of a stream and cut windows themselves — the per-window cap is ``MAX_CONTENT_TOKENS``.
        """
        tok = Tokenizer.from_file(str(paths.tokenizer_path() if path is None else path))
        tok.no_padding()
        tok.enable_truncation(max_tokens)
        return cls(tok, max_tokens)

    def encode(self, text: str) -> Encoded:
        enc = self._tok.encode(text, add_special_tokens=False)
        return Encoded(np.asarray(enc.ids, dtype=np.int64),
                       np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2))

    def encode_batch(self, texts: Sequence[str]) -> list[Encoded]:
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [Encoded(np.asarray(e.ids, dtype=np.int64), np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2))
                for e in encs]


def add_special_tokens(ids: np.ndarray, max_content: int = MAX_CONTENT_TOKENS) -> np.ndarray:
    """``[CLS] ids[:max_content] [SEP]`` as int64 — the form the encoder was trained on."""
    body = np.asarray(ids, dtype=np.int64)[:max_content]
    return np.concatenate([np.array([CLS_ID], np.int64), body, np.array([SEP_ID], np.int64)])


def pad_batch(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest sequence: (ids, attention_mask), both int64 ``[n, longest]``."""
    longest = max((len(s) for s in seqs), default=0)
    ids = np.full((len(seqs), longest), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(seqs), longest), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask

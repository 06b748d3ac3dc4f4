"""Where semantic windows fall in a stream — decided by the text alone, never by the chunking.

A window ends at the end of a word once ``stride`` new tokens have accumulated since the previous
window end, or before a word that would take its new tokens past ``tokens`` (so no new text falls
out of it), and covers the last ``tokens`` tokens up to there (whole words only). One word of more
than ``tokens`` tokens cannot fit: the window drops its first tokens (``PlannedWindow.unread_until``),
and the pipeline treats that text as unjudged (the policy's fail mode decides, ``window-overflow``). Because a word's
tokens do not depend on its neighbours (the BERT pre-tokenizer splits on whitespace and punctuation
first), token counts of finished words are final: a word is finished once whitespace follows it,
or the stream ends. So the same text yields the same windows however it was cut, and the cost per
chunk is O(chunk + window context).

A word is a whitespace-delimited run of at most ``RUN_CHARS`` characters, as in ordinary prose,
whose windows are exactly what they were before longer runs were cut. A longer run — Chinese,
Japanese or Thai, which put no spaces between words; a long URL; base64 — would finish only where
it ends: the semantic cursor would stand still and the hold-back bound would push the text out
unjudged. So such a run is cut into words at every offset ``p`` of the stream that is a multiple of
``RUN_CHARS`` and has ``RUN_CHARS`` characters of the run before it and one after it:

- ``p`` depends on the text alone (``text[p - RUN_CHARS : p + 1]`` and ``p`` itself), so it is known
  as soon as the character at ``p`` arrives, however the stream was cut, and reading it back needs
  only ``RUN_CHARS`` characters before a window's context (``retain_from``). A run's first piece has
  ``RUN_CHARS`` to ``2 * RUN_CHARS - 1`` characters, the others ``RUN_CHARS`` (the last fewer).
- Each piece is tokenized as a word of its own (a space is read in at each cut): WordPiece matches
  greedily and gives up on a word over 100 characters (``[UNK]``), so a piece read as part of its run
  could still change as the run grows; read alone it cannot. The tokenizer's per-word rules apply per
  piece too: a URL is still skipped in its first piece, which keeps its scheme, but the rest of a URL
  longer than ``RUN_CHARS`` is read, and an emoji sequence or HTML entity that straddles a cut is read
  as its two halves.
- A cut ends a window whenever new tokens have accumulated, ``stride`` or not: a piece may be one
  token (a Thai piece is one unknown word), and waiting for ``stride`` of them would outlast the
  hold-back again.
- ``RUN_CHARS`` is 32: a piece of a script read a token per character (Chinese, kana) then has at most
  63 tokens, inside the 64-token windows the policies use, and the semantic layer trails such text by
  under 64 characters, well inside the default hold-back (256). Of the 118,155 texts in the training
  and dev data, 901 (0.8 %) have a longer run, 367 of them only in URLs; the windows of 639 change
  (52 of the 11,656 dev texts), and those of every other text are what they were (checked on all of
  them against the windowing before cuts). Cutting Chinese finer, between ideographs (which BERT
  reads one per word anyway), would change no tokens but would move window ends in prose that quotes
  a few characters, and the 32-character pieces already keep the lag short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from guard.types import Window

#: Characters Python counts as whitespace that the tokenizer deletes as control characters: a word
#: split at one here ("①\x0chateword") was one [UNK] to the tokenizer, credited to the word before,
#: so the word after had no tokens and, at the end of a window, no window read it
_DELETED_SPACES = "\x0b\x0c\x1c\x1d\x1e\x1f\x85"
_NONSPACE = r"[\S%s]" % _DELETED_SPACES
_SPACE_RE = re.compile(r"[^\S%s]" % _DELETED_SPACES)
_WORD = re.compile(_NONSPACE + "+")


def _is_space(ch: str) -> bool:
    """Whitespace as the tokenizer sees it: where a word ends."""
    return ch.isspace() and ch not in _DELETED_SPACES


#: generous bound on characters per token: keeps the left context a window may need
CHARS_PER_TOKEN_BOUND = 12

#: a whitespace-free run longer than this is cut into words (see the module docstring)
RUN_CHARS = 32
_LONG_RUN = re.compile(_NONSPACE + "{%d,}" % (RUN_CHARS + 1))


class Encoding(Protocol):
    ids: np.ndarray  # int64 [n], no special tokens
    offsets: np.ndarray  # [n, 2] character span of each token in the encoded text


class Tokenizer(Protocol):
    """Client-side tokenizer (``guard.models.tokenizer.WindowTokenizer`` in production)."""

    def encode(self, text: str) -> Encoding: ...


def max_window_chars(tokens: int) -> int:
    return tokens * CHARS_PER_TOKEN_BOUND


def retain_from(cursor: int, tokens: int) -> int:
    """The earliest offset ``plan`` may read for windows after ``cursor``: a window's context, the
    character before it (is the context bound inside a word?) and what a cut there looks back on."""
    return cursor - max_window_chars(tokens) - RUN_CHARS - 1


def cuts(text: str, base: int, lo: int, hi: int) -> list[int]:
    """Offsets ``p``, ``lo < p < hi``, where a long whitespace-free run is cut into words.

    ``text`` starts at absolute offset ``base`` and must hold ``RUN_CHARS`` characters before ``lo``.
    """
    found: list[int] = []
    a = max(base, lo + 1 - RUN_CHARS) - base
    b = min(hi, base + len(text)) - base
    for m in _LONG_RUN.finditer(text, a, b):
        first = max(base + m.start() + RUN_CHARS, lo + 1)
        first = -(-first // RUN_CHARS) * RUN_CHARS
        found.extend(range(first, base + m.end(), RUN_CHARS))
    return found


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    """A window and the part of it that is new (``new_start``..``window.end``)."""

    window: Window
    new_start: int
    #: where the tokens the window had to drop (it keeps its last ``tokens``) end, if it dropped any
    #: after ``new_start``: new text no scored window reads (one word of more than ``tokens`` tokens)
    unread_until: int | None = None


def word_frontier(text: str, base: int, final: bool) -> int:
    """Absolute offset up to which every word is finished (all of ``text`` when final)."""
    end = base + len(text)
    if final:
        return end
    frontier = base
    for i in range(len(text) - 1, -1, -1):
        if _is_space(text[i]):
            frontier = base + i + 1
            break
    last_run = cuts(text, base, frontier, end)
    return last_run[-1] if last_run else frontier


def _encode(tokenizer: Tokenizer, text: str, at: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and offsets of ``text`` read with a space at each cut (offsets into ``text``)."""
    if not at:
        enc = tokenizer.encode(text)
        return np.asarray(enc.ids, dtype=np.int64), enc.offsets
    bounds = [0, *at, len(text)]
    enc = tokenizer.encode(" ".join(text[a:b] for a, b in zip(bounds, bounds[1:])))
    spaces = np.asarray(at, dtype=np.int64) + np.arange(len(at))  # where the read-in spaces are
    offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
    return (np.asarray(enc.ids, dtype=np.int64),
            offsets - np.searchsorted(spaces, offsets, side="left"))


def _words(segment: str, at: list[int]) -> list[tuple[int, int]]:
    """Spans of the words of ``segment``: its whitespace-delimited runs, split at the cuts ``at``."""
    words: list[tuple[int, int]] = []
    rest = iter(at)
    cut = next(rest, None)
    for m in _WORD.finditer(segment):
        start = m.start()
        while cut is not None and cut < m.end():
            words.append((start, cut))
            start, cut = cut, next(rest, None)
        words.append((start, m.end()))
    return words


#: Characters per tokenizer call when counting a segment's tokens. Words are counted piece by piece
#: because a tokenizer may cap one call (production once capped at 4096): one huge chunk counted in a single
#: call lost every word past the cap, and a final chunk's tail went out without a window. Pieces end
#: at word boundaries, and a finished word's tokens do not depend on its neighbours, so the counts
#: are the same; 256 characters stay under the cap even at many tokens per character (emoji names).
COUNT_PIECE_CHARS = 256


def _word_token_counts(tokenizer: Tokenizer, segment: str, at: list[int]) -> list[tuple[int, int]]:
    """(end offset in segment, token count) per word of ``segment`` (0 for a word the tokenizer
    skips: a URL, an @mention, zero-width characters)."""
    words = _words(segment, at)
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        start, j = words[i][0], i + 1
        while j < len(words) and words[j][1] - start <= COUNT_PIECE_CHARS:
            j += 1
        stop = words[j - 1][1]
        piece_at = [c - start for c in at if start < c < stop]
        spans = [(a - start, b - start) for a, b in words[i:j]]
        out.extend((start + end, n) for end, n in _piece_counts(tokenizer, segment[start:stop], spans, piece_at))
        i = j
    return out


def _piece_counts(tokenizer: Tokenizer, piece: str, words: list[tuple[int, int]],
                  at: list[int]) -> list[tuple[int, int]]:
    offsets = _encode(tokenizer, piece, at)[1]
    counts = [0] * len(words)
    wi = 0
    for start, end in offsets:
        if end <= start:
            continue
        while wi < len(words) and words[wi][1] <= start:
            wi += 1
        if wi == len(words):
            break
        counts[wi] += 1
    return [(w[1], n) for w, n in zip(words, counts, strict=True)]


def plan(text: str, base: int, cursor: int, stream_id: str, tokenizer: Tokenizer,
         tokens: int, stride: int, final: bool) -> tuple[int, list[PlannedWindow]]:
    """Windows due now, and the new semantic cursor (how far they will clear the text).

    ``text`` starts at absolute offset ``base`` and must retain the text from
    ``retain_from(cursor, tokens)`` on.
    """
    frontier = word_frontier(text, base, final)
    if frontier <= cursor:
        return cursor, []
    segment = text[cursor - base : frontier - base]
    at = cuts(text, base, cursor, frontier + 1)  # the frontier itself may be one
    inside = [c - cursor for c in at if c < frontier]
    spans: list[tuple[int, int]] = []  # (new text's start, end) of each window due
    start = cursor  # where the next window's new text starts: what lies before it is cleared
    acc = 0
    last_word_end = None
    quiet_end = None  # end of the latest word without tokens while nothing waits to be scored

    def close(end: int) -> None:
        nonlocal start, acc
        spans.append((start, end))
        start, acc = end, 0

    for word_end, n in _word_token_counts(tokenizer, segment, inside):
        if n == 0:
            if acc == 0:
                # Nothing waits to be scored, and this word gives the model nothing to read: the
                # one before it is cleared with what went before. Waiting for a window to end
                # kept a stream of URLs or @mentions unscored and retained whole, its work per
                # chunk growing with its length. The latest one stays, so that a window flagging
                # the words after it also covers it ("@victim <threat>", a link's head).
                if quiet_end is not None:
                    start = quiet_end
                quiet_end = cursor + word_end
            continue
        quiet_end = None
        if acc and acc + n > tokens and last_word_end is not None:
            # this word would push the window's oldest new tokens out of it: that text would be
            # in no scored window, so a window ends before the word (a run's first piece alone
            # can hold 63 tokens)
            close(last_word_end)
        acc += n
        last_word_end = cursor + word_end
        if acc >= stride or last_word_end in at:  # a cut: see the module docstring
            close(last_word_end)
    if final and acc > 0 and last_word_end is not None:
        close(last_word_end)
    windows: list[PlannedWindow] = []
    for new_start, end in spans:
        window, dropped_end = _window(text, base, end, stream_id, tokenizer, tokens)
        unread = dropped_end if dropped_end is not None and dropped_end > new_start else None
        windows.append(PlannedWindow(window, new_start, unread))
    new_cursor = frontier if final else start
    return new_cursor, windows


def _window(text: str, base: int, end: int, stream_id: str, tokenizer: Tokenizer,
            tokens: int) -> tuple[Window, int | None]:
    """The window ending at ``end``, and where the tokens it dropped end (None: it dropped none).
    Text the tokenizer skips (a URL, an @mention) is no dropped token."""
    lo = max(base, end - max_window_chars(tokens))
    chunk = text[lo - base : end - base]
    at = [c - lo for c in cuts(text, base, lo - 1, end)]
    start = 0
    if lo > 0 and (lo == base or not _is_space(text[lo - base - 1])) and 0 not in at:
        # the context bound cut a word: only whole words enter a window (the caller retains what
        # this test and the cuts read before the bound, so it reads the same text however the
        # stream was cut)
        m = _SPACE_RE.search(chunk)
        start = min(m.end() if m else len(chunk), next((c for c in at if c > 0), len(chunk)))
    piece = chunk[start:]
    ids, offsets = _encode(tokenizer, piece, [c - start for c in at if c > start])
    first = 0
    dropped_end = None
    if ids.shape[0] > tokens:
        first = ids.shape[0] - tokens
        ids = ids[first:]
        dropped_end = lo + start + int(offsets[first - 1][1])
    w_start = lo + start + (offsets[first][0] if len(offsets) else len(piece))
    return Window(stream_id=stream_id, start=w_start, end=end, text=text[w_start - base : end - base],
                  input_ids=ids), dropped_end


def prompt_window(stream_id: str, prompt: str, tokenizer: Tokenizer, tokens: int) -> Window:
    """The prompt's last ``tokens`` tokens as one window (offsets 0: it is not part of the stream)."""
    ids = np.asarray(tokenizer.encode(prompt[-max_window_chars(tokens):]).ids, dtype=np.int64)[-tokens:]
    return Window(stream_id=stream_id, start=0, end=0, text="", input_ids=ids)

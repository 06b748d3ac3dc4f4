"""Client-side tokenization for windowing.

The windowing code needs token ids *and* the character span of each token, so it can cut windows
on token boundaries and map findings back to absolute offsets. Two deliberate differences from the
shipped ``tokenizer.json``:

- no special tokens: a window is a slice of a stream's tokens, and ``[CLS] ... [SEP]`` belong
  around the *window*, not around each chunk. The detectors add them (``add_special_tokens``).
- no padding: the file pads every text to a fixed 128, which doubles model cost (MEASURED §6);
  batches are padded to their longest member by whoever runs the model.

And one option, on for the shipped model (``EMOJI_NAMES``): **emoji the vocabulary lacks are
read as their names.** MiniLM's word-piece
vocabulary has almost no emoji, and a word it cannot split becomes one ``[UNK]``: "I would love to
🔪some🦊" ended in a single ``[UNK]``, so the encoder could not tell a threat from its harmless twin.
With ``emoji_names`` each such emoji is tokenized as its CLDR name ("kitchen knife", "fox",
"person wearing turban medium-dark skin tone"), and the name's tokens carry the emoji's character
span, so offsets still point into the original text. An emoji only ever expands inside its own
whitespace-delimited word, which keeps ``guard.windowing``'s guarantee that a word's tokens do not
depend on its neighbours. Training and serving both tokenize here, so they agree.

A second option (``PLATFORM_ARTEFACTS``, on since heads v9): **tweet-platform artefacts are not
read.** Much of the training data is tweets, and run a1 found the encoder leaning on their marks:
stripping ``@USER`` from OLID's insults lowered their harassment score by 0.11. LLM output has no
such marks, so a model that learnt "looks like a tweet" is off by that much on it. With the option
on, a ``@mention``, a URL or OLID's ``URL`` placeholder and a stand-alone ``RT`` are not tokenized,
and an HTML entity (``&amp;``, ``&#128514;``) is read as the character it encodes (an emoji one then
read by name). Each rule looks at one word only, so words stay independent of their neighbours.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from guard.models import paths
from guard.models.build import CLS_ID, MAX_SEQ_LEN, PAD_ID, SEP_ID, UNK_ID

#: Longest window content: the encoder's 256 positions minus [CLS] and [SEP].
MAX_CONTENT_TOKENS = MAX_SEQ_LEN - 2

#: The shipped model's setting: on since heads v7, whose adapter was fine-tuned on names (run e2,
#: benchmarks/results/runs/e2-emoji-names-finetuned). It must match what the committed adapter and
#: heads learnt on (their metadata's ``tokenizer``; a test holds them together): refitting only
#: the heads on names, over an adapter trained without them, lost violence (run e1).
EMOJI_NAMES = True

#: Whether tweet-platform artefacts are skipped (see the module docstring): on since heads v9 (run
#: n1, benchmarks/results/runs/n1-platform-artefacts: held-out any 0.755 against 0.716-0.725 with
#: the marks read). The same contract with the committed adapter and heads as ``EMOJI_NAMES``.
PLATFORM_ARTEFACTS = True

#: Whether edos's bracketed placeholders (``[USER]``, ``[URL]``) count as platform artefacts too
#: (run b2): ``_ARTEFACT`` reads a stand-alone ``URL`` only, so 14 % of edos's texts keep them,
#: and there they halve the hate rate (0.16 against 0.29). Off: the committed models read them,
#: and not reading them transferred within seed noise (held-out any 0.754 against 0.755-0.766).
BRACKETED_PLACEHOLDERS = False

#: What ``PLATFORM_ARTEFACTS`` drops, or, for an entity, reads as its character. Each match starts
#: at a word start or after punctuation and cannot run past whitespace, so it stays in one word.
_ARTEFACT_RULES = (
    r"(?<![\w@])@\w+:?"                        # @mentions, OLID's @USER, a retweet's "@name:"
    r"|(?<![\w.])(?:https?://|www\.)\S+"        # URLs
    r"|(?<!\S)(?:URL|RT)(?=[\s:]|$)"            # OLID's URL placeholder, a retweet marker
    r"|&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});"  # HTML entities
)
_ARTEFACT = re.compile(_ARTEFACT_RULES)
_ARTEFACT_BRACKETED = re.compile(_ARTEFACT_RULES + r"|(?<!\w)\[(?:URL|USER)\]")  # edos's placeholders


@dataclass(frozen=True, slots=True)
class EmojiTable:
    """Every emoji the ``emoji`` package knows (not keycaps, which start with an ASCII character)."""

    names: dict[str, str]  # emoji → its English CLDR name, words separated by spaces
    starts: re.Pattern[str]  # any character an emoji can start with
    longest: int  # code points in the longest emoji sequence


@cache
def emoji_table() -> EmojiTable:
    import emoji  # the CLDR data; imported lazily so the plain tokenizer never loads it

    names = {e: d["en"].strip(":").replace("_", " ") for e, d in emoji.EMOJI_DATA.items()
             if not e[0].isascii()}
    return EmojiTable(names, re.compile(_char_class({ord(e[0]) for e in names})), max(map(len, names)))


def _char_class(code_points: set[int]) -> str:
    """A regex class of ranges: one listing 1,400 characters scans text 300x slower."""
    ranges: list[list[int]] = []
    for c in sorted(code_points):
        if ranges and c == ranges[-1][1] + 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "[" + "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                         for a, b in ranges) + "]"


def tokenizer_settings() -> dict[str, object]:
    """What a model's metadata records about how its text was tokenized."""
    from importlib.metadata import version

    return {"emoji_names": EMOJI_NAMES, "emoji_package": version("emoji") if EMOJI_NAMES else None,
            "platform_artefacts": PLATFORM_ARTEFACTS,
            **({"bracketed_placeholders": True} if BRACKETED_PLACEHOLDERS else {})}


def version_salt() -> bytes:
    """What the tokenizer adds to a trained file's version hash: a model trained without the
    artefacts (or the bracketed placeholders) must not share a name with one trained on them.
    Empty for the settings files named before run n1 had, so their versions still reproduce."""
    return (b"platform_artefacts" if PLATFORM_ARTEFACTS else b"") + (
        b",bracketed_placeholders" if BRACKETED_PLACEHOLDERS else b"")


def find_emoji(text: str, table: EmojiTable) -> list[tuple[int, int]]:
    """Spans of the emoji in ``text``, longest sequence first (ZWJ families, skin tones, flags)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while (m := table.starts.search(text, pos)) is not None:
        i = m.start()
        for j in range(min(len(text), i + table.longest), i, -1):
            if text[i:j] in table.names:
                spans.append((i, j))
                pos = j
                break
        else:
            pos = i + 1
    return spans


@dataclass(frozen=True, slots=True)
class Encoded:
    """Token ids (int64 ``[n]``, no special tokens) and char offsets (int64 ``[n, 2]``, end exclusive)."""

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


#: The cap of one ``encode`` call. Truncation keeps the *first* tokens while a window keeps its
#: last, so a cap that a window's text can reach hides its newest words from the model: a window's
#: 768 characters of emoji read as names (up to about 12 tokens each) made over 4,096 tokens, and
#: serving, capped there, judged the middle of such a text while eval judged its end. Inputs are
#: bounded by ``guard.windowing.max_window_chars``, so no real window comes near this cap.
ENCODE_CAP = 1 << 20


class WindowTokenizer:
    """Wraps a configured ``tokenizers.Tokenizer``; build it with ``from_file``."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, emoji_names: bool = EMOJI_NAMES,
                 platform_artefacts: bool = PLATFORM_ARTEFACTS,
                 bracketed_placeholders: bool = BRACKETED_PLACEHOLDERS) -> None:
        self._tok = tokenizer
        self.max_tokens = max_tokens
        self.emoji_names = emoji_names
        self.platform_artefacts = platform_artefacts
        self._artefact = _ARTEFACT_BRACKETED if bracketed_placeholders else _ARTEFACT
        self._unknown: dict[str, bool] = {}  # emoji → whether the vocabulary lacks it

    @classmethod
    def from_file(cls, path: str | Path | None = None, max_tokens: int = ENCODE_CAP,
                  emoji_names: bool = EMOJI_NAMES,
                  platform_artefacts: bool = PLATFORM_ARTEFACTS,
                  bracketed_placeholders: bool = BRACKETED_PLACEHOLDERS) -> WindowTokenizer:
        """Load ``tokenizer.json`` (the built copy, else the packaged one).

        ``max_tokens`` caps one ``encode`` call (``ENCODE_CAP`` by default, in serving, training and
        eval alike); callers tokenize chunks of a stream and cut windows themselves, and the
        per-window cap is ``MAX_CONTENT_TOKENS``.
        ``emoji_names=False`` gives the plain tokenizer (what heads v1–v6 were trained on).
        """
        tok = Tokenizer.from_file(str(paths.tokenizer_path() if path is None else path))
        tok.no_padding()
        tok.enable_truncation(max_tokens)
        return cls(tok, max_tokens, emoji_names, platform_artefacts, bracketed_placeholders)

    def encode(self, text: str) -> Encoded:
        rewritten = self._rewrite(text)
        enc = self._tok.encode(text if rewritten is None else rewritten[0], add_special_tokens=False)
        return _encoded(enc, rewritten)

    def encode_batch(self, texts: Sequence[str]) -> list[Encoded]:
        rewritten = [self._rewrite(t) for t in texts]
        encs = self._tok.encode_batch([t if r is None else r[0] for t, r in zip(texts, rewritten, strict=True)],
                                      add_special_tokens=False)
        return [_encoded(e, r) for e, r in zip(encs, rewritten, strict=True)]

    def _is_unknown(self, emoji: str) -> bool:
        if emoji not in self._unknown:
            self._unknown[emoji] = UNK_ID in self._tok.encode(emoji, add_special_tokens=False).ids
        return self._unknown[emoji]

    def _read(self, char: str) -> str:
        """A character (or emoji sequence) as the tokenizer should read it: an emoji the vocabulary
        lacks as its name, anything else as itself."""
        if self.emoji_names and char in emoji_table().names and self._is_unknown(char):
            return f" {emoji_table().names[char]} "
        return char

    def _edits(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, replacement) in order; artefacts first, emoji outside them."""
        edits: list[tuple[int, int, str]] = []
        if self.platform_artefacts:
            for m in self._artefact.finditer(text):
                token = m.group()
                if token[0] != "&":
                    edits.append((m.start(), m.end(), ""))
                    continue
                char = html.unescape(token)
                if char != token:  # an entity html knows; an unknown one is left as written
                    edits.append((m.start(), m.end(), self._read(char)))
        if self.emoji_names:
            table = emoji_table()
            if table.starts.search(text) is not None:
                inside = [(a, b) for a, b, _ in edits]
                for a, b in find_emoji(text, table):
                    if self._is_unknown(text[a:b]) and not any(x <= a < y for x, y in inside):
                        edits.append((a, b, self._read(text[a:b])))
                edits.sort()
        return edits

    def _rewrite(self, text: str) -> tuple[str, np.ndarray, np.ndarray] | None:
        """``text`` as the tokenizer reads it, and each of its characters' original (start, end).

        None when nothing changes, which is most texts: a regex scan or two.
        """
        edits = self._edits(text)
        if not edits:
            return None
        parts: list[str] = []
        starts: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        pos = 0
        for a, b, repl in edits + [(len(text), len(text), "")]:
            parts.append(text[pos:a])
            starts.append(np.arange(pos, a))
            ends.append(np.arange(pos + 1, a + 1))
            if repl:
                parts.append(repl)
                starts.append(np.full(len(repl), a))
                ends.append(np.full(len(repl), b))
            pos = b
        # one sentinel past the end, so an empty token at the very end maps too
        starts.append(np.array([len(text)]))
        ends.append(np.array([len(text)]))
        return "".join(parts), np.concatenate(starts).astype(np.int64), np.concatenate(ends).astype(np.int64)


def _encoded(enc: Encoding, rewritten: tuple[str, np.ndarray, np.ndarray] | None) -> Encoded:
    """Ids and offsets, the offsets mapped back to the original text where it was rewritten."""
    ids = np.asarray(enc.ids, dtype=np.int64)
    offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
    if rewritten is not None and len(offsets):
        _, starts, ends = rewritten
        offsets = np.stack([starts[offsets[:, 0]], ends[np.maximum(offsets[:, 1], offsets[:, 0] + 1) - 1]], 1)
    return Encoded(ids, offsets)


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

"""Training-text augmentation: obfuscations the lexical layer undoes, and one source's formatting.

The lexical layer normalises leetspeak, spacing, separators, homoglyphs and zero-width characters
before matching; the semantic encoder sees the raw text. Training the heads on obfuscated copies
(same labels, both positives and negatives, so "obfuscated" alone is no signal) teaches them to read
through the common tricks. Deterministic for a seed.

``unpunctuated`` renders text the way hatexplain ships all of its rows: no punctuation, mentions
as ``user``, numbers as ``number``. Only that source looks like this, and 43 % of it is hate, so the
format is a hate cue (run p1). Copies of other sources' texts in that format, with their own labels,
take the cue away; run p2 found no held-out gain from them, so training leaves them off by default.
"""

from __future__ import annotations

import html
import random
import re
import unicodedata

LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "g": "9", "b": "8", "l": "1"}
SYMBOL = {"a": "@", "s": "$", "i": "!", "o": "0"}
HOMOGLYPH = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}
ZERO_WIDTH = "\u200b"
_WORD = re.compile(r"[A-Za-z]{3,}")


def _leet(w: str, r: random.Random) -> str:
    table = LEET if r.random() < 0.7 else SYMBOL
    out = [table.get(ch.lower(), ch) if r.random() < 0.6 else ch for ch in w]
    return "".join(out)


def _spaced(w: str, r: random.Random) -> str:
    return r.choice([" ", ".", "-", "*", "_"]).join(w)


def _masked(w: str, r: random.Random) -> str:
    vowels = [i for i, ch in enumerate(w) if ch.lower() in "aeiou" and 0 < i < len(w) - 1]
    if not vowels:
        return w
    i = r.choice(vowels)
    return w[:i] + r.choice("*#@") + w[i + 1:]


def _homoglyph(w: str, r: random.Random) -> str:
    return "".join(HOMOGLYPH.get(ch, ch) if r.random() < 0.5 else ch for ch in w)


def _zero_width(w: str, r: random.Random) -> str:
    i = r.randrange(1, len(w))
    return w[:i] + ZERO_WIDTH + w[i:]


def _stretch(w: str, r: random.Random) -> str:
    i = r.randrange(len(w))
    return w[:i] + w[i] * r.randint(2, 4) + w[i:]


TRICKS = (_leet, _spaced, _masked, _homoglyph, _zero_width, _stretch)


def obfuscate(text: str, seed: int | str, rate: float = 0.35) -> str:
    """Apply one trick per chosen word (words of 3+ letters, each with probability ``rate``)."""
    r = random.Random(f"{seed}")
    trick = r.choice(TRICKS)  # one style per text, as people tend to do
    def sub(m: re.Match[str]) -> str:
        w = m.group(0)
        return trick(w, r) if r.random() < rate else w

    out = _WORD.sub(sub, text)
    if out == text:  # make sure something changed: obfuscate the longest word
        words = _WORD.findall(text)
        if words:
            w = max(words, key=len)
            out = text.replace(w, trick(w, r), 1)
    return out


_URL = re.compile(r"https?://\S+|\bURL\b")
_MENTION = re.compile(r"@\w+:?")
_DIGITS = re.compile(r"\d+")


def unpunctuated(text: str) -> str:
    """hatexplain's formatting, emoji kept: they carry meaning (hatemoji_build) and hatexplain
    lost them only to its own cleaning. Case is folded first, so the result is a fixed point."""
    text = _URL.sub(" ", html.unescape(text)).lower()
    text = _DIGITS.sub(" number ", _MENTION.sub(" user ", text))
    text = text.replace("'", "").replace("\u2019", "")
    kept = (ch if ch.isalnum() or ch.isspace() or (ord(ch) >= 0x2000 and not unicodedata.category(ch).startswith("P"))
            else " " for ch in text)
    return " ".join("".join(kept).split())

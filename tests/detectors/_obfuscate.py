"""Ways people disguise a blocked word, as pure functions of (word, random source)."""

from __future__ import annotations

import random
from collections.abc import Callable

LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "l": "1"}
LEET_SYMBOLS = {"a": "@", "s": "$", "i": "!"}
CYRILLIC = {"a": "а", "e": "е", "o": "о", "c": "с", "p": "р", "x": "х", "y": "у", "i": "і"}
GREEK = {"o": "ο", "i": "ι", "k": "κ", "t": "τ", "u": "υ", "v": "ν"}


def _per_letter(word: str, table: dict[str, str], rng: random.Random, rate: float = 0.6) -> str:
    out = [table[c] if c in table and rng.random() < rate else c for c in word]
    if out == list(word):  # make sure at least one letter is disguised when possible
        for i, c in enumerate(word):
            if c in table:
                out[i] = table[c]
                break
    return "".join(out)


def leet(word: str, rng: random.Random) -> str:
    return _per_letter(word, LEET, rng)


def leet_symbols(word: str, rng: random.Random) -> str:
    # Symbols inside a word only (a leading "!" is punctuation, not a letter).
    head, tail = word[:1], word[1:]
    return head + _per_letter(tail, LEET_SYMBOLS, rng) if tail else word


def spaced(word: str, rng: random.Random) -> str:
    sep = rng.choice([" ", ".", "-", "_", " . ", "  "])
    return " ".join(sep.join(part) for part in word.split())


def zero_width(word: str, rng: random.Random) -> str:
    zw = rng.choice(["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff"])
    return zw.join(word)


def confusables(word: str, rng: random.Random) -> str:
    return _per_letter(word, rng.choice([CYRILLIC, GREEK]), rng)


def fullwidth(word: str, rng: random.Random) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in word)


def case(word: str, rng: random.Random) -> str:
    style = rng.choice(["upper", "title", "alternate"])
    if style == "upper":
        return word.upper()
    if style == "title":
        return word.title()
    return "".join(c.upper() if i % 2 else c for i, c in enumerate(word))


def accents(word: str, rng: random.Random) -> str:
    marks = {"a": "á", "e": "é", "i": "í", "o": "ö", "u": "ü", "c": "ç", "n": "ñ"}
    return _per_letter(word, marks, rng)


def joined(word: str, rng: random.Random) -> str:
    """Phrase words run together, as in a hashtag."""
    return "".join(w.capitalize() if i else w for i, w in enumerate(word.split()))


OBFUSCATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "leet": leet,
    "leet_symbols": leet_symbols,
    "spaced": spaced,
    "zero_width": zero_width,
    "confusables": confusables,
    "fullwidth": fullwidth,
    "case": case,
    "accents": accents,
    "joined": joined,
}

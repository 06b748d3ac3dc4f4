"""Text normalisation for the lexical layer, with offsets back into the original text.

Obfuscated output ("k1ll", "ｋｉｌｌ", "kіll" with a Cyrillic і, "k\u200bill", "k.i.l.l") must meet
the blocklists in one canonical form, and every match must still point at the original characters
so the pipeline can redact or block exactly them. So instead of rewriting the text we *project* it:
each original character becomes zero or more canonical letters (each remembering its original
index), separators disappear, and we keep the word structure (which letters began or ended a
word, which words were a single letter) that the matcher needs to tell "kill" from "skill".

Per character, in this order:

* compatibility decomposition (NFKD, a superset of NFKC's folding: fullwidth, ligatures, circled and
  mathematical letters) with combining marks dropped (diacritics, Zalgo), then ``casefold``;
* format characters (category ``Cf``: zero-width space/joiners, soft hyphen, BOM) vanish without
  splitting the word they sit in;
* a small confusables table maps Cyrillic and Greek look-alikes onto Latin letters;
* leetspeak: ``0→o 2→z 3→e 4→a 5→s 6→g 7→t 8→b 9→g @→a $→s €→e !→i +→t``. ``1`` and ``|`` (and an
  uppercase ``I`` next to a lowercase letter, as in "kIll") may stand for *i* or *l*; rather than
  guess, they project to the symbol ``1`` and the lexical layer expands each term's i/l positions
  so that both readings match (see ``AMBIGUOUS``).

Leetspeak is decided from a character's immediate neighbours only, so numbers stay numbers: a run of
digits is read as letters when it is at most four digits long and touches a letter ("a55", "k1ll",
"n1gg3r", "exp1051ve") or is a one-character word ("k 1 l l"); otherwise ("2024", "555-0100",
"455 points") its digits project to ``#``, which no term contains. A lone "@" is a letter too
("make @ bomb"). Other symbols are letters only where they touch letters: "$" before a digit is
a currency sign, a trailing "!" is punctuation.

Every decision looks at most ``RADIUS`` characters around the character it is about. That bound is
what makes streaming work: the projection of a prefix agrees with the projection of any longer
text except in the last ``RADIUS`` characters of an unfinished word (``Projection.certain_until``),
and a scan that starts at a later point agrees with one from the beginning beyond ``RADIUS``
characters from its start.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final

#: How far (in original characters) any per-character decision may look. The stream contract and
#: the lexical scanner's ``context_chars`` are derived from it.
RADIUS: Final = 8

#: The projected symbol for a character that may be read as either "i" or "l".
AMBIGUOUS: Final = "1"

#: Longest run of digits still read as leetspeak when it touches a letter.
MAX_LEET_DIGITS: Final = 4

#: The projected symbol for a digit that is a number, not leetspeak. No term contains it.
NUMBER: Final = "#"

#: Cyrillic and Greek letters (after casefolding) that render like a Latin letter. Fullwidth and
#: mathematical forms need no entry: NFKD already maps them to ASCII.
CONFUSABLES: Final[dict[str, str]] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "з": "3", "и": "u", "к": "k", "м": "m", "н": "h",
    "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ь": "b", "ѕ": "s",
    "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ү": "y", "ӏ": "l",
    "ɡ": "g", "ӓ": "a", "ӧ": "o", "ԍ": "g", "ѡ": "w",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "σ": "o", "ς": "c", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j",
    "ζ": "z", "μ": "u",
    # Latin look-alikes without a decomposition
    "ı": "i", "ɩ": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ɑ": "a", "ƅ": "b",
    "ɓ": "b", "ƈ": "c", "ɗ": "d", "ƒ": "f", "ɠ": "g", "ɦ": "h", "ƙ": "k", "ɱ": "m", "ɲ": "n",
    "ƥ": "p", "ʠ": "q", "ʂ": "s", "ƭ": "t", "ʋ": "v", "ⱳ": "w", "ƴ": "y", "ȥ": "z", "ß": "ss",
    "æ": "ae", "œ": "oe", "þ": "th",
}

#: Digit → letter, used only where the digit is leetspeak (see the module docstring).
LEET_DIGITS: Final[dict[str, str]] = {
    "0": "o", "1": AMBIGUOUS, "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t",
    "8": "b", "9": "g",
}

#: Symbols that are letters when they (or a run of up to three of them) touch a letter ("@ss",
#: "a$$", "$hit", "ki||").
LEET_EDGE_SYMBOLS: Final[dict[str, str]] = {"@": "a", "$": "s", "€": "e", "|": AMBIGUOUS}

#: Symbols that are letters only between two word characters ("sh!t", "+r0ll"): at a word's edge
#: they are punctuation ("hi!", "C++").
LEET_INNER_SYMBOLS: Final[dict[str, str]] = {"!": "i", "+": "t"}

_LEET_SYMBOLS: Final = frozenset(LEET_EDGE_SYMBOLS) | frozenset(LEET_INNER_SYMBOLS)

# Character kinds.
_SEP: Final = 0  # splits words
_GONE: Final = 1  # vanishes without splitting (format characters, combining marks)
_LETTER: Final = 2
_DIGIT: Final = 3  # an ASCII digit (after folding)
_SYMBOL: Final = 4  # a leet symbol; a letter or a separator depending on its neighbours
_OTHER: Final = 5  # folds to a mixture we never match (e.g. "㉑"): part of a word, not a letter


#: letters that render as nothing (Hangul fillers): "sh\u115fit" must read as one word
_BLANK_LETTERS: Final = frozenset("\u115f\u1160\u3164\uffa0")


def _invisible_control(ch: str) -> bool:
    """A control character that is not white space (``\x00``, ``\x01``, ``\x7f``, C1): renderers
    draw nothing, so it hides letters the way a zero-width space does."""
    return unicodedata.category(ch) == "Cc" and not ch.isspace()


def fold_char(ch: str) -> str:
    """Canonical form of one character: NFKD without combining marks, casefolded, de-confused.

    Used for terms as well as text, so both sides meet in the same alphabet. Leetspeak is *not*
    applied here: it depends on context (see ``project``).
    """
    if ch.isascii():
        return "" if _invisible_control(ch) else ch.lower()
    if unicodedata.category(ch) in ("Cf", "Mn", "Me") or ch in _BLANK_LETTERS or _invisible_control(ch):
        return ""
    decomposed = unicodedata.normalize("NFKD", ch)
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return "".join(CONFUSABLES.get(c, c) for c in folded)


def _kind(ch: str, folded: str) -> int:
    if not folded:
        return _GONE
    if ch in _LEET_SYMBOLS:
        return _SYMBOL
    if folded.isalpha():
        return _LETTER
    if len(folded) == 1 and "0" <= folded <= "9":
        return _DIGIT
    if folded.isalnum():
        return _OTHER
    return _SEP


#: (kind, folded) for every ASCII character, the common case.
_ASCII: Final[dict[str, tuple[int, str]]] = {
    chr(o): (_kind(chr(o), fold_char(chr(o))), fold_char(chr(o))) for o in range(128)
}


@dataclass(frozen=True, slots=True)
class Projection:
    """The letters-only view of a text that the lexical matcher runs on.

    ``text[k]`` came from original character ``origin[k]``. ``word[k]`` numbers the original word
    (maximal run of non-separator characters) the letter belongs to; ``word_start[k]`` /
    ``word_end[k]`` say whether it is the first / last letter of that word, and ``single[k]``
    whether that word is a single short letter-word (as in spaced-out "k i l l").

    ``certain_until`` is an original offset: the projection of characters before it (and the word
    structure of their letters) cannot change whatever text is appended. With ``final=True`` it is
    the text's length.
    """

    text: str
    origin: tuple[int, ...]
    word: tuple[int, ...]
    word_start: tuple[bool, ...]
    word_end: tuple[bool, ...]
    single: tuple[bool, ...]
    certain_until: int

    def certain_letters(self) -> int:
        """Number of leading projected letters whose projection is final."""
        n = len(self.origin)
        while n and self.origin[n - 1] >= self.certain_until:
            n -= 1
        return n


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """A canonical rendering that keeps separators (as single spaces) and an offset map.

    For layers that want normalised text rather than matching positions (e.g. semantic windows).
    ``origin[k]`` is the original index of ``text[k]``.
    """

    text: str
    origin: tuple[int, ...]


def _neighbour(kinds: list[int], i: int, step: int) -> int:
    """Kind of the nearest character in direction ``step`` that does not vanish (bounded look)."""
    j = i + step
    for _ in range(3):
        if j < 0 or j >= len(kinds):
            return _SEP
        if kinds[j] != _GONE:
            return kinds[j]
        j += step
    return _SEP


_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _code_digits(text: str, i: int, run: int) -> bool:
    """The digits at ``i`` (``run`` of them) belong to a code, not to leetspeak: a colour or a hex
    number (``#fa6``, ``0xfa6``: read as leet, CSS colours spelt slurs) or a model number, one
    capital and digits (``A55``, a phone, not "ass"). A code ends with its digits (or, in hex, its
    hex letters): a letter after them makes the word leetspeak again ("N1663R", "A55HOLE",
    "#b1tch"). At most 8 characters of left context and the one character after the digits."""
    j = i + run
    nxt = text[j] if j < len(text) else ""
    if nxt.isalpha() and nxt not in _HEX:
        return False
    k = i
    while k > 0 and i - k < 8 and text[k - 1] in _HEX:
        k -= 1
    if k > 0 and text[k - 1] == "#":
        return True
    if k > 1 and text[k - 1] in "xX" and text[k - 2] == "0" and (k == 2 or not text[k - 3].isalnum()):
        return True
    return (run >= 2 and i > 0 and "A" <= text[i - 1] <= "Z" and not nxt.isalpha()
            and (i == 1 or not (text[i - 2].isalnum() or text[i - 2] in "@$!|")))


def _long_symbol_chain(kinds: list[int], i: int) -> bool:
    """Three or more leet symbols right before ``i``: a symbol reads its resolved left neighbour,
    so without a bound "!$!$…" carried one decision down the whole chain, and the result changed
    with where a chunk cut it."""
    return i >= 3 and kinds[i - 1] == kinds[i - 2] == kinds[i - 3] == _SYMBOL


def _resolve(text: str) -> tuple[list[int], list[str]]:
    """Per original character: its kind after leetspeak decisions, and what it projects to."""
    folded: list[str] = []
    kinds: list[int] = []
    for c in text:
        known = _ASCII.get(c)
        if known is None:
            f = fold_char(c)
            known = (_kind(c, f), f)
        kinds.append(known[0])
        folded.append(known[1])
    n = len(text)
    out_kinds = list(kinds)
    out = list(folded)
    i = 0
    while i < n:
        k = kinds[i]
        if k == _DIGIT:
            j = i
            while j < n and kinds[j] == _DIGIT:
                j += 1
            before = _neighbour(kinds, i, -1)
            after = _neighbour(kinds, j - 1, 1)
            touches_letter = _LETTER in (before, after)
            alone = j - i == 1 and before == _SEP and after == _SEP
            leet = ((j - i <= MAX_LEET_DIGITS and touches_letter) or alone) and not _code_digits(text, i, j - i)
            for d in range(i, j):
                out[d] = LEET_DIGITS[folded[d]] if leet else NUMBER
                out_kinds[d] = _LETTER if leet else _DIGIT
            i = j
            continue
        if k == _SYMBOL:
            ch = text[i]
            if ch in LEET_EDGE_SYMBOLS:
                j = i
                while j < n and text[j] in LEET_EDGE_SYMBOLS:
                    j += 1
                before = _neighbour(out_kinds, i, -1)  # resolved: "p!$$" reads "piss"
                after = _neighbour(kinds, j - 1, 1)
                alone = j - i == 1 and ch == "@" and before == _SEP and after == _SEP
                leet = ((j - i <= 3 and _LETTER in (before, after)) or alone) and not _long_symbol_chain(kinds, i)
                for d in range(i, j):
                    out[d] = LEET_EDGE_SYMBOLS[text[d]] if leet else " "
                    out_kinds[d] = _LETTER if leet else _SEP
                i = j
                continue
            word_chars = (_LETTER, _DIGIT)
            # The left neighbour is already resolved ("synthe$!ze": "$" became a letter).
            after = _neighbour(kinds, i, 1)
            after_ok = after in word_chars or (
                after == _SYMBOL and text[i + 1] in LEET_EDGE_SYMBOLS
            )
            leet = _neighbour(out_kinds, i, -1) in word_chars and after_ok and not _long_symbol_chain(kinds, i)
            out[i] = LEET_INNER_SYMBOLS[ch] if leet else " "
            out_kinds[i] = _LETTER if leet else _SEP
            i += 1
            continue
        if k == _LETTER and text[i] == "I":
            prev = text[i - 1] if i > 0 else ""
            nxt = text[i + 1] if i + 1 < n else ""
            if prev.islower() or nxt.islower():
                out[i] = AMBIGUOUS
        i += 1
    return out_kinds, out


def _open_start(text: str, kinds: list[int]) -> int:
    """Start of the trailing stretch that later text could still re-read (``len`` if none).

    Everything after the last separator that no appended character can turn into a letter.
    """
    i = len(text)
    while i > 0:
        if kinds[i - 1] == _SEP and text[i - 1] not in _LEET_SYMBOLS:
            break
        i -= 1
    return i


def _tail_start(kinds: list[int], count: int) -> int:
    """Start of the last ``count`` characters that do not vanish.

    Counted without vanishing ones because those put no distance between a word and what comes
    next: "kys" then ten zero-width spaces is still an unfinished word that appended letters join
    ("kys" + ZWSP×10 + "kys" reads "kyskys"), however many raw characters the spaces take."""
    i, seen = len(kinds), 0
    while i > 0 and seen < count:
        i -= 1
        seen += kinds[i] != _GONE
    return i


def project(text: str, final: bool = True) -> Projection:
    """Project ``text`` onto canonical letters with word structure; see ``Projection``.

    With ``final=False`` the text may be the start of a longer one; ``certain_until`` then marks
    how much of the projection is settled.
    """
    kinds, out = _resolve(text)
    n = len(text)
    chars: list[str] = []
    origin: list[int] = []
    word: list[int] = []
    word_no = -1
    in_word = False
    word_raw_len: list[int] = []
    for i in range(n):
        k = kinds[i]
        if k == _SEP:
            in_word = False
            continue
        if not in_word:
            in_word = True
            word_no += 1
            word_raw_len.append(0)
        word_raw_len[word_no] += 1
        if k == _GONE:
            continue
        for c in out[i] if k == _LETTER else NUMBER:
            chars.append(c)
            origin.append(i)
            word.append(word_no)
    m = len(chars)
    word_start = tuple(k == 0 or word[k - 1] != word[k] for k in range(m))
    word_end = tuple(k == m - 1 or word[k + 1] != word[k] for k in range(m))
    letters_per_word = [0] * (word_no + 1)
    for w in word:
        letters_per_word[w] += 1
    single = tuple(letters_per_word[w] == 1 and word_raw_len[w] <= RADIUS for w in word)
    # Appended text can only re-read the last RADIUS characters of an unfinished word; a short
    # unfinished word is uncertain as a whole (it may still stop, or stop being, a single letter).
    certain = n if final else max(_open_start(text, kinds), _tail_start(kinds, RADIUS))
    return Projection(
        text="".join(chars),
        origin=tuple(origin),
        word=tuple(word),
        word_start=word_start,
        word_end=word_end,
        single=single,
        certain_until=certain,
    )


def normalize(text: str) -> NormalizedText:
    """Canonical text with separators kept as single spaces and format characters removed.

    The same per-character decisions as ``project`` (so "sh!t" reads "shit" but "hi!" reads
    "hi "), for consumers that want words rather than match positions.
    """
    kinds, out = _resolve(text)
    chars: list[str] = []
    origin: list[int] = []
    for i, k in enumerate(kinds):
        if k == _GONE:
            continue
        piece = " " if k == _SEP else text[i] if k == _DIGIT else out[i]
        for c in piece:
            if c == " " and chars and chars[-1] == " ":
                continue
            chars.append(c)
            origin.append(i)
    return NormalizedText("".join(chars), tuple(origin))

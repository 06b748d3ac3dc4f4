"""The PII layer: personal data and secrets, each recognised by a pattern *and* a validator.

Entities (the finding's ``label``; its category is always ``pii``):

=================  ==========================================================================
EMAIL              local@domain.tld (RFC-ish; local part ≤ 64, whole address ≤ ``MAX_EMAIL``)
PHONE              ``phonenumbers.PhoneNumberMatcher`` (leniency VALID) over runs of digits and
                   phone punctuation, tried per region in order; E.164 numbers need no region
CREDIT_CARD        13–19 digits, plain or in groups split by one consistent space/dash, Luhn,
                   and an issuer prefix that exists (Visa, Mastercard, Amex, Discover, Diners,
                   JCB, UnionPay, Maestro, Mir) with a length that issuer uses
IBAN               country code, check digits, BBAN of exactly the country's length (table),
                   with or without single spaces, ISO 7064 mod-97
US_SSN             AAA-GG-SSSS (dashes or spaces); area not 000/666/9xx, group not 00, serial not
                   0000, and not the well-known specimen numbers. Bare nine-digit runs are not
                   reported: without separators they are indistinguishable from order numbers
IPV4               dotted quad, octets ≤ 255 without leading zeros, not glued to a word ("v1.2.3.4")
                   and not part of a longer dotted number ("1.2.3.4.5"). "version 1.2.3.4" (a
                   four-part version after a space) is reported: it is a valid address
IPV6               a run of hex digits, colons, dots (embedded IPv4) and a zone, with at least
                   two colons and a digit, accepted by ``ipaddress.IPv6Address``
AWS_ACCESS_KEY     AKIA/ASIA + 16 upper-case letters or digits
AWS_SECRET_KEY     40 base64 characters at most ``CUE_WINDOW`` characters after "aws" or "secret"
                   on the same line
GITHUB_TOKEN       ghp_/gho_/ghu_/ghs_/ghr_ + 36 alphanumerics, or github_pat_...
PRIVATE_KEY        -----BEGIN ... PRIVATE KEY----- through the matching -----END ...-----
SECRET             a 32–200 character token of [A-Za-z0-9+/_-] that looks random: Shannon
                   entropy ≥ ``SECRET_MIN_ENTROPY`` bits/char, several character classes, frequent
                   class changes, and not hexadecimal (git SHAs, digests and UUIDs are common in
                   LLM output and are not secrets); or a token with a known key prefix (sk-, xoxb-,
                   glpat-, ...)
IN_AADHAAR         Indian Aadhaar: 12 digits, the first 2–9, Verhoeff check digit; grouped
                   4-4-4 by one consistent space or dash, or bare within ``CUE_WINDOW``
                   characters after "Aadhaar", "Aadhar", "UIDAI" or "आधार" in the same sentence
                   and line (8% of bare 12-digit numbers pass the check: order, tracking and
                   account numbers)
CA_SIN             Canadian Social Insurance Number: 9 digits, 3-3-3 (one consistent space or
                   dash) or bare, Luhn, first digit not 0 (unissued; the specimen 046 454 286) or
                   8 (business numbers); only within ``CUE_WINDOW`` characters after "SIN", "NAS",
                   "social insurance" or "assurance sociale" in the same sentence and line: a
                   Luhn digit passes one number in ten, and 3-3-3 is also how Spanish phone
                   numbers and space-grouped hundreds of millions are written
ES_DNI             Spanish DNI/NIF: 8 digits (or 12.345.678) and the mod-23 check letter, with or
                   without a dash before it
ES_NIE             Spanish NIE: X, Y or Z (read as 0, 1, 2), 7 digits and the mod-23 check
                   letter, with or without dashes
FR_NIR             French social security number: sex 1/2, year, month (01–12, 20–42, 50–99),
                   department (not 00), commune, order (not 000) and the key 97 − (first 13
                   digits mod 97); 15 digits bare, as 13 + key, or grouped 1 2 2 2 3 3 2.
                   Corsican numbers (2A/2B) are not recognised
IT_FISCAL_CODE     Italian codice fiscale: 6 letters, year, month letter, day (01–31, +40 for
                   women), municipality, check letter (odd/even tables, mod 26); digits may be
                   replaced by LMNPQRSTUV (omocodia). Upper case only
=================  ==========================================================================

Digits, hyphens and no-break spaces of any script are read as ASCII first, one character for one
(``_NUMERIC_ASCII``), so positions hold. Where recognisers overlap, the more specific wins (``PRIORITY``).
The national IDs with letters (ES_DNI, ES_NIE, IT_FISCAL_CODE) are words of their own: not
inside a longer token, path or address. The digit-only ones are whole digit runs: one glued to
other digits by single spaces ("ref 12 2345 6789 0124") is not found, as for phones (cards and SSNs
are also read from the head or tail of a run, ``_PART_TYPES``; the 4-4-4 head of any 16-digit
number would be an Aadhaar about one time in twelve).

Streaming: every recogniser reads a maximal run of its own characters (a word, a run of digits and
phone punctuation, a base64-ish token, ...) plus a little context on each side (``RUN_EDGE`` for
digit runs), and
rejects runs longer than its entity can be. So a finding is settled once the run it lies in is
followed by a character that cannot continue it, and ``stable_until`` is the start of the earliest
run that still touches the end of the text (in ordinary prose: the last, unfinished word), of an
unterminated private key block, or of a settled finding that reaches into held text (a longer
overlapping candidate could still claim it). Only settled findings are reported.

A private key block is the one entity with no length bound, so it alone can outgrow the pipeline's
hold-back and scan context. While it is open the scan reports its BEGIN line as ``opened``: the
pipeline masks the block as it forces text out and, once the BEGIN line has left the context, scans
that line again in front of the rest, so the block stays open until its END line. A closed block is
reported at once, whole, even while text after its END is still held.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import phonenumbers

from guard.errors import ConfigError
from guard.types import PII, Finding, ScanResult

ENTITIES: Final[tuple[str, ...]] = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "US_SSN",
    "IPV4",
    "IPV6",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "GITHUB_TOKEN",
    "PRIVATE_KEY",
    "SECRET",
    "IN_AADHAAR",
    "CA_SIN",
    "ES_DNI",
    "ES_NIE",
    "FR_NIR",
    "IT_FISCAL_CODE",
)

#: Overlap resolution: a finding is dropped when it overlaps one of an earlier entity in this list.
PRIORITY: Final[tuple[str, ...]] = (
    "PRIVATE_KEY",
    "AWS_ACCESS_KEY",
    "GITHUB_TOKEN",
    "AWS_SECRET_KEY",
    "EMAIL",
    "IBAN",
    # National IDs overlap cards only where a bare 15-digit NIR is also a legacy JCB (1800/2131,
    # Luhn): the NIR's mod-97 key and fields are the stronger evidence. They beat PHONE: an Aadhaar
    # grouped 4-4-4 or a SIN after its cue can also be a valid number in some region.
    "FR_NIR",
    "IT_FISCAL_CODE",
    "ES_DNI",
    "ES_NIE",
    "IN_AADHAAR",
    "CA_SIN",
    "CREDIT_CARD",
    "US_SSN",
    "IPV4",
    "IPV6",
    "PHONE",
    "SECRET",
)

#: Finding scores: checksum- or metadata-validated entities are certain, shapes slightly less so,
#: the entropy heuristic least.
SCORES: Final[dict[str, float]] = {
    "EMAIL": 1.0, "PHONE": 0.9, "CREDIT_CARD": 1.0, "IBAN": 1.0, "US_SSN": 0.9, "IPV4": 0.9,
    "IPV6": 1.0, "AWS_ACCESS_KEY": 1.0, "AWS_SECRET_KEY": 0.9, "GITHUB_TOKEN": 1.0,
    "PRIVATE_KEY": 1.0, "SECRET": 0.7,
    # A single check digit passes one number in ten: less sure than a check letter or a mod-97 key.
    "IN_AADHAAR": 0.9, "CA_SIN": 0.9, "ES_DNI": 1.0, "ES_NIE": 1.0, "FR_NIR": 1.0,
    "IT_FISCAL_CODE": 1.0,
}

DEFAULT_REGIONS: Final[tuple[str, ...]] = (
    "US", "GB", "DE", "FR", "IN", "ES", "IT", "NL", "CA", "AU",
)

MAX_EMAIL: Final = 200
MAX_DIGIT_RUN: Final = 40  # a phone, card, SSN or a few of them, with separators
#: the longest entity read from a part of a longer run (a 19-digit card with its separators is 23
#: characters, a "+" phone with brackets a little less): the tail of a long run is held this far
MAX_RUN_PART: Final = 32
#: a digit run longer than this is read part by part (``PiiScanner._long_run_entities``)
LONG_RUN: Final = 2 * MAX_DIGIT_RUN
MAX_IPV6_RUN: Final = 64
MIN_SECRET: Final = 32
MAX_TOKEN: Final = 200
CUE_WINDOW: Final = 32
SECRET_MIN_ENTROPY: Final = 4.0
SECRET_MIN_CLASS_CHANGES: Final = 0.2  # class changes (lower/upper/digit/other) per character
# A token whose letter pairs are this English (see english_bigram_ratio) and that changes class
# less often than this is an identifier; random strings change class at about 60% of pairs.
SECRET_MAX_ENGLISH: Final = 0.25
SECRET_RANDOM_CHANGES: Final = 0.45

#: Left context a later scan needs (see the module docstring); larger than every run bound above
#: plus the cue window, with margin.
CONTEXT_CHARS: Final = 256

# Length of the IBAN for each country that has one (SWIFT IBAN registry).
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

_ALNUM: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class _HeldEmailChars:
    """Characters of a possible address the hold-back waits on: ``._%+-@`` and letters and digits
    of any script (``müller@gmx.de``, ``иван@mail.ru``, ``山田@example.jp``), as the pattern reads
    them: what is released must not depend on where chunks were cut. A run without "@" is held only
    while it could still be a local part (``MAX_EMAIL_LOCAL``), so text without spaces waits for at
    most 65 characters."""

    def __contains__(self, ch: object) -> bool:
        return isinstance(ch, str) and (ch in "._%+-@" or ch.isalnum() or _in_word(ch))


def _in_word(ch: str) -> bool:
    """A combining mark or an invisible format character: part of the word it sits in (NFD "ü",
    Devanagari vowel signs, a zero-width space or soft hyphen inside a name)."""
    return unicodedata.category(ch) in ("Mn", "Mc", "Me", "Cf")


#: scripts written without spaces between words (Thai, Lao, Tibetan, Myanmar, Khmer): a local part
#: is not read back into them, or an address glued to a phrase would mask the phrase too
_SPACELESS_BLOCKS: Final = ((0x0E00, 0x0FFF), (0x1000, 0x109F), (0x1780, 0x17FF))


def _spaceless(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _SPACELESS_BLOCKS)


def _local_char(ch: str) -> bool:
    return (ch.isalnum() or ch in "_%+-." or _in_word(ch)) and not _unspaced(ch)


def _local_part_start(text: str, start: int, at: int) -> int:
    """``start`` of an address (its "@" at ``at``) moved back over the rest of its local part: the
    pattern's classes stop at a combining mark or a format character, and "mu\u0308ller@gmx.de"
    was masked from "ller", leaving "mü" shown. Kept where the part would outgrow any local part
    (the hold-back holds no longer a run, so what is masked would depend on the chunk cuts) or
    would start right after another address's end."""
    if start == 0 or not _in_word(text[start - 1]) or _spaceless(text[start - 1]):
        return start
    i = start
    while i > 0 and _local_char(text[i - 1]):
        i -= 1
        if at - i > MAX_EMAIL_LOCAL:
            return start
    if i > 0 and text[i - 1] == "@":
        return start
    while i < start and (text[i] == "." or _in_word(text[i])):
        i += 1  # a local part starts with a letter, a digit or one of "_%+-"
    return i


#: letters of scripts whose words run into numbers without a space ("卡号4111…", "電話番号は03-…",
#: "번호는 4111-…입니다"): they do not glue a run to a word as a Latin letter does ("A4111…")
_CJK_BLOCKS: Final = (
    (0x1100, 0x11FF), (0x3040, 0x30FF), (0x3130, 0x318F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x3FFFF),
)
_UNSPACED_BLOCKS: Final = (*_SPACELESS_BLOCKS, *_CJK_BLOCKS)


def _cjk(ch: str) -> bool:
    return any(lo <= ord(ch) <= hi for lo, hi in _CJK_BLOCKS)


def _unspaced(ch: str) -> bool:
    return any(lo <= ord(ch) <= hi for lo, hi in _UNSPACED_BLOCKS)


def _first_group(text: str, start: int) -> int:
    """Digits the run at ``start`` opens with (after a "+" or "(")."""
    i = start + (start < len(text) and text[start] in "+(")
    j = i
    while j < len(text) and "0" <= text[j] <= "9":
        j += 1
    return j - i


def _glue(ch: str) -> bool:
    """A letter or digit that makes a digit run part of a word ("A-20931", "x4111…")."""
    return ch.isalnum() and not _unspaced(ch)


def _glued_before(text: str, start: int) -> bool:
    """Whether what precedes the digit run at ``start`` makes it part of something else: a word,
    an amount ("$4155…"), a path, a decimal ("3.14159…"), a tag ("#4155…"), a number with
    thousands separators ("1,234,567"). Not Markdown emphasis ("**4155…**", "_536-…_"), a label
    glued to it ("Tel.415…", "SSN#536…") or a CSV field or list item ("Bob,536-…", "[4111…,5555…]");
    those hid the entity whole."""
    before = text[start - 1] if start > 0 else " "
    if before in _EMPHASIS:
        i = start - 1
        while i > 0 and text[i - 1] in _EMPHASIS:
            i -= 1
        return i > 0 and (_glue(text[i - 1]) or text[i - 1] in ")]")  # "id_4155…", "2*4155…"
    if before == ".":
        return not (start > 1 and text[start - 2].isalpha())
    if before == "#":  # "SSN#", "ID#"; not a page's fragment ("page.html#2125551234")
        return not (start > 1 and text[start - 2].isupper())
    if before == ",":
        # a thousands group, or the fraction of a decimal written with a comma ("2,7182818284"):
        # at most two digits before the comma
        short = not (start > 3 and text[start - 3].isdigit() and text[start - 4].isdigit())
        return start > 1 and text[start - 2].isdigit() and (_first_group(text, start) == 3 or short)
    return _glue(before) or before in _RUN_BLOCKED_BEFORE


def _glued_after(text: str, end: int) -> bool:
    """Whether what follows the digit run ending at ``end`` makes it part of something else (a
    word, an address, a percentage, an identifier, a file name); closing emphasis does not."""
    after = text[end] if end < len(text) else " "
    if after in _EMPHASIS:
        j = end
        while j < len(text) and text[j] in _EMPHASIS:
            j += 1
        return j < len(text) and _glue(text[j])
    if _EXTENSION_RE.match(text, end):
        return False  # a phone's extension ("415-555-2671x89")
    nxt = text[end + 1] if end + 1 < len(text) else " "
    if after == "-":
        return nxt.isalnum()  # a hyphenated identifier ("06398848-fb17-…")
    if after == ".":
        return nxt.isalpha()  # a file name ("report.2024011512.pdf")
    return _glue(after) or after in _RUN_BLOCKED_AFTER


def _unemphasised(text: str, start: int, end: int) -> int:
    """``start`` moved past the opening underscores of Markdown emphasis when as many close the
    address ("_bob@x.io_" masks as "_[EMAIL]_", which renders as the writer meant)."""
    opening = _EMPHASIS_RE.match(text, start)
    if opening is None or text.startswith("@", opening.end()):
        return start
    closing = _EMPHASIS_RE.match(text, end)
    if closing is None or len(closing.group()) != len(opening.group()):
        return start
    return opening.end()


def _word_char(ch: str) -> bool:
    """A character of a local part's word in a spaced script (not its dots)."""
    return (ch.isalnum() or ch in "_%+-") and not _unspaced(ch)


def _local_part_tail(text: str) -> int | None:
    """Where a local part ending the text could start, within a run of address characters too long
    to be one: after the last character the pattern's local part cannot hold (a combining mark, a
    format character; Thai writes its vowel signs as marks and its phrases without spaces), then
    back over marks as ``_local_part_start`` reads it. "…ได้ที่john.doe" cut before "@" released
    "john." while the whole text masked the address. None where no local part fits."""
    n = len(text)
    i = n
    if i > 0 and _cjk(text[i - 1]):  # a local part of Han, kana or Hangul is all of its run
        while i > 0 and _cjk(text[i - 1]):
            i -= 1
            if n - i > MAX_EMAIL_LOCAL:
                return None  # (not walked to its start: a scan of Han prose was 4x slower)
        # and back over marks and what they join, as ``_local_part_start`` moves the match's start
        # ("+bob\u0308한국@": the address is masked from "+")
        return _local_part_start(text, _dotted_words_before(text, i), n)
    while i > 0 and (_word_char(text[i - 1]) or text[i - 1] == "."):
        i -= 1
        if n - i > MAX_EMAIL_LOCAL + 1:
            return None
    if i > 0 and _in_word(text[i - 1]) and not _spaceless(text[i - 1]):
        while i > 0 and _local_char(text[i - 1]) and n - i <= MAX_EMAIL_LOCAL:
            i -= 1
    elif i > 0 and i < n and text[i] == "." and _cjk(text[i - 1]):
        return _local_part_start(text, _dotted_words_before(text, i), n)  # "山田.yamada"
    return i


def _dotted_words_before(text: str, i: int) -> int:
    """``i`` (the start of a local part's last words) moved back over the words joined to it by
    dots when a Han, kana or Hangul word is among them, as ``_LOCAL_CJK`` reads them ("yamada.山田",
    "山田.太郎", "山田.yamada"): only their first word starts the address. Kept where they would
    outgrow any local part (the pattern's look-ahead then matches none of them)."""
    n = len(text)
    j = i
    while True:
        if j > 1 and text[j - 1] == ".":
            k = j - 1
        elif 0 < j < n and text[j] == ".":  # the Latin reader stopped past the dot
            k = j
        else:
            break
        if _cjk(text[k - 1]):
            while k > 0 and _cjk(text[k - 1]) and n - k <= MAX_EMAIL_LOCAL:
                k -= 1
        elif _word_char(text[k - 1]):
            while k > 0 and _word_char(text[k - 1]) and n - k <= MAX_EMAIL_LOCAL:
                k -= 1
        else:
            break
        if n - k > MAX_EMAIL_LOCAL:
            # longer than any local part: the pattern starts none of these words (each after a
            # dot but the first), so the hold stays where it was (it moved back before: (c))
            return i
        j = k
    return j


def _email_hold(text: str) -> int | None:
    """Where an address the text may end in starts, as far as appended text could still make one:
    the whole run of address characters while it could be one local part, or where a local part
    can start within a longer run, before its "@" as after it (so the hold never moves back)."""
    n = len(text)
    if not n or text[-1] not in _EMAIL_CHARS:
        return None
    run = _trailing_run(text, _EMAIL_CHARS, MAX_EMAIL + 2)  # None: longer than any address
    lo = max(0, n - MAX_EMAIL) if run is None else run
    at = text.find("@", lo)
    if run is not None and (n if at == -1 else at) - run <= MAX_EMAIL_LOCAL + 1:
        return run
    # an address still growing has its local part before the last "@"; where none fits there, one
    # may still start after it, its own "@" not written yet ("漢…漢@漢иван" goes on "@mail.ru")
    last = text.rfind("@", lo)
    if last != -1:
        before = _local_part_tail(text[:last])
        if before is not None:
            return before
    return _local_part_tail(text)


_EMAIL_CHARS: Final = _HeldEmailChars()
#: the longest local part: a run of address characters without "@" that is longer starts no address
MAX_EMAIL_LOCAL: Final = 64


def _class(blocks: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in blocks)


_U: Final = _class(_UNSPACED_BLOCKS)
_C: Final = _class(_CJK_BLOCKS)
#: a local part of other scripts, as RFC 5322 reads it (``W``: a word character of a spaced script)
_LOCAL_ANY: Final = r"(?:(?![{u}])[\w%+\-])(?:(?:(?![{u}])[\w.%+\-]){{0,62}}(?![{u}])[\w%+\-])?".format(u=_U)
#: a local part with Han, kana or Hangul: dot-separated words, each all of one kind
#: ("山田@", "山田.太郎@", "yamada.山田@"), never a CJK word glued to a Latin one ("联系bob@")
_LOCAL_CJK: Final = r"(?=[^@]{{1,64}}@)(?:{w}+\.)*[{c}]+(?:\.(?:[{c}]+|{w}+))*(?=@)".format(
    w=r"(?:(?![{u}])[\w%+\-])".format(u=_U), c=_C)
#: Unicode-aware on purpose: with ASCII classes, "müller@gmx.de" matched from the "ller" and was
#: released as "mü[EMAIL]". Scripts written without spaces run into an address: "联系邮箱bob@…", "bob@example.comにご連絡…",
#: "…ได้ที่john@…". A local part of Latin (or Cyrillic, …) letters may start right after them, and a
#: top-level domain of Latin letters ends where they begin; a local part of Han, kana or Hangul is
#: all of its run ("山田@example.jp"). Before, such an address matched with the words around it,
#: outgrew the bounds and was not masked at all.
EMAIL_RE: Final = re.compile(
    rf"(?:(?<![\w.%+\-@])(?:{_LOCAL_CJK}|{_LOCAL_ANY})|(?<=[{_U}]){_LOCAL_ANY})"
    r"@(?:[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?\.){1,8}"
    rf"(?:(?:(?![{_U}])[^\W\d_]){{2,24}}|[{_C}]{{2,24}})"
    rf"(?!(?![{_U}])[^\W_]|[%+@]|-[\w\-]*\.[^\W_])(?!\.[^\W_])"
)
#: Markdown emphasis around an address: "_bob@x.io_" and "__bob@x.io__" (the underscores are not
#: part of the address; the pattern used to reject it whole for the closing one, and it leaked)
_EMPHASIS_RE: Final = re.compile(r"_+")
_OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
#: what may precede an address: not a word, a dotted number or an IPv6 group ("::ffff:1.2.3.4"),
#: but a label's colon ("IP:10.0.0.5") and Markdown emphasis ("_10.0.0.5_") may
_IPV4_START: Final = r"(?:(?<![\w.:])|(?<=[g-zG-Z]:)|(?<=_)(?<![A-Za-z0-9]_))"
IPV4_RE: Final = re.compile(
    rf"{_IPV4_START}(?:{_OCTET}\.){{3}}{_OCTET}(?![A-Za-z0-9]|_+[A-Za-z0-9]|\.\d)", re.ASCII)
_IPV4_TAIL_RE: Final = re.compile(rf"{_IPV4_START}\d{{1,3}}(?:\.\d{{1,3}}){{0,3}}\.?\Z", re.ASCII)
#: Stand-ins (private-use characters) for a no-break space and an en dash inside a number: both
#: separate groups as a space and a hyphen do, but "669\u202f835\u202f601" is a French thousands
#: grouping and "9000–20000" a range, not phones (``_THOUSANDS_RE``, ``_RANGE_RE``)
_HARD_SPACE: Final = "\ue000"
_RANGE_DASH: Final = "\ue001"
DIGIT_RUN_RE: Final = re.compile(rf"[+(]?[0-9](?:[ ().\-/{_HARD_SPACE}{_RANGE_DASH}]{{0,2}}[0-9])*\)?")
_RUN_SEPARATORS: Final = frozenset(" ().-/" + _HARD_SPACE + _RANGE_DASH)
_RUN_BLOCKED_BEFORE: Final = frozenset("$€£¥@/-&%")
_RUN_BLOCKED_AFTER: Final = frozenset("@%")
#: Characters LLMs write in numbers, read as the ASCII ones the patterns know, one for one so every
#: position holds: hyphens and dashes (U+2011 non-breaking hyphen, en dash, minus, full-width),
#: the no-break and narrow spaces (U+00A0, U+2007, U+2009, U+202F), full-width "+().", and every
#: decimal digit (Arabic-Indic, Devanagari, full-width, mathematical bold, ...). "415‑555‑2671" with U+2011 leaked.
#: Not the em dash: prose puts it between words and numbers ("call me—4155552671").
_NUMERIC_ASCII: Final = {
    **{cp: "-" for cp in (0x2010, 0x2011, 0x2012, 0x2212, 0xFE63, 0xFF0D)},
    0x066B: ".", 0x066C: ",",  # the Arabic decimal and thousands separators
    **{cp: _HARD_SPACE for cp in (0x00A0, 0x2007, 0x2009, 0x202F)}, 0x2013: _RANGE_DASH,
    0xFF08: "(", 0xFF09: ")", 0xFF0B: "+", 0xFF0E: ".",
    **{cp: str(unicodedata.decimal(chr(cp))) for cp in range(0x80, 0x20000)
       if unicodedata.category(chr(cp)) == "Nd"},
}
#: whether a text has any of them (a search is far cheaper than a translation that changes nothing).
#: Two patterns: a class holding astral code points is not compiled to a bitmap, and searching
#: every text with it cost 50 times as much; astral digits are looked for only where the text has
#: an astral character at all
_NON_ASCII_NUMERIC_RE: Final = re.compile(
    "[" + "".join(re.escape(chr(cp)) for cp in sorted(_NUMERIC_ASCII) if cp < 0x10000) + "]")


def _ranges(cps: Iterable[int]) -> str:
    """A character class body of ``cps`` as ranges (25 for the astral digits: searched 4x faster
    than the 290 characters listed one by one, which text full of emoji paid on every scan)."""
    out: list[list[int]] = []
    for cp in sorted(cps):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in out)


_ASTRAL_DIGIT_RE: Final = re.compile("[" + _ranges(cp for cp in _NUMERIC_ASCII if cp >= 0x10000) + "]")
_ASTRAL_RE: Final = re.compile("[\U00010000-\U0010ffff]")  # one range: cheap (``max`` was 10 µs)


def _numeric_non_ascii(text: str) -> bool:
    """Whether ``text`` (not ASCII) has a character ``_NUMERIC_ASCII`` translates."""
    return _NON_ASCII_NUMERIC_RE.search(text) is not None \
        or (_ASTRAL_RE.search(text) is not None and _ASTRAL_DIGIT_RE.search(text) is not None)
_RANGE_RE: Final = re.compile(f"[0-9]+{_RANGE_DASH}[0-9]+")
_THOUSANDS_RE: Final = re.compile(f"[0-9]{{1,3}}(?:{_HARD_SPACE}[0-9]{{3}})+")
_LOOSE_HARD_SPACE_RE: Final = re.compile(f"(?<![0-9]){_HARD_SPACE}|{_HARD_SPACE}(?![0-9])")


#: characters on either side of a digit run that reading it looks at (``_glued_before``/``_after``)
RUN_EDGE: Final = 6
#: an extension written right after a number, ended by what no word goes on with
_EXTENSION_RE: Final = re.compile(r"[xX][0-9]{1,4}(?![0-9A-Za-z_])")
#: (after a run's closing bracket too: "…1111)x9" is read as an extension, ``_glued_after``)
_EXTENSION_TAIL_RE: Final = re.compile(r"(?<=[0-9)])[xX][0-9]{0,4}\Z")
_EMPHASIS: Final = "*_"


def _plain(core: str) -> str:
    """A run with its stand-ins back as the space and hyphen the validators read."""
    return core.replace(_HARD_SPACE, " ").replace(_RANGE_DASH, "-")


_IPV6_HINT_RE: Final = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]")
IPV6_RUN_RE: Final = re.compile(r"(?<![\w:.%])[\w.%]*:[\w.%]*:[\w:.%]*", re.ASCII)
_IPV6_CHARS: Final = frozenset(_ALNUM + "_:.%")
TOKEN_RUN_RE: Final = re.compile(r"[A-Za-z0-9+/_\-]+={0,2}")
LONG_TOKEN_RE: Final = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{20,}={0,2}")
IBAN_START_RE: Final = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})(\d{2})", re.ASCII)
_IBAN_TAIL_RE: Final = re.compile(
    rf"(?<![A-Za-z0-9])(?:[A-Z]{{1,2}}|[A-Z]{{2}}\d{{1,2}}(?:[ {_HARD_SPACE}]?[A-Z0-9]){{0,30}}[ {_HARD_SPACE}]?)\Z",
    re.ASCII,
)
_IBAN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_LEAD_DIGITS_RE: Final = re.compile(r"\d{3,}", re.ASCII)
#: digit groups with one kind of single separator between them: what ``_cards`` can read
_EVEN_GROUPS_RE: Final = re.compile(rf"\d+(?:([ {_HARD_SPACE}-])\d+(?:\1\d+)*)?", re.ASCII)
SSN_RE: Final = re.compile(r"(\d{3})([- ])(\d{2})\2(\d{4})", re.ASCII)
#: an SSN opening a part of a long run, in the window as the scan sees it: a no-break space or an
#: en dash is still its stand-in there (``_whole_run_entities`` reads them as a space and a hyphen,
#: so "536 90\u202f4399" is one SSN there: the two separators are alike once read so)
_SSN_PART_RE: Final = re.compile(
    rf"[0-9]{{3}}(?:[ {_HARD_SPACE}][0-9]{{2}}[ {_HARD_SPACE}]|[-{_RANGE_DASH}][0-9]{{2}}[-{_RANGE_DASH}])[0-9]{{4}}")
_DATE_RE: Final = re.compile(
    r"(?<!\d)(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2}))(?!\d)",
    re.ASCII,
)
# Decimal numbers and card-shaped digit groups (a failed card is not a phone).
_NOT_PHONE_RE: Final = re.compile(r"\d+\.\d+|\d{4}([ -]?)\d{4}\1\d{4}\1\d{1,7}", re.ASCII)
AWS_KEY_RE: Final = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}")
GITHUB_RE: Final = re.compile(r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{70,100}")
AWS_SECRET_RE: Final = re.compile(r"[A-Za-z0-9/+]{40}")
_CUE_RE: Final = re.compile(r"(?i)aws|secret")
#: a sentence ends here: a cue before it speaks of something else ("~/.aws/credentials. <key>")
_CUE_BREAK_RE: Final = re.compile(r"[.!?]\s")
_KNOWN_SECRET_PREFIXES: Final = (
    "sk-", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "xoxb-", "xoxp-", "xoxa-", "xoxs-",
    "glpat-", "npm_", "hf_", "AIza", "SG.",
)
_HEX_RE: Final = re.compile(r"[0-9a-fA-F\-]+")
_WORDISH_RE: Final = re.compile(r"[a-z]+|[A-Z][a-z]+|[A-Z]+")
_ENGLISH_BIGRAMS: Final = frozenset(
    "th he in er an re nd on en at ou ed ha to or it is hi es ng as te et al st ar nt se ve le ea "
    "ti ne me de co ro ra ri ic li io ll ma ch ce ta el ca la be si".split()
)
PRIVATE_KEY_BEGIN_RE: Final = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
PRIVATE_KEY_END_RE: Final = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_BEGIN_TAIL_RE: Final = re.compile(
    r"-{1,5}(?:B(?:E(?:G(?:I(?:N(?: [A-Z0-9 ]{0,60}-{0,5})?)?)?)?)?)?\Z"
)


@dataclass(frozen=True, slots=True)
class _Candidate:
    start: int
    end: int
    label: str


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    """Whether the number starts with an issuer prefix that uses this length."""
    n = len(digits)
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)  # Visa
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16  # Mastercard
    if 2200 <= p4 <= 2204:
        return n == 16  # Mir
    if p2 in (34, 37):
        return n == 15  # American Express
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649:
        return 16 <= n <= 19  # Discover
    if 300 <= p3 <= 305 or p3 == 309 or p2 in (36, 38, 39):
        return 14 <= n <= 19  # Diners Club
    if p2 == 35 or 3088 <= p4 <= 3094 or 3096 <= p4 <= 3102 or 3112 <= p4 <= 3120 \
            or 3158 <= p4 <= 3159 or 3337 <= p4 <= 3349:
        return 15 <= n <= 19  # JCB (3528-3589 today; all of 35 in older tables)
    if p4 in (1800, 2131):
        return n == 15  # JCB (legacy 15-digit)
    if p2 in (62, 81):
        return 16 <= n <= 19  # UnionPay
    if p2 == 50 or 56 <= p2 <= 58 or p4 in (6304, 6759, 6761, 6762, 6763):
        return 13 <= n <= 19  # Maestro
    return False


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: the country's length and mod-97 of the rearranged number equal to 1."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return f"{area}{group}{serial}" not in ("078051120", "219099999", "123456789")


def isbn13_ok(digits: str) -> bool:
    if len(digits) != 13 or digits[:3] not in ("978", "979"):
        return False
    return sum((3 if i % 2 else 1) * (ord(c) - 48) for i, c in enumerate(digits)) % 10 == 0


#: words before a number that say it is one to dial
_PHONE_CUE_RE: Final = re.compile(r"(?i)\b(?:tel|phone|call|fax|mobile|cell|whatsapp|contact|dial|ring)")


def _epoch_like(run: str) -> bool:
    """Ten bare digits from 1: a Unix time (1.6e9-1.8e9 this decade) far more often than a number
    dialled without its trunk prefix (no NANP area code starts with 1), unless a cue says "call"."""
    return len(run) == 10 and run.isdigit() and run[0] == "1"


def isbn10_hyphenated(core: str) -> bool:
    """An ISBN-10 as books print it: four hyphenated groups, mod-11 check (``0-306-40615-2``)."""
    groups = core.split("-")
    digits = "".join(groups)
    if len(groups) != 4 or len(digits) != 10 or not digits.isdigit():
        return False
    return sum((10 - i) * (ord(c) - 48) for i, c in enumerate(digits)) % 11 == 0


# -- national IDs ------------------------------------------------------------------------------

_AADHAAR_GROUPED_RE: Final = re.compile(r"[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}")
_AADHAAR_BARE_RE: Final = re.compile(r"[0-9]{12}")
_SIN_RE: Final = re.compile(r"[0-9]{3}([ -]?)[0-9]{3}\1[0-9]{3}")
_NIR_RE: Final = re.compile(
    r"[0-9]{15}|[0-9]{13} [0-9]{2}|[0-9] [0-9]{2} [0-9]{2} [0-9]{2} [0-9]{3} [0-9]{3} [0-9]{2}"
)
# Spanish IDs and the codice fiscale are words: not glued to a token, path, address or dotted
# number.
# One character of context on each side, like the other recognisers; a trailing ID is held by the
# word hold until that character arrives.
_OMO: Final = "[0-9LMNPQRSTUV]"  # a digit, or the letter omocodia replaces it with
_ALNUM_ID_RE: Final = re.compile(
    r"(?<![A-Za-z0-9+/_@.\-])"
    r"(?:(?P<dni>[0-9]{8}|[0-9]{2}\.[0-9]{3}\.[0-9]{3})-?(?P<dni_letter>[A-Z])"
    r"|(?P<nie_prefix>[XYZ])-?(?P<nie>[0-9]{7})-?(?P<nie_letter>[A-Z])"
    rf"|(?P<cf>[A-Z]{{6}}{_OMO}{{2}}[ABCDEHLMPRST]{_OMO}{{2}}[A-Z]{_OMO}{{3}}[A-Z]))"
    r"(?![A-Za-z0-9+/_@\-])"
)
# A cue word, named by the label whose numbers it vouches for (bare Aadhaar numbers; any SIN).
# "SIN" and "NAS" only in capitals: "sin" is a word and a function, "nas" a word in several languages.
_ID_CUE_RE: Final = re.compile(
    r"(?P<IN_AADHAAR>(?i:aadhaa?r|uidai)|आधार)"
    r"|(?P<CA_SIN>\b(?:SIN|NAS)\b|(?i:social insurance|assurance sociale))"
)
# A cue vouches for numbers in its own sentence: "... the UIDAI records. Order 823635032980" is
# an order number.
_SENTENCE_END_RE: Final = re.compile(r"[.!?]\s+[A-Z]")
_ES_LETTERS: Final = "TRWAGMYFPDXBNJZSQVHLCKE"
_VERHOEFF_D: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
# Codice fiscale: value of each character in an odd (1st, 3rd, ...) position; even positions count
# digits as 0-9 and letters as A=0 ... Z=25.
_CF_ODD: Final[dict[str, int]] = dict(zip(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    (1, 0, 5, 7, 9, 13, 15, 17, 19, 21,
     1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23),
))
_CF_OMOCODES: Final = str.maketrans("LMNPQRSTUV", "0123456789")
#: labels found in a digit run on its own, and those that need a cue word before the run
_RUN_IDS: Final = frozenset({"IN_AADHAAR", "FR_NIR"})
_CUED_IDS: Final = frozenset({"IN_AADHAAR", "CA_SIN"})
_ALNUM_IDS: Final = frozenset({"ES_DNI", "ES_NIE", "IT_FISCAL_CODE"})


def verhoeff_ok(digits: str) -> bool:
    """Verhoeff's dihedral-group check, which catches every single-digit error and every swap of
    adjacent digits (Luhn misses 09/90)."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


def aadhaar_ok(digits: str) -> bool:
    """UIDAI never issues numbers starting 0 or 1; the last digit is a Verhoeff check digit."""
    return len(digits) == 12 and digits[0] not in "01" and verhoeff_ok(digits)


def sin_ok(digits: str) -> bool:
    """Series 0 is unissued (the specimen 046 454 286 is one) and 8 is for businesses."""
    return len(digits) == 9 and digits[0] not in "08" and luhn_ok(digits)


def nir_ok(digits: str) -> bool:
    """The fields a NIR can hold (INSEE: months 20-42 and 50-99 stand for an unknown month) and
    its key, which makes a random 15-digit number pass one time in several thousand."""
    if len(digits) != 15 or digits[0] not in "12":
        return False
    month = int(digits[3:5])
    if not (1 <= month <= 12 or 20 <= month <= 42 or month >= 50):
        return False
    if digits[5:7] == "00" or digits[10:13] == "000":
        return False
    return int(digits[13:]) == 97 - int(digits[:13]) % 97


def es_id_ok(number: str, letter: str) -> bool:
    """DNI (8 digits) or NIE (its X/Y/Z already read as 0/1/2): the letter is number mod 23."""
    return number.strip("0") != "" and _ES_LETTERS[int(number) % 23] == letter


def codice_fiscale_ok(code: str) -> bool:
    """Day of birth 01-31 (41-71 for women; omocodia letters read back as digits) and the check
    letter; the shape is the recogniser's pattern."""
    day = int(code[9:11].translate(_CF_OMOCODES))
    if not (1 <= day <= 31 or 41 <= day <= 71):
        return False
    total = sum(_CF_ODD[c] if i % 2 == 0 else ord(c) - (48 if c.isdigit() else 65)
                for i, c in enumerate(code[:15]))
    return chr(65 + total % 26) == code[15]


def _unwrap(core: str, base: int) -> tuple[str, int]:
    """An ID in parentheses ("SIN (130 692 544)") is the run without them."""
    if core.startswith("(") and core.endswith(")"):
        return core[1:-1], base + 1
    return core, base


def _run_ids(core: str, base: int) -> Iterator[tuple[int, int, str]]:
    """IDs that are the whole run (``core``: the run without unpaired parentheses). Never a part of
    a longer run: any 12 or 15 digits inside one would pass a check digit too often."""
    core, base = _unwrap(core, base)
    digits = "".join(c for c in core if c.isdigit())
    if _AADHAAR_GROUPED_RE.fullmatch(core):
        if aadhaar_ok(digits):
            yield base, base + len(core), "IN_AADHAAR"
    elif _NIR_RE.fullmatch(core) and nir_ok(digits):
        yield base, base + len(core), "FR_NIR"


def _cued_ids(text: str, limit: int) -> Iterator[_Candidate]:
    """Bare Aadhaar numbers and SINs: a digit run starting at most ``CUE_WINDOW`` characters after
    a cue word for its label, on the same line and in the same sentence, and read with the same
    edges as any digit run."""
    n = len(text)
    for cue in _ID_CUE_RE.finditer(text):
        if cue.start() >= limit:
            return
        label = cue.lastgroup
        line_end = text.find("\n", cue.end())
        stop = min(cue.end() + CUE_WINDOW, n if line_end == -1 else line_end)
        for m in DIGIT_RUN_RE.finditer(text, cue.end()):
            if m.start() > stop or m.start() >= limit:
                break
            if _SENTENCE_END_RE.search(text, cue.end(), m.start()):
                break
            start, end = m.start(), m.end()
            lo = max(0, start - RUN_EDGE)
            w = text[lo:end + RUN_EDGE]
            if end - start > MAX_DIGIT_RUN or _glued_before(w, start - lo) \
                    or _glued_after(w, end - lo):
                continue
            run = m.group()
            lead = 1 if run.startswith("(") and ")" not in run else 0
            trail = 1 if run.endswith(")") and "(" not in run else 0
            core, base = _unwrap(run[lead:len(run) - trail], start + lead)
            core = _plain(core)
            digits = "".join(c for c in core if c.isdigit())
            if label == "CA_SIN":
                ok = _SIN_RE.fullmatch(core) is not None and sin_ok(digits)
            else:
                ok = _AADHAAR_BARE_RE.fullmatch(core) is not None and aadhaar_ok(digits)
            if ok:
                yield _Candidate(base, base + len(core), label)


def _alnum_ids(text: str, limit: int) -> Iterator[_Candidate]:
    """Spanish IDs and codici fiscali: one pattern, so the text is walked once for all three."""
    for m in _ALNUM_ID_RE.finditer(text):
        if m.start() >= limit:
            return
        if m.group("dni") is not None:
            if es_id_ok(m.group("dni").replace(".", ""), m.group("dni_letter")):
                yield _Candidate(m.start(), m.end(), "ES_DNI")
        elif m.group("nie") is not None:
            number = "XYZ".index(m.group("nie_prefix")) * 10_000_000 + int(m.group("nie"))
            if es_id_ok(str(number), m.group("nie_letter")):
                yield _Candidate(m.start(), m.end(), "ES_NIE")
        elif codice_fiscale_ok(m.group("cf")):
            yield _Candidate(m.start(), m.end(), "IT_FISCAL_CODE")


def shannon_entropy(token: str) -> float:
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())


def _char_class(ch: str) -> int:
    return 0 if ch.islower() else 1 if ch.isupper() else 2 if ch.isdigit() else 3


def english_bigram_ratio(token: str) -> tuple[float, int]:
    """Share of adjacent letter pairs inside words ("get", "User", "TOKEN") that are among the
    commonest English bigrams, and the number of pairs. Words written in code (identifiers,
    paths) score 0.5 or more; random strings about 0.07."""
    pairs = hits = 0
    for m in _WORDISH_RE.finditer(token):
        word = m.group().lower()
        for a, b in zip(word, word[1:]):
            pairs += 1
            hits += a + b in _ENGLISH_BIGRAMS
    return (hits / pairs if pairs else 0.0), pairs


def looks_random(token: str) -> bool:
    """A key rather than a word, path or identifier.

    Random base62/base64 mixes upper and lower case, changes character class (lower/upper/digit/
    other) at about 60% of adjacent pairs, carries more than 4 bits per character, and its letter
    pairs are not English; an identifier or path made of words has English pairs *and* changes
    class less often. Hexadecimal (digests, git SHAs, UUIDs) is excluded outright: it is common
    in LLM output and rarely a credential. Tuned on 20,000 random tokens against 2,500 long
    CamelCase/snake_case identifiers, paths and upper-case constants: under 0.1% of either
    side is misjudged.
    """
    if _HEX_RE.fullmatch(token):
        return False
    classes = [_char_class(c) for c in token]
    if not {0, 1} <= set(classes):
        return False
    changes = sum(a != b for a, b in zip(classes, classes[1:]))
    if changes / len(token) < SECRET_MIN_CLASS_CHANGES:
        return False
    if shannon_entropy(token) < SECRET_MIN_ENTROPY:
        return False
    ratio, pairs = english_bigram_ratio(token)
    wordy = pairs >= 6 and ratio >= SECRET_MAX_ENGLISH
    return not (wordy and changes / len(token) < SECRET_RANDOM_CHANGES)


def _trailing_run(text: str, chars: Container[str], cap: int) -> int | None:
    """Start of the run of ``chars`` that ends the text, or None if empty or longer than ``cap``."""
    n = len(text)
    i = n
    while i > 0 and n - i <= cap and text[i - 1] in chars:
        i -= 1
    if i == n or n - i > cap:
        return None
    return i


def _without_closing(window: str, start: int, stop: int) -> int:
    """``stop`` moved back over a sentence's closing punctuation: a part ends before it."""
    while stop > start and window[stop - 1] in ".,;:":
        stop -= 1
    return stop


def _find_space(window: str, lo: int, hi: int) -> int:
    """The first space in ``window[lo:hi]`` a run splits into parts at: an ASCII one, or a no-break
    one between digits ("536-22-8726\u00a04111 1111 1111 1111" holds two entities)."""
    space = window.find(" ", lo, hi)
    hard = window.find(_HARD_SPACE, lo, hi if space == -1 else space)
    return space if hard == -1 else hard


def _iter_digit_groups(core: str) -> Iterator[tuple[int, int]]:
    for m in re.finditer(r"\d+", core):
        yield m.start(), m.end()


class PiiScanner:
    """Validated PII and secret recogniser meeting the streaming contract of ``Scanner``.

    ``entities``: which labels to report (default: all of ``ENTITIES``). ``regions``: the regions
    whose national phone formats are tried, in order (numbers written with ``+`` need none).

    ``scan`` is pure. Phone validation (the costly part) is memoised per instance on the run of
    digits it looks at, which changes nothing but speed.
    """

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        *,
        regions: Sequence[str] = DEFAULT_REGIONS,
        name: str = "pii",
    ) -> None:
        chosen = tuple(ENTITIES if entities is None else entities)
        unknown = sorted(set(chosen) - set(ENTITIES))
        if unknown:
            raise ConfigError(f"unknown PII entities {unknown}; known: {list(ENTITIES)}")
        bad_regions = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if bad_regions:
            raise ConfigError(f"unknown phone regions {bad_regions}")
        self.name = name
        self.entities = frozenset(chosen)
        self.regions = tuple(regions)
        self.context_chars = CONTEXT_CHARS
        # Memo tables of pure functions (closed runs are rescanned while they sit in the context).
        self._phones = functools.lru_cache(maxsize=16384)(self._phones_uncached)
        self._run_entities = functools.lru_cache(maxsize=16384)(self._run_entities_uncached)
        self._token_label = functools.lru_cache(maxsize=16384)(_token_label)

    def scan(self, text: str, final: bool) -> ScanResult:
        if not text.isascii() and _numeric_non_ascii(text):
            text = text.translate(_NUMERIC_ASCII)  # one for one: positions hold
            if _HARD_SPACE in text:  # outside a number a no-break space is a space ("SSN:\u00a0…")
                text = _LOOSE_HARD_SPACE_RE.sub(" ", text)
        n = len(text)
        limit = n if final else self._hold(text)
        candidates = [c for c in self._candidates(text, limit, final) if c.start < limit]
        stable = limit
        if not final:
            # A settled candidate reaching into held text could still lose to a longer one there.
            # A closed private key cannot (nothing outranks it and its END line is complete), nor
            # can what overlaps one: a key is reported whole as soon as it closes, which a caller
            # that force-released part of it relies on to mask the rest.
            keys = [c for c in candidates if c.label == "PRIVATE_KEY"]
            may_grow = [c for c in candidates
                        if not any(c.start < k.end and k.start < c.end for k in keys)]
            moved = True
            while moved:
                moved = False
                for c in may_grow:
                    if c.start < stable < c.end:
                        stable = c.start
                        moved = True
        findings = tuple(
            Finding(c.start, c.end, PII, c.label, SCORES[c.label], self.name)
            for c in _resolve(candidates)
            if c.start < stable and c.label in self.entities
        )
        return ScanResult(findings, stable, None if final else self._opened(text))

    def _opened(self, text: str) -> Finding | None:
        """The BEGIN line of a private key block that has no END yet: the block grows with the
        stream, past any hold-back, and a scan of that line followed by later text of the block
        sees the block open again."""
        if "PRIVATE_KEY" not in self.entities:
            return None
        begin = _open_private_key(text)
        if begin is None:
            return None
        return Finding(begin.start(), begin.end(), PII, "PRIVATE_KEY", SCORES["PRIVATE_KEY"],
                       self.name)

    # -- hold-back -------------------------------------------------------------------------

    def _hold(self, text: str) -> int:
        """Earliest start of something that appended text could still turn into (or out of) a
        finding."""
        n = len(text)
        starts = [n]
        email = _email_hold(text)
        if email is not None:
            starts.append(email)
        ipv6 = self._ipv6_tail(text)
        if ipv6 is not None:
            starts.append(ipv6)
        # Runs are found from a window start; one cut by the window starts within two characters
        # of it, so anything starting that early is longer than its bound and cannot be an entity.
        window = max(0, n - MAX_DIGIT_RUN - 8)
        # a phone's extension may be growing ("…2671x8"): the run before it is read as if it ended
        # the text (with more digits the "x" glues it to a word)
        extension = _EXTENSION_TAIL_RE.search(text, max(window, n - 5))
        tail = n if extension is None else extension.start()
        runs = [r for r in DIGIT_RUN_RE.finditer(text, window) if r.end() <= tail]
        if runs:
            last = runs[-1]
            rest = text[last.end():tail]
            # the run may go on, or what follows may still glue it to a word ("4155…__id")
            if (len(rest) <= 2 and all(c in _RUN_SEPARATORS for c in rest)) \
                    or (len(rest) < RUN_EDGE and all(c in _EMPHASIS for c in rest)):
                cut_by_window = window > 0 and last.start() <= window + 2
                if last.end() - last.start() <= MAX_DIGIT_RUN and not cut_by_window:
                    starts.append(last.start())
                else:  # too long to be one entity, but a card or SSN may end it (``_PART_TYPES``)
                    starts.append(max(last.start(), last.end() - MAX_RUN_PART))
        opener = len(text) - len(text.rstrip("+("))
        if opener:
            starts.append(n - min(opener, 2))
        ipv4 = _IPV4_TAIL_RE.search(text, max(0, n - 17))
        if ipv4:
            starts.append(ipv4.start())
        window = max(0, n - MAX_TOKEN - 8)
        tokens = list(TOKEN_RUN_RE.finditer(text, window))
        if tokens and tokens[-1].end() == n and tokens[-1].start() >= n - MAX_TOKEN:
            starts.append(tokens[-1].start())
        iban = _IBAN_TAIL_RE.search(text, max(0, n - 80))
        if iban:
            starts.append(iban.start())
        begin = _BEGIN_TAIL_RE.search(text, max(0, n - 100))
        if begin:
            starts.append(begin.start())
        open_key = _open_private_key(text)
        if open_key is not None:
            starts.append(open_key.start())
        return min(starts)

    @staticmethod
    def _ipv6_tail(text: str) -> int | None:
        start = _trailing_run(text, _IPV6_CHARS, MAX_IPV6_RUN)
        if start is None:
            return None
        run = text[start:]
        if ":" not in run:
            return None  # the word and digit holds cover runs that have no colon yet
        address = run.split("%", 1)[0]
        if all(c in "0123456789abcdefABCDEF:." for c in address):
            return start
        return None

    # -- recognisers -----------------------------------------------------------------------

    def _candidates(self, text: str, limit: int, final: bool) -> Iterator[_Candidate]:
        want = self.entities
        if ("PRIVATE_KEY" in want or "SECRET" in want) and "-----" in text:
            yield from self._private_keys(text, final)
        if "EMAIL" in want and "@" in text:
            for m in EMAIL_RE.finditer(text):
                if m.start() >= limit:
                    break
                if len(m.group()) <= MAX_EMAIL and ".." not in m.group():
                    start = _local_part_start(text, m.start(), text.index("@", m.start()))
                    yield _Candidate(_unemphasised(text, start, m.end()), m.end(), "EMAIL")
        if want & {"PHONE", "CREDIT_CARD", "US_SSN", "IPV4", *_RUN_IDS}:
            for m in DIGIT_RUN_RE.finditer(text):
                if m.start() >= limit:
                    break
                lo = max(0, m.start() - RUN_EDGE)
                window = text[lo:m.end() + RUN_EDGE]
                for a, b, label in self._run_entities(window, m.start() - lo, m.end() - lo):
                    if label == "PHONE" and _epoch_like(text[lo + a:lo + b]) and not _PHONE_CUE_RE.search(
                            text, max(0, lo + a - CUE_WINDOW), lo + a):
                        continue
                    yield _Candidate(lo + a, lo + b, label)
        if "IBAN" in want:
            yield from self._ibans(text, limit)
        if want & _CUED_IDS:
            yield from _cued_ids(text, limit)
        if want & _ALNUM_IDS:
            yield from _alnum_ids(text, limit)
        if "IPV6" in want and ("::" in text or _IPV6_HINT_RE.search(text)):
            for m in IPV6_RUN_RE.finditer(text):
                if m.start() >= limit:
                    break
                if len(m.group()) <= MAX_IPV6_RUN:
                    yield from _ipv6(m.group(), m.start())
        if want & {"AWS_ACCESS_KEY", "AWS_SECRET_KEY", "GITHUB_TOKEN", "SECRET"}:
            for m in LONG_TOKEN_RE.finditer(text):
                if m.start() >= limit:
                    break
                token = m.group()
                cue = False
                if len(token.rstrip("=")) == 40:  # "aws"/"secret" earlier in the same line and sentence
                    lo = max(0, m.start() - CUE_WINDOW)
                    lo = max(lo, text.rfind("\n", lo, m.start()) + 1)
                    for end in _CUE_BREAK_RE.finditer(text, lo, m.start()):
                        lo = end.end()
                    cue = _CUE_RE.search(text, lo, m.start()) is not None
                label = self._token_label(token, cue)
                if label is not None:
                    yield _Candidate(m.start(), m.end(), label)

    @staticmethod
    def _private_keys(text: str, final: bool) -> Iterator[_Candidate]:
        pos = 0
        while True:
            begin = PRIVATE_KEY_BEGIN_RE.search(text, pos)
            if begin is None:
                return
            end = PRIVATE_KEY_END_RE.search(text, begin.end())
            if end is None:
                if final:  # an unterminated block is still a key: redact to the end
                    yield _Candidate(begin.start(), len(text), "PRIVATE_KEY")
                return
            yield _Candidate(begin.start(), end.end(), "PRIVATE_KEY")
            pos = end.end()

    def _run_entities_uncached(
        self, window: str, start: int, end: int, parts_only: bool = False
    ) -> tuple[tuple[int, int, str], ...]:
        """Entities of the whole run, plus cards in the run that starts after its first space.

        A run can open with something that is not an entity and spoils the rest when read as one
        ("A-20931 4111 1111 1111 1111", "1.2.3 4111 …"): the tail after a space is read on its own
        too, and a card it finds is kept where it overlaps nothing found in the whole run.
        ``parts_only``: only the types read from parts (``_PART_TYPES``), for ``_long_run_entities``.
        """
        if end - start > LONG_RUN:
            return self._long_run_entities(window, start, end)
        found = self._whole_run_entities(window, start, end, parts_only)
        # Split at each space: the head (without a sentence's closing punctuation) read as a run of
        # its own, and the tail after the space recursively. Only strictly validated types are taken
        # from parts, and only where they overlap nothing already found; a head longer than any of
        # them ends the search.
        parts: list[tuple[int, int, str]] = []
        gap = _find_space(window, start, end)
        while gap != -1 and gap + 1 < end and gap - start <= MAX_RUN_PART + 2:
            head_end = _without_closing(window, start, gap)
            if head_end > start:
                parts += self._whole_run_entities(window, start, head_end, parts_only=True)
            gap = _find_space(window, gap + 1, end)
        first = _find_space(window, start, end)
        if first != -1 and first + 1 < end:
            parts += self._run_entities(window, first + 1, end, parts_only)
        extra: list[tuple[int, int, str]] = []
        for t in sorted(parts, key=lambda t: (t[0], -t[1])):
            strong = t[2] in _PART_TYPES
            if strong and not any(t[0] < f[1] and f[0] < t[1] for f in (*found, *extra)):
                extra.append(t)
        return found + tuple(extra)

    def _long_run_entities(self, window: str, start: int, end: int) -> tuple[tuple[int, int, str], ...]:
        """A run too long to be one entity (a list of numbers, a table row), read part by part.

        Reading every head and tail of it as a run, as shorter runs are read, costs time cubic in
        its spaces and recursion as deep as their number: a chunk counting to 800 exhausted the
        stack. Here IPv4 addresses are searched once, and each part of at most ``MAX_RUN_PART``
        characters that starts the run or follows a space is read for the types parts give.
        """
        found = [(m.start(), m.end(), "IPV4") for m in IPV4_RE.finditer(window, start, min(len(window), end + 2))] \
            if "." in window[start:end] else []
        parts: list[tuple[int, int, str]] = []
        t = start
        while 0 <= t < end:
            # a card's first group has 4 digits or more, an SSN's 3 (a list of small numbers: none)
            lead = t + (window[t] in "+(")
            digits = _LEAD_DIGITS_RE.match(window, lead, end)
            nxt = _find_space(window, t, end)
            word_end = _without_closing(window, t, end if nxt == -1 else nxt)
            # shorter runs read a head only up to a space at most MAX_RUN_PART + 2 characters on
            # ("12-34-56-78-90-12-4111-1111-1111-1111 1 2 …": its card is none there)
            short_word = nxt == -1 or nxt - t <= MAX_RUN_PART + 2
            if digits and len(digits.group()) == 3:
                # an SSN only as a whole part, as shorter runs read it: one glued to more
                # ("536-90-4399/1") is none there, and finding it here once the run outgrew
                # ``LONG_RUN`` released its head before it was found. A part ends at a space, so
                # one written with spaces ("536 22 8726 1 2 …") ends at the space after it; it
                # is read whole, as shorter runs read it: in brackets ("(536 22 8726) 1 2 …",
                # "536-22-8726) …") and with no-break spaces or en dashes ("536\u00a022\u00a08726")
                ssn = _SSN_PART_RE.match(window, lead, end)
                after = -1 if ssn is None else _find_space(window, ssn.end(), end)
                if ssn and (after == -1 or after - t <= MAX_RUN_PART + 2):
                    stop = _without_closing(window, t, end if after == -1 else after)
                    parts += self._whole_run_entities(window, t, stop, parts_only=True)
                elif word_end - t >= 13 and short_word:  # "123-4111-1111-1111-1111": a card from the second group
                    parts += self._whole_run_entities(window, t, word_end, parts_only=True)
            elif not digits and word_end - t >= 13 and short_word:
                # a short first group joined to more ("12-4111-1111-1111-1111"): a card can start
                # at its second group, as ``_cards`` reads shorter runs
                parts += self._whole_run_entities(window, t, word_end, parts_only=True)
            elif digits:
                stops, gap = [], _find_space(window, t, end)
                while True:
                    stop = end if gap == -1 else gap
                    if stop - t > MAX_RUN_PART + 2:
                        break
                    stops.append(_without_closing(window, t, stop))
                    if gap == -1:
                        break
                    gap = _find_space(window, gap + 1, end)
                # the longest part whose groups are evenly separated holds every card that starts
                # here (``_cards`` reads its windows of groups); shorter ones only where it is not
                for stop in reversed(stops):
                    parts += self._whole_run_entities(window, t, stop, parts_only=True)
                    if _EVEN_GROUPS_RE.fullmatch(window, t, stop):
                        break
            t = nxt + 1 if nxt != -1 else end
        kept: list[tuple[int, int, str]] = []
        for p in sorted(set(parts), key=lambda p: (p[0], -p[1])):
            if p[2] in _PART_TYPES and not (kept and p[0] < kept[-1][1]) \
                    and not any(p[0] < f[1] and f[0] < p[1] for f in found):
                kept.append(p)
        return tuple(found) + tuple(kept)

    def _whole_run_entities(
        self, window: str, start: int, end: int, parts_only: bool = False
    ) -> tuple[tuple[int, int, str], ...]:
        """Entities in the digit run ``window[start:end]``; the window holds ``RUN_EDGE``
        characters of context on either side of the run, all any rule looks at. ``parts_only``: only the
        types a part of a longer run can give (``_PART_TYPES``; no IPv4 or phone search)."""
        found: list[tuple[int, int, str]] = []
        if "." in window and not parts_only:
            for m in IPV4_RE.finditer(window, start):
                found.append((m.start(), m.end(), "IPV4"))
        if end - start > MAX_DIGIT_RUN or _glued_before(window, start) \
                or _glued_after(window, end):
            return tuple(found)
        run = window[start:end]
        # Parentheses that do not pair up belong to the prose around the run; a pair around all
        # of it, too ("Visa (4111 1111 1111 1111)")
        lead = 1 if run.startswith("(") and ")" not in run else 0
        trail = 1 if run.endswith(")") and "(" not in run else 0
        core, base = _unwrap(run[lead:len(run) - trail], start + lead)
        if _RANGE_RE.fullmatch(core) or _THOUSANDS_RE.fullmatch(core):
            return tuple(found)  # "9000–20000", "4 294 967 295" with no-break spaces
        core = _plain(core)
        ssn = SSN_RE.fullmatch(core)
        if ssn:
            # SSN-shaped but invalid (000, 666, 9xx, specimen numbers) is nothing, not a phone.
            if ssn_ok(ssn.group(1), ssn.group(3), ssn.group(4)):
                found.append((base, base + len(core), "US_SSN"))
            return tuple(found)
        found.extend(_run_ids(core, base))
        cards = [(c.start, c.end, c.label) for c in _cards(core, base)]
        found.extend(cards)
        if not cards and not parts_only and not _NOT_PHONE_RE.fullmatch(core) and not _DATE_RE.search(core):
            digits = "".join(c for c in core if c.isdigit())
            # An unformatted short run ("0970881", a short git SHA) is no evidence of a phone.
            bare = len(digits) == len(core)
            if 7 <= len(digits) <= 15 and not isbn13_ok(digits) and not (bare and len(digits) < 10) \
                    and not isbn10_hyphenated(core):
                for s, e in self._phones(core):
                    found.append((base + s, base + e, "PHONE"))
        return tuple(found)

    def _phones_uncached(self, core: str) -> tuple[tuple[int, int], ...]:
        for region in self.regions:
            matches = tuple(
                (m.start, m.end)
                for m in phonenumbers.PhoneNumberMatcher(
                    core, region, leniency=phonenumbers.Leniency.VALID
                )
            )
            if matches:
                return matches
        return ()

    @staticmethod
    def _ibans(text: str, limit: int) -> Iterator[_Candidate]:
        n = len(text)
        for m in IBAN_START_RE.finditer(text):
            if m.start() >= limit:
                break
            length = IBAN_LENGTHS.get(m.group(1))
            if length is None:
                continue
            chars = [m.group(1), m.group(2)]
            count = 4
            i = m.end()
            while count < length and i < n:
                if text[i] in (" ", _HARD_SPACE) and i + 1 < n and text[i + 1] in _IBAN_CHARS:
                    i += 1
                ch = text[i]
                if ch not in _IBAN_CHARS:
                    break
                chars.append(ch)
                count += 1
                i += 1
            if count != length or (i < n and text[i].isalnum()):
                continue
            if iban_ok("".join(chars)):
                yield _Candidate(m.start(), i, "IBAN")


#: entity types taken from the head or tail of a longer digit run (see ``_run_entities_uncached``)
_PART_TYPES = frozenset({"CREDIT_CARD", "US_SSN"})  # and phones written with "+"


def _cards(core: str, base: int) -> Iterator[_Candidate]:
    """Card numbers among the digit groups of a run: greedy, longest window of groups first."""
    seps = {c for c in core if not c.isdigit()}
    if seps - {" ", "-"} or len(seps) > 1:
        return
    groups = list(_iter_digit_groups(core))
    if any(groups[k + 1][0] - groups[k][1] != 1 for k in range(len(groups) - 1)):
        return
    i = 0
    while i < len(groups):
        taken = False
        for j in range(min(len(groups) - 1, i + 5), i - 1, -1):  # 4-3-3-3-3-3 is 19 digits
            window = groups[i:j + 1]
            sizes = [e - s for s, e in window]
            total = sum(sizes)
            if not 13 <= total <= 19:
                continue
            if len(window) > 1 and (sizes[0] != 4 or min(sizes[1:]) < 3 or max(sizes) > 6):
                continue
            digits = "".join(core[s:e] for s, e in window)
            if len(set(digits)) > 1 and luhn_ok(digits) and card_issuer_ok(digits):
                yield _Candidate(base + window[0][0], base + window[-1][1], "CREDIT_CARD")
                i = j + 1
                taken = True
                break
        if not taken:
            i += 1


def _ipv6(run: str, start: int) -> Iterator[_Candidate]:
    candidate = run.rstrip(".")
    if not any(c.isdigit() for c in candidate.split("%", 1)[0]):
        return
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return
    yield _Candidate(start, start + len(candidate), "IPV6")


def _token_label(token: str, cue: bool) -> str | None:
    """Which secret a maximal token is, if any; ``cue``: "aws"/"secret" shortly before it."""
    if len(token) > MAX_TOKEN or len(token) < 20:
        return None
    if AWS_KEY_RE.fullmatch(token):
        return "AWS_ACCESS_KEY"
    if GITHUB_RE.fullmatch(token):
        return "GITHUB_TOKEN"
    body = token.rstrip("=")
    if (
        cue
        and len(body) == 40
        and AWS_SECRET_RE.fullmatch(body)
        and not _HEX_RE.fullmatch(body)
        and {0, 1, 2} <= {_char_class(c) for c in body}
    ):
        return "AWS_SECRET_KEY"
    prefix = next((p for p in _KNOWN_SECRET_PREFIXES if body.startswith(p)), None)
    if prefix is not None:
        rest = body[len(prefix):]
        if len(rest) >= 16 and len({_char_class(c) for c in rest} - {3}) >= 2:
            return "SECRET"
    if len(body) >= MIN_SECRET and looks_random(body):
        return "SECRET"
    return None


def _open_private_key(text: str) -> re.Match[str] | None:
    """The BEGIN line of the block that ``text`` leaves unterminated, if any."""
    pos = 0
    while True:
        begin = PRIVATE_KEY_BEGIN_RE.search(text, pos)
        if begin is None:
            return None
        end = PRIVATE_KEY_END_RE.search(text, begin.end())
        if end is None:
            return begin
        pos = end.end()


def _resolve(candidates: Iterable[_Candidate]) -> list[_Candidate]:
    """Keep the most specific of overlapping candidates (``PRIORITY``), then the earliest.

    What is kept never overlaps, so in start order a candidate can only clash with its two
    neighbours: checking every kept one made a chunk of a thousand phone numbers quadratic."""
    rank = {label: i for i, label in enumerate(PRIORITY)}
    kept: list[_Candidate] = []  # by start
    starts: list[int] = []
    for c in sorted(set(candidates), key=lambda c: (rank[c.label], c.start, -c.end)):
        i = bisect.bisect_right(starts, c.start)
        if (i > 0 and kept[i - 1].end > c.start) or (i < len(kept) and kept[i].start < c.end):
            continue
        kept.insert(i, c)
        starts.insert(i, c.start)
    return kept

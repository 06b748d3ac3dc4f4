"""The lexical layer against a generated obfuscation corpus.

Must-match rows: every blocklisted term, disguised each way people disguise words (leetspeak,
symbols, spacing and punctuation between letters, zero-width characters, Cyrillic/Greek look-alikes,
fullwidth forms, case games, accents, phrases run together), inside ordinary sentences, and
streamed with random cuts. Must-not-match rows: the classic Scunthorpe words (also disguised the
same ways) and plain prose. The lexical layer has to find nearly all of the first and none of the
second.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from faker import Faker

from guard.detectors.lexical import LexicalScanner, load_blocklists
from guard.types import Finding

from ._obfuscate import OBFUSCATIONS

BLOCKLISTS = Path(__file__).resolve().parents[2] / "policies" / "blocklists"

TEMPLATES = (
    "Honestly, {x}.",
    "I told him {x} and left.",
    '"{x}" is what they wrote in the chat',
    "{x}!",
    "Well... {x}, right?",
    "(quote: {x})",
)

SCUNTHORPE = (
    "assassin", "Scunthorpe", "cocktail", "therapist", "grape", "analysis", "skill", "class",
    "classic", "passage", "bass", "Essex", "Sussex", "Middlesex", "cumulative", "cucumber",
    "specialist", "Dickens", "peacock", "Hancock", "cockpit", "shuttlecock", "button",
    "buttress", "arsenal", "assess", "assume", "compass", "harass", "embarrass", "snigger",
    "niggardly", "shiitake", "title", "canal", "banal", "analyst", "skillet", "killer whale",
    "Kill Bill", "rapeseed", "drape", "scrape", "therapy", "spice", "pussycat", "hello kitty",
    "cocker spaniel", "circumstance", "document", "Penistone", "Cockburn", "Lightwater",
    "mishit", "cookbook", "class assignment", "pass the salt", "a glass of water",
    "methodology", "bombastic", "pipeline", "homemade", "shitake",
)


def _disguise_all(rng: random.Random, word: str) -> list[tuple[str, str]]:
    return [(name, fn(word, rng)) for name, fn in sorted(OBFUSCATIONS.items())]


def _stream(scanner: LexicalScanner, text: str, rng: random.Random) -> set[Finding]:
    """Scan growing prefixes (random cuts) and collect what each scan reports as settled."""
    found: set[Finding] = set()
    cut = 0
    while cut < len(text):
        cut = min(len(text), cut + rng.randint(1, 12))
        found.update(scanner.scan(text[:cut], cut == len(text)).findings)
    return found


@pytest.fixture(scope="module")
def scanner() -> LexicalScanner:
    return LexicalScanner(load_blocklists(BLOCKLISTS))


def test_disguised_terms_are_found(scanner: LexicalScanner) -> None:
    rng = random.Random(20240607)
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    misses: list[str] = []
    numeric: list[str] = []
    for term in scanner.terms:
        for name, disguised in _disguise_all(rng, term.text):
            text = rng.choice(TEMPLATES).format(x=disguised)
            found = _stream(scanner, text, rng)
            if any(w.isdigit() for w in disguised.split()):
                # A word written wholly in digits ("h0w 70 m4k3", "411") is read as a number, or
                # "455 points" would be an insult: such disguises are counted apart.
                numeric.append(text)
                continue
            totals[name] += 1
            if any(f.label == term.label for f in found):
                hits[name] += 1
            else:
                misses.append(f"{name}: {text!r}")
    rate = sum(hits.values()) / sum(totals.values())
    per_kind = {name: hits[name] / totals[name] for name in totals}
    assert sum(totals.values()) >= 1500 and len(numeric) < 0.02 * sum(totals.values())
    assert rate >= 0.985, (rate, misses[:20])
    assert min(per_kind.values()) >= 0.95, (per_kind, misses[:20])


def test_scunthorpe_words_and_prose_are_not_flagged(scanner: LexicalScanner) -> None:
    rng = random.Random(7)
    fake = Faker("en_US")
    fake.seed_instance(7)
    rows = [t.format(x=w) for w in SCUNTHORPE for t in TEMPLATES]
    for word in SCUNTHORPE:
        # Disguising an innocent word must not make it guilty (spacing aside: a spelled-out
        # "a s s e s s" is covered by the test below).
        for name, disguised in _disguise_all(rng, word):
            if name != "spaced":
                rows.append(rng.choice(TEMPLATES).format(x=disguised))
    rows.extend(fake.paragraph(nb_sentences=5) for _ in range(600))
    false_positives = [
        (row, [f.label for f in found]) for row in rows if (found := _stream(scanner, row, rng))
    ]
    assert len(rows) >= 1000
    assert false_positives == []


def test_spelled_out_innocent_words_are_not_flagged(scanner: LexicalScanner) -> None:
    rows = ["c l a s s", "a.s.s.e.s.s", "s-k-i-l-l-e-t", "g r a p e", "t h e r a p i s t",
            "c o c k t a i l", "b a s s"]
    assert [r for r in rows if scanner.scan(f"Spell it: {r}.", True).findings] == []

"""The lexical layer: blocklisted words and phrases, found through obfuscation, in one pass.

Terms and text meet in the projection of ``guard.detectors.normalize`` (canonical letters, no
separators), where one Aho–Corasick automaton finds every term in time linear in the text. A raw
hit is only a candidate; the word structure decides (this is the Scunthorpe guard):

* a term starts at the start of a word and ends at the end of one ("skill", "class", "grape",
  "cocktail" hold "kill", "ass", "rape", "cock" only inside a word), unless its blocklist line asks
  for a wildcard (``*term``: may start inside a word; ``term*``: may end inside one, as in
  "fuck*" for "fucking");
* inside a match, a word break of the text is allowed only where the term has one ("kill
  yourself", also written "kill.yourself") or between two one-letter words (spaced-out
  "k i l l", "k-i-l-l"); so "a ss" or "an al" never spell a term, while a missing break
  ("killyourself") is fine;
* a spelled-out match must not be the middle of a longer spelled-out word ("c l a s s");
* a match may span at most ``max_span`` original characters, which bounds both the hold-back and
  the left context a later scan needs.

Blocklists are data: ``policies/blocklists/<category>.txt``, one term or phrase per line, ``#``
comments, an optional ``| weight`` (the finding's score, default 1.0).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import ahocorasick

from guard.detectors.normalize import AMBIGUOUS, RADIUS, Projection, fold_char, project
from guard.errors import ConfigError
from guard.types import CATEGORIES, Finding, ScanResult

#: Longest stretch of original text (in characters) one match may cover. Spaced-out phrases such as
#: "h o w  t o  m a k e  a  p i p e  b o m b" fit; a match stretched further is not reported.
MAX_SPAN: Final = 128

#: Positions of a term's i/l letters that are also tried as the ambiguous "1"/"|" of the text. The
#: variants double per position, so very long phrases expand only their first ones.
MAX_AMBIGUOUS_EXPANSIONS: Final = 10

_SLUG: Final = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Term:
    """One blocklist entry.

    ``prefix_wild``: the term may start inside a word (``*term`` in the file); ``suffix_wild``: it
    may end inside one (``term*``). Use them only for terms that are never innocent substrings.
    """

    text: str
    category: str
    weight: float = 1.0
    prefix_wild: bool = False
    suffix_wild: bool = False

    @property
    def label(self) -> str:
        """Stable id for findings and evidence: ``category:words_joined_by_underscores``."""
        return f"{self.category}:{_SLUG.sub('_', self.text.lower()).strip('_')}"


def parse_term(line: str, category: str) -> Term | None:
    """Parse one blocklist line (``None`` for blanks and comments)."""
    body = line.split("#", 1)[0].strip()
    if not body:
        return None
    weight = 1.0
    if "|" in body:
        body, _, raw_weight = body.partition("|")
        body = body.strip()
        try:
            weight = float(raw_weight)
        except ValueError as exc:
            raise ConfigError(f"blocklist {category}: bad weight in {line.strip()!r}") from exc
        if not 0.0 < weight <= 1.0:
            raise ConfigError(f"blocklist {category}: weight must be in (0, 1]: {line.strip()!r}")
    prefix_wild = body.startswith("*")
    suffix_wild = body.endswith("*")
    text = " ".join(body.strip("*").split())
    if not text:
        raise ConfigError(f"blocklist {category}: empty term in {line.strip()!r}")
    return Term(text, category, weight, prefix_wild, suffix_wild)


def load_blocklists(directory: str | Path) -> dict[str, list[Term]]:
    """Read every ``<category>.txt`` in ``directory``; the file name must be a harm category."""
    root = Path(directory)
    lists: dict[str, list[Term]] = {}
    for path in sorted(p for p in root.glob("*.txt") if not p.name.startswith(".") and p.is_file()):
        category = path.stem
        if category not in CATEGORIES:
            raise ConfigError(f"blocklist {path.name}: unknown category {category!r}")
        terms: list[Term] = []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"blocklist {path.name}: cannot read it as UTF-8 text: {exc}") from None
        for line in text.splitlines():
            term = parse_term(line, category)
            if term is not None:
                terms.append(term)
        lists[category] = terms
    if not lists:
        raise ConfigError(f"no blocklists (*.txt) in {root}")
    return lists


def term_key(text: str) -> tuple[str, frozenset[int]]:
    """A term's canonical letters and the letter positions where a new word begins."""
    letters: list[str] = []
    breaks: set[int] = set()
    for ch in text:
        folded = fold_char(ch)
        if any(c.isdigit() for c in folded):
            raise ConfigError(f"blocklist term {text!r}: write terms in letters (no digits)")
        if folded.isalpha():
            letters.append(folded)
        elif folded and letters:
            breaks.add(len("".join(letters)))
    key = "".join(letters)
    if not key:
        raise ConfigError(f"blocklist term {text!r} has no letters")
    return key, frozenset(b for b in breaks if 0 < b < len(key))


def _inside_spelling(proj: Projection, start: int, stop: int, term: Term) -> bool:
    """Whether a match is only part of a longer spelled-out word ("c l a s s", "a s s e s s").

    A match that begins (ends) with a one-letter word must not continue a run of one-letter
    words before (after) it; the English one-letter words "a" and "I" may precede one. A wildcard
    end may continue, spelled out as in a word ("f u c k i n g" as "fucking" for ``fuck*``).
    """
    single = proj.single
    if (not term.prefix_wild and single[start] and start > 0 and single[start - 1]
            and proj.text[start - 1] not in "ai1"):
        return True
    return not term.suffix_wild and single[stop - 1] and stop < len(single) and single[stop]


def _variants(key: str) -> Iterable[str]:
    """The key with every subset of its first i/l letters written as the ambiguous symbol."""
    slots = [i for i, c in enumerate(key) if c in "il"][:MAX_AMBIGUOUS_EXPANSIONS]
    for mask in itertools.product((False, True), repeat=len(slots)):
        chars = list(key)
        for pos, use in zip(slots, mask):
            if use:
                chars[pos] = AMBIGUOUS
        yield "".join(chars)


@dataclass(frozen=True, slots=True)
class _Compiled:
    term: Term
    length: int
    breaks: frozenset[int]


class LexicalScanner:
    """Blocklist matcher over normalised text, meeting the streaming contract of ``Scanner``.

    ``scan`` is pure and linear in the text. It reports only settled findings (those starting
    before ``stable_until``); with ``final=False`` it holds back the unfinished word's last
    ``RADIUS`` characters and any tail that is still a proper prefix of a term (so a phrase's
    first words wait until the phrase completes or diverges).

    ``context_chars``: the released text a later scan must see before its first new character for
    its findings to equal those of a scan from the beginning.
    """

    def __init__(
        self,
        blocklists: Mapping[str, Sequence[Term]],
        *,
        name: str = "lexical",
        max_span: int = MAX_SPAN,
    ) -> None:
        self.name = name
        self.max_span = max_span
        self.context_chars = max_span + 2 * RADIUS
        compiled: list[_Compiled] = []
        seen: set[tuple[str, str]] = set()
        by_key: dict[str, list[int]] = {}
        prefixes: set[str] = set()
        wild_prefixes: set[str] = set()
        for category, terms in sorted(blocklists.items()):
            for term in terms:
                if term.category != category:
                    raise ConfigError(f"term {term.text!r} filed under {category!r}")
                key, breaks = term_key(term.text)
                if (category, key) in seen:
                    continue
                seen.add((category, key))
                index = len(compiled)
                compiled.append(_Compiled(term, len(key), breaks))
                for variant in _variants(key):
                    by_key.setdefault(variant, []).append(index)
                    for cut in range(1, len(variant)):
                        prefixes.add(variant[:cut])
                        if term.prefix_wild:
                            wild_prefixes.add(variant[:cut])
        if not compiled:
            raise ConfigError("lexical scanner needs at least one term")
        automaton = ahocorasick.Automaton()
        for key, indices in by_key.items():
            automaton.add_word(key, tuple(indices))
        automaton.make_automaton()
        self._terms: tuple[_Compiled, ...] = tuple(compiled)
        self._automaton = automaton
        self._prefixes = frozenset(prefixes)
        self._wild_prefixes = frozenset(wild_prefixes)
        self._max_key = max(len(k) for k in by_key)

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs: object) -> LexicalScanner:
        return cls(load_blocklists(directory), **kwargs)  # type: ignore[arg-type]

    @property
    def terms(self) -> tuple[Term, ...]:
        return tuple(c.term for c in self._terms)

    def scan(self, text: str, final: bool) -> ScanResult:
        proj = project(text, final)
        certain = proj.certain_letters()
        stable = len(text) if final else self._stable_until(proj, certain)
        findings: list[Finding] = []
        for end, indices in self._automaton.iter(proj.text):
            stop = end + 1
            if stop > certain:
                continue
            for index in indices:
                entry = self._terms[index]
                start = stop - entry.length
                if not self._accepts(proj, entry, start, stop):
                    continue
                if not final and stop == certain and proj.single[stop - 1]:
                    # Ends in spelled-out letters: the next word decides (see _inside_spelling).
                    stable = min(stable, proj.origin[start])
                    continue
                if _inside_spelling(proj, start, stop, entry.term):
                    continue
                term = entry.term
                findings.append(Finding(proj.origin[start], proj.origin[stop - 1] + 1,
                                        term.category, term.label, term.weight, self.name))
        findings = [f for f in findings if f.start < stable]
        findings.sort(key=lambda f: (f.start, f.end, f.label))
        return ScanResult(tuple(findings), stable)

    def _stable_until(self, proj: Projection, certain: int) -> int:
        """Start of the earliest settled-letter tail that a term could still continue from."""
        frontier = proj.certain_until
        for p in range(max(0, certain - self._max_key + 1), certain):
            # A continuation ends at or after ``frontier``; past max_span it would not count.
            if frontier + 1 - proj.origin[p] > self.max_span:
                continue
            fragment = proj.text[p:certain]
            if fragment in self._wild_prefixes or (
                proj.word_start[p] and fragment in self._prefixes
            ):
                return proj.origin[p]
        return frontier

    def _accepts(self, proj: Projection, entry: _Compiled, start: int, stop: int) -> bool:
        term = entry.term
        if not term.prefix_wild and not proj.word_start[start]:
            return False
        if not term.suffix_wild and not proj.word_end[stop - 1]:
            return False
        if proj.origin[stop - 1] + 1 - proj.origin[start] > self.max_span:
            return False
        word = proj.word
        single = proj.single
        for p in range(start + 1, stop):
            if word[p] != word[p - 1] and (p - start) not in entry.breaks:
                if not (single[p] and single[p - 1]):
                    return False
        return True

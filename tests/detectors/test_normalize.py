"""Normalisation: canonical letters with offsets, leetspeak in context, and the locality bound
that the streaming contract of the lexical layer rests on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.detectors.normalize import (
    AMBIGUOUS,
    NUMBER,
    RADIUS,
    fold_char,
    normalize,
    project,
)

# Characters that exercise every decision: letters, leet digits and symbols, separators,
# format characters, combining marks, confusables, fullwidth, ligatures.
ALPHABET = "kilsa IL015$@!|+.-_ \n\u200b\u0301іаоｋﬁß"
texts = st.text(alphabet=ALPHABET, max_size=60)


class TestFoldChar:
    @pytest.mark.parametrize(
        ("ch", "folded"),
        [
            ("K", "k"),
            ("ｋ", "k"),  # fullwidth, via NFKD
            ("і", "i"),  # Cyrillic
            ("а", "a"),
            ("ο", "o"),  # Greek omicron
            ("é", "e"),  # diacritic dropped
            ("ﬁ", "fi"),  # ligature
            ("ß", "ss"),
            ("\u200b", ""),  # zero-width space vanishes
            ("\u00ad", ""),  # soft hyphen
            ("\u0301", ""),  # combining acute
            ("𝐤", "k"),  # mathematical bold
        ],
    )
    def test_canonical_form(self, ch: str, folded: str) -> None:
        assert fold_char(ch) == folded


class TestProject:
    @pytest.mark.parametrize(
        ("text", "letters"),
        [
            ("k.i.l.l", "kill"),
            ("k-i_l l", "kill"),
            ("a55", "ass"),  # short digit run touching a letter: leetspeak
            ("k1ll", f"k{AMBIGUOUS}ll"),  # 1 may be i or l
            ("ki||", f"ki{AMBIGUOUS}{AMBIGUOUS}"),
            ("kIll", f"k{AMBIGUOUS}ll"),  # capital I inside a lower-case word
            ("KILL", "kill"),
            ("sh!t", "shit"),
            ("hi!", "hi"),  # trailing ! is punctuation
            ("@ss", "ass"),
            ("a$$", "ass"),
            ("$5", NUMBER),  # a price, not leetspeak
            ("2024", NUMBER * 4),  # a number stays a number
            ("a55555", "a" + NUMBER * 5),  # too long a run for leetspeak
            ("455", NUMBER * 3),  # a number, not "ass"
            ("make @ bomb", "makeabomb"),
            ("k 1 l l", f"k{AMBIGUOUS}ll"),  # a lone digit in spaced-out letters
            ("k\u200bill", "kill"),
        ],
    )
    def test_letters(self, text: str, letters: str) -> None:
        assert project(text).text == letters

    def test_offsets_point_at_original_characters(self) -> None:
        text = "x ｋ\u200bі.l-l"
        proj = project(text)
        assert proj.text == "xkill"
        assert [text[i] for i in proj.origin] == ["x", "ｋ", "і", "l", "l"]

    def test_word_structure(self) -> None:
        proj = project("k i ll skill")
        assert proj.text == "killskill"
        assert proj.word_start == (True, True, True, False, True, False, False, False, False)
        assert proj.word_end == (True, True, False, True, False, False, False, False, True)
        assert proj.single[:3] == (True, True, False)

    def test_unfinished_word_is_uncertain(self) -> None:
        assert project("hello wor", final=False).certain_until == 6
        assert project("hello world ", final=False).certain_until == 12
        assert project("hello wor", final=True).certain_until == 9
        # "!" at the end may still become a letter ("sh!t"), so the word stays open.
        assert project("hello sh!", final=False).certain_until == 6
        # A long word is uncertain only in its last RADIUS characters.
        long = "x" * 40
        assert project(long, final=False).certain_until == 40 - RADIUS

    @settings(max_examples=300, deadline=None)
    @given(texts, texts)
    def test_certain_part_never_changes(self, prefix: str, more: str) -> None:
        """What a prefix projection calls certain is what the longer text projects to."""
        part = project(prefix, final=False)
        whole = project(prefix + more, final=True)
        k = part.certain_letters()
        assert whole.text[:k] == part.text[:k]
        assert whole.origin[:k] == part.origin[:k]
        for field in ("word_start", "word_end", "single"):
            assert getattr(whole, field)[:k] == getattr(part, field)[:k], field
        assert project(prefix + more, final=False).certain_until >= part.certain_until

    @settings(max_examples=300, deadline=None)
    @given(texts, st.integers(min_value=0, max_value=60))
    def test_decisions_are_local(self, text: str, cut: int) -> None:
        """Projecting from a later start agrees beyond RADIUS characters from it."""
        cut = min(cut, len(text))
        whole = project(text)
        tail = project(text[cut:])

        def view(p: object, shift: int) -> list[tuple[int, str, bool, bool, bool]]:
            return [
                (o + shift, c, s, e, g)
                for o, c, s, e, g in zip(p.origin, p.text, p.word_start, p.word_end, p.single)  # type: ignore[attr-defined]
                if o + shift >= cut + RADIUS
            ]

        assert view(tail, cut) == view(whole, 0)


class TestNormalize:
    def test_keeps_words_and_maps_offsets(self) -> None:
        text = "K.i.l.l  ｙｏｕ\u200b!"
        norm = normalize(text)
        assert norm.text == "k i l l you "
        assert all(0 <= i < len(text) for i in norm.origin)
        assert len(norm.origin) == len(norm.text)

    def test_numbers_stay_digits(self) -> None:
        assert normalize("in 2024 a55").text == "in 2024 ass"

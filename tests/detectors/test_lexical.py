"""The lexical layer: obfuscation-proof matching, the Scunthorpe guard, blocklist files and the
streaming contract."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guard.detectors.base import Scanner
from guard.detectors.lexical import LexicalScanner, Term, load_blocklists, parse_term
from guard.errors import ConfigError
from guard.types import CATEGORIES

from ._contract import check_contract
from ._obfuscate import OBFUSCATIONS

BLOCKLISTS = Path(__file__).resolve().parents[2] / "policies" / "blocklists"


@pytest.fixture(scope="module")
def scanner() -> LexicalScanner:
    return LexicalScanner(load_blocklists(BLOCKLISTS))


def labels(scanner: LexicalScanner, text: str) -> list[str]:
    return [f.label for f in scanner.scan(text, True).findings]


class TestMatching:
    @pytest.mark.parametrize(
        "text",
        [
            "k i l l yourself",
            "k.i.l.l yourself",
            "k-i-l-l yourself",
            "k_i_l_l yourself",
            "k1ll yourself",
            "KILL YOURSELF",
            "ｋｉｌｌ yourself",
            "kіll yourself",  # Cyrillic і
            "k\u200bill yourself",
            "kill   yourself",
            "kill.yourself",
            "KillYourself",
            "you should k i l l y o u r s e l f",
        ],
    )
    def test_obfuscated_phrase_matches(self, scanner: LexicalScanner, text: str) -> None:
        assert "violence:kill_yourself" in labels(scanner, text)

    @pytest.mark.parametrize(
        ("text", "label"),
        [
            ("what a b1tch", "profanity:bitch"),
            ("sh!t happens", "profanity:shit"),
            ("you a55hole", "profanity:asshole"),
            ("@ss", "profanity:ass"),
            ("fucking hell", "profanity:fuck"),
            ("motherfucker", "profanity:motherfucker"),
            ("KYS", "self_harm:kys"),
            ("k y s", "self_harm:kys"),
            ("I'll kill you", "violence:i_ll_kill_you"),
            ("how to make a pipe bomb", "dangerous:how_to_make_a_pipe_bomb"),
            ("h0w t0 m4ke a p1pe b0mb", "dangerous:how_to_make_a_pipe_bomb"),
            ("ki||", None),  # "kill" alone is not a term
            ("a k y s", "self_harm:kys"),  # "a" is a word, not part of the spelling
            # a wildcard end continues spelled out as it does in a word ("fuck*" matches "fucking")
            ("you f u c k i n g idiot", "profanity:fuck"),
            ("f.u.c.k.i.n.g", "profanity:fuck"),
            ("b i t c h e s", "profanity:bitch"),
        ],
    )
    def test_terms(self, scanner: LexicalScanner, text: str, label: str | None) -> None:
        found = labels(scanner, text)
        if label is None:
            assert found == []
        else:
            assert label in found

    @pytest.mark.parametrize(
        "text",
        [
            "assassin", "Scunthorpe", "cocktail", "therapist", "grape", "analysis", "skill",
            "class", "classic", "passage", "Essex", "Middlesex", "cumulative", "specialist",
            "Dickens", "peacock", "cockpit", "button", "arsenal", "assess", "compass", "harass",
            "snigger", "niggardly", "shiitake", "title", "canal", "banal", "skillet", "Kill Bill",
            "methods to cook methane", "a ss", "an al", "as s", "c l a s s", "a.s.s.e.s.s",
            "s k i l l", "Milford Haven", "water milfoil", "Dick picked up the phone", "Dick Pickering",
            "colour #fa6", "colour #f49", "hex 0xfa6", "#a55 background", "Galaxy A55", "A55 phone",
        ],
    )
    def test_scunthorpe(self, scanner: LexicalScanner, text: str) -> None:
        assert labels(scanner, f"The {text} was fine.") == []

    @pytest.mark.parametrize(("text", "label"), [
        ("you f4g", "hate:fag"), ("you a55", "profanity:ass"), ("sh1t", "profanity:shit"),
        ("milfs", "sexual:milfs"), ("dick pics", "sexual:dick_pics"), ("dick pictures", "sexual:dick_picture"),
        # a code ends with its digits: letters after them make the word leetspeak again
        ("shut up N1663R", "hate:nigger"), ("you A55HOLE", "profanity:asshole"), ("nice B00BS", "sexual:boobs"),
        ("you are a #b1tch", "profanity:bitch"), ("#a55hole", "profanity:asshole"),
    ])
    def test_codes_spare_leetspeak_that_is_not_one(self, scanner: LexicalScanner, text: str, label: str) -> None:
        """A colour (``#fa6``) or a model number (``A55``) keeps its digits; lower-case leet does not."""
        assert label in labels(scanner, f"well {text} then")

    def test_offsets_are_original(self, scanner: LexicalScanner) -> None:
        text = "Well, k.\u200b1.l.l   yourself!"
        (finding,) = scanner.scan(text, True).findings
        assert text[finding.start:finding.end] == "k.\u200b1.l.l   yourself"
        assert finding.category == "violence"
        assert finding.detector == "lexical"
        assert finding.score == 1.0

    def test_weight_is_score(self, scanner: LexicalScanner) -> None:
        (finding,) = scanner.scan("what an ass", True).findings
        assert finding.score == 0.5

    def test_is_a_scanner(self, scanner: LexicalScanner) -> None:
        assert isinstance(scanner, Scanner)
        assert scanner.context_chars >= scanner.max_span


class TestStableUntil:
    @pytest.mark.parametrize(
        ("text", "stable"),
        [
            ("Hello world ", 12),  # nothing can grow into a term
            ("Hello wor", 6),  # the unfinished word waits
            ("You should kill ", 11),  # "kill" may become "kill yourself"
            ("You should kill your", 11),
            ("You should kill time. ", 22),  # diverged
            ("how to ", 0),  # may become "how to make a pipe bomb"
        ],
    )
    def test_holds_only_what_may_grow(self, scanner: LexicalScanner, text: str, stable: int) -> None:
        assert scanner.scan(text, False).stable_until == stable

    def test_match_at_the_end_waits_for_the_word_to_end(self, scanner: LexicalScanner) -> None:
        held = scanner.scan("what the bitch", False)
        assert held.findings == () and held.stable_until == 9
        done = scanner.scan("what the bitch.", False)
        assert [f.label for f in done.findings] == ["profanity:bitch"]

    def test_final_releases_everything(self, scanner: LexicalScanner) -> None:
        result = scanner.scan("You should kill", True)
        assert result.stable_until == len("You should kill")


class TestBlocklists:
    def test_shipped_lists_cover_every_category(self) -> None:
        lists = load_blocklists(BLOCKLISTS)
        assert set(lists) == set(CATEGORIES)
        assert all(len(terms) >= 10 for terms in lists.values())

    def test_parse_line(self) -> None:
        assert parse_term("  # comment", "profanity") is None
        assert parse_term("", "profanity") is None
        term = parse_term("fuck*   | 0.9  # trailing comment", "profanity")
        assert term == Term("fuck", "profanity", 0.9, prefix_wild=False, suffix_wild=True)
        assert parse_term("*fuck*", "profanity") == Term("fuck", "profanity", 1.0, True, True)

    @pytest.mark.parametrize("line", ["ass | x", "ass | 1.5", "ass | 0", "* | 0.5"])
    def test_bad_lines_are_rejected(self, line: str) -> None:
        with pytest.raises(ConfigError):
            parse_term(line, "profanity")

    def test_unknown_category_is_rejected(self, tmp_path: Path) -> None:
        (tmp_path / "rudeness.txt").write_text("meanie\n")
        with pytest.raises(ConfigError, match="unknown category"):
            load_blocklists(tmp_path)

    def test_digits_in_terms_are_rejected(self) -> None:
        with pytest.raises(ConfigError):
            LexicalScanner({"profanity": [Term("b1tch", "profanity")]})

    def test_wildcards(self) -> None:
        scanner = LexicalScanner({
            "profanity": [Term("fuck", "profanity", suffix_wild=True, prefix_wild=True),
                          Term("shit", "profanity", suffix_wild=True)]
        })
        assert [f.label for f in scanner.scan("motherfuckers", True).findings] == ["profanity:fuck"]
        assert [f.label for f in scanner.scan("shitty", True).findings] == ["profanity:shit"]
        assert scanner.scan("bullshit", True).findings == ()


# -- the streaming contract, on generated text ---------------------------------------------

WORDS = (
    "hello", "the", "you", "skill", "class", "assassin", "grape", "Scunthorpe", "analysis",
    "kill", "yourself", "i", "will", "a", "ass", "kys", "how", "to", "make", "pipe", "bomb",
    "2024", "$5", "k1ll", "a55", "sh!t", "bitch", "hi!", "C++", "fucking", "#fa6", "0xf4g", "A55", "Ab55",
)
SEPARATORS = (" ", " ", " ", "", ".", "-", "_", "\n", "  ", "!", ", ", "\u200b", "|")
ALPHABET = "kilsyouabt 1!5$@|.\u200b\u0301іｋ"
LONG_RUNS = ("a" * 150, "kill" * 40, "k i l l " * 20, "$" * 12, "1" * 30, "\u200b" * 10 + "kys")


@st.composite
def lexical_texts(draw: st.DrawFn) -> str:
    rng = random.Random(draw(st.integers(0, 2**32)))
    phrases = ("kill yourself", "i will kill you", "kys", "how to make a pipe bomb", "bitch", "ass")

    def obfuscated() -> str:
        phrase = rng.choice(phrases)
        return OBFUSCATIONS[rng.choice(sorted(OBFUSCATIONS))](phrase, rng)

    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(WORDS),
                st.builds(obfuscated),
                st.text(alphabet=ALPHABET, max_size=6),
                st.sampled_from(LONG_RUNS),
            ),
            max_size=16,
        )
    )
    seps = [draw(st.sampled_from(SEPARATORS)) for _ in parts]
    return "".join(p + s for p, s in zip(parts, seps))


@pytest.mark.parametrize("text", ["so sh\u115fit happens", "so sh\x01it happens", "so sh\x7fit", "so sh\x9fit"])
def test_letters_and_controls_that_render_as_nothing_hide_no_word(scanner: LexicalScanner, text: str) -> None:
    assert "profanity:shit" in labels(scanner, text)


def test_a_chain_of_leet_symbols_does_not_carry_one_reading_down_its_length(scanner: LexicalScanner) -> None:
    """Each symbol read its resolved left neighbour: "a!$!$…hit" resolved differently when a chunk
    cut the chain, so what was masked depended on the cuts."""
    text = "a" + "!$" * 100 + "hit is fine."
    for k in (5, 8, 13, 160):
        check_contract(scanner, text, k, k + 53)


class TestStreamingContract:
    @settings(max_examples=400, deadline=None)
    @given(lexical_texts(), st.integers(0, 400), st.integers(0, 400))
    # Found by this test (stop 23): zero-width spaces after "kys" pushed it past the hold-back,
    # though appended letters still join it ("kys" + ZWSP×10 + "kys" reads "kyskys").
    @example(text="\u200b" * 10 + "kys" + "\u200b" * 10 + "kys hello how to m@ke a p!pe bomb ", k=21, k2=21)
    def test_contract(self, scanner: LexicalScanner, text: str, k: int, k2: int) -> None:
        check_contract(scanner, text, k, k2)

    @settings(max_examples=100, deadline=None)
    @given(lexical_texts(), st.integers(0, 400))
    def test_long_left_context(self, scanner: LexicalScanner, text: str, k: int) -> None:
        """The rescan property with more text before it than the context covers."""
        padding = "Some earlier, released text that the scanner no longer sees. " * 5
        check_contract(scanner, padding + text, len(padding) + k, len(padding) + 2 * k)

    @settings(max_examples=100, deadline=None)
    @given(lexical_texts())
    def test_hold_back_is_bounded(self, scanner: LexicalScanner, text: str) -> None:
        """Nothing is held further back than the longest possible match (plus a word's end)."""
        result = scanner.scan(text, False)
        assert len(text) - result.stable_until <= scanner.max_span + 8

"""The invariant of the whole design, over the real fast layers and a fake semantic layer:
however a stream is cut, the released text is the same as for the whole text in one chunk, and it
never shows a character of a PII entity the policy redacts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.assemble import fast_scanners
from guard.messages import Chunk
from guard.models.tokenizer import WindowTokenizer
from guard.pipeline import Pipeline
from guard.policy.load import PolicySet
from guard.testing import FakeDetector

POLICIES = Path(__file__).resolve().parents[1] / "policies"

ENTITIES = [
    "maria.gomez@example.com", "j.doe+news@mail.example.org", "+1 415 555 0132", "+44 20 7946 0958",
    "4111 1111 1111 1111", "5500-0000-0000-0004", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
    "536-90-4399", "192.168.10.42", "2001:db8:85a3::8a2e:370:7334", "AKIAIOSFODNN7EXAMPLE",
    "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
    # national IDs (the SIN and the bare Aadhaar with the cue word they need)
    "2345 6789 0124", "Aadhaar 353251138839", "SIN 667 533 533", "12.345.678-Z", "X-1234567-L",
    "1 72 02 32 013 121 26", "RSSMRA85T10A562S",
]
WORDS = ["the", "answer", "is", "simple", ",", ".", "please", "contact", "order", "A-20931",
         "version", "1.2.3", "on", "2024-05-01", "shit", "k i l l yourself", "Paris", "café",
         "hateword", "ISBN 978-3-16-148410-0", "12345678901", "call", "at"]

scanners = fast_scanners(POLICIES)
tokenizer = WindowTokenizer.from_file()


def make_pipeline(policy: str) -> Pipeline:
    ps = PolicySet.load(POLICIES)
    return Pipeline(policies=lambda: ps, scanners=scanners,
                    semantic=FakeDetector({"hate": ["hateword"]}), tokenizer=tokenizer)


async def released(policy: str, pieces: list[str]) -> tuple[str, str]:
    p = make_pipeline(policy)
    state, out, last = None, [], "allow"
    for i, t in enumerate(pieces):
        c = Chunk(stream_id="s", seq=i, text=t, final=i == len(pieces) - 1, policy=policy)
        (o,) = await p.process([(state, c)])
        assert o.error is None, o.error
        state = o.state
        out += [d.text for d in o.decisions]
        last = o.decisions[-1].action if o.decisions else last
    return "".join(out), last


def cut(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({c for c in cuts if 0 < c < len(text)})
    edges = [0, *bounds, len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:])] or [""]


# An entity stands between words: digit-bearing tokens glued by single spaces read as one run
# (a known limit of the PII layer, documented there); the property is about cutting, not that.
tokens = st.one_of(st.sampled_from(WORDS), st.sampled_from(ENTITIES).map(lambda e: f"at {e} please"))


@pytest.mark.parametrize("policy", ["default", "strict", "pii-only"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(tokens, min_size=1, max_size=18),
       seps=st.lists(st.sampled_from([" ", " ", "\n", ", ", ". "]), min_size=25, max_size=25),
       cuts=st.lists(st.integers(0, 700), max_size=40), one_char=st.booleans())
def test_released_text_does_not_depend_on_cuts(policy, parts, seps, cuts, one_char):
    text = "".join(p + s for p, s in zip(parts, seps))
    whole, whole_action = asyncio.run(released(policy, [text]))
    pieces = list(text) if one_char else cut(text, cuts)
    streamed, action = asyncio.run(released(policy, pieces))
    assert streamed == whole
    assert (action == "block") == (whole_action == "block")
    for e in ENTITIES:
        if any(e in p for p in parts):
            assert e not in streamed
    assert "@" not in streamed


# -- private keys: the one entity with no length bound ---------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@st.composite
def keyed_texts(draw: st.DrawFn) -> tuple[str, str, str, bool]:
    """(prefix, key block, suffix, terminated): a PEM-like block of any length between prose."""
    kind = draw(st.sampled_from(["RSA ", "EC ", "", "OPENSSH ", "ENCRYPTED "]))
    width = draw(st.sampled_from([64, 70, 76]))
    rng = draw(st.randoms(use_true_random=False))
    body = "".join(rng.choice(B64) for _ in range(draw(st.integers(1, 3000))))
    lines = [body[i:i + width] for i in range(0, len(body), width)]
    terminated = draw(st.booleans())
    block = f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines)
    if terminated:
        block += f"\n-----END {kind}PRIVATE KEY-----"
    prefix = draw(st.sampled_from(["", "Here is the key you asked for:\n", "Key: "]))
    suffix = draw(st.sampled_from(["\nKeep it safe.", " and that is all.", "\n"])) if terminated else ""
    return prefix, block, suffix, terminated


def chunked(text: str, size: int, cuts: list[int]) -> list[str]:
    return cut(text, cuts) if size == 0 else [text[i:i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("policy", ["pii-only", "default"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keyed=keyed_texts(), size=st.sampled_from([0, 1, 4, 8, 50, 200]),
       cuts=st.lists(st.integers(0, 3300), max_size=60))
def test_private_key_of_any_length_is_masked_however_it_is_cut(policy, keyed, size, cuts):
    prefix, block, suffix, _ = keyed
    text = prefix + block + suffix
    whole, _ = asyncio.run(released(policy, [text]))
    assert whole == prefix + "[PRIVATE_KEY]" + suffix
    streamed, _ = asyncio.run(released(policy, chunked(text, size, cuts)))
    assert streamed == whole


def with_hold_back(policy: str, chars: int) -> PolicySet:
    ps = PolicySet.load(POLICIES)
    spec = ps.select(policy).model_copy(update={"max_hold_back_chars": chars})
    return PolicySet({policy: spec})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keyed=keyed_texts(), hold_back=st.sampled_from([0, 1, 16, 64, 100]),
       size=st.sampled_from([0, 1, 3, 8, 50]), cuts=st.lists(st.integers(0, 3300), max_size=60))
def test_private_key_body_is_never_shown_whatever_the_hold_back(keyed, hold_back, size, cuts):
    # A hold-back shorter than the BEGIN line may show the line's first characters before it is
    # complete (and then no placeholder follows); never a character after it.
    prefix, block, suffix, _ = keyed
    text = prefix + block + suffix
    ps = with_hold_back("pii-only", hold_back)
    p = Pipeline(policies=lambda: ps, scanners=scanners)
    state, out = None, []
    pieces = chunked(text, size, cuts)
    for i, t in enumerate(pieces):
        c = Chunk(stream_id="s", seq=i, text=t, final=i == len(pieces) - 1, policy="pii-only")
        (o,) = asyncio.run(p.process([(state, c)]))
        state = o.state
        out += [d.text for d in o.decisions]
    shown = "".join(out)
    assert shown.startswith(prefix) and shown.endswith(suffix)
    middle = shown[len(prefix):len(shown) - len(suffix)]
    begin = block.split("\n", 1)[0]
    assert middle == "[PRIVATE_KEY]" or (middle and begin.startswith(middle)), middle


# -- text without spaces: judged before it is released ---------------------------------------------

# (no URL: the tokenizer skips a URL with whatever is glued to it, harm included — a limit of
# reading URLs as platform artefacts, not of where windows fall)
RUNS = ["人工智能是计算机科学的一个分支", "，", "。", "日本語のテキストはスペースがありません",
        "ภาษาไทยไม่มีช่องว่าง", "aGVsbG8gd29ybGQgdGhpcyBp", "🦊"]


@pytest.mark.parametrize("policy", ["default", "strict"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.one_of(st.sampled_from(RUNS), st.just("仇恨")), min_size=1, max_size=80),
       spaces=st.booleans(), size=st.sampled_from([0, 1, 4, 8, 50]),
       cuts=st.lists(st.integers(0, 1500), max_size=60))
def test_text_without_spaces_is_judged_before_it_is_released(policy, parts, spaces, size, cuts):
    # "仇恨" ("hatred") stands for harm the semantic layer would catch; before long runs were cut
    # into words the hold-back bound pushed such text out before any window had scored it
    text = (" " if spaces else "").join(parts)
    ps = PolicySet.load(POLICIES)

    def pipeline() -> Pipeline:
        return Pipeline(policies=lambda: ps, scanners=scanners,
                        semantic=FakeDetector({"hate": ["hateword", "仇恨"]}), tokenizer=tokenizer)

    async def stream(pieces: list[str]) -> tuple[str, str]:
        p, state, out, last = pipeline(), None, [], "allow"
        for i, t in enumerate(pieces):
            c = Chunk(stream_id="s", seq=i, text=t, final=i == len(pieces) - 1, policy=policy)
            (o,) = await p.process([(state, c)])
            state = o.state
            out += [d.text for d in o.decisions]
            last = o.decisions[-1].action
            if not (state.final or state.blocked):
                assert state.released <= state.sem_cursor, "released before the semantic layer judged it"
        return "".join(out), last

    whole, whole_action = asyncio.run(stream([text]))
    streamed, action = asyncio.run(stream(chunked(text, size, cuts)))
    assert streamed == whole and action == whole_action
    assert "仇恨" not in streamed
    assert (action == "block") == ("仇恨" in text)


# -- chunks out of order: what a stream releases does not depend on the order they arrive in ---------


@pytest.mark.parametrize("policy", ["default", "strict"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(tokens, min_size=1, max_size=14),
       seps=st.lists(st.sampled_from([" ", "\n", ", ", ". "]), min_size=14, max_size=14),
       cuts=st.lists(st.integers(0, 500), max_size=12), order=st.randoms(use_true_random=False),
       batch=st.integers(1, 4))
def test_released_text_does_not_depend_on_arrival_order(policy, parts, seps, cuts, order, batch):
    # a chunk that fills a gap used to release the held chunks' text before their windows were
    # scored: harm behind a gap reached the user, and its block came one decision too late
    text = "".join(p + s for p, s in zip(parts, seps))
    whole, whole_action = asyncio.run(released(policy, [text]))
    pieces = cut(text, cuts)
    chunks = [Chunk(stream_id="s", seq=i, text=t, final=i == len(pieces) - 1, policy=policy)
              for i, t in enumerate(pieces)]
    arrival = chunks[:]
    order.shuffle(arrival)

    async def stream() -> list:
        p, state, decisions = make_pipeline(policy), None, []
        for k in range(0, len(arrival), batch):
            outs = await p.process([(state, c) for c in arrival[k:k + batch]])
            assert all(o.error is None and not o.rejected for o in outs)
            state = outs[-1].state
            decisions += [d for o in outs for d in o.decisions]
        return decisions

    decisions = asyncio.run(stream())
    assert [d.seq for d in decisions] == list(range(len(chunks)))  # one each, in sequence
    assert "".join(d.text for d in decisions) == whole
    assert (decisions[-1].action == "block") == (whole_action == "block")


@pytest.mark.parametrize("policy, text, at, expected", [
    # an SSN glued to more is none, however long the digit run after it grows (it leaked whole in
    # one-character chunks, read as an SSN only once the run outgrew 80 characters)
    ("pii-only", "536-90-4399/" + "1 " * 35, 41, "536-90-4399/" + "1 " * 35),
    # a card after a short group is masked in a long run as in a short one
    ("pii-only", "12-4111-1111-1111-1111" + " 1" * 30, 54, "12-[CREDIT_CARD]" + " 1" * 30),
    # a control character Python counts as a space, which the tokenizer deletes: the word after it
    # was in no window when a window ended just before it
    ("default", "人工智能是计算机科学的一个分支①\x1fhateword", 17, ""),
    # a card after a three-digit group in a long run (read as a failed SSN and dropped)
    ("pii-only", "x 123-4111-1111-1111-1111" + " 1" * 40, 40, "x 123-[CREDIT_CARD]" + " 1" * 40),
    # an address read back over marks: never further than a local part can reach (the hold-back
    # holds no more), never into a phrase of a script without spaces, never into another address
    ("pii-only", "x" * 70 + "\u0301bob@example.org now", 40, "x" * 70 + "\u0301[EMAIL] now"),
    ("pii-only", "ภาษาไทยไม่มีช่องว่างติดต่อได้ที่somchai@example.com ครับ", 20,
     "ภาษาไทยไม่มีช่องว่างติดต่อได้ที่[EMAIL] ครับ"),
    ("pii-only", "a@example.com\u200bbob@example.org", 16, "[EMAIL]\u200b[EMAIL]"),
    # the shapes LLM answers take: Markdown, CSV rows, Unicode hyphens, numbers glued to CJK
    ("pii-only", "| Bob | **(415) 555-2671** | _bob@corp.io_ |", 17,
     "| Bob | **[PHONE]** | _[EMAIL]_ |"),
    ("pii-only", "name,ssn\nBob,536-22-8726\n", 13, "name,ssn\nBob,[US_SSN]\n"),
    ("pii-only", "Call 415\u2011555\u20112671 or write", 9, "Call [PHONE] or write"),
    ("pii-only", "カード番号4111-1111-1111-1111です", 8, "カード番号[CREDIT_CARD]です"),
    # an address after a long Thai phrase (no spaces, vowel signs are marks), cut in its local part
    ("pii-only", "ที่" * 20 + "john.doe@example.com ok", 66, "ที่" * 20 + "[EMAIL] ok"),
    ("pii-only", "漢" * 62 + "bob.smith@example.comにご連絡ください", 66, "漢" * 62 + "[EMAIL]にご連絡ください"),
])
def test_cases_the_fuzzer_found_release_alike_however_cut(policy, text, at, expected):
    for pieces in ([text], cut(text, [at]), list(text)):
        assert asyncio.run(released(policy, pieces))[0] == expected, len(pieces)


@pytest.mark.parametrize("address", ["mu\u0308ller@gmx.de", "सुरेश@example.com", "mar\u200bia@example.com",
                                     "ma\u00adria@example.com"])
def test_an_address_with_combining_marks_or_invisible_characters_is_masked_whole(address):
    """It was masked from the last mark on: "mü[EMAIL]", "सुरे[EMAIL]", "mar\u200b[EMAIL]"."""
    text = f"Write to {address} today."
    for pieces in ([text], list(text), *(cut(text, [k]) for k in range(1, len(text)))):
        assert asyncio.run(released("pii-only", pieces))[0] == "Write to [EMAIL] today.", pieces


@pytest.mark.parametrize("tail, hidden", [("@victim hateword you", "@victim"),
                                          ("https://evil.example.com/x/hateword-now tail", "evil.example")])
def test_a_word_without_tokens_before_flagged_text_is_blocked_with_it(tail, hidden):
    """Words the tokenizer reads nothing in are cleared as they come, but the latest one waits
    for the window after it: a block of what follows covers the mention, or the link's head."""
    words = "the answer is simple please contact order".split()
    for k in (20, 27, 33):
        text = " ".join(words[i % 7] for i in range(k)) + " " + tail
        for pieces in ([text], list(text)):
            out, action = asyncio.run(released("default", pieces))
            assert action == "block" and hidden not in out, (k, out[-40:])

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

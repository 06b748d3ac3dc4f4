"""Windows fall where the text says, not where the chunks were cut (real MiniLM tokenizer)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard import windowing
from guard.models.tokenizer import WindowTokenizer


@pytest.fixture(scope="module", params=[(False, False), (True, False), (True, True)],
                ids=["plain", "emoji-names", "names-no-artefacts"])
def tok(request) -> WindowTokenizer:
    names, artefacts = request.param
    return WindowTokenizer.from_file(emoji_names=names, platform_artefacts=artefacts)


def plan_all(tok, text: str, cuts: list[int], tokens: int = 16, stride: int = 4):
    """Feed ``text`` in pieces, trimming retained text like the pipeline does."""
    base, buf, cursor, out = 0, "", 0, []
    bounds = sorted({c for c in cuts if 0 < c < len(text)}) + [len(text)]
    pos = 0
    for b in bounds:
        buf += text[pos:b]
        pos = b
        final = b == len(text)
        cursor, planned = windowing.plan(buf, base, cursor, "s", tok, tokens, stride, final)
        out += [(p.new_start, p.window.start, p.window.end, tuple(p.window.input_ids)) for p in planned]
        keep = max(base, cursor - windowing.max_window_chars(tokens) - 1)
        buf, base = buf[keep - base :], keep
    return out, cursor


WORDS = st.sampled_from(["Paris", "is", "the", "capital", "of", "France", "unbelievably",
                         "tokenization", "café", "naïve", "e-mail:", "x@y.com", "1,234.5", "🙂",
                         "supercalifragilistic", "!", "—", "日本", "🔪some🦊", "👳🏾",
                         "👨‍👩‍👧", "@USER", "@bob:", "RT", "URL", "http://t.co/x", "&amp;", "&#128514;",
                         "RTX", "a@b"])


@settings(max_examples=80, deadline=None)
@given(words=st.lists(WORDS, min_size=0, max_size=60),
       seps=st.lists(st.sampled_from([" ", "\n", "  "]), min_size=60, max_size=60),
       cuts=st.lists(st.integers(0, 600), max_size=40))
def test_windows_do_not_depend_on_cuts(tok, words, seps, cuts):
    text = "".join(w + s for w, s in zip(words, seps))
    whole, end = plan_all(tok, text, [])
    pieces, end2 = plan_all(tok, text, cuts)
    assert pieces == whole
    assert end == end2 == len(text)
    # windows cover the text: each new part starts where the previous ended
    starts = [w[0] for w in whole]
    ends = [w[2] for w in whole]
    assert starts == ([0] + ends[:-1] if whole else [])
    assert all(len(w[3]) <= 16 for w in whole)


def test_unfinished_word_is_held(tok):
    cursor, planned = windowing.plan("one two three four five six seven eigh", 0, 0, "s", tok, 16, 4,
                                     final=False)
    assert cursor <= len("one two three four five six seven ")
    assert all(p.window.end <= cursor for p in planned)

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
    """Feed ``text`` in pieces, retaining what the pipeline retains (``retain_from``): the windows,
    the final cursor, and the cursor's lag behind the text seen after each piece."""
    base, buf, cursor, out, lags = 0, "", 0, [], []
    bounds = sorted({c for c in cuts if 0 < c < len(text)}) + [len(text)]
    pos = 0
    for b in bounds:
        buf += text[pos:b]
        pos = b
        final = b == len(text)
        cursor, planned = windowing.plan(buf, base, cursor, "s", tok, tokens, stride, final)
        out += [(p.new_start, p.window.start, p.window.end, tuple(p.window.input_ids), p.unread_until)
                for p in planned]
        lags.append(b - cursor)
        keep = max(base, windowing.retain_from(cursor, tokens))
        buf, base = buf[keep - base :], keep
    return out, cursor, lags


def assert_tiled(tok, text: str, windows) -> None:
    """Each window's new text starts where the one before ended, or after words the tokenizer
    gives nothing for (a URL, an @mention, zero-width characters), which no window needs to read."""
    prev = 0
    for new_start, _, end, *_ in windows:
        assert new_start >= prev and len(tok.encode(text[prev:new_start]).ids) == 0, (prev, new_start)
        prev = end


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
    whole, end, _ = plan_all(tok, text, [])
    pieces, end2, _ = plan_all(tok, text, cuts)
    assert pieces == whole
    assert end == end2 == len(text)
    # windows cover the text: each new part starts where the previous ended
    starts = [w[0] for w in whole]
    ends = [w[2] for w in whole]
    assert_tiled(tok, text, whole)
    assert all(len(w[3]) <= 16 for w in whole)


def test_unfinished_word_is_held(tok):
    cursor, planned = windowing.plan("one two three four five six seven eigh", 0, 0, "s", tok, 16, 4,
                                     final=False)
    assert cursor <= len("one two three four five six seven ")
    assert all(p.window.end <= cursor for p in planned)


# -- whitespace-free runs ------------------------------------------------------------------------


def test_prose_windows_as_before():
    # runs of up to RUN_CHARS characters are never cut: these are the windows the shipped model
    # was trained and evaluated on (pinned from the windowing before runs were cut)
    text = ("Sure! See http://t.co/x2 or @bob: the answer is 42 🔪some🦊 and 日本 の 東京. "
            "A word of exactly thirty-two characters: pneumonoultramicroscopicsilicovo and "
            "&amp; some more words to fill the windows with ordinary prose, one after another.")
    assert max(len(w) for w in text.split()) == windowing.RUN_CHARS
    assert windowing.cuts(text, 0, 0, len(text)) == []
    _, planned = windowing.plan(text, 0, 0, "s", WindowTokenizer.from_file(), 16, 4, True)
    assert [(p.new_start, p.window.start, p.window.end, int(p.window.input_ids.sum()))
            for p in planned] == [
        (0, 0, 27, 7654), (27, 0, 50, 19503), (50, 0, 57, 35263), (57, 0, 66, 42672),
        (66, 34, 72, 40701), (72, 52, 99, 35237), (99, 95, 144, 131026), (144, 112, 164, 130583),
        (164, 120, 182, 119550), (182, 136, 211, 91058), (211, 149, 230, 50722)]


def test_a_stream_of_words_without_tokens_is_cleared_as_it_comes():
    """A list of links, one per line: the tokenizer reads nothing in them, so no window ever ended,
    the cursor stayed at 0 and the whole stream was retained, its work per chunk growing with it."""
    tok = WindowTokenizer.from_file()
    text = "".join(f"https://example.com/page/{i}\n" for i in range(300))
    cursor, lags, base, buf = 0, [], 0, ""
    for i in range(0, len(text), 7):
        buf += text[i:i + 7]
        cursor, planned = windowing.plan(buf, base, cursor, "s", tok, 64, 16, False)
        assert planned == []
        lags.append(i + 7 - cursor)
        keep = max(base, windowing.retain_from(cursor, 64))
        buf, base = buf[keep - base:], keep
    # each link is cleared once the next one ends (the latest stays for a window after it)
    assert max(lags) <= 64 and len(buf) < 1200, "cleared as the links come; only the context is kept"


def test_cuts_fall_every_run_chars_from_the_text_alone():
    k = windowing.RUN_CHARS
    run = "x" * 100
    # a run from offset 5 to 105: the first cut needs k characters of the run before it
    assert windowing.cuts("hell " + run, 0, 0, 105) == [64, 96]
    # the same text later in a stream, with only what the lookback needs retained
    assert windowing.cuts(run[24:], 29, 60, 105) == [64, 96]
    assert windowing.cuts("a" * k, 0, 0, k) == []  # k characters: a word like any other
    assert windowing.cuts("a" * (2 * k + 1), 0, 0, 2 * k + 1) == [k, 2 * k]
    assert windowing.cuts("a" * (2 * k), 0, 0, 2 * k) == [k]  # a cut needs a character after it
    # the frontier moves to a cut once the character after it has arrived
    assert windowing.word_frontier("so " + "y" * 61, 0, False) == 3
    assert windowing.word_frontier("so " + "y" * 62, 0, False) == 64


NO_SPACE = st.sampled_from([
    "人工智能是计算机科学的一个分支，它企图了解智能的实质。", "日本語のテキストはスペースがありません",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำเลยครับ", "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNl", "https://example.com/a/b?c=d&e=f",
    "🔪some🦊", "👨‍👩‍👧", "🇩🇪🇫🇷", "&amp;", "&#128514;", "@USER", "www.x.org/", "-----", "supercalifragilistic",
    "\u200b", "é", "e\u0301"])


@settings(max_examples=80, deadline=None)
@given(runs=st.lists(st.lists(NO_SPACE, min_size=1, max_size=30).map("".join), min_size=1, max_size=4),
       seps=st.lists(st.sampled_from([" ", "\n", " word "]), min_size=4, max_size=4),
       cuts=st.lists(st.integers(0, 2500), max_size=40))
def test_long_runs_window_alike_however_cut(tok, runs, seps, cuts):
    text = "".join(r + s for r, s in zip(runs, seps))
    whole, end, _ = plan_all(tok, text, [])
    pieces, end2, _ = plan_all(tok, text, cuts)
    ones, _, _ = plan_all(tok, text, list(range(len(text))))
    assert pieces == whole == ones
    assert end == end2 == len(text)
    starts, ends = [w[0] for w in whole], [w[2] for w in whole]
    assert_tiled(tok, text, whole)
    assert all(len(w[3]) <= 16 for w in whole)


@settings(max_examples=80, deadline=None)
@given(parts=st.lists(st.one_of(st.sampled_from(["Paris", "is", "the", "tokenization", "café", "1,234.5", "!"]),
                                st.lists(st.sampled_from(["人工智能是计算机科学", "日本語のテキスト", "！？。",
                                                          "!!!!!!!!", "aGVsbG8gd29ybGQ"]),
                                         min_size=1, max_size=12).map("".join)),
                      min_size=1, max_size=40),
       seps=st.lists(st.sampled_from([" ", "\n"]), min_size=40, max_size=40),
       cuts=st.lists(st.integers(0, 3000), max_size=30))
def test_every_new_character_is_inside_its_window(tok, parts, seps, cuts):
    # a window ended only once stride tokens had built up, so a few words and then a run's first
    # piece (up to 63 tokens) overflowed it: it kept its last 64 tokens, and the words before the
    # run were in no scored window although the cursor passed them
    text = "".join(p + s for p, s in zip(parts, seps))
    whole, end, _ = plan_all(tok, text, cuts, tokens=64, stride=16)
    assert end == len(text)
    assert all(unread is None for *_, unread in whole), "new text left out of its window"
    # and where a window starts after its new text does, only whitespace lies between
    assert all(not text[w[0]:w[1]].strip() for w in whole if w[1] > w[0])


@settings(max_examples=40, deadline=None)
@given(run=st.lists(st.sampled_from(["人工智能是计算机科学", "日本語のテキスト", "ภาษาไทยไม่มี",
                                     "aGVsbG8gd29ybGQ", "Zx8Qm2Lp/R7vT4+nW9"]),
                    min_size=8, max_size=60).map("".join), lead=st.integers(0, 40),
       cuts=st.lists(st.integers(0, 1000), max_size=30))
def test_semantic_cursor_keeps_up_with_a_run_without_spaces(tok, run, lead, cuts):
    # without cuts the cursor stood still until the run ended, and the hold-back bound released it
    # unjudged; now it trails by at most two pieces, with the 64-token windows the policies use
    _, _, lags = plan_all(tok, " " * lead + run, cuts, tokens=64, stride=16)
    assert max(lags[:-1], default=0) <= lead + 2 * windowing.RUN_CHARS


def test_long_url_first_piece_is_skipped_and_the_rest_read():
    tok = WindowTokenizer.from_file()  # skips URLs (PLATFORM_ARTEFACTS)
    url = "https://example.com/articles/2024/how-to-bake-bread-at-home.html"
    text = f"Read {url} now"
    assert windowing.cuts(text, 0, 0, len(text)) == [64]  # "https://…-at-home" | ".html"
    _, planned = windowing.plan(text, 0, 0, "s", tok, 64, 16, True)
    assert tok._tok.decode(planned[-1].window.input_ids.tolist()) == "read. html now"


def test_a_segment_past_the_tokenizers_cap_is_counted_to_its_end():
    """One huge final chunk: every word is counted, so windows reach its last word (a 4096-token
    cap on one tokenizer call used to drop the rest, which then went out with no window)."""
    tok = WindowTokenizer.from_file(max_tokens=256)  # the production cap, scaled down
    text = " ".join(f"word{i % 97}" for i in range(3000)) + " hateword"
    cursor, planned = windowing.plan(text, 0, 0, "s", tok, 16, 4, True)
    assert cursor == len(text)
    assert planned[-1].window.end == len(text) and planned[-1].window.text.endswith("hateword")
    new_starts = [p.new_start for p in planned]
    assert new_starts == sorted(new_starts) and new_starts[0] == 0


def test_counting_in_pieces_changes_no_window():
    """Pieces end at word boundaries, so a long text windows as it did in one tokenizer call."""
    tok = WindowTokenizer.from_file(max_tokens=1 << 20)
    text = ("Plain words, https://example.com/a/very/long/path?with=query&and=more, 🔪 emoji, "
            + "x" * 90 + " and 漢字" * 40 + " end ") * 12
    whole = windowing.COUNT_PIECE_CHARS
    try:
        windowing.COUNT_PIECE_CHARS = 1 << 20
        one_call = windowing.plan(text, 0, 0, "s", tok, 64, 16, True)
    finally:
        windowing.COUNT_PIECE_CHARS = whole
    assert windowing.plan(text, 0, 0, "s", tok, 64, 16, True) == one_call

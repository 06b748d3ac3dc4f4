"""The client tokenizer: emoji the vocabulary lacks are read as names, offsets stay on the text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.models.build import UNK_ID
from guard.models.tokenizer import WindowTokenizer, emoji_table, find_emoji


@pytest.fixture(scope="module")
def tok() -> WindowTokenizer:
    return WindowTokenizer.from_file(emoji_names=True)


@pytest.fixture(scope="module")
def plain() -> WindowTokenizer:
    return WindowTokenizer.from_file(emoji_names=False)


def words(tok: WindowTokenizer, text: str) -> list[str]:
    return tok._tok.decode(tok.encode(text).ids).split()  # noqa: SLF001 - the vocabulary's own spelling


def test_plain_tokenizer_loses_a_word_with_emoji(plain):
    # the reason for the feature: the whole word "🔪some🦊" is one unknown token
    assert plain.encode("I would love to 🔪some🦊").ids[-1] == UNK_ID
    assert len(plain.encode("I would love to 🔪some🦊")) == 5


def test_unknown_emoji_become_their_names(tok):
    assert words(tok, "I would love to 🔪some🦊") == ["i", "would", "love", "to", "kitchen", "knife", "some", "fox"]
    assert UNK_ID not in tok.encode("👳🏾 👨‍👩‍👧 🇺🇸 😂").ids
    assert words(tok, "👳🏾") == ["person", "wearing", "turban", "medium", "-", "dark", "skin", "tone"]


def test_offsets_point_at_the_emoji_in_the_original_text(tok):
    text = "x🔪 then 👨‍👩‍👧!"
    enc = tok.encode(text)
    spans = [text[a:b] for a, b in enc.offsets]
    assert spans == ["x", "🔪", "🔪", "then", "👨‍👩‍👧", "👨‍👩‍👧", "👨‍👩‍👧", "👨‍👩‍👧", "!"]


def test_text_without_unknown_emoji_is_unchanged(tok, plain):
    for text in ["plain words, café and 1,234", "♥ © ™", ""]:  # ♥ © ™ are in the vocabulary
        a, b = tok.encode(text), plain.encode(text)
        assert a.ids.tolist() == b.ids.tolist() and a.offsets.tolist() == b.offsets.tolist()


def test_batch_equals_one_by_one(tok):
    texts = ["🔪some🦊", "no emoji here", "😂😂 lol", ""]
    for one, many in zip([tok.encode(t) for t in texts], tok.encode_batch(texts), strict=True):
        assert one.ids.tolist() == many.ids.tolist() and one.offsets.tolist() == many.offsets.tolist()


def test_find_emoji_takes_the_longest_sequence():
    table = emoji_table()
    assert find_emoji("a👨‍👩‍👧b👍🏽", table) == [(1, 6), (7, 9)]
    assert find_emoji("no emoji, 123 #", table) == []


PIECES = st.sampled_from(["a", "word", " ", "\n", "🔪", "🦊", "👳🏾", "👨‍👩‍👧", "😂", "♥", "é", "!", "\u200d", "🏾"])


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(PIECES, max_size=30))
def test_offsets_are_ordered_spans_of_the_text_and_words_stay_local(tok, parts):
    assert_ordered_and_local(tok, "".join(parts))


def assert_ordered_and_local(tok: WindowTokenizer, text: str) -> None:
    enc = tok.encode(text)
    off = enc.offsets
    assert np.all(off[:, 0] <= off[:, 1]) and np.all(off[:, 1] <= len(text)) and np.all(off >= 0)
    assert np.all(np.diff(off[:, 0]) >= 0)
    # a whitespace word's tokens do not depend on its neighbours (guard.windowing relies on it)
    joined = [i for w in text.split() for i in tok.encode(w).ids.tolist()]
    assert enc.ids.tolist() == joined
    batch = tok.encode_batch([text, "x"])[0]
    assert batch.ids.tolist() == enc.ids.tolist() and batch.offsets.tolist() == enc.offsets.tolist()


def test_default_setting_is_what_the_shipped_model_was_trained_on():
    # Serving tokenizes with EMOJI_NAMES; the committed adapter and heads learnt on one setting.
    # Flipping the constant without retraining changes every emoji-bearing window's ids and
    # silently degrades the model (run e1 lost 0.016 violence that way), so they must agree.
    # The metadata records the setting since run e1; files written before it used plain text.
    import json

    from guard.models import paths
    from guard.models.tokenizer import BRACKETED_PLACEHOLDERS, EMOJI_NAMES, PLATFORM_ARTEFACTS

    for meta_file in (paths.heads_path().with_name("calibration.json"), paths.adapter_path().with_name("adapter.json")):
        meta = json.loads(meta_file.read_text())
        trained = meta.get("tokenizer", {"emoji_names": False})
        assert trained["emoji_names"] == EMOJI_NAMES, f"{meta_file.name} ({meta['version']}): {trained}"
        # recorded since run n1; everything before it read the artefacts
        assert trained.get("platform_artefacts", False) == PLATFORM_ARTEFACTS, f"{meta_file.name}: {trained}"
        assert trained.get("bracketed_placeholders", False) == BRACKETED_PLACEHOLDERS, f"{meta_file.name}: {trained}"


@pytest.fixture(scope="module")
def untweeted() -> WindowTokenizer:
    return WindowTokenizer.from_file(emoji_names=True, platform_artefacts=True)


def test_platform_artefacts_are_not_read(untweeted):
    assert words(untweeted, "RT @user: you are an idiot https://t.co/x URL") == ["you", "are", "an", "idiot"]
    assert words(untweeted, "@USER @USER she is (@bob) trash") == ["she", "is", "(", ")", "trash"]


def test_entities_read_as_their_character_and_emoji_by_name(untweeted):
    assert words(untweeted, "tea &amp; cake &lt;3") == ["tea", "&", "cake", "<", "3"]
    assert words(untweeted, "lol &#128514;") == ["lol", "face", "with", "tears", "of", "joy"]
    assert words(untweeted, "&bogus; stays") == ["&", "bogus", ";", "stays"]


def test_prose_that_looks_like_an_artefact_is_kept(untweeted, tok):
    for text in ["mail a@b.com today", "ART and RTX cards", "the URLs you sent", "HURL it", "R&D"]:
        assert untweeted.encode(text).ids.tolist() == tok.encode(text).ids.tolist()


def test_offsets_of_a_rewritten_text_point_into_the_original(untweeted):
    text = "@USER so &#128514; &amp; bye"
    enc = untweeted.encode(text)
    assert [text[a:b] for a, b in enc.offsets] == ["so"] + ["&#128514;"] * 5 + ["&amp;", "bye"]


@pytest.fixture(scope="module")
def unbracketed() -> WindowTokenizer:
    return WindowTokenizer.from_file(emoji_names=True, platform_artefacts=True, bracketed_placeholders=True)


def test_bracketed_placeholders_are_not_read_when_asked(unbracketed, untweeted):
    text = 'guys rape you back!" by [USER] [URL]'
    assert words(unbracketed, text) == words(untweeted, 'guys rape you back!" by')
    assert "USER" in "".join(words(untweeted, text)).upper()  # the committed setting reads them
    for kept in ["a[URL]", "[url]", "[USERS]", "[Name]"]:
        assert unbracketed.encode(kept).ids.tolist() == untweeted.encode(kept).ids.tolist()


ARTEFACT_PIECES = st.sampled_from(["a", "word", " ", "\n", "@", "@USER", "@bob:", "RT", "URL", ":", "&amp;",
                                   "&#128514;", "&#x1F52A;", "&", ";", "http://t.co/x", "www.", "🔪", "😂", ".",
                                   "[USER]", "[URL]", "[", "]"])


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(ARTEFACT_PIECES, max_size=30))
def test_artefact_rules_keep_words_local_and_offsets_ordered(untweeted, unbracketed, parts):
    assert_ordered_and_local(untweeted, "".join(parts))
    assert_ordered_and_local(unbracketed, "".join(parts))


def test_the_artefact_setting_names_trained_files_apart(monkeypatch):
    from guard.models import tokenizer

    monkeypatch.setattr(tokenizer, "PLATFORM_ARTEFACTS", False)
    assert tokenizer.version_salt() == b""  # files named before run n1 keep their versions
    assert tokenizer.tokenizer_settings()["platform_artefacts"] is False
    monkeypatch.setattr(tokenizer, "PLATFORM_ARTEFACTS", True)
    assert tokenizer.version_salt() == b"platform_artefacts"  # heads v9's name reproduces
    assert tokenizer.tokenizer_settings()["platform_artefacts"] is True
    assert "bracketed_placeholders" not in tokenizer.tokenizer_settings()
    monkeypatch.setattr(tokenizer, "BRACKETED_PLACEHOLDERS", True)
    assert tokenizer.version_salt() not in (b"", b"platform_artefacts")
    assert tokenizer.tokenizer_settings()["bracketed_placeholders"] is True


def test_serving_windows_judge_the_newest_words_of_emoji_dense_text_as_eval_does():
    """A window's characters of emoji read as names can make thousands of tokens; a tokenizer call
    capped below that keeps the first tokens, and the window (its last 64) then judged the middle of
    the text. Serving's tokenizer (``from_file()``'s default) must plan the windows eval plans."""
    from guard.models.features import PlanTokenizer, stream_window_objects

    text = " ".join(["\U0001FAE2" * 7] * 120) + " I am going to kill you tonight"
    serving = stream_window_objects(text, "s", PlanTokenizer(WindowTokenizer.from_file()), 64, 16)
    capped = stream_window_objects(text, "s", PlanTokenizer(WindowTokenizer.from_file(max_tokens=4096)), 64, 16)
    kill = WindowTokenizer.from_file().encode("kill").ids[0]
    assert kill in serving[-1].input_ids
    assert kill not in capped[-1].input_ids  # what the old 4,096 cap served

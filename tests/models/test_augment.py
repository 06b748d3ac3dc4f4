"""Training-text augmentation: obfuscated and unpunctuated copies."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from guard.models.augment import obfuscate, unpunctuated
from guard.models.data import read_examples
from guard.types import CATEGORIES


def test_obfuscate_is_deterministic_for_a_seed_and_changes_the_text() -> None:
    text = "you are a worthless idiot"
    assert obfuscate(text, "s") == obfuscate(text, "s")
    assert obfuscate(text, "s") != text


def test_unpunctuated_writes_hatexplains_format() -> None:
    assert unpunctuated("RT @bob: You're a \"pig\" &amp; 2 idiots!!! https://t.co/x") == \
        "rt user youre a pig number idiots"
    assert unpunctuated("Dolphin groups, or \u201cpods\u201d\u2026 rely on URL") == "dolphin groups or pods rely on"
    # emoji carry meaning (hatemoji_build) and stay, joiners and skin tones included
    assert unpunctuated("I hate \U0001F469\U0001F3FD\u200d\U0001F9B0 people!") == \
        "i hate \U0001F469\U0001F3FD\u200d\U0001F9B0 people"
    assert unpunctuated("i dont think im getting") == "i dont think im getting"  # hatexplain's own rows


@given(st.text(max_size=80))
def test_unpunctuated_is_a_fixed_point_without_punctuation(text: str) -> None:
    once = unpunctuated(text)
    assert unpunctuated(once) == once
    assert not any(unicodedata.category(ch).startswith("P") for ch in once)
    assert not any(ch.isdecimal() for ch in once)  # digit runs are read as `number`
    assert once == once.strip() and "  " not in once


def test_unpunctuated_copies_keep_labels_and_skip_texts_already_so_formatted(tmp_path: Path) -> None:
    from guard.models.train import unpunctuated_copies

    rows = [{"text": f"Post {i}, with punctuation!", "labels": {"hate": i % 2}, "source": "a", "split": "train"}
            for i in range(40)]
    rows += [{"text": f"post without any {w}", "labels": {"hate": 1}, "source": "b", "split": "train"}
             for w in ("one", "two", "three")]
    (tmp_path / "x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = read_examples([tmp_path])
    copies, idx = unpunctuated_copies(data, 1.0)
    assert len(copies) == 40 and all(data.examples[i].source == "a" for i in idx)
    h = CATEGORIES.index("hate")
    assert (copies.y[:, h] == data.y[idx, h]).all() and (copies.known == data.known[idx]).all()
    assert [e.text for e in copies.examples][:2] == ["post number with punctuation"] * 2
    some, some_idx = unpunctuated_copies(data, 0.25)  # hash-chosen: the same texts on every run
    assert 0 < len(some) < 40 and np.array_equal(some_idx, unpunctuated_copies(data, 0.25)[1])

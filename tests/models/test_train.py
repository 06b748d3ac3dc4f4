"""``guard models train``'s data plumbing: what is held out stays held out, and the heads are fitted
under the adapter's data settings."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import scipy.sparse as sp

from guard.errors import ConfigError
from guard.models.data import Example, LabeledSet
from guard.models.features import Windowed
from guard.models.train import (
    TrainConfig,
    fit_ngram,
    obfuscated_copies,
    same_data_as_adapter,
    token_keys,
    without_dev_twins,
)
from guard.types import CATEGORIES

C = len(CATEGORIES)


def labeled(texts: list[str], split: str = "train", known: bool = True) -> LabeledSet:
    n = len(texts)
    ex = tuple(Example(t, {"harassment": 1} if known else {}, "src", split) for t in texts)
    return LabeledSet(ex, np.zeros((n, C), np.float32), np.full((n, C), known))


def test_texts_that_read_alike_are_one_input() -> None:
    a, b, c = token_keys(["@bob You're a BITCH", "@amy you're a bitch", "you are a bitch"])
    assert a == b != c


def test_train_texts_that_read_as_a_dev_text_are_left_out() -> None:
    train = labeled(["@Highwayy_17 you're a bitch", "a fine day", "sad.\nYour turn"])
    dev = labeled(["@JeremyAdams_ you're a bitch", "sad.Your turn"], "dev")
    kept, dropped = without_dev_twins(train, dev)
    assert dropped == 2 and kept.texts == ["a fine day"]


def test_an_obfuscated_copy_that_reads_as_its_original_is_no_copy() -> None:
    data = labeled([f"you are a disgusting idiot number {i}" for i in range(400)])
    copies, idx = obfuscated_copies(data, 1.0, "t")
    assert len(copies) > 0 and len(idx) == len(copies)
    originals = token_keys([data.examples[i].text for i in idx])
    assert all(a != b for a, b in zip(token_keys(copies.texts), originals, strict=True))


def test_the_ngram_part_skips_a_category_no_row_labels() -> None:
    data = labeled(["one text", "another text"], known=False)
    windows = Windowed([np.array([5]), np.array([6])], np.array([0, 1]), [(0, 1), (0, 1)])
    coef, bias = fit_ngram(sp.csr_matrix(np.eye(2, 4)), windows, data.y, np.zeros((2, C), np.float32), TrainConfig())
    assert not coef.any() and not bias.any()


def args(**over: object) -> argparse.Namespace:
    base = {"implied_labels": False, "augment": 0.15, "unpunctuated": 0.0, "source_power": 0.5}
    return argparse.Namespace(**{**base, **over})


META = {"version": "lora-x", "config": {"implied_labels": False, "augment": 0.15}, "data": {"excluded_sources": []}}


def test_heads_under_the_adapters_data_settings_pass() -> None:
    same_data_as_adapter(META, [], args())


@pytest.mark.parametrize(("exclude", "over", "says"), [
    (["ag_news", "alpaca_eval_outputs"], {}, "excluded sources"),  # a "licence-clean" build over an adapter that saw them
    ([], {"implied_labels": True}, "--implied-labels"),
    ([], {"augment": 0.0}, "--augment"),
    ([], {"source_power": 0.75}, "--source-power"),
])
def test_heads_under_other_data_settings_than_the_adapters_are_refused(exclude, over, says) -> None:
    with pytest.raises(ConfigError, match=says):
        same_data_as_adapter(META, exclude, args(**over))

"""The tokenizer benchmark times each setting on the same texts and splits out emoji text."""

from __future__ import annotations

from benchmarks.tokenizer import run


def test_every_setting_on_both_corpora() -> None:
    texts = ["plain words only", "a threat 🔪 with an emoji", "another plain line"] * 4
    out = run(texts, seconds=0.05)
    assert out["dev"]["texts"] == 12 and out["dev_with_emoji"]["texts"] == 4
    assert out["dev_with_emoji"]["chars"] == 4 * len("a threat 🔪 with an emoji")
    for corpus in out.values():
        assert set(corpus["chars_per_s"]) == {"plain", "names", "names+artefacts"}
        assert all(v > 0 for v in corpus["chars_per_s"].values())
        assert corpus["names_over_plain"] > 0 and corpus["artefacts_over_names"] > 0

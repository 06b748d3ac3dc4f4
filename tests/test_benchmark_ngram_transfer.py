"""benchmarks.ngram_transfer compares one MLP with and without its n-gram part, text by text."""

import numpy as np

from benchmarks.ngram_transfer import markdown, text_scores, variants


def test_a_text_scores_its_highest_window() -> None:
    z = np.array([[-2.0, 1.0], [3.0, -1.0], [0.0, 0.0]], np.float32)  # texts: windows 0-1, window 2
    offsets = np.array([0, 2, 3])
    s = text_scores(z, offsets)
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-np.array([[3.0, 1.0], [0.0, 0.0]]))), rtol=1e-6)


def test_variants_share_the_mlp_and_weigh_the_ngram_part_per_category() -> None:
    zm = np.array([[1.0, 2.0]], np.float32)
    zn = np.array([[10.0, 10.0]], np.float32)
    v = variants(zm, zn, np.array([0.0, 0.5], np.float32))
    np.testing.assert_array_equal(v["mlp"], zm)
    np.testing.assert_array_equal(v["ngram"], zn)
    np.testing.assert_array_equal(v["mlp+ngram (fitted mix)"], [[1.0, 7.0]])  # mix 0 leaves the MLP alone


def test_the_report_marks_a_category_a_set_does_not_label() -> None:
    f = {"any_auprc": 0.7, "auprc": {"hate": 0.8, "self_harm": None}}
    res = {"command": "c", "git_sha": "abc", "heads_version": "h", "encoder_id": "e", "held_out": ["ethos"],
           "held_out_texts": 3, "mix": {c: 0.5 for c in
                                        ("hate", "harassment", "violence", "self_harm", "sexual",
                                         "sexual_minors", "dangerous", "profanity")},
           "sets": {"held-out": {"mlp": f, "mlp+ngram (fitted mix)": f, "ngram": f}},
           "delta_held_out": {"any": 0.0, "categories": {"hate": 0.0}}}
    text = markdown(res)
    assert "| held-out | mlp | 0.700 | 0.800 | – |" in text
    assert "fitted mix minus MLP alone: any +0.000, hate +0.000." in text


def test_the_committed_g1_result_renders_as_committed() -> None:
    """Run g1: its markdown is what its JSON renders, and it records heads fitted without the
    sources it scores (the script refuses others unless told)."""
    import json

    from benchmarks import REPO

    run = REPO / "benchmarks/results/runs/g1-ngram-transfer"
    res = json.loads((run / "ngram_transfer.json").read_text(encoding="utf-8"))
    assert markdown(res) == (run / "ngram_transfer.md").read_text(encoding="utf-8")
    assert set(res["held_out"]) <= set(res["heads_excluded_sources"])
    assert res["encoder_id"] == "minilm-l6-v2-pooled7-b3"  # the frozen encoder: no adapter merged

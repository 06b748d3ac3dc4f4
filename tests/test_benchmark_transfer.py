"""benchmarks.transfer names its models as changes to FinetuneConfig; each must be a valid one."""

from dataclasses import replace

import pytest

from benchmarks.transfer import MODELS
from guard.models.finetune import FinetuneConfig


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_is_a_finetune_config(name: str) -> None:
    cfg = replace(FinetuneConfig(), **MODELS[name])
    assert "implied_labels" in MODELS[name]  # explicit, so a default change cannot move a result
    if name.startswith("adapter-implied"):
        assert cfg.implied_labels and cfg.lr > 0


def rendered(run_name: str) -> tuple[dict, str]:
    """A committed run's JSON and its markdown re-rendered from that JSON alone, checked against
    the committed markdown byte for byte."""
    import json

    from benchmarks import REPO
    from benchmarks.transfer import markdown

    run = REPO / "benchmarks/results/runs" / run_name
    res = json.loads((run / "transfer.json").read_text(encoding="utf-8"))
    text = markdown(res)
    assert text == (run / "transfer.md").read_text(encoding="utf-8")
    return res, text


def test_a_committed_result_renders_as_committed() -> None:
    """Seed included (run t2 trained with --seed 1)."""
    res, text = rendered("t2-transfer-seed1")
    assert "Seed: 1." in text and res["configs"]["adapter"]["seed"] == 1
    assert "artefacts" not in text  # t2 read them; n1 did not, and its markdown says so


def test_a_result_without_the_artefacts_says_so() -> None:
    res, text = rendered("n1-platform-artefacts")
    assert res["tokenizer"]["platform_artefacts"] is True
    assert "Tweet-platform artefacts skipped: True." in text


def test_a_run_with_unpunctuated_copies_names_them() -> None:
    """Run p2: its config records the copies, and its model name says so in the markdown."""
    res, text = rendered("p2-unpunctuated-copies")
    assert res["configs"]["adapter-unpunctuated"]["unpunctuated"] == MODELS["adapter-unpunctuated"]["unpunctuated"]
    assert "| adapter-unpunctuated | 3 | held-out sources |" in text


@pytest.mark.parametrize(("run", "model", "key", "value", "sentence", "other", "absent"), [
    # b1: sources weighed at power 0.75; runs at 0.5 do not name it
    ("b1-source-balance", "adapter-balanced", "source_power", 0.75, "Source power: 0.75.", "n2-transfer-seed1",
     "Source power"),
    # l1: a head-only epoch first; runs without do not name it
    ("l1-linear-probe-first", "adapter-lpft", "probe_epochs", 1, "Head-only epochs first (LP-FT): 1.",
     "b1-source-balance", "LP-FT"),
    # d1: a gradient-reversed source classifier; runs without it do not name it
    ("d1-source-adversary", "adapter-adversary", "adversary", 0.3,
     "Gradient-reversed source classifier (DANN) at weight: 0.3.", "l1-linear-probe-first", "DANN"),
])
def test_a_run_with_a_training_option_names_it(run: str, model: str, key: str, value: object, sentence: str,
                                               other: str, absent: str) -> None:
    """Its config records the option's value, and the markdown names it; a run without it does not."""
    res, text = rendered(run)
    assert res["configs"][model][key] == MODELS[model][key] == value
    assert sentence in text and f"| {model} | 3 | held-out sources |" in text
    assert absent not in rendered(other)[1]


def test_a_wise_run_names_its_rows_and_times_only_the_trained_ones() -> None:
    """Run l2: the WiSE-FT rows are the last epoch's, say what they are, and trained nothing."""
    res, text = rendered("l2-wise-ft")
    assert [r["epoch"] for r in res["runs"] if r["model"] == "adapter-lpft-wise0.5"] == [3]
    assert "| adapter-lpft-wise0.5 | 3 | held-out sources |" in text
    assert "at α = 0.5 (WiSE-FT" in text and "wise0.5 epoch" not in text
    assert "WiSE" not in rendered("l1-linear-probe-first")[1]


def test_a_run_without_the_bracketed_placeholders_says_so() -> None:
    """Run b2: its tokenizer settings record the placeholders unread, and the markdown names it."""
    res, text = rendered("b2-bracketed-placeholders")
    assert res["tokenizer"]["bracketed_placeholders"] is True
    assert "Bracketed placeholders ([USER], [URL]) skipped: True." in text
    assert "Bracketed" not in rendered("n1-platform-artefacts")[1]


def test_wise_is_refused_up_front_for_models_without_a_probe_head() -> None:
    """Moving a model back to its start needs the probe's head; fail before training, not after."""
    from benchmarks.transfer import main

    with pytest.raises(SystemExit, match="LP-FT"):
        main(["--models", "adapter", "--wise", "0.5"])

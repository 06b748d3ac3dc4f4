"""guard.models.finetune: data preparation (numpy only) and, where torch is installed, training."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from guard.models.finetune import ADAPTER_LATER_KEYS, HOLDOUT_FOLDS, FinetuneConfig, prepare
from guard.models.train import config_key, fold_of
from guard.types import CATEGORIES

WORDS = "the river kept its slow course past the mill while the town slept on".split()


def _data(tmp_path: Path, n: int = 60) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 30))))
        hate = i % 3 == 0
        rows.append({"text": ("you vile people " if hate else "") + text + f" {i}",
                     "labels": {"hate": int(hate)}, "source": "a" if i % 2 else "b",
                     "split": "dev" if i % 5 == 0 else "train"})
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return tmp_path


def test_prepare_holds_a_fold_out_before_augmenting(tmp_path: Path) -> None:
    data = _data(tmp_path)
    prep, n_all, n_held = prepare(data, [], FinetuneConfig(augment=0.5), 0, lambda _m: None)
    originals = [e.text for e in prep.train.examples[: n_all - n_held]]  # concat keeps them first
    assert n_all == 48 and 0 < n_held < n_all
    assert not (fold_of(originals, HOLDOUT_FOLDS) == 0).any()
    assert len(prep.train) > len(originals)  # obfuscated copies added
    assert len(prep.wtr.offsets) == len(prep.train) + 1 and len(prep.dev) == 12


def test_prepare_adds_unpunctuated_copies_of_the_originals_only(tmp_path: Path) -> None:
    from guard.models.augment import unpunctuated

    cfg = FinetuneConfig(augment=0.5, unpunctuated=1.0)
    prep, n_all, n_held = prepare(_data(tmp_path), [], cfg, 0, lambda _m: None)
    n_orig = n_all - n_held
    n_obf = len(prepare(_data(tmp_path), [], replace(cfg, unpunctuated=0.0), 0, lambda _m: None)[0].train) - n_orig
    originals, copies = prep.train.examples[:n_orig], prep.train.examples[n_orig + n_obf:]
    assert [e.text for e in copies] == [unpunctuated(e.text) for e in originals]  # every text has a digit
    h = CATEGORIES.index("hate")
    assert (prep.train.y[n_orig + n_obf:, h] == prep.train.y[:n_orig, h]).all()


def test_prepare_drops_excluded_sources(tmp_path: Path) -> None:
    prep, _, _ = prepare(_data(tmp_path), ["a"], FinetuneConfig(augment=0.0), 0, lambda _m: None)
    assert set(prep.train.sources) | set(prep.dev.sources) == {"b"}


def test_prepare_implies_labels_on_train_only(tmp_path: Path) -> None:
    """Asked to, training sees the labels EDOS's scheme implies; dev keeps them as given (as guard eval)."""
    rows = [{"text": f"sexist post number {i}", "labels": {"hate": 1}, "source": "edos",
             "split": "dev" if i % 4 == 0 else "train"} for i in range(40)]
    (tmp_path / "edos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = FinetuneConfig(augment=0.5, holdout_fold=-1, implied_labels=True)
    prep, _, _ = prepare(tmp_path, [], cfg, 0, lambda _m: None)
    v = CATEGORIES.index("violence")
    assert prep.train.known[:, v].all() and (prep.train.y[:, v] == 0).all()
    assert len(prep.train) > 30 and prep.train.implied_cells[:, v].all()  # obfuscated copies too: --implied-weight reaches them
    assert len(prep.dev) == 10 and not prep.dev.known[:, v].any()
    plain, _, _ = prepare(tmp_path, [], replace(cfg, implied_labels=False), 0, lambda _m: None)
    assert not plain.train.known[:, v].any()


def _train_head_only(tmp_path: Path, cfg: FinetuneConfig) -> tuple[Any, Any, Any, list[dict[str, Any]]]:
    """Train ``cfg`` (which must leave the encoder frozen) on the toy data; assert it did just that.

    Returns the data bundle, the packaged weights, the model and its history."""
    from safetensors.numpy import load_file

    from guard.models import paths
    from guard.models.finetune import adapter_of, make_model, train

    prep, _, _ = prepare(_data(tmp_path), [], cfg, 0, lambda _m: None)
    weights = load_file(str(paths.weights_dir() / "model.safetensors"))
    head0 = [p.detach().clone() for p in make_model(weights, cfg).head.parameters()]
    model, history = train(prep, weights, cfg, lambda _m: None)
    assert all(not np.any(b) for b in adapter_of(model, cfg, "t").b.values())
    assert any(not np.allclose(a.numpy(), b.detach().numpy()) for a, b in zip(head0, model.head.parameters(),
                                                                                strict=True))
    return prep, weights, model, history


def test_zero_lr_trains_the_head_only(tmp_path: Path) -> None:
    """``lr=0`` is the frozen-encoder baseline of benchmarks.transfer: the adapter stays exactly zero."""
    pytest.importorskip("torch")
    from guard.models.finetune import report

    prep, _, model, history = _train_head_only(tmp_path, FinetuneConfig(lr=0.0, epochs=1, batch_texts=16,
                                                                         augment=0.0))
    fig = report(model, prep.wdv, prep.dev)
    assert set(fig["auprc"]) == {"hate"} and 0.0 <= fig["any_auprc"] <= 1.0
    assert history[0]["epoch"] == 1


def test_probe_epochs_train_the_head_alone_first(tmp_path: Path) -> None:
    """LP-FT (run l1): the probe epochs leave the adapter at zero and fit the head; then both learn."""
    pytest.importorskip("torch")
    from guard.models.finetune import adapter_of, train

    cfg = FinetuneConfig(epochs=0, probe_epochs=1, batch_texts=16, augment=0.0)
    prep, weights, probed, history = _train_head_only(tmp_path, cfg)
    assert [(h["epoch"], h["probe"]) for h in history] == [(0, 1)]

    both, history = train(prep, weights, replace(cfg, epochs=1), lambda _m: None)
    assert any(np.any(b) for b in adapter_of(both, cfg, "t").b.values())
    assert [h["epoch"] for h in history] == [0, 1] and "probe" not in history[1]


    # WiSE-FT (run l2): alpha 1 is the final model, alpha 0 the probe's head on the pretrained encoder
    import torch

    from guard.models.finetune import score_windows, wise

    ids = prep.wdv.ids[:8]
    assert np.allclose(score_windows(wise(both, 1.0), ids), score_windows(both, ids), atol=1e-5)
    start = wise(both, 0.0)
    for k, v in start.head.state_dict().items():
        assert torch.equal(v, both.probe_head[k])
    assert np.allclose(score_windows(start, ids), score_windows(probed, ids), atol=1e-5)
    with pytest.raises(ValueError, match="probe_epochs"):
        wise(train(prep, weights, replace(cfg, probe_epochs=0, epochs=0), lambda _m: None)[0], 0.5)


def test_reversal_flips_and_scales_the_gradient_only() -> None:
    pytest.importorskip("torch")
    import torch

    from guard.models.finetune import _reverse

    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = _reverse(x, 0.3)
    assert torch.equal(out, x)
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.3, -0.6, -0.9]))


def test_adversary_ramp_rises_from_zero_to_one() -> None:
    from guard.models.finetune import adversary_ramp

    ramp = [adversary_ramp(p) for p in np.linspace(0, 1, 11)]
    assert ramp[0] == 0.0 and ramp[-1] > 0.999 and all(a < b for a, b in zip(ramp, ramp[1:], strict=False))


def test_adversary_learns_sources_while_the_encoder_learns_to_hide_them(tmp_path: Path) -> None:
    """DANN (run d1): the source classifier trains beside the head and reports its accuracy; it
    changes the encoder's training (reversed gradient) but not what is saved: adapter and head
    keep their shapes, and without it training is exactly as before."""
    pytest.importorskip("torch")
    import torch
    from safetensors.numpy import load_file

    from guard.models import paths
    from guard.models.finetune import adapter_of, make_model, train

    cfg = FinetuneConfig(epochs=1, batch_texts=16, augment=0.0, adversary=1.0, precision="fp32")
    prep, _, _ = prepare(_data(tmp_path), [], cfg, 0, lambda _m: None)
    weights = load_file(str(paths.weights_dir() / "model.safetensors"))
    model, history = train(prep, weights, cfg, lambda _m: None)
    assert model.source_head is not None and model.source_head[-1].out_features == 2  # sources a and b
    assert 0.0 <= history[0]["adversary_accuracy"] <= 1.0
    plain, plain_history = train(prep, weights, replace(cfg, adversary=0.0), lambda _m: None)
    assert plain.source_head is None and "adversary_accuracy" not in plain_history[0]
    assert make_model(weights, replace(cfg, adversary=0.0), n_sources=2).source_head is None
    a, b = adapter_of(model, cfg, "t"), adapter_of(plain, cfg, "t")
    assert all(a.b[k].shape == b.b[k].shape for k in a.b)
    assert any(not np.allclose(a.b[k], b.b[k]) for k in a.b)
    # the classifier's gradient reaches the features reversed, scaled by the ramped weight
    x = torch.randn(4, len(cfg.layers) * 384, requires_grad=True)
    cond = torch.zeros(4, 2 * len(CATEGORIES))
    model.source_logits(x, cond, 0.5).sum().backward()
    g_rev = x.grad.clone()
    x.grad = None
    model.source_logits(x, cond, -1.0).sum().backward()  # coef -1: the plain gradient
    assert torch.allclose(g_rev, -0.5 * x.grad, atol=1e-6)
    for p, q in zip(model.head.parameters(), plain.head.parameters(), strict=True):
        assert p.shape == q.shape


def test_precision_auto_picks_the_faster_dtype_and_explicit_choices_stand() -> None:
    """bf16 autocast pays only where the CPU has bf16 units; elsewhere it is emulated and far slower."""
    pytest.importorskip("torch")
    import torch

    from guard.models.finetune import resolve_precision

    assert resolve_precision("auto", lambda dt: 1.0 if dt == torch.bfloat16 else 2.0) == "bf16"
    assert resolve_precision("auto", lambda dt: 75.0 if dt == torch.bfloat16 else 1.0) == "fp32"
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


def test_precision_auto_is_not_fooled_by_one_slow_timing() -> None:
    """One bf16 timing taken while other work held the cores must not pick fp32 for a whole run."""
    pytest.importorskip("torch")
    import torch

    from guard.models.finetune import resolve_precision

    times = {torch.bfloat16: iter([30.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), torch.float32: iter([8.0] * 7)}
    assert resolve_precision("auto", lambda dt: next(times[dt])) == "bf16"



def test_version_key_keeps_earlier_adapter_names() -> None:
    """An adapter trained with an earlier run's settings keeps its version, though newer keys exist."""
    before = {"rank": 8, "implied_labels": False}
    later = ADAPTER_LATER_KEYS
    assert config_key({**before, "implied_weight": 1.0, "precision": "bf16", "unpunctuated": 0.0,
                       "source_power": 0.5, "probe_epochs": 0}, False, later) == before
    assert config_key({**before, "unpunctuated": 0.1}, False, later) == {**before, "unpunctuated": 0.1}
    assert config_key({**before, "precision": "fp32"}, False, later) == {**before, "precision": "fp32"}
    assert config_key({**before, "source_power": 0.75}, False, later) == {**before, "source_power": 0.75}
    assert config_key({**before, "probe_epochs": 1}, False, later) == {**before, "probe_epochs": 1}
    assert config_key({**before, "adversary": 0.0, "adversary_hidden": 128}, False, later) == before
    assert config_key({**before, "adversary": 0.3}, False, later) == {**before, "adversary": 0.3}
    assert config_key({**before, "implied_weight": 0.25}, True, later) == {**before, "implied_weight": 0.25}
    assert set(later) <= set(asdict(FinetuneConfig()))
    assert all(getattr(FinetuneConfig(), k) == v for k, v in later.items() if k != "precision")

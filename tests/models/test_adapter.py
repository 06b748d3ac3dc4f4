"""Encoder adapters: the merge, the file format, the build that merges them, and the committed one.

The torch side (``guard models finetune``) is an optional extra; the test that holds the torch
mirror of the encoder to the built ONNX graph runs only where torch is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guard.models import paths
from guard.models.adapter import DENSE, Adapter, adapter_version, target_names
from guard.models.build import ENCODER_ID, build_encoders, encoder_id
from guard.models.encoder import OnnxEncoder
from guard.models.tokenizer import WindowTokenizer

TEXTS = ["You people are disgusting and should leave.", "How do I bake sourdough bread at home?",
         "I will find you and hurt you badly."]


def _weights() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(paths.weights_dir() / "model.safetensors"))


def random_adapter(rank: int = 4, scale: float = 0.02, seed: int = 0, version: str = "lora-test") -> Adapter:
    rng = np.random.default_rng(seed)
    w = _weights()
    a, b = {}, {}
    for name in target_names():
        out_f, in_f = w[name].shape
        a[name] = rng.normal(0, scale, (rank, in_f)).astype(np.float16).astype(np.float32)
        b[name] = rng.normal(0, scale, (out_f, rank)).astype(np.float16).astype(np.float32)
    return Adapter(version, rank, 2.0 * rank, a, b)


def test_merge_adds_the_scaled_low_rank_product() -> None:
    w = _weights()
    ad = random_adapter()
    merged = ad.merge(w)
    name = "encoder.layer.3.intermediate.dense.weight"
    assert np.allclose(merged[name], w[name] + 2.0 * ad.b[name] @ ad.a[name], atol=1e-6)
    # untouched tensors are the same objects, and the input dict is not modified
    assert merged["embeddings.word_embeddings.weight"] is w["embeddings.word_embeddings.weight"]
    assert not np.array_equal(merged[name], w[name])
    assert set(ad.a) == set(target_names()) and len(ad.a) == 6 * len(DENSE)


def test_zero_update_changes_nothing() -> None:
    w = _weights()
    ad = random_adapter()
    zero = Adapter("zero", ad.rank, ad.alpha, ad.a, {k: np.zeros_like(v) for k, v in ad.b.items()})
    merged = zero.merge(w)
    assert all(np.array_equal(merged[k], w[k]) for k in w)


def test_bad_targets_are_refused() -> None:
    w = _weights()
    ad = random_adapter()
    with pytest.raises(KeyError, match="not in the encoder"):
        Adapter("x", ad.rank, ad.alpha, {"nope.weight": ad.a[target_names()[0]]},
                {"nope.weight": ad.b[target_names()[0]]}).merge(w)
    name = target_names()[0]
    with pytest.raises(ValueError, match="delta"):
        Adapter("x", ad.rank, ad.alpha, {name: ad.a[name]}, {name: np.zeros((7, ad.rank), np.float32)}).merge(w)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    ad = random_adapter()
    ad.save(tmp_path / "a.npz")
    back = Adapter.load(tmp_path / "a.npz")
    assert (back.version, back.rank, back.alpha) == (ad.version, ad.rank, ad.alpha)
    assert adapter_version(tmp_path / "a.npz") == ad.version
    for k in ad.a:  # stored float16; the test adapter is float16-exact
        assert np.array_equal(back.a[k], ad.a[k]) and np.array_equal(back.b[k], ad.b[k])


def test_build_merges_the_adapter_and_tracks_it(tmp_path: Path) -> None:
    """A different adapter rebuilds, changes the features, and is named in the manifest."""
    tok = WindowTokenizer.from_file()
    ids = [e.ids for e in tok.encode_batch(TEXTS)]
    none = tmp_path / "no-adapter.npz"  # absent: the packaged weights as they are
    base = build_encoders(tmp_path / "base", adapter=none)
    ad_path = tmp_path / "a.npz"
    random_adapter().save(ad_path)
    tuned = build_encoders(tmp_path / "tuned", adapter=ad_path)
    assert json.loads((tmp_path / "tuned" / paths.MANIFEST).read_text())["encoder_id"] == f"{ENCODER_ID}+lora-test"
    assert encoder_id(ad_path) == f"{ENCODER_ID}+lora-test" and encoder_id(none) == ENCODER_ID
    a = OnnxEncoder.from_path(base.fp32).pool(ids)
    b = OnnxEncoder.from_path(tuned.fp32).pool(ids)
    assert np.abs(a - b).max() > 1e-3
    # rebuilding the same dir with another adapter is not skipped
    random_adapter(seed=1, version="lora-test2").save(ad_path)
    again = build_encoders(tmp_path / "tuned", adapter=ad_path)
    assert again.rebuilt
    c = OnnxEncoder.from_path(again.fp32).pool(ids)
    assert np.abs(c - b).max() > 1e-3


def test_torch_mirror_matches_the_built_graph(tmp_path: Path) -> None:
    """What finetune trains (torch, adapters on the side) is what build serves (merged, ONNX)."""
    torch = pytest.importorskip("torch")
    from guard.models.finetune import FinetuneConfig, _pad, adapter_of, make_model

    ad = random_adapter(rank=8)
    model = make_model(_weights(), FinetuneConfig(rank=8, alpha=16.0))
    with torch.no_grad():
        for name, layer_attr in [(n, n.split(".")) for n in ad.a]:
            i = int(layer_attr[2])
            attr = {d: a for d, a in zip(DENSE, ("q", "k", "v", "o", "inter", "out"), strict=True)}[
                ".".join(layer_attr[3:-1])]
            m = getattr(model.encoder.layers[i], attr)
            m.lora_a.copy_(torch.from_numpy(ad.a[name]))
            m.lora_b.copy_(torch.from_numpy(ad.b[name]))
    back = adapter_of(model, FinetuneConfig(rank=8, alpha=16.0), "lora-test")
    assert all(np.array_equal(back.a[k], ad.a[k]) for k in ad.a)
    ad.save(tmp_path / "a.npz")
    built = build_encoders(tmp_path / "m", adapter=tmp_path / "a.npz")
    ids = [e.ids for e in WindowTokenizer.from_file().encode_batch(TEXTS)]
    model.eval()
    with torch.no_grad():
        i, m = _pad(ids)
        mirror = model.encoder(torch.from_numpy(i), torch.from_numpy(m)).numpy()
    assert np.abs(mirror - OnnxEncoder.from_path(built.fp32).pool(ids)).max() < 1e-4


class TestCommitted:
    """The adapter in the repository, if one is committed, is what the build and decisions use."""

    @pytest.fixture()
    def committed(self) -> Path:
        path = paths.adapter_path()
        if not path.exists():
            pytest.skip("no adapter committed: the encoder is the packaged all-MiniLM-L6-v2")
        return path

    def test_loads_small_and_documented(self, committed: Path) -> None:
        ad = Adapter.load(committed)
        assert set(ad.a) == set(target_names())
        assert committed.stat().st_size < 1_000_000
        meta = json.loads(committed.with_suffix(".json").read_text())
        assert meta["version"] == ad.version and meta["config"]["rank"] == ad.rank
        assert meta["command"].startswith("guard models finetune")
        assert encoder_id() == f"{ENCODER_ID}+{ad.version}"

    def test_served_mlp_is_the_adapters_head(self, committed: Path) -> None:
        from guard.models.heads import Heads
        from guard.models.train import AdapterHead

        if not paths.adapter_head_path().exists():
            pytest.skip("the committed adapter has no head: the heads' MLP was fitted by guard models train")
        head = AdapterHead.load(paths.adapter_head_path(), committed.with_suffix(".json"))
        served = Heads.load(paths.heads_path())
        assert tuple(int(v) for v in served.feature_layers) == head.layers
        assert all(np.array_equal(a, b) for a, b in zip(served.weights, head.weights, strict=True))
        calib = json.loads((paths.heads_path().parent / "calibration.json").read_text())
        assert head.version in calib["mlp"] and "held-out" in calib["calibration_rule"]

    def test_build_dir_was_built_with_it(self, committed: Path) -> None:
        built = build_encoders()  # fast when up to date
        manifest = json.loads((built.out_dir / paths.MANIFEST).read_text())
        assert manifest["encoder_id"] == encoder_id()


def test_finetune_batches_cover_every_text_once_with_similar_lengths() -> None:
    """The trainer's batching (no torch needed): a permutation, grouped by length to pad little."""
    from guard.models.finetune import text_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 66, 5000)
    batches = text_batches(5000, lengths, 64, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(5000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 10  # random batches would span ~60 tokens
    again = text_batches(5000, lengths, 64, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))

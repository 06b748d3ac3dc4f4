"""The committed heads: loadable, probabilities in [0, 1], monotone calibration, consistent trainer."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from guard.models import paths
from guard.models.heads import Heads
from guard.models import train as T
from guard.types import CATEGORIES

HEADS = paths.heads_path()
CALIBRATION = HEADS.parent / "calibration.json"


@pytest.fixture(scope="module")
def heads() -> Heads:
    return Heads.load(HEADS)


def _pooled(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 7, 384)).astype(np.float32) * 0.3


def _ids(n: int, seed: int = 0) -> list[np.ndarray]:
    """``[CLS] word pieces [SEP]`` rows of varied length."""
    rng = np.random.default_rng(seed)
    return [np.concatenate([[101], rng.integers(999, 30522, int(k)), [102]]) for k in rng.integers(0, 64, n)]


def test_committed_heads_load_and_are_small(heads: Heads) -> None:
    assert heads.categories == CATEGORIES
    assert HEADS.stat().st_size < 1024 * 1024
    assert all(0 <= int(i) < 7 for i in heads.feature_layers)
    f = len(heads.feature_layers) * 384
    assert heads.mean.shape == heads.scale.shape == (f,)
    assert heads.weights[0].shape[0] == f and heads.weights[-1].shape[1] == len(CATEGORIES)


def test_predictions_are_probabilities(heads: Heads) -> None:
    p = heads.predict(_pooled(64), _ids(64))
    assert p.shape == (64, len(CATEGORIES)) and p.dtype == np.float32
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    # extreme inputs stay in range
    big = heads.predict(_pooled(4) * 1e4, _ids(4))
    assert ((0 <= big) & (big <= 1)).all()


def test_committed_heads_read_token_ids(heads: Heads) -> None:
    """The shipped heads carry the n-gram part; without ids they refuse rather than guess."""
    assert heads.needs_ids and heads.mix is not None and heads.mix.shape == (len(CATEGORIES),)
    with pytest.raises(ValueError, match="token ids"):
        heads.predict(_pooled(2))
    # padding (id 0) after [SEP] does not change a score
    rows = _ids(3, seed=5)
    padded = np.zeros((3, 70), np.int64)
    for i, r in enumerate(rows):
        padded[i, : len(r)] = r
    np.testing.assert_allclose(heads.predict(_pooled(3), rows), heads.predict(_pooled(3), padded), atol=1e-6)


def test_calibration_is_monotone(heads: Heads) -> None:
    assert heads.calib_x.shape == heads.calib_y.shape and heads.calib_x.shape[0] == len(CATEGORIES)
    assert (np.diff(heads.calib_x, axis=1) >= 0).all()
    assert (np.diff(heads.calib_y, axis=1) >= 0).all()
    assert (heads.calib_x[:, 0] <= 0.0).all() and (heads.calib_x[:, -1] >= 1.0).all()
    raw = np.linspace(0, 1, 201, dtype=np.float32)
    for c in range(len(CATEGORIES)):
        out = np.interp(raw, heads.calib_x[c], heads.calib_y[c])
        assert (np.diff(out) >= 0).all()


def test_calibration_json_has_a_threshold_per_category() -> None:
    doc = json.loads(CALIBRATION.read_text())
    for cat in CATEGORIES:
        t = doc["categories"][cat]["threshold"]
        assert 0.0 < t < 1.0
    assert doc["version"] == Heads.load(HEADS).version
    assert doc["data"]["sources"] and all("license" in s for s in doc["data"]["sources"])


def test_trainer_forward_matches_heads_predictor() -> None:
    """What the trainer evaluates is what heads.py serves (layers, normalisation, fp16 weights)."""
    rng = np.random.default_rng(3)
    pooled = _pooled(50, seed=4)
    cfg = T.TrainConfig(layers=(1, 6), hidden=8)
    x = T.layer_features(pooled, cfg.layers)
    mean, scale = T.standardiser(x)
    model = T._init(x.shape[1], cfg.hidden, rng)
    model = T.Mlp([w.astype(np.float16).astype(np.float32) for w in model.weights], model.biases)
    cx = np.tile(np.array([0, 0.5, 1], np.float32), (len(CATEGORIES), 1))
    cy = np.tile(np.array([0, 0.2, 1], np.float32), (len(CATEGORIES), 1))
    tr = T.Trained(cfg, mean, scale, model, cx, cy, ["x"] * 8, np.zeros(0), np.full(8, 0.5), {})
    h = T.to_heads(tr, "test")
    expect = T.apply_calibration(T._sigmoid(model.logits((x - mean) / scale)), cx, cy)
    np.testing.assert_allclose(h.predict(pooled), expect, atol=1e-5)


def test_trainer_ngram_path_matches_heads_predictor(tmp_path: Path) -> None:
    """MLP + mix * n-gram, as the trainer scores dev windows, equals the saved heads' serving path."""
    from guard.models.ngrams import DEFAULT_DIM, NgramHead, sparse_features

    rng = np.random.default_rng(7)
    pooled, ids = _pooled(40, seed=8), _ids(40, seed=9)
    cfg = T.TrainConfig(layers=(2, 4, 6), hidden=8)
    x = T.layer_features(pooled, cfg.layers)
    mean, scale = T.standardiser(x)
    model = T._init(x.shape[1], cfg.hidden, rng)
    model = T.Mlp([w.astype(np.float16).astype(np.float32) for w in model.weights], model.biases)
    coef = np.zeros((DEFAULT_DIM, len(CATEGORIES)), np.float32)
    feats = sparse_features(ids)
    coef[np.unique(feats.indices)] = rng.standard_normal((len(np.unique(feats.indices)), len(CATEGORIES)))
    ngram = NgramHead.from_dense(coef, rng.standard_normal(len(CATEGORIES)).astype(np.float32), keep=500)
    mix = np.linspace(0, 1.5, len(CATEGORIES)).astype(np.float32)
    cx = np.tile(np.array([0, 0.5, 1], np.float32), (len(CATEGORIES), 1))
    cy = np.tile(np.array([0, 0.2, 1], np.float32), (len(CATEGORIES), 1))
    tr = T.Trained(cfg, mean, scale, model, cx, cy, ["x"] * 8, np.zeros(0), np.full(8, 0.5), {}, ngram, mix)
    T.to_heads(tr, "test").save(tmp_path / "h.npz")
    h = Heads.load(tmp_path / "h.npz")
    z = model.logits((x - mean) / scale) + mix * T.ngram_window_logits(feats, ngram.dense(), ngram.bias)
    np.testing.assert_allclose(h.predict(pooled, ids), T.apply_calibration(T._sigmoid(z), cx, cy), atol=1e-5)


def test_fit_ngram_learns_a_decisive_word() -> None:
    """One word piece marks the positives; the n-gram regression ranks them first."""
    from guard.evaluation import average_precision
    from guard.models.features import Windowed
    from guard.models.ngrams import sparse_features

    rng = np.random.default_rng(2)
    rows = [rng.integers(2000, 29000, 20) for _ in range(300)]
    y = np.zeros((300, len(CATEGORIES)), np.float32)
    for i in range(0, 300, 3):
        rows[i][5] = 4000  # the decisive word piece
        y[i, 2] = 1
    win = Windowed(rows, np.arange(300), [(0, 0)] * 300)
    coef, bias = T.fit_ngram(sparse_features(rows), win, y, np.ones_like(y), T.TrainConfig())
    z = T.ngram_window_logits(sparse_features(rows), coef, bias)
    assert average_precision(y[:, 2], z[:, 2]) == 1.0
    assert coef[4000, 2] == coef[:, 2].max()


def test_calibration_curve_is_strictly_increasing_and_fits() -> None:
    rng = np.random.default_rng(0)
    raw = rng.random(5000)
    y = (rng.random(5000) < raw ** 2).astype(float)  # true calibration map: r → r²
    for n in (5000, 300):  # isotonic, then Platt (few positives)
        cx, cy, method = T.calibration_curve(raw[:n], y[:n])
        assert method == {5000: "isotonic", 300: "platt"}[n]
        assert (np.diff(cx) >= 0).all() and (np.diff(cy) >= 0).all()
        grid = np.linspace(0.05, 0.95, 19)
        assert np.abs(np.interp(grid, cx, cy) - grid ** 2).max() < (0.1 if n == 5000 else 0.2)


def test_fit_learns_max_over_windows() -> None:
    """A text is positive iff one of its windows carries the signal; MIL training finds it."""
    from guard.models.features import Windowed

    rng = np.random.default_rng(0)
    n_texts, lens = 400, rng.integers(1, 4, 400)
    owner = np.repeat(np.arange(n_texts), lens)
    x = rng.standard_normal((len(owner), 6)).astype(np.float32)
    y = np.zeros((n_texts, len(CATEGORIES)), np.float32)
    pos = rng.random(n_texts) < 0.4
    first = np.concatenate([[0], np.cumsum(lens)[:-1]])
    x[first[pos] + lens[pos] - 1, 0] += 4.0  # the signal sits in the last window only
    y[pos, 0] = 1
    w = np.ones_like(y)
    win = Windowed([np.zeros(1)] * len(owner), owner, [(0, 0)] * len(owner))
    cfg = T.TrainConfig(hidden=8, epochs=30, batch_texts=64, dropout=0.0, input_dropout=0.0)
    model = T.fit(x, win, y, w, cfg)
    from guard.evaluation import average_precision

    assert average_precision(y[:, 0], T.text_logits(model, x, win.offsets)[:, 0]) > 0.95


def test_fit_is_deterministic_for_a_seed() -> None:
    from guard.models.features import Windowed

    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    owner = np.repeat(np.arange(30), 2)
    y = (rng.random((30, len(CATEGORIES))) < 0.3).astype(np.float32)
    win = Windowed([np.zeros(1)] * 60, owner, [(0, 0)] * 60)
    cfg = T.TrainConfig(hidden=4, epochs=3, batch_texts=8)
    a, b = (T.fit(x, win, y, np.ones_like(y), cfg) for _ in range(2))
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        np.testing.assert_array_equal(wa, wb)


def _prepared(n: int, seed: int = 0) -> T.Prepared:
    """A tiny synthetic training set: one window per text, category 0 decided by feature 0."""
    from guard.models.data import Example, LabeledSet
    from guard.models.features import Windowed

    rng = np.random.default_rng(seed)
    pooled = _pooled(n, seed)
    y = np.zeros((n, len(CATEGORIES)), np.float32)
    y[:, 0] = (pooled[:, 6, 0] > 0.1).astype(np.float32)
    known = np.ones_like(y, bool)
    ex = tuple(Example(f"text {i}", {}, "synthetic", "train") for i in range(n))
    data = LabeledSet(ex, y, known)
    ids = _ids(n, seed)
    win = Windowed(ids, np.arange(n, dtype=np.int64), [(0, 1)] * n)
    return T.Prepared(data, data, win, win, pooled.astype(np.float16), pooled.astype(np.float16),
                      rng.integers(0, 5, n), np.zeros(n, bool))


def _adapter_head(rng: np.random.Generator, hidden: int = 8, holdout_fold: int = 0) -> T.AdapterHead:
    w0 = (rng.standard_normal((3 * 384, hidden)) * 0.05).astype(np.float16).astype(np.float32)
    w1 = rng.standard_normal((hidden, len(CATEGORIES))).astype(np.float16).astype(np.float32)
    return T.AdapterHead("lora-test", (2, 4, 6), float(np.sqrt(384)), (w0, w1),
                         (np.zeros(hidden, np.float32), np.zeros(len(CATEGORIES), np.float32)), holdout_fold, 5)


def test_heads_from_adapter_serve_its_head_and_calibrate_on_the_held_out_fold(tmp_path: Path) -> None:
    """The adapter's head is the served MLP as is; labels outside the held-out fold do not move
    the calibration or thresholds (without the n-gram part, which is fitted on the other folds)."""
    rng = np.random.default_rng(11)
    prep = _prepared(600)
    head = _adapter_head(rng)
    cfg = T.TrainConfig(layers=head.layers, hidden=8, ngram=False)
    tr = T.heads_from_adapter(prep, cfg, head, lambda _m: None)
    assert all(np.array_equal(a, b) for a, b in zip(tr.model.weights, head.weights, strict=True))
    assert tr.oof_raw.shape[0] == int((prep.folds == 0).sum())

    flipped = T.Prepared(T.LabeledSet(prep.train.examples, np.where((prep.folds != 0)[:, None], 1 - prep.train.y,
                                                                    prep.train.y), prep.train.known),
                         prep.dev, prep.wtr, prep.wdv, prep.pooled_tr, prep.pooled_dv, prep.folds, prep.is_aug)
    tr2 = T.heads_from_adapter(flipped, cfg, head, lambda _m: None)
    np.testing.assert_array_equal(tr.calib_y, tr2.calib_y)
    np.testing.assert_array_equal(tr.thresholds, tr2.thresholds)

    # what the trainer reports on dev is what the saved heads serve
    T.to_heads(tr, "test").save(tmp_path / "h.npz")
    saved = Heads.load(tmp_path / "h.npz")
    pooled = prep.pooled_dv.astype(np.float32)
    np.testing.assert_allclose(saved.raw(pooled, prep.wdv.ids), T.dev_scores(tr, prep, calibrated=False), atol=1e-5)
    np.testing.assert_allclose(saved.predict(pooled, prep.wdv.ids), T.dev_scores(tr, prep), atol=1e-5)


def test_heads_from_adapter_with_ngram_part_and_without_a_holdout() -> None:
    rng = np.random.default_rng(12)
    prep = _prepared(600, seed=3)
    tr = T.heads_from_adapter(prep, T.TrainConfig(layers=(2, 4, 6), hidden=8), _adapter_head(rng), lambda _m: None)
    assert tr.ngram is not None and tr.mix is not None and set(tr.mix.tolist()) <= set(T.MIX_GRID)
    with pytest.raises(ValueError, match="held out no train fold"):
        T.heads_from_adapter(prep, T.TrainConfig(), _adapter_head(rng, holdout_fold=-1), lambda _m: None)


def test_heads_version_key_keeps_every_train_config_field() -> None:
    """Every ``TrainConfig`` field names heads from the first run on (``source_power`` included):
    no key of theirs is a later one, so none is dropped at its default."""
    cfg = asdict(T.TrainConfig())
    assert T.config_key(cfg, True) == cfg
    assert T.config_key(cfg, False) == {k: v for k, v in cfg.items() if k != "implied_weight"}


def test_saving_heads_never_rewrites_a_file_the_repository_links_to(heads: Heads, tmp_path: Path) -> None:
    """``guard models build`` hard-links the served heads to the committed file; a training run
    that saved over the committed file in place changed what Triton serves without a build."""
    from dataclasses import replace

    from guard.models.repository import place

    committed, served = tmp_path / "heads.npz", tmp_path / "repo" / "heads.npz"
    heads.save(committed)
    place(committed, served)
    replace(heads, version="experimental-retrain").save(committed)
    assert Heads.load(served).version == heads.version
    assert Heads.load(committed).version == "experimental-retrain"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left

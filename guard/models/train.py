"""``guard models train``: per-category heads over the frozen int8 MiniLM encoder.

Pipeline (deterministic for a seed):

1. Read the shared labeled JSONL (``--data``, default ``../shared/data``); ``--exclude-license
   noncommercial`` drops the sources whose licence (data README table) forbids commercial use.
2. Cut texts into the windows streams are scored on (``guard.windowing``: 64 content tokens,
   one window every 16 new tokens, so prefixes and overlapping windows too). Dev texts get all of
   them; train texts a bounded subset (``features.train_stream_windows``: the whole text, some
   prefixes, up to 8 windows of a long text). Training on plain 64-token blocks instead cost 0.08
   dev AUPRC on violence and 0.05 on dangerous: long benign answers fired on their short first
   windows. Each distinct window is encoded once with the *serving* int8 encoder and cached under
   ``build/features``. ``--augment`` adds obfuscated copies (leetspeak, spacing, homoglyphs, ...;
   ``guard.models.augment``) of short train texts with the same labels.
3. Train an MLP (``feature_layers`` → L2-normalise each → concat → standardise → ReLU hidden layer →
   8 sigmoid outputs) with a masked, class-weighted multi-label BCE. A text's logit per category is
   the max over its windows (multiple-instance learning), which is exactly how streams are scored: a
   positive text needs one window to fire, a negative text needs every window quiet. Benign texts
   (every category 0, incl. benign LLM outputs) are negatives for all categories.
4. Cross-fitted calibration: K folds of *train* give out-of-fold scores; per category an isotonic
   (Platt when positives are few) map from raw to calibrated probability is fitted on them; the
   threshold (max F1) is chosen on the same out-of-fold scores. Dev stays clean for selection and
   is only *reported*.
5. Write ``guard/models/heads/heads.npz`` (weights stored float16) and ``calibration.json``
   (thresholds, dev and out-of-fold figures, command, data manifest).

With an encoder adapter that has a head (``guard models finetune``; ``--mlp auto`` picks it up),
step 3 is skipped: that head, trained together with the adapter, is the MLP, and step 4 uses the
train fold the fine-tuning held out instead of cross-fitting (``heads_from_adapter`` says why).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from guard.evaluation import average_precision, best_f1_threshold, evaluate_scores, implied_auprc
from guard.models import paths
from guard.models.tokenizer import tokenizer_settings, version_salt
from guard.models.build import ENCODER_ID
from guard.models.data import (
    IMPLIED_DEFAULT,
    IMPLIED_RULES,
    LabeledSet,
    implied_labels,
    implied_rules_doc,
    manifest,
    noncommercial_sources,
    read_examples,
)
from guard.models.features import (
    STREAM_STRIDE,
    TRAIN_STRIDE,
    WINDOW_TOKENS,
    FeatureCache,
    Windowed,
    encoder_fingerprint,
    stream_windows,
    train_stream_windows,
    window_texts,
)
from guard.models.heads import Heads
from guard.models.ngrams import DEFAULT_DIM, NGRAM_FEATURES, NgramHead, sparse_features
from guard.types import CATEGORIES

C = len(CATEGORIES)

#: benign assistant-style outputs: hard negatives for an *output* guardrail, up-weighted
LLM_BENIGN_SOURCES = ("alpaca_eval_outputs", "xstest_completions", "harmbench_refusals",
                      "safety_tuned_refusals", "counsel_chat")


@dataclass(frozen=True)
class TrainConfig:
    layers: tuple[int, ...] = (2, 4, 6)
    hidden: int = 64  # 0 = logistic (one dense layer)
    epochs: int = 20
    batch_texts: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4  # decoupled (AdamW), weights only
    dropout: float = 0.2  # on the hidden layer
    input_dropout: float = 0.1
    pos_weight_power: float = 0.5  # pos weight = (neg/pos) ** power, clipped
    max_pos_weight: float = 10.0
    source_power: float = 0.5  # example weight ∝ (rows of its source) ** -power
    benign_llm_weight: float = 2.0
    implied_weight: float = 1.0  # loss weight of a label implied_labels filled in, against 1 for a given one
    seed: int = 0
    ngram: bool = True  # add the word-piece n-gram head (guard.models.ngrams)
    ngram_c: float = 4.0  # inverse L2 strength of its logistic regressions
    ngram_keep: int = 20_000  # feature rows stored (by max |weight|); 20k lost nothing on dev vs all


# --------------------------------------------------------------------------------------------
# features


def layer_features(pooled: np.ndarray, layers: Sequence[int]) -> np.ndarray:
    """``[n, 7, H]`` (any float dtype) → L2-normalised selected layers, concatenated, float32."""
    sel = pooled[:, list(layers), :].astype(np.float32)
    sel /= np.maximum(np.linalg.norm(sel, axis=-1, keepdims=True), 1e-12)
    return sel.reshape(sel.shape[0], -1)


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = x.std(axis=0, dtype=np.float64).astype(np.float32)
    return mean, np.maximum(std, 1e-4).astype(np.float32)


# --------------------------------------------------------------------------------------------
# model: MLP with max-over-windows, masked weighted BCE, AdamW


@dataclass
class Mlp:
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h


def _init(n_in: int, hidden: int, rng: np.random.Generator) -> Mlp:
    dims = [n_in, hidden, C] if hidden else [n_in, C]
    ws, bs = [], []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        ws.append((rng.standard_normal((a, b)) * np.sqrt(2.0 / a) * (0.5 if b == C else 1.0)).astype(np.float32))
        bs.append(np.zeros(b, np.float32))
    return Mlp(ws, bs)


def _segment_max(z: np.ndarray, starts: np.ndarray, owner_local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-text max of window logits and the 0/1 mask of the windows that attain it."""
    zt = np.maximum.reduceat(z, starts, axis=0)
    hit = (z == zt[owner_local]).astype(np.float32)
    # ties: share the gradient
    cnt = np.add.reduceat(hit, starts, axis=0)
    return zt, hit / np.maximum(cnt, 1.0)[owner_local]


def window_logits(model: Mlp, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    """``[n_windows, C]`` logits, in slices (the hidden activations of all windows at once are large)."""
    return np.concatenate([model.logits(x[i:i + batch]) for i in range(0, len(x), batch)] or
                          [np.zeros((0, C), np.float32)])


def text_logits(model: Mlp, x: np.ndarray, offsets: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Max-over-windows logits ``[n_texts, C]`` (windows grouped by text, ``offsets`` [n+1])."""
    z = window_logits(model, x, batch)
    return np.maximum.reduceat(z, offsets[:-1], axis=0) if len(offsets) > 1 else np.zeros((0, C))


#: candidate weights of the n-gram logit in ``mlp + mix * ngram``; chosen per category out of fold
MIX_GRID = (0.0, 0.5, 1.0, 1.5)


def fit_ngram(xs: Any, windows: Windowed, y: np.ndarray, w: np.ndarray, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-category L2 logistic regression on window n-grams → dense ``[dim, C]`` weights, ``[C]`` bias.

    A window inherits its text's label and ``1 / windows`` of its text's weight, so a long text
    counts as much as a short one. Linear and convex: no multiple-instance max here (the MLP does
    that); the sum is calibrated as a whole afterwards.
    """
    from sklearn.linear_model import LogisticRegression

    owner = windows.owner
    per_text = np.bincount(owner, minlength=len(y)).astype(np.float64)
    coef = np.zeros((xs.shape[1], C), np.float32)
    bias = np.zeros(C, np.float32)
    for j in range(C):
        sw = w[owner, j] / np.maximum(per_text[owner], 1.0)
        k = sw > 0
        yj = y[owner, j][k]
        if not k.any() or yj.min() == yj.max():  # no row labels it, or one class only
            continue
        lr = LogisticRegression(C=cfg.ngram_c, solver="liblinear", max_iter=300)
        lr.fit(xs[k], yj, sample_weight=sw[k] / sw[k].mean())
        coef[:, j], bias[j] = lr.coef_[0], lr.intercept_[0]
    return coef, bias


def ngram_window_logits(xs: Any, coef: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.asarray(xs @ coef, dtype=np.float32) + bias


def example_weights(data: LabeledSet, cfg: TrainConfig) -> np.ndarray:
    """``[n, C]`` loss weights: 0 where unknown; source balance × class weight × LLM-benign boost,
    × ``implied_weight`` on implied labels (a rule is a weaker witness than an annotator)."""
    src = data.sources
    names, inv, counts = np.unique(src, return_inverse=True, return_counts=True)
    sw = counts[inv].astype(np.float64) ** -cfg.source_power
    benign = (data.known.sum(1) == C) & (data.y.sum(1) == 0)
    boost = np.where(np.isin(src, LLM_BENIGN_SOURCES) & benign, cfg.benign_llm_weight, 1.0)
    w = (sw * boost)[:, None] * data.known * np.where(data.implied_cells, cfg.implied_weight, 1.0)
    pw = np.ones(C)
    for j in range(C):
        pos = float((w[:, j] * data.y[:, j]).sum())
        neg = float((w[:, j] * (1 - data.y[:, j])).sum())
        if pos > 0:
            pw[j] = float(np.clip((neg / pos) ** cfg.pos_weight_power, 1.0, cfg.max_pos_weight))
    w = w * np.where(data.y > 0, pw[None, :], 1.0)
    return (w / w[data.known].mean()).astype(np.float32)


def fit(x: np.ndarray, windows: Windowed, y: np.ndarray, w: np.ndarray, cfg: TrainConfig,
        log: Any = None) -> Mlp:
    """Train on window features ``x`` [Nw, F] grouped by text (``windows.offsets``)."""
    rng = np.random.default_rng(cfg.seed)
    offsets = windows.offsets
    n_texts = len(offsets) - 1
    model = _init(x.shape[1], cfg.hidden, rng)
    params = model.weights + model.biases
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    step = 0
    steps_total = cfg.epochs * int(np.ceil(n_texts / cfg.batch_texts))
    n_w = len(model.weights)
    for epoch in range(cfg.epochs):
        perm = rng.permutation(n_texts)
        loss_sum = 0.0
        for bstart in range(0, n_texts, cfg.batch_texts):
            tb = perm[bstart:bstart + cfg.batch_texts]
            lens = offsets[tb + 1] - offsets[tb]
            widx = np.concatenate([np.arange(offsets[t], offsets[t + 1]) for t in tb])
            starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
            owner_local = np.repeat(np.arange(len(tb)), lens)
            xb = x[widx]
            if cfg.input_dropout > 0:
                keep = rng.random(xb.shape, dtype=np.float32) >= cfg.input_dropout
                xb = xb * keep / (1 - cfg.input_dropout)
            # forward
            acts = [xb]
            masks = []
            h = xb
            for i in range(n_w):
                h = h @ model.weights[i] + model.biases[i]
                if i < n_w - 1:
                    h = np.maximum(h, 0.0)
                    if cfg.dropout > 0:
                        dm = (rng.random(h.shape, dtype=np.float32) >= cfg.dropout) / (1 - cfg.dropout)
                        h = h * dm
                        masks.append(dm)
                    else:
                        masks.append(None)
                    acts.append(h)
            zt, share = _segment_max(h, starts, owner_local)
            yb, wb = y[tb], w[tb]
            p = 1.0 / (1.0 + np.exp(-np.clip(zt, -40, 40)))
            loss = wb * (np.logaddexp(0, zt) - yb * zt)
            loss_sum += float(loss.sum())
            gt = wb * (p - yb) / len(tb)
            g = gt[owner_local] * share  # [nw, C]
            # backward
            grads_w: list[np.ndarray] = [np.empty(0)] * n_w
            grads_b: list[np.ndarray] = [np.empty(0)] * n_w
            for i in range(n_w - 1, -1, -1):
                a = acts[i]
                grads_w[i] = a.T @ g
                grads_b[i] = g.sum(axis=0)
                if i > 0:
                    g = g @ model.weights[i].T
                    g = g * (a > 0)
                    if masks[i - 1] is not None:
                        g = g * (masks[i - 1] > 0) / (1 - cfg.dropout)
            grads = grads_w + grads_b
            step += 1
            lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * min(step / steps_total, 1.0)))  # cosine decay
            for k, (prm, gr) in enumerate(zip(params, grads, strict=True)):
                m1[k] = b1 * m1[k] + (1 - b1) * gr
                m2[k] = b2 * m2[k] + (1 - b2) * gr * gr
                mh = m1[k] / (1 - b1 ** step)
                vh = m2[k] / (1 - b2 ** step)
                if k < n_w:
                    prm *= 1 - lr * cfg.weight_decay
                prm -= (lr * mh / (np.sqrt(vh) + eps)).astype(np.float32)
        if log is not None:
            log(f"    epoch {epoch + 1}/{cfg.epochs} loss {loss_sum / n_texts:.4f}")
    return model


# --------------------------------------------------------------------------------------------
# calibration and thresholds


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


CALIB_KNOTS = 48
MIN_POS_ISOTONIC = 200


def calibration_curve(raw: np.ndarray, y: np.ndarray, knots: int = CALIB_KNOTS) -> tuple[np.ndarray, np.ndarray, str]:
    """Monotone map raw → calibrated as ``knots`` (x, y) points, strictly increasing in y.

    Isotonic regression on out-of-fold scores when there are enough positives, else Platt scaling
    on the logit. A tiny slope is added so the map is strictly increasing (keeps the ranking, and
    so AUPRC, of the raw scores).
    """
    raw = np.asarray(raw, np.float64)
    y = np.asarray(y, np.float64)
    qs = np.unique(np.quantile(raw, np.linspace(0, 1, knots - 2)))
    # knots: 0, quantiles of raw, 1 — and extra knots in the upper tail where positives live
    pos_q = np.quantile(raw[y > 0], np.linspace(0, 1, 12)) if y.sum() else np.zeros(0)
    xs = np.unique(np.clip(np.concatenate([[0.0, 1.0], qs, pos_q]), 0, 1))
    if len(xs) > knots:
        xs = np.unique(np.concatenate([[0.0, 1.0], np.quantile(xs, np.linspace(0, 1, knots - 2))]))
    if y.sum() >= MIN_POS_ISOTONIC and (1 - y).sum() >= MIN_POS_ISOTONIC:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        iso.fit(raw, y)
        ys = iso.predict(xs)
        method = "isotonic"
    else:
        from sklearn.linear_model import LogisticRegression

        lz = np.log(np.clip(raw, 1e-7, 1 - 1e-7) / (1 - np.clip(raw, 1e-7, 1 - 1e-7)))
        lr = LogisticRegression(C=1.0)
        lr.fit(lz[:, None], y)
        lx = np.log(np.clip(xs, 1e-7, 1 - 1e-7) / (1 - np.clip(xs, 1e-7, 1 - 1e-7)))
        ys = lr.predict_proba(lx[:, None])[:, 1]
        method = "platt"
    ys = np.maximum.accumulate(ys)
    ys = 0.995 * ys + 0.005 * xs  # strictly increasing wherever xs is
    ys = np.maximum.accumulate(np.clip(ys, 0, 1))
    # pad to the fixed knot count (repeat the last knot; np.interp tolerates equal trailing xs)
    if len(xs) < knots:
        pad = knots - len(xs)
        xs = np.concatenate([xs, np.full(pad, xs[-1])])
        ys = np.concatenate([ys, np.full(pad, ys[-1])])
    return xs.astype(np.float32), ys.astype(np.float32), method


def apply_calibration(raw: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    out = np.empty_like(raw, dtype=np.float32)
    for j in range(raw.shape[1]):
        out[:, j] = np.interp(raw[:, j], cx[j], cy[j])
    return out


# --------------------------------------------------------------------------------------------
# experiment plumbing


@dataclass
class Prepared:
    train: LabeledSet
    dev: LabeledSet
    wtr: Windowed
    wdv: Windowed
    pooled_tr: np.ndarray  # float16 [Nw, 7, 384]
    pooled_dv: np.ndarray
    folds: np.ndarray  # [n_train] fold id
    is_aug: np.ndarray  # [n_train] bool: obfuscated copy (trained on, never calibrated on)
    excluded: list[str] = field(default_factory=list)
    dev_obf: LabeledSet | None = None  # obfuscated copies of short dev texts (robustness check)
    wdv_obf: Windowed | None = None
    pooled_dv_obf: np.ndarray | None = None
    #: ``token_keys`` of the original train texts (they come first; copies follow), when known
    keys: list[bytes] = field(default_factory=list)
    _ngram: dict[str, Any] = field(default_factory=dict)  # sparse n-gram features, built on first use

    def ngram_features(self, which: str) -> Any:
        """``train`` / ``dev`` / ``dev_obf`` window n-gram matrices (scipy CSR), computed once."""
        if which not in self._ngram:
            win = {"train": self.wtr, "dev": self.wdv, "dev_obf": self.wdv_obf}[which]
            assert win is not None
            self._ngram[which] = sparse_features(win.ids, DEFAULT_DIM)
        return self._ngram[which]


def fold_of(texts: Sequence[str], k: int) -> np.ndarray:
    """Fold by text hash (a different slice of the SHA-1 than the train/dev split uses)."""
    return np.array([int(hashlib.sha1(t.encode("utf-8")).hexdigest()[8:16], 16) % k for t in texts])


def concat(a: LabeledSet, b: LabeledSet) -> LabeledSet:
    implied = (None if a.implied is None and b.implied is None
               else np.concatenate([a.implied_cells, b.implied_cells]))
    return LabeledSet(a.examples + b.examples, np.concatenate([a.y, b.y]), np.concatenate([a.known, b.known]), implied)


def obfuscated_copies(data: LabeledSet, fraction: float, salt: str, max_chars: int = 400,
                      keys: Sequence[bytes] | None = None) -> tuple[LabeledSet, np.ndarray]:
    """Obfuscated copies (same labels) of a hash-chosen ``fraction`` of the short texts
    (``keys``: the texts' ``token_keys``, when the caller has them already)."""
    from guard.models.augment import obfuscate

    copies, idx = rewritten_copies(data, fraction, salt, lambda text: obfuscate(text, salt + text), max_chars)
    # the tokenizer drops zero-width characters: such a copy is its original again, and would
    # count as "obfuscated" in the robustness figure and as extra weight in training
    originals = [keys[i] for i in idx] if keys is not None else token_keys([data.examples[i].text for i in idx])
    changed = np.array([a != b for a, b in zip(token_keys(copies.texts), originals, strict=True)], bool)
    return copies.subset(changed), idx[changed]


def unpunctuated_copies(data: LabeledSet, fraction: float) -> tuple[LabeledSet, np.ndarray]:
    """Copies (same labels) of a hash-chosen ``fraction`` of the texts in hatexplain's formatting
    (``guard.models.augment.unpunctuated``); texts already so formatted get none."""
    from guard.models.augment import unpunctuated

    copies, idx = rewritten_copies(data, fraction, "unpunctuated", unpunctuated, None)
    changed = np.array([c.text != data.examples[i].text for c, i in zip(copies.examples, idx, strict=True)], bool)
    return copies.subset(changed), idx[changed]


def train_copies(train: LabeledSet, augment: float, unpunctuated: float,
                 keys: Sequence[bytes] | None = None) -> list[tuple[str, LabeledSet, np.ndarray]]:
    """The augmented copies both training commands add, each as (kind, copies, originals' indices),
    all made from the originals: obfuscated (``augment``), then unpunctuated."""
    out = [("obfuscated", *obfuscated_copies(train, augment, "train", keys=keys))] if augment > 0 else []
    if unpunctuated > 0:
        out.append(("unpunctuated", *unpunctuated_copies(train, unpunctuated)))
    return out


def rewritten_copies(data: LabeledSet, fraction: float, salt: str, rewrite: Callable[[str], str],
                     max_chars: int | None) -> tuple[LabeledSet, np.ndarray]:
    """``rewrite``'s copies, with the labels, of a hash-chosen ``fraction`` of the texts (of at most
    ``max_chars``), and their indices."""
    from guard.models.data import Example

    picked = []
    for i, e in enumerate(data.examples):
        h = int(hashlib.sha1((salt + e.text).encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
        if (max_chars is None or len(e.text) <= max_chars) and h < fraction:
            picked.append(i)
    idx = np.asarray(picked, dtype=np.int64)
    picked_set = data.subset(np.isin(np.arange(len(data)), idx))  # labels, known and implied cells alike
    ex = tuple(Example(rewrite(e.text), e.labels, e.source, e.split) for e in picked_set.examples)
    return replace(picked_set, examples=ex), idx


def config_key(config: dict[str, Any], implied: bool, later: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config that names a trained file. ``implied_weight`` counts only when implied labels are
    used, and ``later`` keys (added to the config after files were first named, with the value those
    files had) only when they differ from that value: a run at that value keeps its old version."""
    drop = {k for k, v in (later or {}).items() if config.get(k) == v} | (set() if implied else {"implied_weight"})
    return {k: v for k, v in config.items() if k not in drop}


def token_keys(texts: Sequence[str]) -> list[bytes]:
    """What the model reads of each text: its token ids (the tokenizer ignores case, @mentions,
    URLs, ``RT`` and invisible characters), so two texts with one key are one input to it."""
    from guard.models.tokenizer import WindowTokenizer

    tok = WindowTokenizer.from_file()
    keys: list[bytes] = []
    for b in range(0, len(texts), 2048):
        keys += [np.asarray(e.ids, np.int32).tobytes() for e in tok.encode_batch(list(texts[b:b + 2048]))]
    return keys


def without_dev_twins(train: LabeledSet, dev: LabeledSet) -> tuple[LabeledSet, int]:
    """Train less its texts that read exactly as a dev text does (the split hashes the raw string:
    "@bob you're a bitch" and "@amy you're a bitch" fell on both sides), and how many went."""
    kept, _, dropped = without_dev_twins_keyed(train, dev)
    return kept, dropped


def without_dev_twins_keyed(train: LabeledSet, dev: LabeledSet) -> tuple[LabeledSet, list[bytes], int]:
    """``without_dev_twins``, with the kept texts' ``token_keys`` (tokenizing train is not free)."""
    dev_keys = set(token_keys(dev.texts))
    keys = token_keys(train.texts)
    keep = np.array([k not in dev_keys for k in keys], bool)
    return train.subset(keep), [k for k, kept in zip(keys, keep, strict=True) if kept], int((~keep).sum())


def train_dev(data: LabeledSet, implied: bool = IMPLIED_DEFAULT) -> tuple[LabeledSet, LabeledSet]:
    """The train split (with the labels its sources imply when ``implied``: ``implied_labels``),
    and dev as given, so dev figures stay comparable with ``guard eval`` and other detectors'."""
    split = np.array([e.split for e in data.examples])
    train = data.subset(split == "train")
    return (implied_labels(train) if implied else train), data.subset(split == "dev")


def prepare(data_dir: Path, cache_dir: Path, exclude: Sequence[str], folds: int, log: Any,
            augment: float = 0.0, obf_dev: float = 0.0, train_windows: str = "stream",
            encode_folds: Sequence[int] | None = None, implied: bool = IMPLIED_DEFAULT,
            unpunctuated: float = 0.0) -> Prepared:
    """Texts, windows and cached features. ``encode_folds``: only those train folds get pooled
    features (the others zeros) -- with an adapter's head nothing is fitted on the rest's features."""
    data = read_examples([data_dir], exclude_sources=exclude)
    train, dev = train_dev(data, implied)
    train, keys, twins = without_dev_twins_keyed(train, dev)
    log(f"data: {len(train)} train / {len(dev)} dev texts from {len(set(data.sources.tolist()))} sources "
        f"({twins} train texts that read as a dev text left out)")
    fold = fold_of(train.texts, folds)
    is_aug = np.zeros(len(train), bool)
    for kind, aug, orig in train_copies(train, augment, unpunctuated, keys):
        train = concat(train, aug)
        fold = np.concatenate([fold, fold[orig]])  # a copy shares its original's fold: no leak
        is_aug = np.concatenate([is_aug, np.ones(len(aug), bool)])
        log(f"augmentation: {len(aug)} {kind} copies of train texts")
    if train_windows == "stream":
        wtr = train_stream_windows(train.texts, WINDOW_TOKENS, STREAM_STRIDE)
    else:
        wtr = window_texts(train.texts, WINDOW_TOKENS, TRAIN_STRIDE)
    wdv = stream_windows(dev.texts, WINDOW_TOKENS, STREAM_STRIDE)
    enc_tr = np.ones(len(wtr.ids), bool) if encode_folds is None else np.isin(fold[wtr.owner], list(encode_folds))
    all_ids = [wtr.ids[i] for i in np.flatnonzero(enc_tr)] + wdv.ids
    dev_obf = wdv_obf = None
    if obf_dev > 0:
        dev_obf, _ = obfuscated_copies(dev, obf_dev, "dev")
        wdv_obf = stream_windows(dev_obf.texts, WINDOW_TOKENS, STREAM_STRIDE)
        all_ids = all_ids + wdv_obf.ids
    log(f"windows: {len(wtr.ids)} train, {len(wdv.ids)} dev")
    cache = FeatureCache(cache_dir)
    n_new = cache.fill(all_ids, progress=log)
    log(f"feature cache {cache.dir}: {len(cache)} windows ({n_new} newly encoded)")
    pooled_tr = np.zeros((len(wtr.ids), 7, 384), np.float16)
    if enc_tr.any():
        pooled_tr[enc_tr] = cache.get([wtr.ids[i] for i in np.flatnonzero(enc_tr)])
    return Prepared(train, dev, wtr, wdv, pooled_tr, cache.get(wdv.ids), fold, is_aug,
                    list(exclude), dev_obf, wdv_obf,
                    cache.get(wdv_obf.ids) if wdv_obf is not None else None, keys)


def _subset_windows(w: Windowed, text_mask: np.ndarray) -> tuple[np.ndarray, Windowed]:
    """Window indices of the selected texts and the re-indexed ``Windowed``."""
    keep = text_mask[w.owner]
    new_index = np.cumsum(text_mask) - 1
    owner = new_index[w.owner[keep]]
    idx = np.flatnonzero(keep)
    return idx, Windowed([w.ids[i] for i in idx], owner, [w.char_spans[i] for i in idx])


@dataclass
class Trained:
    cfg: TrainConfig
    mean: np.ndarray
    scale: np.ndarray
    model: Mlp
    calib_x: np.ndarray
    calib_y: np.ndarray
    methods: list[str]
    oof_raw: np.ndarray  # [n_train, C] out-of-fold raw probabilities
    thresholds: np.ndarray
    oof_metrics: dict[str, Any]
    ngram: NgramHead | None = None
    mix: np.ndarray | None = None  # [C] weight of the n-gram logit
    mix_oof_auprc: dict[str, dict[str, float]] = field(default_factory=dict)


def train_heads(prep: Prepared, cfg: TrainConfig, n_folds: int, log: Any,
                calibrate: bool = True) -> Trained:
    x = layer_features(prep.pooled_tr, cfg.layers)
    mean, scale = standardiser(x)
    x = (x - mean) / scale
    w = example_weights(prep.train, cfg)
    y = prep.train.y
    xs = prep.ngram_features("train") if cfg.ngram else None
    mixes = MIX_GRID if cfg.ngram else (0.0,)
    oof_z = np.zeros((len(mixes), len(prep.train), C), np.float32)  # out-of-fold text logits per mix
    if calibrate:
        for f in range(n_folds):
            t0 = time.perf_counter()
            tr_mask = prep.folds != f
            idx, wsub = _subset_windows(prep.wtr, tr_mask)
            m = fit(x[idx], wsub, y[tr_mask], w[tr_mask], replace(cfg, seed=cfg.seed + 1 + f))
            ho = ~tr_mask
            hidx, wh = _subset_windows(prep.wtr, ho)
            zm = window_logits(m, x[hidx])
            zn = np.zeros_like(zm)
            if xs is not None:
                coef, bias = fit_ngram(xs[idx], wsub, y[tr_mask], w[tr_mask], cfg)
                zn = ngram_window_logits(xs[hidx], coef, bias)
            for a, mix in enumerate(mixes):
                oof_z[a][ho] = np.maximum.reduceat(zm + mix * zn, wh.offsets[:-1], axis=0)
            log(f"  fold {f + 1}/{n_folds} done in {time.perf_counter() - t0:.0f}s")
    t0 = time.perf_counter()
    model = fit(x, prep.wtr, y, w, cfg, log=None)
    # store weights as float16 (the committed file); calibrate what will actually be served
    model = Mlp([wt.astype(np.float16).astype(np.float32) for wt in model.weights],
                [bb.astype(np.float32) for bb in model.biases])
    ngram = None
    if xs is not None:
        coef, bias = fit_ngram(xs, prep.wtr, y, w, cfg)
        ngram = NgramHead.from_dense(coef, bias, cfg.ngram_keep)
    log(f"  final fit {time.perf_counter() - t0:.0f}s")
    # the n-gram weight per category: best out-of-fold AUPRC on original (not augmented) texts
    orig = ~prep.is_aug
    mix, choice, mix_auprc = choose_mix(oof_z, y, prep.train.known, orig, mixes) if calibrate and ngram is not None \
        else (np.ones(C, np.float32) if ngram is not None else None, np.zeros(C, np.int64), {})
    if mix is not None and mix_auprc:
        log("  n-gram mix per category: " + " ".join(f"{c}={m}" for c, m in zip(CATEGORIES, mix, strict=True)))
    oof = _sigmoid(oof_z[choice, np.arange(len(prep.train))[:, None], np.arange(C)[None, :]])
    if calibrate:
        cx, cy, methods, thr, oof_metrics = calibrate_on(oof, y, prep.train.known, orig)
    else:
        cx = np.tile(np.linspace(0, 1, CALIB_KNOTS, dtype=np.float32), (C, 1))
        cy, methods, thr, oof_metrics = cx.copy(), ["identity"] * C, np.full(C, 0.5), {}
    return Trained(cfg, mean, scale, model, cx, cy, methods, oof, thr, oof_metrics, ngram, mix, mix_auprc)


def choose_mix(z: np.ndarray, y: np.ndarray, known: np.ndarray, rows: np.ndarray,
               mixes: Sequence[float]) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, float]]]:
    """Per category, the n-gram weight whose held-out text logits ``z[mix]`` rank best (AUPRC on ``rows``)."""
    choice = np.zeros(C, np.int64)
    auprc: dict[str, dict[str, float]] = {}
    for j, cat in enumerate(CATEGORIES):
        k = known[:, j] & rows
        aps = [average_precision(y[k, j], z[a][k, j]) or 0.0 for a in range(len(mixes))]
        auprc[cat] = {str(m): round(v, 4) for m, v in zip(mixes, aps, strict=True)}
        choice[j] = int(np.argmax(aps))
    return np.asarray([mixes[a] for a in choice], np.float32), choice, auprc


def calibrate_on(raw: np.ndarray, y: np.ndarray, known: np.ndarray, rows: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, dict[str, Any]]:
    """Calibration curves and max-F1 thresholds fitted on held-out scores of ``rows``; their figures."""
    cx = np.zeros((C, CALIB_KNOTS), np.float32)
    cy = np.zeros((C, CALIB_KNOTS), np.float32)
    methods = [""] * C
    one_class = np.zeros(C, bool)
    for j in range(C):
        k = known[:, j] & rows
        one_class[j] = not k.any() or y[k, j].min() == y[k, j].max()
        if one_class[j]:  # nothing to fit a map on: keep the raw score
            cx[j] = cy[j] = np.linspace(0, 1, CALIB_KNOTS, dtype=np.float32)
            methods[j] = "identity"
            continue
        cx[j], cy[j], methods[j] = calibration_curve(raw[k, j], y[k, j])
    cal = apply_calibration(raw, cx, cy)
    thr = np.full(C, 0.5)
    metrics: dict[str, Any] = {}
    for j, cat in enumerate(CATEGORIES):
        k = known[:, j] & rows
        if one_class[j]:
            continue
        thr[j], f1 = best_f1_threshold(y[k, j], cal[k, j])
        metrics[cat] = {"auprc": round(average_precision(y[k, j], cal[k, j]) or 0, 4),
                        "best_f1": round(f1, 4), "n": int(k.sum()),
                        "positives": int(y[k, j].sum()), "calibration": methods[j]}
    metrics["any"] = evaluate_scores(cal[rows], y[rows], known[rows], thr)["any"]
    return cx, cy, methods, thr, metrics


@dataclass(frozen=True)
class AdapterHead:
    """The head trained with the encoder adapter (``guard models finetune``), served as the MLP."""

    version: str
    layers: tuple[int, ...]
    feature_scale: float
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    holdout_fold: int
    holdout_folds: int

    @classmethod
    def load(cls, head: Path, meta: Path) -> AdapterHead:
        info = json.loads(meta.read_text(encoding="utf-8"))
        with np.load(head, allow_pickle=False) as z:
            n = int(z["n_dense"])
            out = cls(str(z["version"]), tuple(int(v) for v in z["layers"]), float(z["feature_scale"]),
                      tuple(z[f"w{i}"].astype(np.float32) for i in range(n)),
                      tuple(z[f"b{i}"].astype(np.float32) for i in range(n)),
                      int(info["holdout"]["fold"]), int(info["holdout"]["folds"]))
        if out.version != info["version"]:
            raise ValueError(f"{head}: head {out.version} does not belong to adapter {info['version']}")
        return out


def heads_from_adapter(prep: Prepared, cfg: TrainConfig, head: AdapterHead, log: Any) -> Trained:
    """The adapter's head as the MLP; n-gram part, mix, calibration and thresholds around it.

    The encoder has fitted the texts it was fine-tuned on, so scores of those texts are optimistic
    (out-of-fold AUPRC of a head refit on them: hate 0.80, against 0.74 on dev). Everything that must
    see honest scores -- the n-gram mix, the calibration curves and the thresholds -- is therefore
    fitted on the train fold that fine-tuning held out, and the n-gram part is fitted on the rest
    (what the encoder saw), so dev stays untouched.
    """
    holdout = prep.folds == head.holdout_fold  # prepare(folds=head.holdout_folds): copies share their original's fold
    if head.holdout_fold < 0 or not holdout.any():
        raise ValueError("the adapter held out no train fold: nothing honest to calibrate on")
    y, known = prep.train.y, prep.train.known
    mean = np.zeros(len(head.layers) * 384, np.float32)
    scale = np.full_like(mean, 1.0 / head.feature_scale)
    model = Mlp(list(head.weights), list(head.biases))
    # a held-out text that reads exactly as one the adapter trained on is not held out
    originals = ~prep.is_aug
    keys = prep.keys or token_keys([t for t, o in zip(prep.train.texts, originals, strict=True) if o])
    trained = {k for k, h in zip(keys, holdout[originals], strict=True) if not h}
    seen = np.zeros(len(holdout), bool)
    seen[originals] = [k in trained for k in keys]
    cal_rows = holdout & ~prep.is_aug & ~seen
    log(f"  {int((holdout & ~prep.is_aug & seen).sum())} held-out texts read as trained ones: not calibrated on")
    hidx, wh = _subset_windows(prep.wtr, cal_rows)
    zm = window_logits(model, (layer_features(prep.pooled_tr[hidx], head.layers) - mean) / scale)
    ngram, mixes = None, (0.0,)
    zn = np.zeros_like(zm)
    if cfg.ngram:
        t0 = time.perf_counter()
        xs = prep.ngram_features("train")
        idx, wsub = _subset_windows(prep.wtr, ~holdout)
        coef, bias = fit_ngram(xs[idx], wsub, y[~holdout], example_weights(prep.train, cfg)[~holdout], cfg)
        ngram = NgramHead.from_dense(coef, bias, cfg.ngram_keep)
        zn = ngram_window_logits(xs[hidx], ngram.dense(), ngram.bias)  # as served: stored rows only
        mixes = MIX_GRID
        log(f"  n-gram part fitted on {int((~holdout).sum())} texts in {time.perf_counter() - t0:.0f}s")
    z = np.stack([np.maximum.reduceat(zm + m * zn, wh.offsets[:-1], axis=0) for m in mixes])
    yc, kc, rows = y[cal_rows], known[cal_rows], np.ones(int(cal_rows.sum()), bool)
    mix, choice, mix_auprc = choose_mix(z, yc, kc, rows, mixes)
    if ngram is not None:
        log("  n-gram mix per category: " + " ".join(f"{c}={m}" for c, m in zip(CATEGORIES, mix, strict=True)))
    raw = _sigmoid(z[choice, np.arange(len(yc))[:, None], np.arange(C)[None, :]])
    cx, cy, methods, thr, metrics = calibrate_on(raw, yc, kc, rows)
    log(f"  calibrated on {len(yc)} held-out train texts (fold {head.holdout_fold} of {head.holdout_folds})")
    return Trained(cfg, mean, scale, model, cx, cy, methods, raw, thr, metrics, ngram,
                   mix if ngram is not None else None, mix_auprc)


def dev_scores(tr: Trained, prep: Prepared, calibrated: bool = True, obfuscated: bool = False,
               parts: str = "both") -> np.ndarray:
    """Dev text scores; ``parts`` = ``mlp`` / ``ngram`` / ``both`` (ablation: raw, uncalibrated)."""
    pooled, win = (prep.pooled_dv_obf, prep.wdv_obf) if obfuscated else (prep.pooled_dv, prep.wdv)
    assert pooled is not None and win is not None
    x = (layer_features(pooled, tr.cfg.layers) - tr.mean) / tr.scale
    z = window_logits(tr.model, x)
    if tr.ngram is not None and parts != "mlp":
        assert tr.mix is not None
        zn = ngram_window_logits(prep.ngram_features("dev_obf" if obfuscated else "dev"), tr.ngram.dense(),
                                 tr.ngram.bias)
        z = zn if parts == "ngram" else z + tr.mix * zn
    raw = _sigmoid(np.maximum.reduceat(z, win.offsets[:-1], axis=0))
    return apply_calibration(raw, tr.calib_x, tr.calib_y) if calibrated and parts == "both" else raw


def to_heads(tr: Trained, version: str) -> Heads:
    return Heads(
        feature_layers=np.asarray(tr.cfg.layers, dtype=np.int64),
        mean=tr.mean, scale=tr.scale,
        weights=tuple(w.astype(np.float16) for w in tr.model.weights),
        biases=tuple(b.astype(np.float32) for b in tr.model.biases),
        calib_x=tr.calib_x, calib_y=tr.calib_y, version=version, ngram=tr.ngram, mix=tr.mix,
    )


def dev_figures(scores: np.ndarray, prep: Prepared, thr: np.ndarray) -> dict[str, Any]:
    return evaluate_scores(scores, prep.dev.y, prep.dev.known, thr)


# --------------------------------------------------------------------------------------------
# command

COMPARE: dict[str, TrainConfig] = {
    "logistic-last": TrainConfig(layers=(6,), hidden=0, dropout=0.0, input_dropout=0.0, epochs=20, ngram=False),
    "logistic-multi": TrainConfig(layers=(2, 4, 6), hidden=0, dropout=0.0, input_dropout=0.0, epochs=20,
                                  ngram=False),
    "mlp-last": TrainConfig(layers=(6,), hidden=64, ngram=False),
    "mlp-multi": TrainConfig(layers=(2, 4, 6), hidden=64, ngram=False),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guard models train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="shared data directory (default ../shared/data from the repo)")
    p.add_argument("--exclude-license", action="append", default=[], choices=["noncommercial"],
                   help="drop sources under this kind of licence")
    p.add_argument("--exclude-source", action="append", default=[], help="drop a source by name")
    p.add_argument("--out-dir", default=None, help="where heads.npz + calibration.json go "
                                                   "(default guard/models/heads)")
    p.add_argument("--cache", default=None, help="feature cache dir (default build/features)")
    p.add_argument("--folds", type=int, default=5, help="folds for cross-fitted calibration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", default="2,4,6", help="pooled layers the heads read (0=embeddings..6)")
    p.add_argument("--hidden", type=int, default=64, help="hidden units (0 = logistic heads)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--train-windows", choices=["stream", "blocks"], default="stream",
                   help="stream: a bounded subset of each text's stream windows (prefixes, overlaps); "
                        "blocks: non-overlapping 64-token blocks")
    p.add_argument("--implied-labels", action=argparse.BooleanOptionalAction, default=IMPLIED_DEFAULT,
                   help="train on the labels the sources' schemes imply (guard.models.data.IMPLIED_RULES; "
                        "use the same setting as the adapter's fine-tuning)")
    p.add_argument("--implied-weight", type=float, default=TrainConfig.implied_weight,
                   help="loss weight of an implied label, against 1 for a label the source gives "
                        "(with --implied-labels; use the adapter's setting)")
    p.add_argument("--augment", type=float, default=0.15,
                   help="add obfuscated copies (leetspeak, spacing, homoglyphs, ...) of this fraction "
                        "of short train texts, same labels")
    p.add_argument("--obf-dev", type=float, default=0.3,
                   help="also report dev figures on obfuscated copies of this fraction of short dev texts")
    p.add_argument("--unpunctuated", type=float, default=0.0,
                   help="add copies of this fraction of train texts in hatexplain's formatting, same labels "
                        "(use the adapter's setting)")
    p.add_argument("--source-power", type=float, default=TrainConfig.source_power,
                   help="example weight ∝ (rows of its source) ** -power: 0 weighs every row alike, "
                        "1 every source alike (use the adapter's setting)")
    p.add_argument("--no-ngram", dest="ngram", action="store_false",
                   help="MLP over pooled features only (no word-piece n-gram head)")
    p.add_argument("--mlp", choices=["auto", "fit", "adapter"], default="auto",
                   help="adapter: serve the head trained with the encoder adapter (guard models finetune) and "
                        "calibrate on the train fold it held out; fit: fit the MLP here, calibrate out of fold; "
                        "auto: adapter when the committed adapter has a head")
    p.add_argument("--compare", action="store_true",
                   help="also train the comparison grid (logistic vs MLP, last vs several layers) and "
                        "write compare.json next to the heads; dev figures with raw scores")
    return p


def same_data_as_adapter(meta: dict[str, Any], exclude: Sequence[str], args: argparse.Namespace) -> None:
    """Refuse heads whose data settings differ from the adapter's: its MLP and encoder were trained
    under them, so a run with ``--exclude-license noncommercial`` over an adapter that saw those
    sources would ship under a licence-clean name what is not."""
    from guard.errors import ConfigError

    cfg = meta.get("config", {})
    want = {"excluded sources": sorted(meta.get("data", {}).get("excluded_sources", [])),
            "--implied-labels": bool(cfg.get("implied_labels", False)),
            "--augment": float(cfg.get("augment", 0.15)),
            "--unpunctuated": float(cfg.get("unpunctuated", 0.0)),
            "--source-power": float(cfg.get("source_power", 0.5))}
    have = {"excluded sources": sorted(exclude), "--implied-labels": bool(args.implied_labels),
            "--augment": float(args.augment), "--unpunctuated": float(args.unpunctuated),
            "--source-power": float(args.source_power)}
    diff = [f"{k} {have[k]} (adapter: {want[k]})" for k in want if have[k] != want[k]]
    if diff:
        raise ConfigError(f"these settings differ from the adapter's {meta.get('version')}: {'; '.join(diff)}. "
                          "Use the adapter's, or train one with these (guard models finetune), "
                          "or fit the MLP without it (--mlp fit)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    root = paths.repo_root()
    data_dir = Path(args.data) if args.data else (root.parent / "shared" / "data")
    out_dir = Path(args.out_dir) if args.out_dir else paths.heads_path().parent
    cache_dir = Path(args.cache) if args.cache else root / "build" / "features"
    exclude = list(args.exclude_source)
    if "noncommercial" in args.exclude_license:
        exclude += sorted(noncommercial_sources(data_dir))
    head_file = paths.adapter_head_path()
    mode = args.mlp if args.mlp != "auto" else ("adapter" if head_file.exists() else "fit")
    adapter_head = AdapterHead.load(head_file, paths.adapter_path().with_suffix(".json")) if mode == "adapter" else None
    if adapter_head is not None:
        same_data_as_adapter(json.loads(paths.adapter_path().with_suffix(".json").read_text(encoding="utf-8")),
                             exclude, args)
    n_folds = adapter_head.holdout_folds if adapter_head is not None else args.folds
    prep = prepare(data_dir, cache_dir, exclude, n_folds, log, augment=args.augment,
                   obf_dev=args.obf_dev, train_windows=args.train_windows,
                   encode_folds=[adapter_head.holdout_fold] if adapter_head is not None and not args.compare else None,
                   implied=args.implied_labels, unpunctuated=args.unpunctuated)

    cfg = TrainConfig(layers=tuple(int(v) for v in args.layers.split(",")), hidden=args.hidden,
                      epochs=args.epochs, seed=args.seed, ngram=args.ngram, implied_weight=args.implied_weight,
                      source_power=args.source_power)
    if args.hidden == 0:
        cfg = replace(cfg, dropout=0.0, input_dropout=0.0)

    comparison: dict[str, Any] = {}
    if args.compare:
        for name, ccfg in COMPARE.items():
            ccfg = replace(ccfg, seed=args.seed)
            log(f"compare {name}: {ccfg}")
            tr = train_heads(prep, ccfg, args.folds, log, calibrate=False)
            sc = dev_scores(tr, prep, calibrated=False)
            rep = dev_figures(sc, prep, np.full(C, 0.5))
            comparison[name] = {"config": asdict(ccfg),
                                "dev_auprc": {c: v["auprc"] for c, v in rep["categories"].items()},
                                "dev_any_auprc_uncalibrated": rep["any"]["auprc"]}
            if prep.dev_obf is not None:
                ro = evaluate_scores(dev_scores(tr, prep, calibrated=False, obfuscated=True),
                                     prep.dev_obf.y, prep.dev_obf.known, np.full(C, 0.5))
                comparison[name]["dev_obfuscated_auprc"] = {c: v["auprc"] for c, v in ro["categories"].items()}
            log(f"  {name}: " + " ".join(f"{c}={v}" for c, v in comparison[name]["dev_auprc"].items()))

    log(f"training {cfg} (MLP: {mode})")
    if adapter_head is not None:
        cfg = replace(cfg, layers=adapter_head.layers, hidden=int(adapter_head.weights[0].shape[1]))
        tr = heads_from_adapter(prep, cfg, adapter_head, log)
    else:
        tr = train_heads(prep, cfg, args.folds, log)
    sc = dev_scores(tr, prep)
    dev_rep = dev_figures(sc, prep, tr.thresholds)
    dev_implied = implied_auprc(sc, prep.dev, tr.thresholds)
    log("dev AUPRC with the labels training implies: " + " ".join(f"{c}={v}" for c, v in dev_implied.items()))
    dev_best = {}
    for j, cat in enumerate(CATEGORIES):
        k = prep.dev.known[:, j]
        if k.any() and prep.dev.y[k, j].sum():
            t, f1 = best_f1_threshold(prep.dev.y[k, j], sc[k, j])
            dev_best[cat] = {"threshold": round(t, 4), "f1": round(f1, 4)}

    ablation: dict[str, Any] = {}
    if tr.ngram is not None:  # each part alone vs the sum, raw scores on dev (AUPRC is rank-based)
        for parts in ("mlp", "ngram", "both"):
            rep_p = dev_figures(dev_scores(tr, prep, calibrated=False, parts=parts), prep, np.full(C, 0.5))
            ablation[parts] = {c: v["auprc"] for c, v in rep_p["categories"].items()}
        log("dev AUPRC mlp / ngram / both: " + " ".join(
            f"{c}={ablation['mlp'][c]}/{ablation['ngram'][c]}/{ablation['both'][c]}" for c in CATEGORIES))

    dev_obf = None
    if prep.dev_obf is not None:
        ro = evaluate_scores(dev_scores(tr, prep, obfuscated=True), prep.dev_obf.y, prep.dev_obf.known,
                             tr.thresholds)
        dev_obf = {"texts": len(prep.dev_obf), "any_auprc": ro["any"]["auprc"],
                   "auprc": {c: v["auprc"] for c, v in ro["categories"].items()},
                   "recall": {c: v["recall"] for c, v in ro["categories"].items()}}
        log(f"dev obfuscated any AUPRC {ro['any']['auprc']}: " + " ".join(
            f"{c}={v}" for c, v in dev_obf["auprc"].items()))

    version = f"heads-{time.strftime('%Y%m%d')}-" + hashlib.sha1(
        json.dumps(config_key(asdict(cfg), args.implied_labels), sort_keys=True).encode() + ",".join(sorted(exclude)).encode()
        + str(args.augment).encode() + (f",unpunctuated={args.unpunctuated}".encode() if args.unpunctuated else b"")
        + NGRAM_FEATURES.encode()
        + (repr(IMPLIED_RULES).encode() if args.implied_labels else b"")
        + (adapter_head.version.encode() if adapter_head is not None else b"")
        + ENCODER_ID.encode() + version_salt()).hexdigest()[:8]  # the graph the features came from: calibration depends on it
    heads = to_heads(tr, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    heads.save(out_dir / "heads.npz")

    all_rows = read_examples([data_dir], exclude_sources=exclude)
    if adapter_head is not None:  # what the calibration, thresholds and mix were fitted on
        held_key, held_rows = "train_holdout", "the held-out train fold"
        threshold_rule = "max F1 on calibrated scores of the train fold fine-tuning held out"
        calib_basis = (f"scores of the held-out train fold {adapter_head.holdout_fold} of "
                       f"{adapter_head.holdout_folds} (never seen by the adapter or the n-gram part)")
    else:
        held_key, held_rows = "train_oof", "out-of-fold train scores"
        threshold_rule = "max F1 on cross-fitted (out-of-fold) calibrated train scores"
        calib_basis = f"{args.folds}-fold out-of-fold train scores"
    calib = {
        "version": version,
        "command": "guard models train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "encoder": {"file": paths.ENCODER_INT8, "sha256_16": encoder_fingerprint(paths.build_dir() / paths.ENCODER_INT8)},
        "windows": {"tokens": WINDOW_TOKENS, "train": args.train_windows,
                    "train_stride": STREAM_STRIDE if args.train_windows == "stream" else TRAIN_STRIDE,
                    "dev_stride": STREAM_STRIDE,
                    "text_score": "max over windows"},
        "tokenizer": tokenizer_settings(),
        "config": asdict(cfg),
        "mlp": ("the head trained with the encoder adapter " + adapter_head.version) if adapter_head is not None
               else "fitted by guard models train",
        "threshold_rule": threshold_rule,
        "calibration_rule": calib_basis + f"; isotonic when a category has >= {MIN_POS_ISOTONIC} positives "
                                          "and negatives, else Platt on the logit",
        "categories": {
            cat: {"threshold": round(float(tr.thresholds[j]), 4), "calibration": tr.methods[j],
                  "dev": dev_rep["categories"].get(cat), "dev_best_f1": dev_best.get(cat),
                  held_key: tr.oof_metrics.get(cat)}
            for j, cat in enumerate(CATEGORIES)
        },
        "any": {"dev": dev_rep["any"], held_key: tr.oof_metrics.get("any")},
        "dev_implied_labels_auprc": dev_implied,
        "dev_obfuscated": dev_obf,
        "augmentation": {"fraction": args.augment, "unpunctuated": args.unpunctuated,
                         "train_copies": int(prep.is_aug.sum())},
        "comparison": comparison,
        "ngram": None if tr.ngram is None else {
            "features": "word pieces + hashed word-piece bigrams (guard.models.ngrams)",
            "dim": tr.ngram.dim, "stored_rows": len(tr.ngram.index), "c": tr.cfg.ngram_c,
            "mix": {c: float(m) for c, m in zip(CATEGORIES, tr.mix if tr.mix is not None else [], strict=True)},
            "mix_rule": "per category, the MIX_GRID value with the best AUPRC on " + held_rows,
            "mix_oof_auprc": tr.mix_oof_auprc, "dev_auprc_raw_ablation": ablation},
        "data": {"dir": str(data_dir), "excluded_sources": sorted(exclude),
                 "implied_train_labels": implied_rules_doc() if args.implied_labels else [],
                 "implied_weight": cfg.implied_weight if args.implied_labels else None,
                 "sources": manifest(all_rows, data_dir)},
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    (out_dir / "calibration.json").write_text(json.dumps(calib, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {out_dir / 'heads.npz'} ({(out_dir / 'heads.npz').stat().st_size // 1024} KB) and calibration.json")
    a = dev_rep["any"]
    log(f"dev any: AUPRC {a['auprc']} P {a['precision']} R {a['recall']}")
    for cat, blk in dev_rep["categories"].items():
        log(f"dev {cat:>14}: AUPRC {blk['auprc']} P {blk['precision']} R {blk['recall']} thr {blk['threshold']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

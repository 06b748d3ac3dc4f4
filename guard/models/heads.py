"""Per-category heads over pooled encoder features, in plain numpy.

The encoder (ONNX, served by Triton or ONNX Runtime) outputs ``POOLED``: float32 ``[n, 7, 384]``,
the attention-masked mean of the hidden states of the embedding layer (index 0) and of each of the
six transformer layers (1..6). The heads pick some of those layers, L2-normalise each, concatenate,
standardise, run a small MLP (ReLU between dense layers, sigmoid out) and map each category's raw
probability through a monotone piecewise-linear calibration curve, so a threshold means a
probability. Heads are small (a few hundred KB) and committed; the encoder is rebuilt.

File format (``heads.npz``), written by ``guard models train``:

- ``categories``: str array, must equal ``guard.types.CATEGORIES``
- ``feature_layers``: int array, indices into the 7 pooled layers
- ``mean``, ``scale``: float32 ``[F]`` standardisation of the concatenated features
- ``n_dense``: int; ``w{i}`` float32 ``[in, out]`` and ``b{i}`` float32 ``[out]`` for each dense layer
- ``calib_x``, ``calib_y``: float32 ``[C, K]`` per-category calibration knots (x increasing)
- ``version``: str
- optional n-gram head (``guard.models.ngrams``): ``ngram_index`` int64 ``[K]``, ``ngram_weight``
  float16 ``[K, C]``, ``ngram_bias`` float32 ``[C]``, ``ngram_dim`` int, ``ngram_mix`` float32 ``[C]``
  — the window's logit is ``mlp + ngram_mix * ngram`` before calibration, so heads with an n-gram part
  need the window's token ids as well as its pooled features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guard.models import paths
from guard.models.ngrams import NgramHead
from guard.types import CATEGORIES


@dataclass(frozen=True)
class Heads:
    feature_layers: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    calib_x: np.ndarray
    calib_y: np.ndarray
    version: str
    categories: tuple[str, ...] = CATEGORIES
    ngram: NgramHead | None = None
    mix: np.ndarray | None = None  # float32 [C]: weight of the n-gram logit per category

    @classmethod
    def load(cls, path: str | Path) -> Heads:
        with np.load(path, allow_pickle=False) as z:
            cats = tuple(str(c) for c in z["categories"])
            if cats != CATEGORIES:
                raise ValueError(f"{path}: categories {cats} do not match {CATEGORIES}")
            n = int(z["n_dense"])
            ngram = mix = None
            if "ngram_index" in z.files:
                ngram = NgramHead(z["ngram_index"].astype(np.int64), z["ngram_weight"].astype(np.float32),
                                  z["ngram_bias"].astype(np.float32), dim=int(z["ngram_dim"]))
                mix = z["ngram_mix"].astype(np.float32)
            return cls(
                feature_layers=z["feature_layers"].astype(np.int64),
                mean=z["mean"].astype(np.float32),
                scale=z["scale"].astype(np.float32),
                weights=tuple(z[f"w{i}"].astype(np.float32) for i in range(n)),
                biases=tuple(z[f"b{i}"].astype(np.float32) for i in range(n)),
                calib_x=z["calib_x"].astype(np.float32),
                calib_y=z["calib_y"].astype(np.float32),
                version=str(z["version"]),
                ngram=ngram,
                mix=mix,
            )

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "categories": np.array(self.categories),
            "feature_layers": self.feature_layers,
            "mean": self.mean,
            "scale": self.scale,
            "n_dense": np.array(len(self.weights)),
            "calib_x": self.calib_x,
            "calib_y": self.calib_y,
            "version": np.array(self.version),
        }
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{i}"] = w
            arrays[f"b{i}"] = b
        if self.ngram is not None:
            assert self.mix is not None
            arrays.update(ngram_index=self.ngram.index.astype(np.int32),
                          ngram_weight=self.ngram.weight.astype(np.float16),
                          ngram_bias=self.ngram.bias.astype(np.float32),
                          ngram_dim=np.array(self.ngram.dim), ngram_mix=self.mix.astype(np.float32))
        paths.write_npz(path, arrays)

    def features(self, pooled: np.ndarray) -> np.ndarray:
        """``[n, 7, H]`` pooled layers → standardised ``[n, F]`` head input."""
        sel = pooled[:, self.feature_layers, :].astype(np.float32)
        sel = sel / np.maximum(np.linalg.norm(sel, axis=-1, keepdims=True), 1e-12)
        flat = sel.reshape(sel.shape[0], -1)
        return (flat - self.mean) / self.scale

    @property
    def needs_ids(self) -> bool:
        """True when the heads read the windows' token ids as well as their pooled features."""
        return self.ngram is not None

    def logits(self, pooled: np.ndarray, token_ids: Sequence[np.ndarray] | np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated logits ``[n, C]``; ``token_ids`` (rows of ids, padding allowed) when ``needs_ids``."""
        h = self.features(pooled)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < last:
                h = np.maximum(h, 0.0)
        if self.ngram is not None:
            if token_ids is None or len(token_ids) != len(h):
                raise ValueError("these heads have an n-gram part: pass one row of token ids per window")
            h = h + self.mix * self.ngram.logits(token_ids)
        return h

    def raw(self, pooled: np.ndarray, token_ids: Sequence[np.ndarray] | np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated sigmoid probabilities ``[n, C]``."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(pooled, token_ids), -40.0, 40.0)))

    def predict(self, pooled: np.ndarray, token_ids: Sequence[np.ndarray] | np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities ``[n, C]`` float32."""
        raw = self.raw(pooled, token_ids)
        out = np.empty_like(raw, dtype=np.float32)
        for c in range(raw.shape[1]):
            out[:, c] = np.interp(raw[:, c], self.calib_x[c], self.calib_y[c])
        return out

"""Low-rank adapters (LoRA) for the encoder, merged into the packaged weights at build time.

Why: the frozen all-MiniLM-L6-v2 plus small heads plateaued on the subtle categories (hate,
harassment); what the encoder learns from the shared data must still ship small and leave serving
untouched. So ``guard models finetune`` (optional, needs torch) trains a rank-``r`` update
``ΔW = (alpha / r) · B @ A`` for the dense layers and writes only ``A`` and ``B`` (a few hundred KB,
committed). ``guard models build`` adds ``ΔW`` to the safetensors weights *before* it writes the
ONNX graphs, so the served encoder is the same graph at the same cost, and neither CI nor serving
ever needs torch.

File format (``adapter.npz``):

- ``version``: str, e.g. ``lora-20261201-1a2b3c4d`` (recorded in every decision's model version)
- ``rank``: int; ``alpha``: float
- ``targets``: str array of safetensors weight names (``encoder.layer.{i}.attention.self.query.weight``, ...)
- ``A/<name>``: float16 ``[r, in]`` and ``B/<name>``: float16 ``[out, r]`` for each target
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guard.models import paths

#: the dense layers of one BERT layer that get an adapter (HF names after ``encoder.layer.{i}.``)
DENSE = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
         "intermediate.dense", "output.dense")


def target_names(n_layers: int = 6, dense: tuple[str, ...] = DENSE) -> list[str]:
    return [f"encoder.layer.{i}.{d}.weight" for i in range(n_layers) for d in dense]


@dataclass(frozen=True)
class Adapter:
    version: str
    rank: int
    alpha: float
    a: Mapping[str, np.ndarray]  # name -> [r, in]
    b: Mapping[str, np.ndarray]  # name -> [out, r]

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def delta(self, name: str) -> np.ndarray:
        """``ΔW`` for one weight, in HF's ``[out, in]`` layout, float32."""
        return (self.scaling * (self.b[name].astype(np.float32) @ self.a[name].astype(np.float32))).astype(np.float32)

    def merge(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A copy of the state dict with every target's ``ΔW`` added; a missing or misshaped target is an error."""
        out = dict(weights)
        for name in self.a:
            if name not in weights:
                raise KeyError(f"adapter {self.version}: weight {name} is not in the encoder")
            d = self.delta(name)
            if d.shape != weights[name].shape:
                raise ValueError(f"adapter {self.version}: {name} delta {d.shape} != weight {weights[name].shape}")
            out[name] = (weights[name].astype(np.float32) + d).astype(np.float32)
        return out

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "version": np.array(self.version), "rank": np.array(self.rank, np.int64),
            "alpha": np.array(self.alpha, np.float32), "targets": np.array(sorted(self.a)),
        }
        for name in self.a:
            arrays[f"A/{name}"] = np.asarray(self.a[name], np.float16)
            arrays[f"B/{name}"] = np.asarray(self.b[name], np.float16)
        paths.write_npz(path, arrays)

    @classmethod
    def load(cls, path: str | Path) -> Adapter:
        with np.load(path, allow_pickle=False) as z:
            targets = [str(t) for t in z["targets"]]
            rank = int(z["rank"])
            a = {t: z[f"A/{t}"].astype(np.float32) for t in targets}
            b = {t: z[f"B/{t}"].astype(np.float32) for t in targets}
            for t in targets:
                if a[t].shape[0] != rank or b[t].shape[1] != rank:
                    raise ValueError(f"{path}: {t} has A {a[t].shape} / B {b[t].shape}, rank {rank}")
            return cls(str(z["version"]), rank, float(z["alpha"]), a, b)


def adapter_version(path: str | Path) -> str:
    """Only the version string (for model-version stamps), without reading the matrices."""
    with np.load(path, allow_pickle=False) as z:
        return str(z["version"])


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]

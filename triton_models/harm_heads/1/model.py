"""Harm heads (numpy) inside Triton's python backend.

Runs ``guard.models.heads.Heads.predict`` on the pooled features and, for the n-gram part, the
window's token ids — the same code the in-process detector uses, so the two
paths cannot drift. The stub imports ``guard`` from the interpreter's environment: the local server
puts the virtualenv (where guard is installed) first on PATH; the GPU image puts guard's source on
PYTHONPATH (its Python is 3.10; see docker/triton.Dockerfile), numpy being its only import here.
"""

from __future__ import annotations

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from guard.models.heads import Heads
from guard.models.ngrams import VOCAB

POOLED, INPUT_IDS, PROBS, HEADS_VERSION = "POOLED", "INPUT_IDS", "PROBS", "HEADS_VERSION"


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        name = config.get("parameters", {}).get("heads_file", {}).get("string_value", "heads.npz")
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"{path} missing: train the heads (`guard models train`) and run `guard models build`")
        self.heads = Heads.load(path)
        self.version = self.heads.version.encode("utf-8")

    def _inputs(self, request) -> tuple[np.ndarray, list[np.ndarray]]:
        """One request's pooled rows and id rows, checked here: a bad one inside the concatenated
        batch would fail every request the batcher put beside it."""
        pooled = pb_utils.get_input_tensor_by_name(request, POOLED).as_numpy()
        if pooled.ndim != 3:
            raise ValueError(f"{POOLED} must be [rows, layers, dim], not {pooled.shape}")
        if not self.heads.needs_ids:
            return pooled, []
        ids = pb_utils.get_input_tensor_by_name(request, INPUT_IDS).as_numpy()
        rows = list(ids[None, :] if ids.ndim == 1 else ids)  # ragged: may lack the batch dim
        if len(rows) != len(pooled):
            raise ValueError(f"{len(rows)} {INPUT_IDS} rows for {len(pooled)} {POOLED} rows")
        if any(r.size and (r.min() < 0 or r.max() >= VOCAB) for r in rows):
            raise ValueError(f"token ids must be in [0, {VOCAB})")
        return pooled, rows

    def execute(self, requests):
        inputs: list[tuple[np.ndarray, list[np.ndarray]] | str] = []
        for r in requests:
            try:
                inputs.append(self._inputs(r))
            except (ValueError, AttributeError) as exc:
                inputs.append(str(exc))
        good = [x for x in inputs if not isinstance(x, str)]
        probs = np.zeros((0, 0), np.float32)
        if good:
            rows = [row for _, rs in good for row in rs]
            probs = self.heads.predict(np.concatenate([p for p, _ in good]), rows or None).astype(np.float32)
        responses, at = [], 0
        for x in inputs:
            if isinstance(x, str):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(x)))
                continue
            n = len(x[0])
            version = np.full((n, 1), self.version, dtype=object)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(PROBS, probs[at:at + n]),
                                                         pb_utils.Tensor(HEADS_VERSION, version)]))
            at += n
        return responses

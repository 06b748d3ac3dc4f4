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

    def execute(self, requests):
        pooled = [pb_utils.get_input_tensor_by_name(r, POOLED).as_numpy() for r in requests]
        rows: list[np.ndarray] = []
        if self.heads.needs_ids:
            for r in requests:
                ids = pb_utils.get_input_tensor_by_name(r, INPUT_IDS).as_numpy()
                rows.extend(ids[None, :] if ids.ndim == 1 else ids)  # ragged: may lack the batch dim
        probs = self.heads.predict(np.concatenate(pooled), rows or None).astype(np.float32)
        responses, at = [], 0
        for p in pooled:
            version = np.full((len(p), 1), self.version, dtype=object)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(PROBS, probs[at:at + len(p)]),
                                                         pb_utils.Tensor(HEADS_VERSION, version)]))
            at += len(p)
        return responses

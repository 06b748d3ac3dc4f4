"""MiniLM encoder on ONNX Runtime inside Triton's python backend (CPU flavour).

Self-contained on purpose (numpy + onnxruntime only): this file is the serving side of the encoder
contract in ``guard/models/build.py`` and must not drift with the library's imports.

Each request carries one or more rows of token ids (with [CLS]/[SEP], unpadded) and the matching
attention mask. The dynamic batcher hands us requests of different lengths together
(``allow_ragged_batch``), so all rows are right-padded to the longest in this execute() call and
run as one ORT batch; the encoder's masked pooling makes the result independent of that padding,
and its per-token int8 quantization makes it independent of the batch neighbours.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

INPUT_IDS, ATTENTION_MASK, POOLED = "INPUT_IDS", "ATTENTION_MASK", "POOLED"


def _param(config: dict, key: str, default: str) -> str:
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, _param(config, "model_file", "encoder-int8.onnx"))
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(f"{path} missing: run `guard models build`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(_param(config, "intra_op_threads", "2"))
        opts.inter_op_num_threads = int(_param(config, "inter_op_threads", "1"))
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle ORT threads spin by default, taking CPU from gRPC and the other models on a small box
        opts.add_session_config_entry("session.intra_op.allow_spinning",
                                      _param(config, "allow_spinning", "1"))
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.max_seq_len = int(_param(config, "max_seq_len", "256"))
        self.vocab_size = int(_param(config, "vocab_size", "30522"))

    def _rows(self, request) -> tuple[np.ndarray, np.ndarray]:
        ids = pb_utils.get_input_tensor_by_name(request, INPUT_IDS).as_numpy()
        mask = pb_utils.get_input_tensor_by_name(request, ATTENTION_MASK).as_numpy()
        if ids.ndim == 1:  # a ragged-batched request may arrive without its batch dim
            ids, mask = ids[None, :], mask[None, :]
        if ids.shape != mask.shape:
            raise ValueError(f"{INPUT_IDS} shape {ids.shape} != {ATTENTION_MASK} shape {mask.shape}")
        if ids.shape[1] > self.max_seq_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens exceeds {self.max_seq_len}")
        # What ONNX Runtime would fail on, or silently misread, is refused here, per request: an
        # error inside session.run would fail every request the batcher put beside this one.
        if ids.shape[1] == 0:
            raise ValueError("empty sequence: send at least [CLS] and [SEP]")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size})")  # -1 wrapped to the last id
        if not np.isin(mask, (0, 1)).all() or (mask[:, 0] != 1).any():
            raise ValueError(f"{ATTENTION_MASK} must be 0/1 and start with 1 (a row's first token is "
                             "[CLS]; an all-zero row pools to nothing)")
        return ids.astype(np.int64, copy=False), mask.astype(np.int64, copy=False)

    def _pool(self, good: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        longest = max(ids.shape[1] for ids, _ in good)
        n = sum(ids.shape[0] for ids, _ in good)
        batch_ids = np.zeros((n, longest), np.int64)
        batch_mask = np.zeros((n, longest), np.int64)
        at = 0
        for ids, mask in good:
            batch_ids[at:at + len(ids), : ids.shape[1]] = ids
            batch_mask[at:at + len(ids), : ids.shape[1]] = mask
            at += len(ids)
        (pooled,) = self.session.run([POOLED], {INPUT_IDS: batch_ids, ATTENTION_MASK: batch_mask})
        return np.asarray(pooled, dtype=np.float32)

    def execute(self, requests):
        rows: list[tuple[np.ndarray, np.ndarray] | None] = []
        errors: dict[int, str] = {}
        for i, request in enumerate(requests):
            try:
                rows.append(self._rows(request))
            except (ValueError, AttributeError) as exc:
                rows.append(None)
                errors[i] = str(exc)
        good = [r for r in rows if r is not None]
        try:
            pooled = self._pool(good) if good else np.zeros((0, 7, 384), np.float32)  # see config.pbtxt
        except Exception:  # noqa: BLE001 - unforeseen: find the request that fails, answer only it
            pooled = None

        responses, at = [], 0
        for i, r in enumerate(rows):
            if r is None:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[i])))
                continue
            k = len(r[0])
            if pooled is not None:
                mine = pooled[at:at + k]
            else:
                try:
                    mine = self._pool([r])
                except Exception as exc:  # noqa: BLE001 - this request's own failure
                    responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                    continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(POOLED, mine)]))
            at += k
        return responses

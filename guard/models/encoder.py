"""In-process encoder: ONNX Runtime on the built graph, giving ``POOLED`` features.

Shared by the in-process detector and by head training, so the heads are trained on exactly the
features (int8, same padding rules) they see in serving (MEASURED §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from guard.models import paths
from guard.models.build import ATTENTION_MASK, HIDDEN, INPUT_IDS, N_POOLED, POOLED
from guard.models.tokenizer import add_special_tokens, pad_batch


class OnnxEncoder:
    """One ORT session. Not thread-safe to reconfigure, but ``run`` may be called from threads."""

    def __init__(self, session: ort.InferenceSession, name: str) -> None:
        self._sess = session
        self.name = name

    @classmethod
    def from_path(cls, path: str | Path | None = None, intra_op_threads: int = 2,
                  inter_op_threads: int = 1, allow_spinning: bool = False) -> OnnxEncoder:
        """Open ``encoder-int8.onnx`` from the build dir unless ``path`` says otherwise.

        Spinning is off by default: on a shared 2-core box, idle ORT threads busy-waiting took a
        third of the throughput (b8 s64: 35 windows/s spinning vs 47 not, under load).
        """
        path = Path(path) if path is not None else paths.build_dir() / paths.ENCODER_INT8
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; run `guard models build`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return cls(sess, path.name)

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Padded ``[n, s]`` ids and mask (with [CLS]/[SEP]) → float32 ``[n, 7, 384]``."""
        (pooled,) = self._sess.run([POOLED], {INPUT_IDS: ids, ATTENTION_MASK: mask})
        return np.asarray(pooled, dtype=np.float32)

    def pool(self, token_ids: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Content ids without special tokens (as the tokenizer helper gives them) → ``[n, 7, 384]``.

        Batches are padded to their own longest member, so sorting inputs by length first (as
        training code may) saves work; the result does not depend on the padding.
        """
        out = np.empty((len(token_ids), N_POOLED, HIDDEN), dtype=np.float32)
        for start in range(0, len(token_ids), batch_size):
            chunk = [add_special_tokens(t) for t in token_ids[start:start + batch_size]]
            out[start:start + len(chunk)] = self.run(*pad_batch(chunk))
        return out

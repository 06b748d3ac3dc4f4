"""Torch-free ONNX builder for the all-MiniLM-L6-v2 encoder.

Why a hand-written graph: the weights ship as safetensors in a pip package, and exporting through
torch would put torch (GBs) into CI and set-up just to produce a 90 MB file we must not commit. The
BERT encoder is small enough to write down with ``onnx.helper`` and numpy; MEASURED.md §3 shows
this graph matches the torch export to ~2e-7.

Graph contract (shared by the CPU and GPU Triton flavours, hence the upper-case names):

- ``INPUT_IDS`` int64 ``[batch, seq]`` — token ids *including* ``[CLS]``/``[SEP]``, right-padded
- ``ATTENTION_MASK`` int64 ``[batch, seq]`` — 1 for real tokens, 0 for padding
- ``POOLED`` float32 ``[batch, 7, 384]`` — masked mean over tokens of the embedding LayerNorm output
  (index 0) and of each of the six layer outputs (1..6). Not L2-normalised: the heads normalise,
  and ``POOLED[:, 6]`` L2-normalised is the sentence-transformers embedding.

Choices that matter for numerics (each mirrors HF's eager BERT): exact erf GELU, post-LN layers with
eps 1e-12, an additive attention mask of ``finfo(float32).min`` built with ``Where`` (not ``(1-m)*min``,
which turns into ``0 * -inf = NaN`` once TensorRT runs it in FP16), token_type row 0 folded into the
position table, and the position rows taken with ``Shape(start=1, end=2)`` + ``Slice`` (a
Shape→Gather→Range path trips ORT's optimizer).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import structlog
from onnx import TensorProto, helper, numpy_helper

from guard.models import paths

log = structlog.get_logger(__name__)

#: Graph tensor names. The Triton configs and detectors are checked against these by a contract test.
INPUT_IDS = "INPUT_IDS"
ATTENTION_MASK = "ATTENTION_MASK"
POOLED = "POOLED"

HIDDEN = 384
N_LAYERS = 6
N_POOLED = N_LAYERS + 1
N_HEADS = 12
OPSET = 17
#: all-MiniLM-L6-v2 was trained with ``max_seq_length`` 256 (including [CLS]/[SEP]).
MAX_SEQ_LEN = 256
CLS_ID = 101
SEP_ID = 102
PAD_ID = 0
UNK_ID = 100

#: Bump when the graph or quantization changes, so ``guard models build`` rebuilds stale files.
BUILDER_VERSION = "3"
#: Identifies the base encoder graph in ``model_version`` strings; ``encoder_id`` adds the adapter.
ENCODER_ID = f"minilm-l6-v2-pooled7-b{BUILDER_VERSION}"


def encoder_id(adapter: Path | None = None) -> str:
    """What the heads were trained on: the base graph plus the committed adapter's version, if any."""
    from guard.models.adapter import adapter_version

    path = paths.adapter_path() if adapter is None else adapter
    return f"{ENCODER_ID}+{adapter_version(path)}" if path.exists() else ENCODER_ID


class _Graph:
    """Collects nodes and initializers with unique names (duplicate constant names break ORT)."""

    def __init__(self, int8: bool = False) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.int8 = int8
        self._n = 0
        self._quantized: dict[str, tuple[str, str]] = {}
        self.ax1 = self.const(np.array([1], np.int64), "ax1")
        if int8:
            self.one = self.const(np.array(1.0, np.float32), "one_f")
            self.zp128 = self.const(np.array(128, np.uint8), "zp128")
            self.eps8 = self.const(np.array(1e-8, np.float32), "qeps")
            self.inv127 = self.const(np.array(1.0 / 127.0, np.float32), "inv127")

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, hint: str) -> str:
        """``x [M, in]`` → ``[M, out]``. HF Linear stores ``[out, in]``; MatMul wants ``[in, out]``."""
        b = self.const(bias.astype(np.float32), f"{hint}.b")
        if not self.int8:
            w = self.const(weight.T.astype(np.float32), f"{hint}.w")
            return self.op("Add", [self.op("MatMul", [x, w], f"{hint}.mm"), b], hint)
        wq, w_scale = _quantize_rows(weight, WEIGHT_BITS)  # per output channel
        xq, x_scale = self.quantize_tokens(x)
        y = self.op("MatMulIntegerToFloat",
                    [xq, self.const(np.ascontiguousarray(wq.T), f"{hint}.wq"), self.one, self.const(w_scale, f"{hint}.ws"),
                     self.zp128], f"{hint}.mmi", domain="com.microsoft")
        return self.op("Add", [self.op("Mul", [y, x_scale], f"{hint}.scaled"), b], hint)

    def quantize_tokens(self, x: str) -> tuple[str, str]:
        """Symmetric int8 per token (row of ``x [M, K]``), as uint8 with zero point 128 (fast u8s8 kernels).

        Per token, not per tensor like ``DynamicQuantizeLinear``: a token's features then do not
        depend on the other rows of the batch (padding, other streams' windows), so scores are
        reproducible whatever the dynamic batcher groups together. Returns (q ``[M, K]``, scale ``[M, 1]``).
        """
        if x in self._quantized:
            return self._quantized[x]
        absmax = self.op("ReduceMax", [self.op("Abs", [x], f"{x}.abs")], f"{x}.absmax", axes=[1], keepdims=0)
        scale = self.op("Mul", [self.op("Max", [absmax, self.eps8], f"{x}.absmax_c"), self.inv127], f"{x}.xs")
        zp = self.op("Expand", [self.zp128, self.op("Shape", [scale], f"{x}.m")], f"{x}.zp")
        q = self.op("QuantizeLinear", [x, scale, zp], f"{x}.q", axis=0)
        col = self.op("Unsqueeze", [scale, self.ax1], f"{x}.xs_col")
        self._quantized[x] = (q, col)
        return q, col

    def layer_norm(self, x: str, w: dict[str, np.ndarray], prefix: str) -> str:
        g = self.const(w[f"{prefix}.weight"], f"{prefix}.g")
        b = self.const(w[f"{prefix}.bias"], f"{prefix}.b")
        return self.op("LayerNormalization", [x, g, b], prefix, axis=-1, epsilon=1e-12)


#: Dense-layer weights use 7 of int8's bits ([-63, 63]). On x86 CPUs without VNNI (AVX2, plain
#: AVX-512), ONNX Runtime's u8s8 kernels add pairs of uint8 x int8 products in int16, which
#: saturates with full-range weights: measured on an AVX2 host, 93 % of a random 64x384x256
#: product's outputs were wrong with [-127, 127] weights and none with [-63, 63]. With 7 bits the
#: integer products are exact on every CPU, so a window's features do not depend on the host
#: (8-bit weights had moved dev violence AUPRC by 0.004 between an AVX2 and a VNNI host).
WEIGHT_BITS = 7


def _quantize_rows(m: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per row of ``m`` in ``bits`` bits: (int8 values, float32 scale per row)."""
    qmax = float(2 ** (bits - 1) - 1)
    scale = np.maximum(np.abs(m).max(axis=1), 1e-12).astype(np.float32) / qmax
    return np.clip(np.round(m / scale[:, None]), -qmax, qmax).astype(np.int8), scale


def _load_weights(weights_dir: Path, adapter: Path | None = None) -> dict[str, np.ndarray]:
    """The packaged weights, with the adapter's low-rank updates merged in when there is one."""
    from safetensors.numpy import load_file

    from guard.models.adapter import Adapter

    weights = load_file(str(weights_dir / "model.safetensors"))
    return Adapter.load(adapter).merge(weights) if adapter is not None and adapter.exists() else weights


def build_graph(w: dict[str, np.ndarray], int8: bool = False) -> onnx.ModelProto:
    """The encoder graph from a safetensors state dict (see module docstring for the contract).

    ``int8`` quantizes the weights of every dense layer (per output channel) and the word
    embeddings (per row), and the activations feeding dense layers per token, dynamically.
    """
    g = _Graph(int8)
    head_dim = HIDDEN // N_HEADS

    # embeddings: word + (position + token_type[0]), then LayerNorm
    table = w["embeddings.word_embeddings.weight"]
    if int8:
        tq, ts = _quantize_rows(table)
        word = g.op("Mul", [g.op("Cast", [g.op("Gather", [g.const(tq, "word_emb_q"), INPUT_IDS], "word_q")],
                                 "word_qf", to=TensorProto.FLOAT),
                            g.op("Gather", [g.const(ts[:, None], "word_emb_s"), INPUT_IDS], "word_s")], "word")
    else:
        word = g.op("Gather", [g.const(table, "word_emb"), INPUT_IDS], "word")
    pos_table = w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    seq_len = g.op("Shape", [INPUT_IDS], "seq_len", start=1, end=2)
    pos = g.op("Slice", [g.const(pos_table.astype(np.float32), "pos_emb"),
                         g.const(np.array([0], np.int64), "zero"), seq_len,
                         g.const(np.array([0], np.int64), "axis0")], "pos")
    # the encoder works on [b*s, H] rows: per-token quantization and dense layers want 2-D
    h = g.op("Reshape", [g.op("Add", [word, pos], "emb"), g.const(np.array([-1, HIDDEN], np.int64), "rows")],
             "emb_rows")
    h = g.layer_norm(h, w, "embeddings.LayerNorm")
    hidden = [h]

    # additive mask [b, 1, 1, s]: 0 where attended, finfo.min where padded
    keep = g.op("Cast", [ATTENTION_MASK], "mask_bool", to=TensorProto.BOOL)
    add_mask = g.op("Where", [keep, g.const(np.array(0.0, np.float32), "zero_f"),
                              g.const(np.array(np.finfo(np.float32).min, np.float32), "neg")], "add_mask")
    add_mask = g.op("Unsqueeze", [add_mask, g.const(np.array([1, 2], np.int64), "ax12")], "add_mask4")

    batch_seq = g.op("Shape", [INPUT_IDS], "batch_seq")
    split_heads = g.op("Concat", [batch_seq, g.const(np.array([N_HEADS, head_dim], np.int64), "heads_dims")],
                       "split_heads", axis=0)
    merge_heads = g.const(np.array([-1, HIDDEN], np.int64), "merge_heads")
    unflatten = g.op("Concat", [batch_seq, g.const(np.array([HIDDEN], np.int64), "hidden_dim")], "unflatten",
                     axis=0)
    scale = g.const(np.array(1.0 / math.sqrt(head_dim), np.float32), "scale")
    inv_sqrt2 = g.const(np.array(1.0 / math.sqrt(2.0), np.float32), "inv_sqrt2")
    one = g.const(np.array(1.0, np.float32), "one")
    half = g.const(np.array(0.5, np.float32), "half")

    for i in range(N_LAYERS):
        p = f"encoder.layer.{i}"

        def heads(x: str, perm: list[int], hint: str) -> str:
            return g.op("Transpose", [g.op("Reshape", [x, split_heads], f"{hint}.split")], hint, perm=perm)

        q = heads(g.linear(h, w[f"{p}.attention.self.query.weight"], w[f"{p}.attention.self.query.bias"], f"{p}.q"),
                  [0, 2, 1, 3], f"{p}.qh")
        k = heads(g.linear(h, w[f"{p}.attention.self.key.weight"], w[f"{p}.attention.self.key.bias"], f"{p}.k"),
                  [0, 2, 3, 1], f"{p}.kh")
        v = heads(g.linear(h, w[f"{p}.attention.self.value.weight"], w[f"{p}.attention.self.value.bias"], f"{p}.v"),
                  [0, 2, 1, 3], f"{p}.vh")
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k], f"{p}.qk"), scale], f"{p}.scaled"), add_mask],
                      f"{p}.masked")
        probs = g.op("Softmax", [scores], f"{p}.probs", axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v], f"{p}.ctx")], f"{p}.ctx_t", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_heads], f"{p}.ctx_merged")
        attn = g.linear(ctx, w[f"{p}.attention.output.dense.weight"], w[f"{p}.attention.output.dense.bias"],
                        f"{p}.attn_out")
        h = g.layer_norm(g.op("Add", [attn, h], f"{p}.attn_res"), w, f"{p}.attention.output.LayerNorm")

        inter = g.linear(h, w[f"{p}.intermediate.dense.weight"], w[f"{p}.intermediate.dense.bias"], f"{p}.inter")
        erf = g.op("Erf", [g.op("Mul", [inter, inv_sqrt2], f"{p}.gelu_in")], f"{p}.erf")
        gelu = g.op("Mul", [g.op("Mul", [inter, half], f"{p}.gelu_half"),
                            g.op("Add", [erf, one], f"{p}.erf1")], f"{p}.gelu")
        out = g.linear(gelu, w[f"{p}.output.dense.weight"], w[f"{p}.output.dense.bias"], f"{p}.out")
        h = g.layer_norm(g.op("Add", [out, h], f"{p}.out_res"), w, f"{p}.output.LayerNorm")
        hidden.append(h)

    # masked mean of every hidden state: [b, 7, s, H] * mask[b, 1, s, 1] summed over s / count
    ax1 = g.ax1
    stacked = g.op("Concat", [g.op("Unsqueeze", [g.op("Reshape", [x, unflatten], "bsh"), ax1], "stack_in")
                              for x in hidden], "stacked", axis=1)
    mask_f = g.op("Cast", [ATTENTION_MASK], "mask_f", to=TensorProto.FLOAT)
    mask4 = g.op("Unsqueeze", [mask_f, g.const(np.array([1, 3], np.int64), "ax13")], "mask4")
    summed = g.op("ReduceSum", [g.op("Mul", [stacked, mask4], "masked_hidden"),
                                g.const(np.array([2], np.int64), "ax2")], "summed", keepdims=0)
    count = g.op("ReduceSum", [mask_f, ax1], "count", keepdims=1)  # [b, 1]
    count = g.op("Max", [count, g.const(np.array(1e-9, np.float32), "eps")], "count_clamped")
    count = g.op("Unsqueeze", [count, g.const(np.array([2], np.int64), "ax2u")], "count3")  # [b, 1, 1]
    pooled = g.op("Div", [summed, count], "pooled")
    g.nodes.append(helper.make_node("Identity", [pooled], [POOLED], name="pooled_out"))

    graph = helper.make_graph(
        g.nodes,
        "minilm_l6_pooled",
        inputs=[helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "seq"]),
                helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "seq"])],
        outputs=[helper.make_tensor_value_info(POOLED, TensorProto.FLOAT, ["batch", N_POOLED, HIDDEN])],
        initializer=g.inits,
    )
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if int8 else [])
    model = helper.make_model(graph, opset_imports=opsets,
                              producer_name="guard.models.build")
    model.ir_version = 8  # opset 17's IR; keeps older ORT / Triton backends able to load it
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    fp32: Path
    int8: Path
    tokenizer: Path
    rebuilt: bool
    timings_s: dict[str, float]


def _source_key(weights_dir: Path, adapter: Path | None) -> str:
    """Cheap fingerprint of everything the outputs depend on (not a content hash of 90 MB)."""
    import onnxruntime

    from guard.models.adapter import file_digest

    st = (weights_dir / "model.safetensors").stat()
    tok = (weights_dir / paths.TOKENIZER).stat()
    parts = [BUILDER_VERSION, onnx.__version__, onnxruntime.__version__,
             str(st.st_size), str(st.st_mtime_ns), str(tok.st_size), str(tok.st_mtime_ns),
             file_digest(adapter) if adapter is not None and adapter.exists() else "no-adapter"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]



def build_encoders(out_dir: Path | None = None, weights_dir: Path | None = None,
                   force: bool = False, adapter: Path | None = None) -> BuildResult:
    """Write ``encoder.onnx`` (fp32), ``encoder-int8.onnx`` and ``tokenizer.json`` to ``out_dir``.

    The committed adapter (``paths.adapter_path()``, or ``adapter``) is merged into the weights
    first when it exists; without one the encoder is the packaged all-MiniLM-L6-v2. Skips the work when a manifest with the same source fingerprint is there and the files exist.
    Files are written under temporary names and renamed, so a concurrent reader never sees half a file.
    """
    out_dir = paths.build_dir() if out_dir is None else out_dir
    weights_dir = paths.weights_dir() if weights_dir is None else weights_dir
    adapter = paths.adapter_path() if adapter is None else adapter
    fp32, int8 = out_dir / paths.ENCODER_FP32, out_dir / paths.ENCODER_INT8
    tok, manifest = out_dir / paths.TOKENIZER, out_dir / paths.MANIFEST
    key = _source_key(weights_dir, adapter)
    timings: dict[str, float] = {}

    if not force and all(p.exists() for p in (fp32, int8, tok, manifest)):
        try:
            if json.loads(manifest.read_text()).get("key") == key:
                return BuildResult(out_dir, fp32, int8, tok, rebuilt=False, timings_s=timings)
        except (OSError, ValueError):
            pass

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        weights = _load_weights(weights_dir, adapter)
        timings["load_s"] = round(time.perf_counter() - t0, 2)
        for name, quantized in ((paths.ENCODER_FP32, False), (paths.ENCODER_INT8, True)):
            t0 = time.perf_counter()
            onnx.save_model(build_graph(weights, int8=quantized), tmp / name)
            timings[f"{'int8' if quantized else 'fp32'}_s"] = round(time.perf_counter() - t0, 2)

        shutil.copyfile(weights_dir / paths.TOKENIZER, tmp / paths.TOKENIZER)
        for name in (paths.ENCODER_FP32, paths.ENCODER_INT8, paths.TOKENIZER):
            os.replace(tmp / name, out_dir / name)

    manifest.write_text(json.dumps({"key": key, "encoder_id": encoder_id(adapter), "opset": OPSET,
                                    "inputs": [INPUT_IDS, ATTENTION_MASK], "output": POOLED,
                                    "timings_s": timings}, indent=2) + "\n")
    log.info("encoder_built", out_dir=str(out_dir), **timings)
    return BuildResult(out_dir, fp32, int8, tok, rebuilt=True, timings_s=timings)

